//! What `chorus-sim run --system swim` prints: a text summary or one JSON
//! object, and the command that replays each failing seed.

use super::runner::{SwimRunOptions, SwimRunSummary};
use super::FaultMix;
use crate::trace::hex;
use std::fmt::Write as _;

/// Failing seeds listed in the text summary (the JSON lists them all).
pub const FAILURES_SHOWN: usize = 20;

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
    let wall_s = summary.wall_micros.max(1) as f64 / 1e6;
    let sim_s = summary.sim_micros() as f64 / 1e6;
    let failed = summary.failed();
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
    let _ = writeln!(out, "failures:       {}", failed.len());
    let _ = writeln!(out, "events:         {}", summary.events());
    let _ = writeln!(out, "simulated time: {sim_s:.1} s");
    let _ = writeln!(out, "wall time:      {wall_s:.2} s on {} threads", summary.threads);
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
    let _ = writeln!(out, "combined-hash:  {}", summary.combined_hash());
    for outcome in summary.outcomes.iter().filter(|outcome| !outcome.passed()).take(FAILURES_SHOWN) {
        let _ = writeln!(out, "FAIL seed {}: {}", outcome.seed, outcome.failures[0]);
        let _ = writeln!(out, "  trace-hash: {}", hex(&outcome.trace_hash));
        let _ = writeln!(out, "  replay: {}", replay_command(outcome.seed, options));
    }
    if failed.len() > FAILURES_SHOWN {
        let _ = writeln!(out, "... and {} more failing seeds", failed.len() - FAILURES_SHOWN);
    }
    out
}

/// The JSON object of one run.
pub fn json(summary: &SwimRunSummary, options: &SwimRunOptions) -> serde_json::Value {
    let metrics = summary.metrics();
    let failures: Vec<serde_json::Value> = summary
        .outcomes
        .iter()
        .filter(|outcome| !outcome.passed())
        .map(|outcome| {
            serde_json::json!({
                "seed": outcome.seed,
                "failure": outcome.failures[0],
                "trace_hash": hex(&outcome.trace_hash),
                "replay": replay_command(outcome.seed, options),
            })
        })
        .collect();
    let mut json = serde_json::json!({
        "system": "swim",
        "nodes": options.nodes,
        "lifeguard": options.lifeguard,
        "faults": options.faults.name(),
        "bug": options.bug.map(|bug| bug.name()),
        "seeds": summary.outcomes.len(),
        "failed": summary.failed(),
        "failures": failures,
        "events": summary.events(),
        "sim_ms": summary.sim_micros() / 1000,
        "wall_ms": summary.wall_micros / 1000,
        "threads": summary.threads,
        "combined_hash": summary.combined_hash(),
        "trace_hashes": summary
            .outcomes
            .iter()
            .map(|outcome| serde_json::json!([outcome.seed, hex(&outcome.trace_hash)]))
            .collect::<Vec<_>>(),
    });
    let object = json.as_object_mut().expect("built as an object");
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
