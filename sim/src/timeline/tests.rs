use super::html::{escape_html, json_for_script};
use super::*;

fn arrow(sent_us: u64) -> MessageArrow {
    MessageArrow { from: 0, to: 1, sent_us, arrived_us: Some(sent_us + 1), label: "m".into(), fate: Fate::Delivered }
}

#[test]
fn a_state_ends_where_the_next_begins_and_open_spans_end_with_the_run() {
    let mut recorder = Recorder::new(vec!["n1".into(), "n2".into()]);
    recorder.state(0, 0, "Follower t0".into(), "follower");
    recorder.state(0, 10, "Leader t1".into(), "leader");
    recorder.pause(1, 5, true);
    recorder.network_cut(3, "partition".into(), true);
    recorder.network_cut(4, "cut link".into(), false);
    recorder.network_heal(8);
    recorder.state(7, 1, "ignored".into(), "down");
    let timeline = recorder.finish(20);
    let spans: Vec<(Option<usize>, Layer, u64, u64, &str)> =
        timeline.spans.iter().map(|s| (s.lane, s.layer, s.start_us, s.end_us, s.label.as_str())).collect();
    assert_eq!(
        spans,
        vec![
            (Some(0), Layer::State, 0, 10, "Follower t0"),
            (None, Layer::Network, 3, 4, "partition"),
            (None, Layer::Network, 4, 8, "partition + cut link"),
            (Some(0), Layer::State, 10, 20, "Leader t1"),
            (Some(1), Layer::Pause, 5, 20, "paused"),
        ]
    );
}

#[test]
fn messages_beyond_the_limit_keep_the_last_half_and_a_sample_before() {
    let messages: Vec<MessageArrow> = (0..1000).map(arrow).collect();
    let (kept, note) = limit_messages(messages, 100);
    assert!(kept.len() <= 100, "{}", kept.len());
    assert!(kept.iter().rev().take(50).all(|m| m.sent_us >= 950), "the last 50 are all kept");
    assert_eq!(kept[0].sent_us, 0);
    assert!(note.contains("of 1000 messages shown (limit 100)"), "{note}");
    let (all, note) = limit_messages((0..10).map(arrow).collect(), 100);
    assert_eq!((all.len(), note.as_str()), (10, ""));
}

#[test]
fn embedded_json_cannot_close_the_script_element() {
    let json = serde_json::to_string(&"</script><script>alert(1)</script> <!-- & \u{2028}").unwrap();
    let safe = json_for_script(&json);
    assert!(!safe.contains('<') && !safe.contains('>') && !safe.contains('&') && !safe.contains('\u{2028}'));
    let back: String = serde_json::from_str(&safe).unwrap();
    assert_eq!(back, "</script><script>alert(1)</script> <!-- & \u{2028}");
    assert_eq!(escape_html("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
}

#[test]
fn a_page_with_hostile_labels_has_one_data_block_and_no_stray_script_end() {
    let mut recorder = Recorder::new(vec!["</script><b>n1".into()]);
    recorder.mark(Some(0), 1, "</SCRIPT><img src=x onerror=alert(1)>".into(), "fault");
    let mut timeline = recorder.finish(10);
    timeline.title = "<title></title></head>".into();
    timeline.verdict = verdict(&["x </script> y".to_string()], 5);
    let page = html::render(&timeline);
    assert_eq!(page.to_lowercase().matches("</script>").count(), 2, "only the data block's and the script's own ends");
    assert!(!page.contains("<img"), "no markup from the data");
    assert!(page.contains("<title>&lt;title&gt;&lt;/title&gt;&lt;/head&gt;</title>"));
    assert!(!super::html::SCRIPT_FOR_TESTS.to_lowercase().contains("</script"), "the renderer cannot end itself");
}

#[test]
fn the_perfetto_file_parses_and_has_every_kind_of_event() {
    let mut recorder = Recorder::new(vec!["n1".into(), "n2".into()]);
    recorder.state(0, 0, "Leader t1".into(), "leader");
    recorder.pause(1, 2, true);
    recorder.mark(None, 3, "FAULT crash n2".into(), "fault");
    recorder.message(arrow(4));
    recorder.message(MessageArrow { arrived_us: None, fate: Fate::Lost, ..arrow(5) });
    let mut timeline = recorder.finish(10);
    push_ops(
        &mut timeline,
        [OpBar {
            process: 3,
            key: None,
            invoke_us: 1,
            complete_us: None,
            label: "op".into(),
            outcome: "unknown".into(),
            named: Some("x".into()),
        }],
    );
    let value: serde_json::Value = serde_json::from_str(&perfetto::render(&timeline)).unwrap();
    let events = value["traceEvents"].as_array().unwrap();
    let phases: std::collections::BTreeSet<&str> = events.iter().map(|e| e["ph"].as_str().unwrap()).collect();
    assert_eq!(phases.into_iter().collect::<Vec<_>>(), vec!["M", "X", "f", "i", "s"]);
    assert!(events.iter().all(|e| e["ph"] == "M" || e["ts"].is_u64()), "every timed event has integer microseconds");
    let op = events.iter().find(|e| e["name"] == "NAMED op").expect("the named operation");
    assert_eq!((op["dur"].as_u64(), op["pid"].as_u64(), op["tid"].as_u64()), (Some(9), Some(3), Some(4)));
}
