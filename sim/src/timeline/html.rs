//! The timeline as one self-contained HTML page: inline CSS and script, the
//! run embedded as JSON, no network (a Content-Security-Policy forbids any
//! fetch). The script (`view.js`) draws the part of the run in view as SVG;
//! `#render-status` reads `ok` once it has drawn, or the first script error.

use super::Timeline;

/// The page's style sheet.
const STYLE: &str = include_str!("view.css");
/// The page's renderer.
const SCRIPT: &str = include_str!("view.js");

/// The renderer, for tests that check it cannot end its own element.
#[cfg(test)]
pub(super) const SCRIPT_FOR_TESTS: &str = SCRIPT;

/// The page for `timeline`.
pub fn render(timeline: &Timeline) -> String {
    let json = serde_json::to_string(timeline).expect("invariant: a timeline is plain data and always serializes");
    let mut page = String::with_capacity(json.len() + STYLE.len() + SCRIPT.len() + 4096);
    page.push_str(&head(&timeline.title));
    page.push_str(BODY_START);
    page.push_str("<script type=\"application/json\" id=\"timeline-data\">");
    page.push_str(&json_for_script(&json));
    page.push_str("</script>\n<script>\n");
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body>\n</html>\n");
    page
}

/// The document head: title and style, and a policy that allows nothing
/// from outside the page.
fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
         script-src 'unsafe-inline'\">\n<title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n",
        escape_html(title)
    )
}

/// The page's fixed elements, filled in by the script.
const BODY_START: &str = "<body>\n<header>\n<div id=\"render-status\">loading (the page needs JavaScript)</div>\n\
<h1 id=\"title\"></h1>\n<pre id=\"verdict\"></pre>\n<div id=\"controls\">\
<button id=\"failure\">go to the failure</button><button id=\"whole\">whole run</button>\
<button id=\"zoom-in\">zoom in</button><button id=\"zoom-out\">zoom out</button>\
<button id=\"left\">&larr;</button><button id=\"right\">&rarr;</button>\
<label><input type=\"checkbox\" id=\"show-messages\" checked> messages</label>\
<label><input type=\"checkbox\" id=\"show-delivered\" checked> delivered ones</label>\
<label><input type=\"checkbox\" id=\"show-marks\" checked> faults and events</label></div>\n\
<div class=\"legend\"><span><i style=\"background:#2e7d32\"></i>leader / alive</span>\
<span><i style=\"background:#f9a825\"></i>candidate</span><span><i style=\"background:#90caf9\"></i>follower</span>\
<span><i style=\"background:#616161\"></i>down</span><span><i style=\"background:repeating-linear-gradient(45deg,#999 0 2px,#fff 2px 4px)\"></i>paused</span>\
<span><i style=\"background:#ffb74d\"></i>partition</span><span><i style=\"background:#5c6bc0\"></i>message</span>\
<span><i style=\"background:#e53935\"></i>message lost or cut</span><span><i style=\"background:#d84315\"></i>fault</span>\
<span><i style=\"background:#c62828\"></i>verdict / named operation</span></div>\n\
<div id=\"profile\"></div>\n<div id=\"info\"></div>\n<div id=\"detail\"></div>\n</header>\n\
<div id=\"view\"></div>\n<div id=\"named\"></div>\n";

/// `json` made safe inside a `<script>` element: `<`, `>` and `&` (which can
/// only occur inside JSON strings) become `\u003c`, `\u003e` and `\u0026`,
/// so no value can close the element or open a comment; U+2028 and U+2029
/// are escaped too.
pub fn json_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 64);
    for character in json.chars() {
        match character {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            other => out.push(other),
        }
    }
    out
}

/// `text` as HTML text or attribute content.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}
