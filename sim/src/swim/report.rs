//! What `chorus-sim run --system swim` prints: a text summary or one JSON
//! object, and the command that replays each failing seed.

use super::runner::{SwimRunOptions, SwimRunSummary};
use super::FaultMix;
use std::fmt::Write as _;

/// The command that replays `seed` of this run exactly.
pub fn replay_command(seed: u64, options: &SwimRunOptions) -> String {
    let mut command = format!("chorus-sim replay --system swim --seed {seed} --nodes {}", options.nodes);
    if !options.lifeguard {
        command.push_str(" --lifeguard off");
    }
    if options.faults != FaultMix::Swarm {
        command.push_str(&format!(" --faults {}", options.faults.name()));
    }
    if options.fault_phase_us != super::world::FAULT_PHASE_US {
        command.push_str(&format!(" --fault-ms {}", options.fault_phase_us / 1000));
    }
    if let Some(bug) = options.bug {
        command.push_str(&format!(" --bug {bug}"));
    }
    command
}

fn or_dash(value: Option<u64>) -> String {
    value.map_or("-".to_string(), |value| value.to_string())
}

/// The text summary of one run.
pub fn text(summary: &SwimRunSummary, options: &SwimRunOptions) -> String {
    let mut out = String::new();
    let metrics = summary.metrics();
    let _ = writeln!(
        out,
        "seeds:          {} ({}..{}), swim, {} members, lifeguard {}, faults {}, bug: {}",
        summary.outcomes.len(),
        options.seeds.start,
        options.seeds.end,
        options.nodes,
        if options.lifeguard { "on" } else { "off" },
        options.faults.name(),
        options.bug.map_or("none", |bug| bug.name())
    );
    out.push_str(&summary.totals_text());
    let _ = writeln!(
        out,
        "detection:      {} crashes; first suspicion p50 {} periods; first declaration p50 {} p99 {} periods; all members p50 {} p99 {} periods",
        metrics.crashes_measured,
        metrics.detect_suspect_p50,
        metrics.detect_first_p50,
        metrics.detect_first_p99,
        metrics.detect_all_p50,
        metrics.detect_all_p99
    );
    let _ = writeln!(
        out,
        "accuracy:       {} false positives, {} of them about healthy members ({} excused: paused, slow, partitioned or heavy loss); {} false suspicions",
        metrics.false_positives, metrics.false_positives_healthy, metrics.false_positives_excused, metrics.false_suspicions
    );
    let _ = writeln!(
        out,
        "load:           {} msgs and {} bytes per member per period ({} msgs and {} bytes without push-pull)",
        metrics.msgs_per_member_period,
        metrics.bytes_per_member_period,
        metrics.probe_msgs_per_member_period,
        metrics.probe_bytes_per_member_period
    );
    let _ = writeln!(
        out,
        "convergence:    join wave {} ms (p50 {} ms, 99.99% of members {} ms); after healing a partition {} ms (p50 {} ms)",
        or_dash(metrics.converge_join_ms),
        or_dash(metrics.converge_join_p50_ms),
        or_dash(metrics.converge_join_9999_ms),
        or_dash(metrics.converge_heal_ms),
        or_dash(metrics.converge_heal_p50_ms)
    );
    out.push_str(&summary.failures_text(|seed| replay_command(seed, options)));
    out
}

/// The JSON object of one run.
pub fn json(summary: &SwimRunSummary, options: &SwimRunOptions) -> serde_json::Value {
    let metrics = summary.metrics();
    let replay = |seed| replay_command(seed, options);
    let mut json = serde_json::json!({
        "system": "swim",
        "nodes": options.nodes,
        "lifeguard": options.lifeguard,
        "faults": options.faults.name(),
        "bug": options.bug.map(|bug| bug.name()),
    });
    let object = json.as_object_mut().expect("built as an object");
    object.extend(summary.json_fields(Some(&replay)));
    if let serde_json::Value::Object(fields) = serde_json::to_value(&metrics).expect("metrics serialize") {
        object.extend(fields);
    }
    json
}

/// False positives about healthy members of classic SWIM divided by
/// Lifeguard's (Lifeguard's zero counted as one, so the ratio is a lower
/// bound).
pub fn false_positive_ratio(on: &SwimRunSummary, off: &SwimRunSummary) -> f64 {
    let on = on.metrics().false_positives_healthy.max(1) as f64;
    let off = off.metrics().false_positives_healthy as f64;
    (off / on * 10.0).round() / 10.0
}

/// The text of `--lifeguard compare`: both runs, then the ratio.
pub fn compare_text(on: &SwimRunSummary, off: &SwimRunSummary, options: &SwimRunOptions) -> String {
    let on_options = SwimRunOptions { lifeguard: true, ..options.clone() };
    let off_options = SwimRunOptions { lifeguard: false, ..options.clone() };
    let mut out = String::new();
    let _ = writeln!(out, "== lifeguard on ==");
    out.push_str(&text(on, &on_options));
    let _ = writeln!(out, "== lifeguard off ==");
    out.push_str(&text(off, &off_options));
    let (on_metrics, off_metrics) = (on.metrics(), off.metrics());
    let _ = writeln!(out, "== comparison (same seeds) ==");
    let _ = writeln!(
        out,
        "false positives about healthy members: lifeguard on {}, off {}: {}x fewer with lifeguard",
        on_metrics.false_positives_healthy,
        off_metrics.false_positives_healthy,
        false_positive_ratio(on, off)
    );
    let _ = writeln!(
        out,
        "false positives, all (slow members included): lifeguard on {}, off {}",
        on_metrics.false_positives, off_metrics.false_positives
    );
    let _ = writeln!(
        out,
        "false suspicions: lifeguard on {}, off {}",
        on_metrics.false_suspicions, off_metrics.false_suspicions
    );
    out
}

/// The JSON of `--lifeguard compare`.
pub fn compare_json(on: &SwimRunSummary, off: &SwimRunSummary, options: &SwimRunOptions) -> serde_json::Value {
    serde_json::json!({
        "lifeguard_on": json(on, &SwimRunOptions { lifeguard: true, ..options.clone() }),
        "lifeguard_off": json(off, &SwimRunOptions { lifeguard: false, ..options.clone() }),
        "false_positives_on": on.metrics().false_positives,
        "false_positives_off": off.metrics().false_positives,
        "false_positives_healthy_on": on.metrics().false_positives_healthy,
        "false_positives_healthy_off": off.metrics().false_positives_healthy,
        "false_positive_ratio": false_positive_ratio(on, off),
    })
}
