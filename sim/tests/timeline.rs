//! `chorus-sim replay --html` and `--perfetto`: the files parse, render in a
//! real browser without script errors, show the failure, are the same bytes
//! for the same seed, and change nothing in the run.
//!
//! The browser test needs Debian's `chromium` (`.ci/run` installs it where it
//! is missing). Without it the test fails and says how to install it, unless
//! `CHORUS_ALLOW_NO_BROWSER=1` says it may be skipped (it then says so
//! loudly).

use chorus_core::raft::Bug;
use chorus_sim::raft::{run_seed, SimOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the browser is looked for, unless `CHROMIUM` names another.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest a browser may take to load and dump one page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// Seeds searched for a failure of an injected bug.
const SEEDS_SEARCHED: u64 = 300;

/// The first seed (of [`SEEDS_SEARCHED`]) whose first failure with `bug`
/// starts with `class` (found, not fixed, so that a change of behaviour
/// elsewhere cannot make the test pass vacuously or fail spuriously).
fn first_failing_seed(bug: Bug, class: &str) -> String {
    (0..SEEDS_SEARCHED)
        .find(|&seed| {
            let outcome = run_seed(SimOptions { bug: Some(bug), ..SimOptions::new(seed) }).outcome;
            outcome.failures.first().is_some_and(|failure| failure.starts_with(class))
        })
        .unwrap_or_else(|| panic!("no seed below {SEEDS_SEARCHED} fails {} with {class}", bug.name()))
        .to_string()
}

/// A failing seed of `ack-before-commit` whose failure stops the run at a
/// step (a durability verdict: a write that leaves a hole in the log).
fn ack_before_commit_seed() -> String {
    first_failing_seed(Bug::AckBeforeCommit, "durability:")
}

/// A seed of `stale-leader-read` that fails linearizability.
fn stale_leader_read_seed() -> String {
    first_failing_seed(Bug::StaleLeaderRead, "linearizability:")
}

fn chorus_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chorus-sim")).args(args).output().expect("the binary runs")
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-sim-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Replays `seed` with `bug`, writing the HTML page and the Perfetto file;
/// returns their paths and the replay's standard output.
fn replay_files(seed: &str, bug: &str, name: &str) -> (PathBuf, PathBuf, String) {
    let html = temp_path(&format!("{name}.html"));
    let perfetto = temp_path(&format!("{name}.json"));
    let output = chorus_sim(&[
        "replay",
        "--seed",
        seed,
        "--bug",
        bug,
        "--trace",
        temp_path(&format!("{name}.trace")).to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--perfetto",
        perfetto.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "the seed fails: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    (html, perfetto, stdout)
}

/// The first line of the first failure a replay printed.
fn first_failure(replay_stdout: &str) -> String {
    let mut lines = replay_stdout.lines().skip_while(|line| !line.starts_with("verdict:        FAIL"));
    lines.nth(1).expect("a failure under the verdict").trim().to_string()
}

/// The browser, or `None` when it is absent and may be skipped.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_string()));
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "{} not found: the HTML trace test renders the page in headless Chromium. Install it with \
         `apt-get update && apt-get install -y --no-install-recommends chromium` (as .ci/run does), \
         or set CHROMIUM to its path",
        path.display()
    );
    if std::env::var("CHORUS_ALLOW_NO_BROWSER").is_ok_and(|value| value == "1") {
        eprintln!("\n!!!!! SKIPPED (CHORUS_ALLOW_NO_BROWSER=1): {message} !!!!!\n");
        return None;
    }
    panic!("{message}");
}

/// The DOM of `page` after its scripts ran, as headless Chromium dumps it
/// (into a file: a pipe would fill and stall the browser).
fn dump_dom(browser: &Path, page: &Path) -> String {
    let stem = page.file_stem().unwrap().to_string_lossy().into_owned();
    let profile = temp_path(&format!("profile-{stem}"));
    let dom_path = temp_path(&format!("{stem}.dom.html"));
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .stdout(Stdio::from(std::fs::File::create(&dom_path).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("the browser starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the browser can be waited for") {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not dump {} within {BROWSER_TIMEOUT:?}", browser.display(), page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the browser failed on {}: {status:?}", page.display());
    let dom = std::fs::read_to_string(&dom_path).expect("the dumped DOM is UTF-8");
    eprintln!(
        "{} rendered in {:?} ({} bytes of page)",
        page.display(),
        started.elapsed(),
        page.metadata().unwrap().len()
    );
    dom
}

/// The dumped DOM shows the renderer finished without a script error.
fn assert_rendered(dom: &str) -> String {
    let status_at = dom.find("<div id=\"render-status\"").expect("the status element");
    let status = &dom[status_at..dom[status_at..].find("</div>").map_or(dom.len(), |end| status_at + end)];
    assert!(status.ends_with(">ok"), "the page did not render cleanly: {status}");
    assert!(dom.contains("<svg id=\"timeline\""), "the timeline was drawn");
    status.to_string()
}

fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[test]
fn the_html_of_a_failing_seed_renders_in_headless_chromium_and_shows_the_failure() {
    let Some(browser) = chromium() else { return };
    let (html, _, stdout) = replay_files(&ack_before_commit_seed(), "ack-before-commit", "ack-before-commit");
    let dom = dump_dom(&browser, &html);
    let status = assert_rendered(&dom);
    assert!(status.contains("data-lanes=\"6\""), "five voters and a spare: {status}");
    let failure = first_failure(&stdout);
    assert!(failure.starts_with("durability:"), "{failure}");
    let shown = format!("<pre id=\"verdict\" class=\"fail\">FAIL: {}", escape_text(&failure));
    assert!(dom.contains(&shown), "the verdict is shown: {shown}");
    assert!(dom.contains("class=\"verdict-line\""), "the verdict's instant is marked");
    assert!(dom.contains("<line class=\"msg msg-delivered\""), "messages are drawn");
    assert!(dom.contains("class=\"s-leader\""), "roles are drawn");
}

#[test]
fn the_html_of_a_linearizability_failure_highlights_the_operations_the_checker_names() {
    let Some(browser) = chromium() else { return };
    let (html, _, stdout) = replay_files(&stale_leader_read_seed(), "stale-leader-read", "stale-leader-read");
    let dom = dump_dom(&browser, &html);
    let status = assert_rendered(&dom);
    assert!(first_failure(&stdout).starts_with("linearizability:"));
    assert!(dom.contains("<pre id=\"verdict\" class=\"fail\">FAIL: linearizability:"));
    assert!(!status.contains("data-named-ops=\"0\""), "the named operations are counted: {status}");
    assert!(dom.contains("Operations the linearizability checker names"), "and listed");
    assert!(dom.contains("op-ok op-named"), "and highlighted on the timeline");
    assert!(dom.contains("[had to take effect next"), "the operation that had to come next is named");
}

#[test]
fn the_perfetto_file_is_trace_event_json_with_slices_instants_and_flows() {
    let (_, perfetto, _) = replay_files(&ack_before_commit_seed(), "ack-before-commit", "perfetto");
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(perfetto).unwrap()).expect("valid JSON");
    let events = value["traceEvents"].as_array().expect("a traceEvents array");
    let has = |phase: &str| events.iter().any(|event| event["ph"] == phase);
    for phase in ["M", "X", "i", "s", "f"] {
        assert!(has(phase), "an event of phase {phase}");
    }
    for event in events.iter().filter(|event| event["ph"] != "M") {
        assert!(event["ts"].is_u64() && event["pid"].is_u64(), "{event}");
    }
    let verdict = events.iter().find(|event| event["cat"] == "verdict").expect("the verdict");
    assert!(verdict["name"].as_str().unwrap().starts_with("FAIL: durability:"), "{verdict}");
    let roles = events.iter().filter(|event| event["ph"] == "X" && event["name"] == "Leader t1").count();
    assert!(roles >= 1, "a leader's span");
}

#[test]
fn the_same_seed_gives_byte_identical_html_and_perfetto_files() {
    let seed = stale_leader_read_seed();
    let (html_a, perfetto_a, _) = replay_files(&seed, "stale-leader-read", "same-a");
    let (html_b, perfetto_b, _) = replay_files(&seed, "stale-leader-read", "same-b");
    assert!(std::fs::read(&html_a).unwrap() == std::fs::read(&html_b).unwrap(), "the HTML differs");
    assert!(std::fs::read(&perfetto_a).unwrap() == std::fs::read(&perfetto_b).unwrap(), "the Perfetto file differs");
    let swim = |name: &str| {
        let html = temp_path(name);
        let args = ["replay", "--system", "swim", "--nodes", "7", "--seed", "4", "--trace", "/dev/null", "--html"];
        let output = chorus_sim(&[&args[..], &[html.to_str().unwrap()]].concat());
        assert!(output.status.code().is_some_and(|code| code <= 1), "{output:?}");
        std::fs::read(html).unwrap()
    };
    assert!(swim("swim-a.html") == swim("swim-b.html"), "the SWIM page differs");
}

#[test]
fn keeping_a_timeline_changes_nothing_in_the_run() {
    for (seed, bug) in [(9, Some(Bug::AckBeforeCommit)), (5, Some(Bug::StaleLeaderRead)), (3, None)] {
        let plain = run_seed(SimOptions { bug, ..SimOptions::new(seed) });
        let kept = run_seed(SimOptions { bug, keep_timeline: true, ..SimOptions::new(seed) });
        assert_eq!(plain.outcome, kept.outcome, "seed {seed}");
        assert!(plain.timeline.is_none());
        let timeline = kept.timeline.expect("kept");
        assert_eq!(timeline.verdict.passed, plain.outcome.passed());
        assert_eq!(timeline.end_us, plain.outcome.sim_micros);
    }
    for (seed, bug) in [(0, Some(chorus_sim::swim::Bug::RefutationIgnored)), (3, None)] {
        let options = chorus_sim::swim::SwimOptions { nodes: 5, bug, ..chorus_sim::swim::SwimOptions::new(seed) };
        let plain = chorus_sim::swim::run_seed(options.clone());
        let kept = chorus_sim::swim::run_seed(chorus_sim::swim::SwimOptions { keep_timeline: true, ..options });
        assert_eq!(plain.outcome, kept.outcome, "SWIM seed {seed}");
        assert!(plain.timeline.is_none() && kept.timeline.is_some());
    }
}

#[test]
fn an_html_or_perfetto_path_that_cannot_be_written_is_a_clear_error() {
    for flag in ["--html", "--perfetto"] {
        let path = "/nonexistent-directory/trace.out";
        let output = chorus_sim(&["replay", "--seed", "1", "--trace", "/dev/null", flag, path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("cannot write") && stderr.contains(path), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_html_of_a_failing_swim_seed_renders_in_headless_chromium_and_shows_the_failure() {
    let Some(browser) = chromium() else { return };
    let html = temp_path("swim.html");
    let perfetto = temp_path("swim.json");
    let output = chorus_sim(&[
        "replay",
        "--system",
        "swim",
        "--nodes",
        "5",
        "--seed",
        "0",
        "--bug",
        "refutation-ignored",
        "--trace",
        "/dev/null",
        "--html",
        html.to_str().unwrap(),
        "--perfetto",
        perfetto.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let dom = dump_dom(&browser, &html);
    let status = assert_rendered(&dom);
    assert!(status.contains("data-lanes=\"5\""), "{status}");
    let shown = format!("<pre id=\"verdict\" class=\"fail\">FAIL: {}", escape_text(&first_failure(&stdout)));
    assert!(dom.contains(&shown), "the verdict is shown: {shown}");
    assert!(dom.contains("class=\"s-alive\""), "members' states are drawn");
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(perfetto).unwrap()).expect("valid JSON");
    assert!(value["traceEvents"].as_array().unwrap().iter().any(|event| event["ph"] == "f"), "messages as flows");
}

#[test]
fn hostile_text_in_a_timeline_stays_text_in_the_browser() {
    use chorus_sim::timeline::{html, verdict, Recorder};
    let Some(browser) = chromium() else { return };
    let hostile = "</script><img src=x onerror=\"document.title='pwned'\"><!--";
    let mut recorder = Recorder::new(vec![format!("n1 {hostile}"), "n2".into()]);
    recorder.state(0, 0, format!("Leader t1 {hostile}"), "leader\" onmouseover=\"x");
    recorder.mark(None, 5, format!("FAULT {hostile}"), "fault");
    let mut timeline = recorder.finish(100);
    timeline.title = hostile.into();
    timeline.verdict = verdict(&[format!("boom {hostile}")], 50);
    let page = temp_path("hostile.html");
    std::fs::write(&page, html::render(&timeline)).unwrap();
    let dom = dump_dom(&browser, &page);
    assert_rendered(&dom);
    assert!(!dom.contains("<img"), "no element came from the data");
    assert!(!dom.contains("pwned</title>"), "no script from the data ran");
    assert!(dom.contains(&format!("FAIL: boom {}", escape_text(hostile))), "the text is shown as text");
}
