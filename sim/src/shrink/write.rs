//! Writing a scenario back as TOML that [`Scenario::parse`] reads.

use crate::faults::{FaultAction, NodeRef};
use crate::scenario::Scenario;
use chorus_core::raft::MembershipChange;
use std::fmt::Write as _;

/// `at_us` as `at_ms`: whole milliseconds, or with a three-digit fraction.
fn at_ms(at_us: u64) -> String {
    if at_us.is_multiple_of(1000) {
        format!("{}", at_us / 1000)
    } else {
        format!("{}.{:03}", at_us / 1000, at_us % 1000)
    }
}

fn node(node: &NodeRef) -> String {
    match node {
        NodeRef::Index(index) => (index + 1).to_string(),
        NodeRef::Leader => "\"leader\"".into(),
        NodeRef::All => "\"all\"".into(),
    }
}

fn numbers(indexes: &[usize]) -> String {
    let numbers: Vec<String> = indexes.iter().map(|index| (index + 1).to_string()).collect();
    format!("[{}]", numbers.join(", "))
}

fn percent(ppm: u32) -> String {
    format!("{:?}", ppm as f64 / 10_000.0)
}

/// The action's TOML lines after `at_ms`.
fn action_lines(action: &FaultAction) -> String {
    let simple = |name: &str, target: &NodeRef| format!("action = \"{name}\"\nnode = {}\n", node(target));
    match action {
        FaultAction::Partition { groups } => {
            let groups: Vec<String> = groups.iter().map(|group| numbers(group)).collect();
            format!("action = \"partition\"\ngroups = [{}]\n", groups.join(", "))
        }
        FaultAction::Isolate { node } => simple("isolate", node),
        FaultAction::OneWay { senders, receivers } => {
            let receivers: Vec<String> = receivers.iter().map(node).collect();
            format!("action = \"one-way\"\nfrom = {}\nto = [{}]\n", numbers(senders), receivers.join(", "))
        }
        FaultAction::CutLink { a, b } => format!("action = \"cut-link\"\nnode = {}\npeer = {}\n", node(a), node(b)),
        FaultAction::Heal => "action = \"heal\"\n".into(),
        FaultAction::Crash { node } => simple("crash", node),
        FaultAction::Restart { node } => simple("restart", node),
        FaultAction::Pause { node } => simple("pause", node),
        FaultAction::Resume { node } => simple("resume", node),
        FaultAction::Wipe { node } => simple("wipe", node),
        FaultAction::SetLoss { loss_ppm } => format!("action = \"loss\"\npercent = {}\n", percent(*loss_ppm)),
        FaultAction::SetReorder { reorder_ppm, max_delay_us } => format!(
            "action = \"reorder\"\npercent = {}\nmax_delay_ms = {}\n",
            percent(*reorder_ppm),
            max_delay_us.div_ceil(1000)
        ),
        FaultAction::Transfer { to } => simple("transfer", to),
        FaultAction::Change(change) => {
            let numbered = |name: &str, id: chorus_core::NodeId| format!("action = \"{name}\"\nnode = {}\n", id.0);
            match change {
                MembershipChange::AddLearner(id) => numbered("add-learner", *id),
                MembershipChange::Promote(id) => numbered("promote", *id),
                MembershipChange::Remove(id) => numbered("remove", *id),
                MembershipChange::RenewDisk(id) => numbered("renew-disk", *id),
                MembershipChange::Replace { remove, add } => {
                    format!("action = \"replace\"\nnode = {}\nwith = {}\n", remove.0, add.0)
                }
            }
        }
    }
}

/// The scenario as TOML (no comments): [`Scenario::parse`] of the text, for
/// the same node count, gives the scenario back.
pub fn scenario_toml(scenario: &Scenario) -> String {
    let mut out = String::new();
    if let Some(duration_ms) = scenario.duration_ms {
        let _ = writeln!(out, "duration_ms = {duration_ms}");
    }
    if scenario.random_faults {
        out.push_str("random_faults = true\n");
    }
    if scenario.seed_profile {
        out.push_str("seed_profile = true\n");
    }
    let knobs = &scenario.knobs;
    let knob_values = [
        ("clients", knobs.clients.map(|value| value as u64)),
        ("spares", knobs.spares.map(|value| value as u64)),
        ("snapshot_every_entries", knobs.snapshot_every_entries),
        ("max_retained_entries", knobs.max_retained_entries),
        ("snapshot_chunk_bytes", knobs.snapshot_chunk_bytes.map(|value| value as u64)),
        ("max_entries_per_append", knobs.max_entries_per_append.map(|value| value as u64)),
        ("max_append_bytes", knobs.append_bytes.map(|(append, _)| append as u64)),
        ("max_inflight_bytes", knobs.append_bytes.map(|(_, inflight)| inflight as u64)),
        ("max_pending_reads", knobs.max_pending_reads.map(|value| value as u64)),
    ];
    for (name, value) in knob_values {
        if let Some(value) = value {
            let _ = writeln!(out, "{name} = {value}");
        }
    }
    for (at_us, action) in &scenario.events {
        let _ = write!(out, "\n[[events]]\nat_ms = {}\n{}", at_ms(*at_us), action_lines(action));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioKnobs;

    #[test]
    fn every_action_kind_reads_back_as_written() {
        let events = vec![
            (1_000, FaultAction::Partition { groups: vec![vec![0, 1], vec![2, 3, 4]] }),
            (1_500, FaultAction::Isolate { node: NodeRef::Leader }),
            (2_001, FaultAction::OneWay { senders: vec![1], receivers: vec![NodeRef::Index(0), NodeRef::Leader] }),
            (3_000, FaultAction::CutLink { a: NodeRef::Index(0), b: NodeRef::Index(4) }),
            (3_500, FaultAction::Heal),
            (4_123, FaultAction::Crash { node: NodeRef::All }),
            (4_124, FaultAction::Restart { node: NodeRef::Index(2) }),
            (5_000, FaultAction::Pause { node: NodeRef::Index(3) }),
            (5_001, FaultAction::Resume { node: NodeRef::Index(3) }),
            (6_000, FaultAction::Wipe { node: NodeRef::Index(1) }),
            (7_000, FaultAction::SetLoss { loss_ppm: 123_457 }),
            (7_000, FaultAction::SetReorder { reorder_ppm: 50_000, max_delay_us: 30_000 }),
            (8_000, FaultAction::Transfer { to: NodeRef::Index(4) }),
            (9_999, FaultAction::Change(MembershipChange::AddLearner(chorus_core::NodeId(6)))),
            (
                9_999,
                FaultAction::Change(MembershipChange::Replace {
                    remove: chorus_core::NodeId(1),
                    add: chorus_core::NodeId(6),
                }),
            ),
        ];
        let scenario = Scenario {
            duration_ms: Some(12),
            random_faults: false,
            seed_profile: true,
            knobs: ScenarioKnobs { clients: Some(2), spares: Some(1), ..ScenarioKnobs::default() },
            events,
        };
        let text = scenario_toml(&scenario);
        assert_eq!(Scenario::parse(&text, 5).unwrap(), scenario, "{text}");
    }
}
