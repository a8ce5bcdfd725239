//! Deliberate planner bugs, for proving that the simulator's placement
//! checkers fail. A production configuration has `injected_bug: None`; each
//! variant breaks one rule where the correct code enforces it, and only in
//! builds with the `bug-injection` feature.

/// One deliberate planner bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// A replica move removes the old replica first and adds the new one
    /// after, without checking that the range keeps a live quorum.
    RemoveBeforeAdd,
    /// A repair may pick a node that already holds a replica of the range.
    TwoReplicasOnOneNode,
    /// A dead or suspect node's replicas are replaced at once, without
    /// waiting for the grace period.
    NoGracePeriod,
    /// The per-node and total limits on concurrent moves are ignored.
    NoMoveLimits,
    /// Leadership is never moved to even out leader counts.
    LeadersNeverBalanced,
}

impl Bug {
    /// Every bug, in the order `chorus-sim bugs --system placement` lists
    /// them.
    pub const ALL: [Bug; 5] = [
        Bug::RemoveBeforeAdd,
        Bug::TwoReplicasOnOneNode,
        Bug::NoGracePeriod,
        Bug::NoMoveLimits,
        Bug::LeadersNeverBalanced,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::RemoveBeforeAdd => "remove-before-add",
            Bug::TwoReplicasOnOneNode => "two-replicas-on-one-node",
            Bug::NoGracePeriod => "no-grace-period",
            Bug::NoMoveLimits => "no-move-limits",
            Bug::LeadersNeverBalanced => "leaders-never-balanced",
        }
    }

    /// One line for `chorus-sim bugs --system placement`.
    pub fn description(self) -> &'static str {
        match self {
            Bug::RemoveBeforeAdd => "a move removes the old replica before adding the new one, quorum unchecked",
            Bug::TwoReplicasOnOneNode => "a repair may add a replica on a node that already holds one",
            Bug::NoGracePeriod => "replicas of dead or suspect nodes are replaced at once",
            Bug::NoMoveLimits => "concurrent moves are not limited per node or in total",
            Bug::LeadersNeverBalanced => "leadership is never transferred to balance leader counts",
        }
    }

    /// Looks a bug up by its command-line name.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}
