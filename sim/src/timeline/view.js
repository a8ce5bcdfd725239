// The timeline page's renderer: reads the run from the JSON block
// #timeline-data and draws the part of it in view as one SVG. Only what
// intersects the view is drawn, and at most MAX_DRAWN_MESSAGES messages, so
// runs of many thousands of events stay responsive. No network, no
// libraries. #render-status says "ok" once the first drawing is done, or
// the first script error.
(function () {
  'use strict';
  var statusBox = document.getElementById('render-status');
  window.onerror = function (message, source, line) {
    statusBox.textContent = 'error: ' + message + ' (line ' + line + ')';
    statusBox.className = 'error';
  };
  var MAX_DRAWN_MESSAGES = 4000;
  var LEFT = 170, AXIS = 22, NET = 18, LANE = 24, OPLANE = 14, GAP = 10;
  var data = JSON.parse(document.getElementById('timeline-data').textContent);
  var end = Math.max(1, data.end_us);
  var view = { t0: 0, t1: end };
  var show = { messages: true, delivered: true, marks: true, otherKeys: false };
  // The keys of the operations a failure names: others are dimmed unless asked for.
  var namedKeys = {};
  data.ops.forEach(function (op) { if (op.named) { namedKeys[op.key] = true; } });
  var processes = [];
  var processRow = {};
  data.ops.forEach(function (op) {
    if (!(op.process in processRow)) { processRow[op.process] = processes.length; processes.push(op.process); }
  });
  var laneTop = AXIS + NET + GAP;
  var opsTop = laneTop + data.lanes.length * LANE + GAP;
  var height = opsTop + processes.length * OPLANE + GAP + 4;

  function esc(text) {
    return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  }
  function seconds(us) { return (us / 1e6).toFixed(6) + ' s'; }
  function width() { return Math.max(600, document.getElementById('view').clientWidth || 1000); }
  function x(us) { return LEFT + (us - view.t0) * (width() - LEFT - 8) / (view.t1 - view.t0); }
  function visible(start, stop) { return stop >= view.t0 && start <= view.t1; }
  function laneY(lane) { return lane === null ? AXIS + NET / 2 : laneTop + lane * LANE + LANE / 2; }
  function clampX(us) { return Math.max(LEFT, Math.min(width(), x(us))); }

  function niceStep(span) {
    var raw = span / 10, power = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * power >= raw) { return steps[i] * power; } }
    return 10 * power;
  }

  function drawAxis(out) {
    var step = Math.max(1, niceStep(view.t1 - view.t0));
    out.push('<g class="axis">');
    for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      var px = x(t).toFixed(1);
      out.push('<line x1="' + px + '" x2="' + px + '" y1="' + AXIS + '" y2="' + height + '"/>');
      out.push('<text x="' + px + '" y="14">' + esc((t / 1e6).toFixed(step >= 1e5 ? 1 : step >= 1e3 ? 3 : 6)) + ' s</text>');
    }
    out.push('</g>');
  }

  function drawLaneNames(out) {
    out.push('<text class="lane-name" x="4" y="' + (AXIS + NET / 2 + 4) + '">network</text>');
    data.lanes.forEach(function (name, lane) {
      out.push('<text class="lane-name" x="4" y="' + (laneY(lane) + 4) + '">' + esc(name) + '</text>');
    });
    processes.forEach(function (process, row) {
      out.push('<text class="lane-name" x="4" y="' + (opsTop + row * OPLANE + 11) + '">client p' + esc(process) + '</text>');
    });
  }

  function drawSpan(out, span) {
    if (!visible(span.start_us, span.end_us)) { return; }
    var x0 = clampX(span.start_us), x1 = Math.max(x0 + 1, clampX(span.end_us));
    var y, h;
    if (span.layer === 'network') { y = AXIS + 2; h = NET - 4; }
    else if (span.layer === 'pause') { y = laneY(span.lane) - LANE / 2 + 1; h = LANE - 2; }
    else { y = laneY(span.lane) - LANE / 2 + 4; h = LANE - 8; }
    var cls = span.layer === 'pause' ? 'paused' : 's-' + span.class;
    var tip = span.label + '\n' + seconds(span.start_us) + ' .. ' + seconds(span.end_us);
    out.push('<rect class="' + esc(cls) + '" x="' + x0.toFixed(1) + '" y="' + y + '" width="' + (x1 - x0).toFixed(1) +
      '" height="' + h + '"><title>' + esc(tip) + '</title></rect>');
    if (x1 - x0 > 8 * span.label.length && span.layer !== 'pause') {
      out.push('<text class="span-label" x="' + (x0 + 3).toFixed(1) + '" y="' + (y + h - 4) + '">' + esc(span.label) + '</text>');
    }
  }

  function drawMark(out, mark) {
    if (!show.marks || mark.at_us < view.t0 || mark.at_us > view.t1) { return; }
    var px = x(mark.at_us).toFixed(1), y = laneY(mark.lane);
    var tip = esc(mark.label + '\n' + seconds(mark.at_us));
    if (mark.lane === null) {
      out.push('<line class="cluster-line" x1="' + px + '" x2="' + px + '" y1="' + AXIS + '" y2="' + (opsTop - GAP) + '"/>');
    }
    out.push('<path class="m-' + esc(mark.class) + '" d="M' + px + ' ' + (y - 7) + 'l5 7l-5 7l-5 -7z"><title>' + tip + '</title></path>');
  }

  function drawMessages(out) {
    if (!show.messages) { return 0; }
    var inView = data.messages.filter(function (m) {
      var stop = m.arrived_us === null ? m.sent_us : m.arrived_us;
      return (show.delivered || m.fate !== 'delivered') && visible(m.sent_us, stop);
    });
    var stride = Math.max(1, Math.ceil(inView.length / MAX_DRAWN_MESSAGES));
    for (var i = 0; i < inView.length; i += stride) {
      var m = inView[i];
      var y0 = laneY(m.from), y1 = laneY(m.to), x0 = x(m.sent_us);
      var x1 = m.arrived_us === null ? x0 + 6 : x(m.arrived_us);
      if (m.arrived_us === null) { y1 = y0 + (y1 > y0 ? 8 : -8); }
      var tip = 'n' + (m.from + 1) + ' -> n' + (m.to + 1) + ' ' + m.label + '\n' + m.fate + ', sent ' + seconds(m.sent_us) +
        (m.arrived_us === null ? '' : ', arrived ' + seconds(m.arrived_us));
      out.push('<line class="msg msg-' + esc(m.fate) + '" x1="' + x0.toFixed(1) + '" y1="' + y0 + '" x2="' + x1.toFixed(1) +
        '" y2="' + y1 + '"><title>' + esc(tip) + '</title></line>');
    }
    return inView.length > MAX_DRAWN_MESSAGES ? inView.length : 0;
  }

  function drawOp(out, op) {
    var stop = op.complete_us === null ? end : op.complete_us;
    if (!visible(op.invoke_us, stop)) { return; }
    var x0 = clampX(op.invoke_us), x1 = Math.max(x0 + 2, clampX(stop));
    var y = opsTop + processRow[op.process] * OPLANE + 2;
    var dim = !show.otherKeys && Object.keys(namedKeys).length > 0 && !namedKeys[op.key];
    var cls = 'op-' + op.outcome + (op.named ? ' op-named' : '') + (dim ? ' op-dim' : '');
    var tip = op.label + (op.named ? '\nnamed by the checker: ' + op.named : '');
    out.push('<rect class="' + esc(cls) + '" x="' + x0.toFixed(1) + '" y="' + y + '" width="' + (x1 - x0).toFixed(1) +
      '" height="' + (OPLANE - 3) + '" rx="2"><title>' + esc(tip) + '</title></rect>');
    var short = op.label.replace(/^process \d+ /, '').replace(/ \[.*$/, '');
    if (x1 - x0 > 6 * short.length) {
      out.push('<text class="op-label" x="' + (x0 + 2).toFixed(1) + '" y="' + (y + OPLANE - 5) + '">' + esc(short) + '</text>');
    }
  }

  function drawVerdict(out) {
    var v = data.verdict;
    if (v.at_us < view.t0 || v.at_us > view.t1) { return; }
    var px = x(v.at_us).toFixed(1);
    out.push('<line class="verdict-line' + (v.passed ? ' pass' : '') + '" x1="' + px + '" x2="' + px + '" y1="' + AXIS +
      '" y2="' + height + '"><title>' + esc(v.text + '\n' + seconds(v.at_us)) + '</title></line>');
  }

  function render() {
    var w = width(), out = [];
    out.push('<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="' + w + '" height="' + height + '">');
    out.push('<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">' +
      '<rect width="3" height="6" fill="#000" fill-opacity=".35"/></pattern></defs>');
    drawAxis(out);
    data.spans.forEach(function (span) { if (span.layer !== 'pause') { drawSpan(out, span); } });
    data.spans.forEach(function (span) { if (span.layer === 'pause') { drawSpan(out, span); } });
    var crowded = drawMessages(out);
    data.marks.forEach(function (mark) { drawMark(out, mark); });
    data.ops.forEach(function (op) { drawOp(out, op); });
    drawVerdict(out);
    out.push('<rect x="0" y="0" width="' + (LEFT - 4) + '" height="' + height + '" fill="#fff"/>');
    drawLaneNames(out);
    out.push('</svg>');
    document.getElementById('view').innerHTML = out.join('');
    describeView(crowded);
  }

  function describeView(crowded) {
    var text = 'view ' + seconds(view.t0) + ' .. ' + seconds(view.t1) + ' of ' + seconds(end) + '. ' +
      data.messages.length + ' of ' + data.messages_total + ' messages in the page';
    if (data.messages_note) { text += ' (' + data.messages_note + ')'; }
    if (crowded) { text += '; ' + crowded + ' in view, one in ' + Math.ceil(crowded / MAX_DRAWN_MESSAGES) + ' drawn (at most ' + MAX_DRAWN_MESSAGES + '; zoom in for all)'; }
    if (data.dropped) { text += '; ' + data.dropped + ' spans, marks or operations left out (limit reached)'; }
    document.getElementById('info').textContent = text + '. Drag to pan, wheel to zoom, click an item for details.';
  }

  function zoomTo(t0, t1) {
    var span = Math.max(20, Math.min(end * 1.02, t1 - t0));
    var middle = (t0 + t1) / 2;
    view.t0 = Math.max(-end * 0.01, middle - span / 2);
    view.t1 = view.t0 + span;
    render();
  }
  function zoomBy(factor, aroundUs) {
    var around = aroundUs === undefined ? (view.t0 + view.t1) / 2 : aroundUs;
    zoomTo(around - (around - view.t0) * factor, around + (view.t1 - around) * factor);
  }
  function panBy(fraction) {
    var shift = (view.t1 - view.t0) * fraction;
    zoomTo(view.t0 + shift, view.t1 + shift);
  }
  function usAt(clientX) {
    var box = document.getElementById('view').getBoundingClientRect();
    return view.t0 + (clientX - box.left - LEFT) * (view.t1 - view.t0) / (width() - LEFT - 8);
  }

  function failureWindow() {
    var named = data.ops.filter(function (op) { return op.named; });
    if (named.length === 0) { var before = Math.max(300000, end * 0.03); return [data.verdict.at_us - before, data.verdict.at_us + before / 15]; }
    var t0 = Math.min.apply(null, named.map(function (op) { return op.invoke_us; }));
    var t1 = Math.max.apply(null, named.map(function (op) { return op.complete_us === null ? end : op.complete_us; }));
    var pad = Math.max(2000, (t1 - t0) * 0.15);
    return [t0 - pad, t1 + pad];
  }

  function wireControls() {
    var on = function (id, handler) { document.getElementById(id).addEventListener('click', handler); };
    on('whole', function () { zoomTo(0, end); });
    on('failure', function () { var w = failureWindow(); zoomTo(w[0], w[1]); });
    on('zoom-in', function () { zoomBy(0.5); });
    on('zoom-out', function () { zoomBy(2); });
    on('left', function () { panBy(-0.5); });
    on('right', function () { panBy(0.5); });
    ['messages', 'delivered', 'marks'].forEach(function (name) {
      document.getElementById('show-' + name).addEventListener('change', function (event) {
        show[name] = event.target.checked; render();
      });
    });
    wirePointer(document.getElementById('view'));
    window.addEventListener('resize', render);
  }

  function wirePointer(box) {
    var drag = null;
    box.addEventListener('wheel', function (event) {
      if (event.shiftKey) { return; }
      event.preventDefault();
      zoomBy(event.deltaY > 0 ? 1.25 : 0.8, usAt(event.clientX));
    }, { passive: false });
    box.addEventListener('mousedown', function (event) { drag = { x: event.clientX, t0: view.t0, t1: view.t1, moved: false }; box.className = 'dragging'; });
    window.addEventListener('mouseup', function () { drag = null; box.className = ''; });
    box.addEventListener('mousemove', function (event) {
      if (!drag) { return; }
      var shift = (drag.x - event.clientX) * (drag.t1 - drag.t0) / (width() - LEFT - 8);
      if (Math.abs(drag.x - event.clientX) > 2) { drag.moved = true; view.t0 = drag.t0 + shift; view.t1 = drag.t1 + shift; render(); }
    });
    box.addEventListener('click', function (event) {
      var title = event.target.querySelector && event.target.querySelector('title');
      if (title) { document.getElementById('detail').textContent = title.textContent; }
    });
  }

  function listNamed() {
    var named = data.ops.filter(function (op) { return op.named; });
    var box = document.getElementById('named');
    if (named.length === 0) { return; }
    var html = ['<h2 style="font-size:14px">Operations the linearizability checker names (' + named.length + ')</h2><ul>'];
    named.forEach(function (op, index) {
      html.push('<li data-index="' + index + '">[' + esc(op.named) + '] ' + esc(op.label) + '</li>');
    });
    box.innerHTML = html.join('') + '</ul>';
    var keys = Object.keys(namedKeys).join(', ');
    var toggle = document.createElement('label');
    toggle.innerHTML = '<input type="checkbox" id="show-other-keys"> operations on keys other than ' + esc(keys) + ' at full colour';
    document.getElementById('controls').appendChild(toggle);
    document.getElementById('show-other-keys').addEventListener('change', function (event) {
      show.otherKeys = event.target.checked; render();
    });
    box.addEventListener('click', function (event) {
      var op = named[Number(event.target.getAttribute('data-index'))];
      if (!op) { return; }
      var stop = op.complete_us === null ? end : op.complete_us;
      var pad = Math.max(2000, (stop - op.invoke_us) * 0.5);
      zoomTo(op.invoke_us - pad, stop + pad);
      document.getElementById('detail').textContent = op.label;
    });
  }

  function showVerdict() {
    var box = document.getElementById('verdict');
    var v = data.verdict;
    box.textContent = v.text + (v.more.length ? '\n' + v.more.join('\n') : '') + '\n(at ' + seconds(v.at_us) + ')';
    box.className = v.passed ? 'pass' : 'fail';
    document.getElementById('title').textContent = data.title;
    document.getElementById('profile').textContent = 'profile: ' + data.profile + ' | trace-hash: ' + data.trace_hash;
  }

  showVerdict();
  listNamed();
  wireControls();
  if (!data.verdict.passed) { var w = failureWindow(); zoomTo(w[0], w[1]); } else { render(); }
  var named = data.ops.filter(function (op) { return op.named; }).length;
  statusBox.setAttribute('data-named-ops', String(named));
  statusBox.setAttribute('data-lanes', String(data.lanes.length));
  statusBox.textContent = 'ok';
  statusBox.className = 'ok';
})();
