//! Deliberate cluster bugs, for proving that the simulator's cluster
//! checkers fail. A production configuration has `injected_bug: None`; each
//! variant breaks one rule where the correct code enforces it, and only in
//! builds with the `bug-injection` feature.

/// One deliberate cluster bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterBug {
    /// A node asked about a key of a range it does not host serves it from
    /// a range it does host, instead of redirecting.
    ServesForeignKeys,
    /// Every Raft write is acknowledged as durable as soon as it is queued,
    /// before the driver has synced it.
    AckBeforeDurable,
    /// The planner's replica moves remove the old replica before adding the
    /// new one.
    RemoveBeforeAdd,
    /// Nodes never fetch newer descriptors: routing caches learn nothing
    /// from gossip.
    NoDescriptorGossip,
    /// Linearizable and lease reads are answered from the local replica,
    /// whatever its role, like stale reads.
    LocalLinearizableReads,
    /// Replicas a node no longer belongs to are never destroyed.
    OrphansKept,
    /// When SWIM declares a node failed, the quiesced ranges it led are not
    /// woken: they stay leaderless until something else touches them.
    QuiescedNeverWakes,
}

impl ClusterBug {
    /// Every bug, in the order `chorus-sim bugs --system cluster` lists
    /// them.
    pub const ALL: [ClusterBug; 7] = [
        ClusterBug::ServesForeignKeys,
        ClusterBug::AckBeforeDurable,
        ClusterBug::RemoveBeforeAdd,
        ClusterBug::NoDescriptorGossip,
        ClusterBug::LocalLinearizableReads,
        ClusterBug::OrphansKept,
        ClusterBug::QuiescedNeverWakes,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ClusterBug::ServesForeignKeys => "serves-foreign-keys",
            ClusterBug::AckBeforeDurable => "ack-before-durable",
            ClusterBug::RemoveBeforeAdd => "remove-before-add",
            ClusterBug::NoDescriptorGossip => "no-descriptor-gossip",
            ClusterBug::LocalLinearizableReads => "local-linearizable-reads",
            ClusterBug::OrphansKept => "orphans-kept",
            ClusterBug::QuiescedNeverWakes => "quiesced-never-wakes",
        }
    }

    /// One line for `chorus-sim bugs --system cluster`.
    pub fn description(self) -> &'static str {
        match self {
            ClusterBug::ServesForeignKeys => "a node serves a key outside its ranges from a range it hosts",
            ClusterBug::AckBeforeDurable => "Raft writes are acknowledged before the driver syncs them",
            ClusterBug::RemoveBeforeAdd => "a replica move removes before it adds",
            ClusterBug::NoDescriptorGossip => "nodes never fetch newer descriptors, so routing caches go stale",
            ClusterBug::LocalLinearizableReads => "linearizable reads are served by any replica from its own state",
            ClusterBug::OrphansKept => "replicas removed from a range are never destroyed",
            ClusterBug::QuiescedNeverWakes => "the quiesced ranges of a node SWIM declared failed are not woken",
        }
    }

    /// Looks a bug up by its command-line name.
    pub fn from_name(name: &str) -> Option<ClusterBug> {
        ClusterBug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}
