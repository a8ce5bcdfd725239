//! Fault kinds and the per-seed swarm profile.
//!
//! Swarm testing: every seed draws its own mix — which fault kinds are on at
//! all, how often they strike, how bad the network is — so that across seeds
//! the simulator visits quiet clusters, pathological ones, and everything in
//! between, instead of one average that hides rare interleavings.

use crate::clock::MAX_DRIFT_PPM;
use crate::network::{NetworkParams, PPM};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::ops::RangeInclusive;

/// Which node a fault targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRef {
    /// A node by 0-based position (node ids are position + 1).
    Index(usize),
    /// Whichever node is leader (highest term) when the fault fires; nothing
    /// happens if there is none.
    Leader,
    /// Every node the fault applies to (crashed nodes for restart, paused for
    /// resume, all for crash and pause).
    All,
}

/// One fault, applied at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Nodes in different groups cannot talk; nodes in no group are isolated.
    /// Replaces every earlier cut (one-way cuts and cut links included).
    Partition {
        /// The groups, as 0-based node indexes; indexes past the cluster are
        /// ignored.
        groups: Vec<Vec<usize>>,
    },
    /// Cut one node off in both directions. Like a partition, it replaces
    /// every earlier cut.
    Isolate {
        /// The node to cut off.
        node: NodeRef,
    },
    /// Messages from `senders` to `receivers` are dropped; the reverse flows.
    /// Adds to the cuts already in place.
    OneWay {
        /// The senders whose messages are dropped, as 0-based node indexes.
        senders: Vec<usize>,
        /// The receivers they cannot reach.
        receivers: Vec<NodeRef>,
    },
    /// Cut the link between two nodes, both ways; each still reaches the
    /// others (a partial partition). Adds to the cuts already in place.
    CutLink {
        /// One end of the link.
        a: NodeRef,
        /// The other end.
        b: NodeRef,
    },
    /// Restore full connectivity.
    Heal,
    /// Kill the process: volatile state and unsynced writes are lost. A node
    /// already down is left alone.
    Crash {
        /// The node (or nodes) to crash.
        node: NodeRef,
    },
    /// Start a crashed node again from its disk. A running node is left
    /// alone.
    Restart {
        /// The node (or nodes) to restart.
        node: NodeRef,
    },
    /// Freeze the process: it handles nothing until resumed; timers fire late.
    /// Inputs that arrive meanwhile wait for it (disk writes still complete).
    Pause {
        /// The node (or nodes) to freeze; crashed nodes are skipped.
        node: NodeRef,
    },
    /// Unfreeze a paused process: it handles what waited for it (each sender
    /// in order, the senders interleaved at random), then its late timer.
    Resume {
        /// The node (or nodes) to resume.
        node: NodeRef,
    },
    /// Change the message loss rate.
    SetLoss {
        /// The new chance, in parts per million, that a message (node to node
        /// or client traffic) is lost.
        loss_ppm: u32,
    },
    /// Kill the process and lose its disk; a restart then rejoins with an
    /// empty disk under a new disk id. Skipped without a leader, or when it
    /// would leave more than one voter without its recorded disk or the
    /// cluster has fewer than three voters.
    Wipe {
        /// The node (or nodes) to wipe.
        node: NodeRef,
    },
    /// Add message reordering: this share of messages is delayed by up to
    /// `max_delay_us` more.
    SetReorder {
        /// The chance, in parts per million, that a message is held back.
        reorder_ppm: u32,
        /// The largest extra delay, in simulated microseconds.
        max_delay_us: u64,
    },
    /// The operator asks the leader for a membership change (`Promote`,
    /// `Replace` and `RenewDisk` wait until the leader knows the node's
    /// disk).
    Change(chorus_core::raft::MembershipChange),
    /// The operator asks the leader to hand leadership to `to`.
    Transfer {
        /// The node that should lead; nothing happens without a leader.
        to: NodeRef,
    },
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRef::Index(index) => write!(f, "n{}", index + 1),
            NodeRef::Leader => f.write_str("the leader"),
            NodeRef::All => f.write_str("all"),
        }
    }
}

fn group_names(groups: &[Vec<usize>]) -> String {
    groups
        .iter()
        .map(|group| {
            let names: Vec<String> = group.iter().map(|node| format!("n{}", node + 1)).collect();
            format!("{{{}}}", names.join(","))
        })
        .collect::<Vec<_>>()
        .join("|")
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultAction::Partition { groups } => write!(f, "partition {}", group_names(groups)),
            FaultAction::Isolate { node } => write!(f, "isolate {node}"),
            FaultAction::OneWay { senders, receivers } => {
                let receivers: Vec<String> = receivers.iter().map(ToString::to_string).collect();
                write!(f, "one-way cut {} -/-> {}", group_names(std::slice::from_ref(senders)), receivers.join(","))
            }
            FaultAction::CutLink { a, b } => write!(f, "cut link {a} <-> {b}"),
            FaultAction::Heal => f.write_str("heal network"),
            FaultAction::Crash { node } => write!(f, "crash {node}"),
            FaultAction::Restart { node } => write!(f, "restart {node}"),
            FaultAction::Pause { node } => write!(f, "pause {node}"),
            FaultAction::Resume { node } => write!(f, "resume {node}"),
            FaultAction::SetLoss { loss_ppm } => {
                write!(f, "set loss {:.2}%", *loss_ppm as f64 / 10_000.0)
            }
            FaultAction::Wipe { node } => write!(f, "wipe {node} (crash and lose its disk)"),
            FaultAction::SetReorder { reorder_ppm, max_delay_us } => {
                write!(f, "reorder {:.2}% by up to {}us", *reorder_ppm as f64 / 10_000.0, max_delay_us)
            }
            FaultAction::Change(change) => write!(f, "operator: {change:?}"),
            FaultAction::Transfer { to } => write!(f, "operator: transfer leadership to {to}"),
        }
    }
}

/// How often a recurring fault strikes and how long it lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recurrence {
    /// Mean time between two strikes, in simulated milliseconds.
    pub mean_interval_ms: u64,
    /// Mean time a strike lasts (until the partition heals, the node
    /// restarts or resumes), in simulated milliseconds.
    pub mean_duration_ms: u64,
}

impl Recurrence {
    /// A delay in simulated microseconds around a mean given in
    /// milliseconds: uniform on [mean/4, 7·mean/4], so bounded and a seed
    /// never waits forever (not exponential).
    pub fn draw(rng: &mut ChaCha8Rng, mean_ms: u64) -> u64 {
        let mean_us = mean_ms * 1000;
        rng.random_range(mean_us / 4..=mean_us * 7 / 4)
    }
}

/// The faults one seed runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultProfile {
    /// Delays, loss, duplication and reordering. Loss applies to client
    /// traffic too; partitions do not.
    pub network: NetworkParams,
    /// Random partitions of the nodes, each healing after a while; `None`
    /// turns them off.
    pub partitions: Option<Recurrence>,
    /// Crashes of a random node, which restarts after the duration; `None`
    /// turns them off.
    pub crashes: Option<Recurrence>,
    /// Pauses of a random node, which resumes after the duration; `None`
    /// turns them off.
    pub pauses: Option<Recurrence>,
    /// Largest per-node clock drift, in parts per million either way; 0
    /// turns drift off.
    pub drift_ppm_max: i64,
    /// Shortest time a disk write takes to sync, in simulated microseconds.
    pub disk_latency_min_us: u64,
    /// Longest time a disk write takes to sync (before stalls), in simulated
    /// microseconds.
    pub disk_latency_max_us: u64,
    /// Chance, per write, of a disk stall (an fsync that takes 50-300 ms):
    /// it widens the windows in which a node acts before its state is
    /// durable or committed.
    pub disk_stall_ppm: u32,
    /// Chance, per write a node submits to its disk, that the node crashes
    /// before that write syncs (at a random moment of the write's latency).
    /// This aims crashes at the windows where durability bugs live.
    pub crash_in_write_ppm: u32,
    /// Share of crashes (in percent) that are process bounces: the node is
    /// back within 2 ms, while messages to and from its earlier life are
    /// still in flight (where reused request ids and lost in-flight appends
    /// show).
    pub bounce_percent: u32,
    /// Chance, per election won, that the new leader is isolated within a
    /// few milliseconds (before it can replicate its first entries).
    pub isolate_new_leader_ppm: u32,
    /// Chance, per commit advance on a leader, that the leader is isolated
    /// within a millisecond: its followers may not learn what it just
    /// committed (and acknowledged) before a new leader takes over.
    pub isolate_after_commit_ppm: u32,
    /// Raft knob varied by the swarm: small values split replication into
    /// many messages (and expose figure-8 style interleavings).
    pub max_entries_per_append: usize,
    /// Largest total of entry bytes in one append (0: the core's default),
    /// and of append bytes in flight to one follower: small in some seeds, so
    /// that the byte limits, not the entry count, decide what goes out.
    pub max_append_bytes: usize,
    /// See `max_append_bytes` (0: the core's default).
    pub max_inflight_bytes: usize,
    /// Most reads a node holds at once (0: the core's default): small in
    /// some seeds, so that the calm probe's read burst meets the limit.
    pub max_pending_reads: usize,
    /// Disk loss: a node crashes, its disk is replaced by an empty one, and
    /// it restarts after the duration under a new disk id.
    pub wipes: Option<Recurrence>,
    /// Mean interval between the operator's membership changes and
    /// leadership transfers; `None` keeps the configuration fixed.
    pub churn_interval_ms: Option<u64>,
    /// A leader that has just appended the configuration removing it is cut
    /// off at once (as an operator decommissioning it would): the others may
    /// hold only the joint configuration, which still needs its vote.
    pub isolate_leaving_leader: bool,
    /// Nodes outside the initial configuration, which the operator adds as
    /// learners, promotes, and swaps in for voters.
    pub spares: usize,
    /// Snapshot every this many applied entries (0: never); tiny values make
    /// snapshots and installs constant.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot for slow followers.
    pub max_retained_entries: u64,
    /// Snapshot chunk size: small values split installs into many chunks.
    pub snapshot_chunk_bytes: usize,
    /// Serve linearizable reads from a leader lease instead of a heartbeat
    /// round each (Raft thesis §6.4.1).
    pub lease_reads: bool,
    /// Followers forward proposals to the leader.
    pub forward_proposals: bool,
    /// Followers serve linearizable reads through the leader's read index.
    pub follower_reads: bool,
    /// Candidates run a pre-vote first (Raft thesis §9.6). Off, candidates
    /// of one term collide more often, which is where a node's one vote per
    /// term is tested.
    pub pre_vote: bool,
    /// Leaders step down without a quorum's contact and followers ignore
    /// candidates while they hear a leader (always on with lease reads).
    pub check_quorum: bool,
    /// Idle groups quiesce after this many milliseconds (0: never;
    /// [`chorus_core::raft::Config::quiesce_after_ms`]). With it on, the
    /// clients pause in lulls so that groups go idle, the world plays the
    /// failure detector that wakes the followers of a failed leader, and
    /// the run ends with a quiet tail in which the group must quiesce.
    pub quiesce_after_ms: u64,
    /// With quiescence on: the clients start no operation for `lull_ms` of
    /// every `lull_every_ms`.
    pub lull_every_ms: u64,
    /// See [`lull_every_ms`](FaultProfile::lull_every_ms).
    pub lull_ms: u64,
}

impl FaultProfile {
    /// No faults at all: a reliable network, no crashes, perfect clocks.
    pub fn quiet() -> FaultProfile {
        FaultProfile {
            network: NetworkParams::reliable(),
            partitions: None,
            crashes: None,
            pauses: None,
            drift_ppm_max: 0,
            disk_latency_min_us: 100,
            disk_latency_max_us: 1_000,
            disk_stall_ppm: 0,
            crash_in_write_ppm: 0,
            bounce_percent: 0,
            isolate_new_leader_ppm: 0,
            isolate_after_commit_ppm: 0,
            max_entries_per_append: 64,
            max_append_bytes: 0,
            max_inflight_bytes: 0,
            max_pending_reads: 0,
            wipes: None,
            churn_interval_ms: None,
            isolate_leaving_leader: false,
            spares: 0,
            snapshot_every_entries: 0,
            max_retained_entries: 1_000,
            snapshot_chunk_bytes: 256 * 1024,
            lease_reads: false,
            forward_proposals: false,
            follower_reads: false,
            pre_vote: true,
            check_quorum: true,
            quiesce_after_ms: 0,
            lull_every_ms: 0,
            lull_ms: 0,
        }
    }

    /// Draws a swarm profile: each fault kind is on with some probability,
    /// with its own rates.
    ///
    /// The draws happen in a fixed order (the network, then each fault kind
    /// and knob in turn); changing it changes every seed's run.
    pub fn draw(rng: &mut ChaCha8Rng) -> FaultProfile {
        let network = draw_network(rng);
        let partitions = draw_recurrence(rng, 0.6, 300..=3_000, 200..=3_000);
        let crashes = draw_recurrence(rng, 0.6, 300..=3_000, 50..=2_000);
        let pauses = draw_recurrence(rng, 0.5, 300..=3_000, 100..=1_000);
        let drift_ppm_max = if rng.random_bool(0.5) { rng.random_range(0..=MAX_DRIFT_PPM) } else { 0 };
        let disk_latency_min_us = rng.random_range(10..=1_000);
        let disk_latency_max_us = disk_latency_min_us + rng.random_range(0..=20_000);
        let disk_stall_ppm = if rng.random_bool(0.3) { rng.random_range(1_000..=50_000) } else { 0 };
        let crash_in_write_ppm = if rng.random_bool(0.5) { rng.random_range(100..=5_000) } else { 0 };
        let isolate_new_leader_ppm = if rng.random_bool(0.4) { rng.random_range(PPM / 10..=PPM * 6 / 10) } else { 0 };
        let isolate_after_commit_ppm = if rng.random_bool(0.3) { rng.random_range(PPM / 200..=PPM / 20) } else { 0 };
        let max_entries_per_append = [1, 2, 4, 64][rng.random_range(0..4)];
        let wipes = draw_recurrence(rng, 0.3, 1_000..=5_000, 50..=1_000);
        let churn_interval_ms = rng.random_bool(0.5).then(|| rng.random_range(100..=1_500));
        let spares = if churn_interval_ms.is_some() { rng.random_range(0..=2) } else { 0 };
        let snapshot_every_entries = [0, 2, 5, 20, 100][rng.random_range(0..5)];
        let max_retained_entries = [0, 1, 10, 1_000][rng.random_range(0..4)];
        let snapshot_chunk_bytes = [16, 64, 256 * 1024][rng.random_range(0..3)];
        let lease_reads = rng.random_bool(0.3);
        let forward_proposals = rng.random_bool(0.5);
        let follower_reads = rng.random_bool(0.7);
        let bounce_percent = if crashes.is_some() && rng.random_bool(0.5) { rng.random_range(20..=80) } else { 0 };
        let isolate_leaving_leader = churn_interval_ms.is_some() && rng.random_bool(0.5);
        let pre_vote = rng.random_bool(0.75);
        let check_quorum = lease_reads || rng.random_bool(0.75);
        let quiesce_after_ms = if rng.random_bool(0.3) { [60, 150, 400][rng.random_range(0..3)] } else { 0 };
        let (lull_every_ms, lull_ms) = if quiesce_after_ms > 0 {
            let lull_ms = quiesce_after_ms + rng.random_range(100..=600);
            (lull_ms + rng.random_range(500..=2_000), lull_ms)
        } else {
            (0, 0)
        };
        let (max_append_bytes, max_inflight_bytes) = if rng.random_bool(0.3) {
            let append = rng.random_range(32..=512);
            (append, append * [1, 2, 8][rng.random_range(0..3)])
        } else {
            (0, 0)
        };
        let max_pending_reads = if rng.random_bool(0.3) { [1, 2, 5][rng.random_range(0..3)] } else { 0 };
        FaultProfile {
            network,
            partitions,
            crashes,
            pauses,
            drift_ppm_max,
            disk_latency_min_us,
            disk_latency_max_us,
            disk_stall_ppm,
            crash_in_write_ppm,
            bounce_percent,
            isolate_new_leader_ppm,
            isolate_after_commit_ppm,
            max_entries_per_append,
            max_append_bytes,
            max_inflight_bytes,
            max_pending_reads,
            wipes,
            churn_interval_ms,
            isolate_leaving_leader,
            spares,
            snapshot_every_entries,
            max_retained_entries,
            snapshot_chunk_bytes,
            lease_reads,
            forward_proposals,
            follower_reads,
            pre_vote,
            check_quorum,
            quiesce_after_ms,
            lull_every_ms,
            lull_ms,
        }
    }
}

/// The swarm's network: delays, and loss, duplication and reordering each on
/// or off. The first draws of [`FaultProfile::draw`].
fn draw_network(rng: &mut ChaCha8Rng) -> NetworkParams {
    let delay_min_us = rng.random_range(100..=2_000);
    let delay_max_us = delay_min_us + rng.random_range(0..=8_000);
    let loss_ppm = if rng.random_bool(0.5) { rng.random_range(0..=PPM / 5) } else { 0 };
    let duplicate_ppm = if rng.random_bool(0.3) { rng.random_range(0..=PPM / 10) } else { 0 };
    let (reorder_ppm, reorder_delay_max_us) =
        if rng.random_bool(0.4) { (rng.random_range(0..=PPM / 5), rng.random_range(1_000..=100_000)) } else { (0, 0) };
    NetworkParams { delay_min_us, delay_max_us, loss_ppm, duplicate_ppm, reorder_ppm, reorder_delay_max_us }
}

/// A recurring fault kind, on with probability `on`: its mean interval, then
/// its mean duration, in milliseconds (drawn in that order).
fn draw_recurrence(
    rng: &mut ChaCha8Rng,
    on: f64,
    interval_ms: RangeInclusive<u64>,
    duration_ms: RangeInclusive<u64>,
) -> Option<Recurrence> {
    rng.random_bool(on).then(|| Recurrence {
        mean_interval_ms: rng.random_range(interval_ms),
        mean_duration_ms: rng.random_range(duration_ms),
    })
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let network = &self.network;
        write!(
            f,
            "delay {}-{}us, loss {:.1}%, dup {:.1}%, reorder {:.1}% (+{}us)",
            network.delay_min_us,
            network.delay_max_us,
            network.loss_ppm as f64 / 10_000.0,
            network.duplicate_ppm as f64 / 10_000.0,
            network.reorder_ppm as f64 / 10_000.0,
            network.reorder_delay_max_us,
        )?;
        let recurrence = |r: Option<Recurrence>| match r {
            Some(r) => format!("every ~{}ms for ~{}ms", r.mean_interval_ms, r.mean_duration_ms),
            None => "off".to_string(),
        };
        write!(
            f,
            "; partitions {}; crashes {} ({}% bounces); crash-in-write {:.2}%; isolate-new-leader {:.0}%; isolate-after-commit {:.1}%; pauses {}; drift ±{}ppm; disk {}-{}us; max {} entries/append",
            recurrence(self.partitions),
            recurrence(self.crashes),
            self.bounce_percent,
            self.crash_in_write_ppm as f64 / 10_000.0,
            self.isolate_new_leader_ppm as f64 / 10_000.0,
            self.isolate_after_commit_ppm as f64 / 10_000.0,
            recurrence(self.pauses),
            self.drift_ppm_max,
            self.disk_latency_min_us,
            self.disk_latency_max_us,
            self.max_entries_per_append,
        )?;
        write!(
            f,
            "; disk stalls {:.2}%; wipes {}; churn {}{}; {} spares; snapshot every {} entries (keep {}, {}-byte chunks); {} reads; forwarding {}; follower reads {}; pre-vote {}; check-quorum {}",
            self.disk_stall_ppm as f64 / 10_000.0,
            recurrence(self.wipes),
            self.churn_interval_ms.map_or("off".to_string(), |ms| format!("every ~{ms}ms")),
            if self.isolate_leaving_leader { " (leaving leaders isolated)" } else { "" },
            self.spares,
            self.snapshot_every_entries,
            self.max_retained_entries,
            self.snapshot_chunk_bytes,
            if self.lease_reads { "lease" } else { "read-index" },
            if self.forward_proposals { "on" } else { "off" },
            if self.follower_reads { "on" } else { "off" },
            if self.pre_vote { "on" } else { "off" },
            if self.check_quorum { "on" } else { "off" },
        )?;
        if self.quiesce_after_ms > 0 {
            write!(
                f,
                "; quiesce after {}ms (client lulls of {}ms every {}ms)",
                self.quiesce_after_ms, self.lull_ms, self.lull_every_ms
            )?;
        }
        if self.max_append_bytes > 0 {
            write!(f, "; appends of at most {} bytes, {} in flight", self.max_append_bytes, self.max_inflight_bytes)?;
        }
        if self.max_pending_reads > 0 {
            write!(f, "; at most {} reads held", self.max_pending_reads)?;
        }
        Ok(())
    }
}
