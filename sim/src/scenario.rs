//! Explicit, timed fault schedules read from TOML files.
//!
//! ```toml
//! # Length of the fault phase; liveness is checked after it. Optional.
//! duration_ms = 10000
//! # Also run the seed's random swarm faults. Optional, default false.
//! random_faults = false
//! # Keep the seed's swarm profile (network, clocks, disks, knobs) and its
//! # random draws, but let only this file's events strike. Optional,
//! # default false; written by `chorus-sim shrink`.
//! seed_profile = false
//!
//! [[events]]
//! at_ms = 2000
//! action = "partition"
//! groups = [[1, 2], [3, 4, 5]]
//!
//! [[events]]
//! at_ms = 5000
//! action = "heal"
//!
//! [[events]]
//! at_ms = 6000
//! action = "crash"
//! node = "leader"
//! ```
//!
//! Actions: `partition` (groups), `isolate` (node), `one-way` (from, to:
//! messages from `from` to `to` are dropped), `cut-link` (node, peer: both
//! directions), `heal`, `crash`, `restart`, `pause`, `resume`, `wipe` (node:
//! crash and lose the disk; `restart` rejoins it empty), `loss` (percent),
//! `reorder` (percent, max_delay_ms). Operator actions: `add-learner`,
//! `promote`, `remove`, `renew-disk` (node), `replace` (node, with: the
//! learner that takes its place), `transfer` (node: the new leader). Nodes
//! are numbered from 1; a `node` may also be `"leader"` or `"all"` (faults
//! only), and `to` may contain `"leader"`.
//!
//! `at_ms` may have a fraction down to the microsecond (`1234.567`), which
//! is how `chorus-sim shrink` writes the moments faults struck.
//!
//! Cluster knobs (optional): `spares` (nodes outside the initial
//! configuration, numbered after the voters), `snapshot_every_entries`,
//! `max_retained_entries`, `snapshot_chunk_bytes`, `max_entries_per_append`,
//! `max_append_bytes` with `max_inflight_bytes` (both or neither),
//! `max_pending_reads`, `clients` (1 to [`MAX_SCENARIO_CLIENTS`]; default 5).
//! The Raft knobs are judged by the core's own configuration rules
//! (`chorus_core::raft::Config::validate`), so a file the core would refuse
//! is refused here, with the core's reason.
//!
//! With `seed_profile = true` the run draws the seed's swarm profile and
//! every random draw of its fault injector and operator exactly as a run
//! without a scenario does, but those faults do not strike: the file's
//! events are the only faults. An event then runs after everything else
//! scheduled for the same microsecond (as a fault the injector schedules
//! does), and an operator change the leader refuses is dropped, not retried
//! (as the seed's own operator does). So the events `shrink` recorded
//! replay the seed's run, and a subset of them replays a run without the
//! rest.

use crate::faults::{FaultAction, NodeRef};
use serde::Deserialize;

/// Longest fault phase a scenario may ask for (one simulated hour).
pub const MAX_SCENARIO_DURATION_MS: u64 = 3_600_000;
/// Most events in one scenario file.
pub const MAX_SCENARIO_EVENTS: usize = 10_000;

/// Most spare nodes a scenario may ask for.
pub const MAX_SCENARIO_SPARES: usize = 8;
/// Most clients a scenario may ask for.
pub const MAX_SCENARIO_CLIENTS: usize = 64;

/// Cluster knobs a scenario sets (each overrides the seed's profile).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScenarioKnobs {
    /// Nodes outside the initial configuration (numbered after the voters)
    /// that operator actions can add; at most [`MAX_SCENARIO_SPARES`].
    pub spares: Option<usize>,
    /// Snapshot every this many applied entries (0: never).
    pub snapshot_every_entries: Option<u64>,
    /// Log entries kept behind a snapshot for slow followers.
    pub max_retained_entries: Option<u64>,
    /// Snapshot chunk size in bytes (at least 1).
    pub snapshot_chunk_bytes: Option<usize>,
    /// Most entries in one append message (at least 1).
    pub max_entries_per_append: Option<usize>,
    /// Largest entry bytes in one append and append bytes in flight to one
    /// follower, set together.
    pub append_bytes: Option<(usize, usize)>,
    /// Most reads a node holds at once.
    pub max_pending_reads: Option<usize>,
    /// Clients of the workload (1 to [`MAX_SCENARIO_CLIENTS`]).
    pub clients: Option<usize>,
}

/// A parsed and validated scenario file (see the module documentation for
/// the format).
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Length of the fault phase in simulated milliseconds (1 to
    /// [`MAX_SCENARIO_DURATION_MS`]); every event is before it. `None`: the
    /// run's default.
    pub duration_ms: Option<u64>,
    /// Also run the seed's random swarm faults alongside the schedule.
    pub random_faults: bool,
    /// Draw the seed's swarm profile and its faults' random draws, but let
    /// only the schedule strike (see the module documentation).
    pub seed_profile: bool,
    /// Cluster settings that override the seed's profile.
    pub knobs: ScenarioKnobs,
    /// `(at_us, action)`: the faults and operator actions, at simulated
    /// microseconds from the start of the run. Sorted by time (stable for
    /// equal times: file order).
    pub events: Vec<(u64, FaultAction)>,
}

/// A scenario file was rejected. The message names the file's problem.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML, an unknown key, or a value of the wrong type; the text is
    /// the TOML parser's message.
    #[error("not valid scenario TOML: {0}")]
    Syntax(String),
    /// One event is invalid (unknown action, missing or unexpected field,
    /// node out of range, value out of bounds).
    #[error("event {number} (at_ms {at_ms}): {problem}")]
    Event {
        /// The event's 1-based position in the file.
        number: usize,
        /// The event's time as written.
        at_ms: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A file-level limit: the duration, spares, a zero knob, too many
    /// events, or an event not before the end of the fault phase.
    #[error("{0}")]
    Other(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    duration_ms: Option<u64>,
    #[serde(default)]
    random_faults: bool,
    #[serde(default)]
    seed_profile: bool,
    clients: Option<usize>,
    spares: Option<usize>,
    snapshot_every_entries: Option<u64>,
    max_retained_entries: Option<u64>,
    snapshot_chunk_bytes: Option<usize>,
    max_entries_per_append: Option<usize>,
    max_append_bytes: Option<usize>,
    max_inflight_bytes: Option<usize>,
    max_pending_reads: Option<usize>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at_ms: toml::Value,
    action: String,
    groups: Option<Vec<Vec<i64>>>,
    node: Option<toml::Value>,
    from: Option<Vec<i64>>,
    to: Option<Vec<toml::Value>>,
    percent: Option<f64>,
    peer: Option<toml::Value>,
    with: Option<i64>,
    max_delay_ms: Option<u64>,
}

impl Scenario {
    /// Time of the last event in microseconds (0 for none).
    pub fn last_event_us(&self) -> u64 {
        self.events.last().map_or(0, |(at_us, _)| *at_us)
    }

    /// Parses and validates a scenario for a cluster of `nodes` nodes.
    pub fn parse(text: &str, nodes: usize) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|error| ScenarioError::Syntax(error.to_string()))?;
        validate_settings(&raw)?;
        let knobs = ScenarioKnobs {
            spares: raw.spares,
            snapshot_every_entries: raw.snapshot_every_entries,
            max_retained_entries: raw.max_retained_entries,
            snapshot_chunk_bytes: raw.snapshot_chunk_bytes,
            max_entries_per_append: raw.max_entries_per_append,
            append_bytes: raw.max_append_bytes.zip(raw.max_inflight_bytes),
            max_pending_reads: raw.max_pending_reads,
            clients: raw.clients,
        };
        // Spare nodes are numbered after the voters.
        let nodes = nodes + knobs.spares.unwrap_or(0);
        if raw.events.len() > MAX_SCENARIO_EVENTS {
            return Err(ScenarioError::Other(format!(
                "{} events, more than the limit of {MAX_SCENARIO_EVENTS}",
                raw.events.len()
            )));
        }
        let mut events = Vec::with_capacity(raw.events.len());
        for (position, event) in raw.events.into_iter().enumerate() {
            let at_ms = event.at_ms.to_string();
            let error = |problem| ScenarioError::Event { number: position + 1, at_ms: at_ms.clone(), problem };
            let at_us = at_us(&event.at_ms).map_err(error)?;
            let action = parse_event(event, nodes).map_err(error)?;
            events.push((at_us, action));
        }
        events.sort_by_key(|(at_us, _)| *at_us);
        if let (Some(duration), Some((at_us, action))) = (raw.duration_ms, events.last()) {
            if *at_us >= duration * 1000 {
                return Err(ScenarioError::Other(format!(
                    "event \"{action}\" at_ms {} is not before the end of the fault phase (duration_ms = {duration})",
                    *at_us as f64 / 1000.0
                )));
            }
        }
        Ok(Scenario {
            duration_ms: raw.duration_ms,
            random_faults: raw.random_faults,
            seed_profile: raw.seed_profile,
            knobs,
            events,
        })
    }
}

/// The scenario's settings, before its events: duration, clients, spares
/// and knobs within their limits, and no contradiction.
fn validate_settings(raw: &RawScenario) -> Result<(), ScenarioError> {
    if let Some(duration) = raw.duration_ms {
        if duration == 0 || duration > MAX_SCENARIO_DURATION_MS {
            return Err(ScenarioError::Other(format!(
                "duration_ms must be between 1 and {MAX_SCENARIO_DURATION_MS}, got {duration}"
            )));
        }
    }
    if raw.seed_profile && raw.random_faults {
        return Err(ScenarioError::Other(
            "seed_profile = true and random_faults = true contradict each other: with seed_profile only the \
             file's events strike"
                .into(),
        ));
    }
    if raw.clients.is_some_and(|clients| clients == 0 || clients > MAX_SCENARIO_CLIENTS) {
        return Err(ScenarioError::Other(format!(
            "clients must be between 1 and {MAX_SCENARIO_CLIENTS}, got {}",
            raw.clients.unwrap_or_default()
        )));
    }
    if raw.spares.is_some_and(|spares| spares > MAX_SCENARIO_SPARES) {
        return Err(ScenarioError::Other(format!(
            "spares must be at most {MAX_SCENARIO_SPARES}, got {}",
            raw.spares.unwrap_or_default()
        )));
    }
    if raw.max_append_bytes.is_some() != raw.max_inflight_bytes.is_some() {
        return Err(ScenarioError::Other(
            "max_append_bytes and max_inflight_bytes go together: set both or neither".into(),
        ));
    }
    // The Raft knobs are judged by the core's own rules, on the
    // configuration the simulator would build from them.
    let mut config = chorus_core::raft::Config::new(chorus_core::NodeId(1), vec![chorus_core::NodeId(1)]);
    config.snapshot_chunk_bytes = raw.snapshot_chunk_bytes.unwrap_or(config.snapshot_chunk_bytes);
    config.max_entries_per_append = raw.max_entries_per_append.unwrap_or(config.max_entries_per_append);
    config.max_append_bytes = raw.max_append_bytes.unwrap_or(config.max_append_bytes);
    config.max_inflight_bytes = raw.max_inflight_bytes.unwrap_or(config.max_inflight_bytes);
    config.max_pending_reads = raw.max_pending_reads.unwrap_or(config.max_pending_reads);
    config.validate().map_err(|error| ScenarioError::Other(error.to_string()))
}

/// An event's `at_ms` in microseconds: a whole number of milliseconds, or
/// one with a fraction of at most three digits (microseconds).
fn at_us(value: &toml::Value) -> Result<u64, String> {
    let limit_ms = MAX_SCENARIO_DURATION_MS;
    let at_us = match value {
        toml::Value::Integer(ms) if (0..=limit_ms as i64).contains(ms) => *ms as u64 * 1000,
        toml::Value::Float(ms) if (0.0..=limit_ms as f64).contains(ms) => {
            let at_us = (ms * 1000.0).round();
            if (at_us - ms * 1000.0).abs() > 0.01 {
                return Err(format!("at_ms {ms} is finer than a microsecond (at most three decimals)"));
            }
            at_us as u64
        }
        toml::Value::Integer(_) | toml::Value::Float(_) => {
            return Err(format!("at_ms must be between 0 and {limit_ms}, got {value}"))
        }
        other => return Err(format!("at_ms must be a number of milliseconds, not {other}")),
    };
    Ok(at_us)
}

fn node_number(number: i64, nodes: usize) -> Result<usize, String> {
    if number < 1 || number as u64 > nodes as u64 {
        return Err(format!("node {number} does not exist (nodes are numbered 1 to {nodes})"));
    }
    Ok(number as usize - 1)
}

fn node_ref(value: &toml::Value, nodes: usize) -> Result<NodeRef, String> {
    match value {
        toml::Value::Integer(number) => node_number(*number, nodes).map(NodeRef::Index),
        toml::Value::String(name) if name == "leader" => Ok(NodeRef::Leader),
        toml::Value::String(name) if name == "all" => Ok(NodeRef::All),
        other => Err(format!("node must be a number from 1 to {nodes}, \"leader\" or \"all\", not {other}")),
    }
}

fn node_list(numbers: &[i64], nodes: usize, field: &str) -> Result<Vec<usize>, String> {
    if numbers.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    let mut list = Vec::with_capacity(numbers.len());
    for number in numbers {
        let node = node_number(*number, nodes)?;
        if list.contains(&node) {
            return Err(format!("node {number} is listed twice in `{field}`"));
        }
        list.push(node);
    }
    Ok(list)
}

fn parse_event(event: RawEvent, nodes: usize) -> Result<FaultAction, String> {
    let action = event.action.as_str();
    let require_node = || require_node(&event, nodes);
    match action {
        "partition" => parse_partition(&event, nodes),
        "isolate" => Ok(FaultAction::Isolate { node: require_node()? }),
        "one-way" => parse_one_way(&event, nodes),
        "heal" => {
            unexpected(action, "node", event.node.is_some())?;
            Ok(FaultAction::Heal)
        }
        "cut-link" => {
            let peer = event.peer.as_ref().ok_or("action \"cut-link\" needs `peer` (the other end)")?;
            Ok(FaultAction::CutLink { a: require_node()?, b: node_ref(peer, nodes)? })
        }
        "wipe" => Ok(FaultAction::Wipe { node: require_node()? }),
        "reorder" => {
            let reorder_ppm = percent_ppm(&event)?;
            let max_delay_ms = event.max_delay_ms.ok_or("action \"reorder\" needs `max_delay_ms`")?;
            if max_delay_ms > 60_000 {
                return Err(format!("max_delay_ms must be at most 60000, got {max_delay_ms}"));
            }
            Ok(FaultAction::SetReorder { reorder_ppm, max_delay_us: max_delay_ms * 1000 })
        }
        "add-learner" | "promote" | "remove" | "renew-disk" | "replace" | "transfer" => parse_operator(&event, nodes),
        "crash" => Ok(FaultAction::Crash { node: require_node()? }),
        "restart" => Ok(FaultAction::Restart { node: require_node()? }),
        "pause" => Ok(FaultAction::Pause { node: require_node()? }),
        "resume" => Ok(FaultAction::Resume { node: require_node()? }),
        "loss" => Ok(FaultAction::SetLoss { loss_ppm: percent_ppm(&event)? }),
        other => Err(format!(
            "unknown action \"{other}\" (expected partition, isolate, one-way, cut-link, heal, crash, restart, pause, \
             resume, wipe, loss, reorder, add-learner, promote, remove, replace, renew-disk or transfer)"
        )),
    }
}

/// The event's `node`, which its action needs.
fn require_node(event: &RawEvent, nodes: usize) -> Result<NodeRef, String> {
    let action = event.action.as_str();
    let value = event.node.as_ref().ok_or_else(|| format!("action \"{action}\" needs `node`"))?;
    node_ref(value, nodes)
}

/// An error if `field` is `present` although `action` does not take it.
fn unexpected(action: &str, field: &str, present: bool) -> Result<(), String> {
    if present {
        Err(format!("action \"{action}\" does not take `{field}`"))
    } else {
        Ok(())
    }
}

/// The event's `percent` (0 to 100, which `loss` and `reorder` need) in
/// parts per million.
fn percent_ppm(event: &RawEvent) -> Result<u32, String> {
    let action = event.action.as_str();
    let percent = event.percent.ok_or_else(|| format!("action \"{action}\" needs `percent` (0 to 100)"))?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("percent must be between 0 and 100, got {percent}"));
    }
    Ok((percent * 10_000.0).round() as u32)
}

/// `partition`: at least two disjoint `groups` of node numbers.
fn parse_partition(event: &RawEvent, nodes: usize) -> Result<FaultAction, String> {
    unexpected(&event.action, "node", event.node.is_some())?;
    let groups = event.groups.as_ref().ok_or("action \"partition\" needs `groups`, e.g. [[1,2],[3,4,5]]")?;
    if groups.len() < 2 {
        return Err("a partition needs at least two groups".into());
    }
    let mut seen = Vec::new();
    let mut parsed = Vec::new();
    for group in groups {
        let group = node_list(group, nodes, "groups")?;
        for node in &group {
            if seen.contains(node) {
                return Err(format!("node {} is in two groups", node + 1));
            }
            seen.push(*node);
        }
        parsed.push(group);
    }
    Ok(FaultAction::Partition { groups: parsed })
}

/// `one-way`: node numbers `from`, node references `to`.
fn parse_one_way(event: &RawEvent, nodes: usize) -> Result<FaultAction, String> {
    let from = event.from.as_ref().ok_or("action \"one-way\" needs `from` (the senders)")?;
    let to = event.to.as_ref().ok_or("action \"one-way\" needs `to` (the receivers)")?;
    let senders = node_list(from, nodes, "from")?;
    if to.is_empty() {
        return Err("`to` is empty".into());
    }
    let receivers = to.iter().map(|value| node_ref(value, nodes)).collect::<Result<Vec<_>, _>>()?;
    Ok(FaultAction::OneWay { senders, receivers })
}

/// The operator's actions: membership changes of a numbered node, and
/// `transfer` (which also takes `"leader"` or `"all"`).
fn parse_operator(event: &RawEvent, nodes: usize) -> Result<FaultAction, String> {
    let action = event.action.as_str();
    let node = match require_node(event, nodes)? {
        NodeRef::Index(index) => chorus_core::NodeId(index as u64 + 1),
        _ if action == "transfer" => return Ok(FaultAction::Transfer { to: require_node(event, nodes)? }),
        other => return Err(format!("action \"{action}\" needs a numbered node, not {other}")),
    };
    use chorus_core::raft::MembershipChange;
    Ok(match action {
        "add-learner" => FaultAction::Change(MembershipChange::AddLearner(node)),
        "promote" => FaultAction::Change(MembershipChange::Promote(node)),
        "remove" => FaultAction::Change(MembershipChange::Remove(node)),
        "renew-disk" => FaultAction::Change(MembershipChange::RenewDisk(node)),
        "transfer" => FaultAction::Transfer { to: NodeRef::Index(node.0 as usize - 1) },
        _ => {
            let with = event.with.ok_or("action \"replace\" needs `with` (the learner taking the place)")?;
            let add = chorus_core::NodeId(node_number(with, nodes)? as u64 + 1);
            FaultAction::Change(MembershipChange::Replace { remove: node, add })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_parses_in_time_order() {
        let text = r#"
            duration_ms = 8000
            [[events]]
            at_ms = 6000
            action = "crash"
            node = "leader"
            [[events]]
            at_ms = 2000
            action = "partition"
            groups = [[1, 2], [3, 4, 5]]
        "#;
        let scenario = Scenario::parse(text, 5).unwrap();
        assert_eq!(scenario.duration_ms, Some(8000));
        assert_eq!(scenario.events[0], (2_000_000, FaultAction::Partition { groups: vec![vec![0, 1], vec![2, 3, 4]] }));
        assert_eq!(scenario.events[1], (6_000_000, FaultAction::Crash { node: NodeRef::Leader }));
    }

    #[test]
    fn errors_name_the_event_and_the_problem() {
        let missing_node = "[[events]]\nat_ms = 10\naction = \"crash\"\n";
        let error = Scenario::parse(missing_node, 3).unwrap_err().to_string();
        assert_eq!(error, "event 1 (at_ms 10): action \"crash\" needs `node`");

        let bad_node = "[[events]]\nat_ms = 10\naction = \"crash\"\nnode = 7\n";
        let error = Scenario::parse(bad_node, 3).unwrap_err().to_string();
        assert!(error.contains("node 7 does not exist"), "{error}");

        let unknown = "[[events]]\nat_ms = 10\naction = \"explode\"\n";
        assert!(Scenario::parse(unknown, 3).unwrap_err().to_string().contains("unknown action \"explode\""));

        let overlapping = "[[events]]\nat_ms = 1\naction = \"partition\"\ngroups = [[1,2],[2,3]]\n";
        assert!(Scenario::parse(overlapping, 3).unwrap_err().to_string().contains("node 2 is in two groups"));

        let typo = "[[events]]\nat_ms = 1\naction = \"heal\"\nnodes = 3\n";
        assert!(Scenario::parse(typo, 3).unwrap_err().to_string().contains("unknown field"));

        assert!(matches!(Scenario::parse("duration_ms = \"x\"", 3), Err(ScenarioError::Syntax(_))));
    }
}
