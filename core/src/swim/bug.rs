//! Deliberate SWIM bugs, for proving that the simulator's membership checkers
//! fail.
//!
//! A production configuration has `injected_bug: None`, and then none of this
//! changes anything. Each variant breaks exactly one rule of the protocol, in
//! the place where the correct code enforces it; `chorus-sim run --system swim
//! --bug NAME` turns one on and the simulator must report a violation.

use std::fmt;

/// One deliberate SWIM bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// A node never refutes news that it is suspect or failed: it keeps its
    /// incarnation, so a wrong suspicion of a healthy member always becomes
    /// a failure.
    RefutationIgnored,
    /// News with a lower incarnation than the one known overrides it when it
    /// claims a different state (incarnations compared the wrong way round).
    LowerIncarnationAccepted,
    /// A member declared failed is never spread: no `Failed` update is
    /// piggybacked (neither by the declaring node nor by those that hear of
    /// it), and push-pull state leaves failed members out.
    FailedNeverGossiped,
    /// Suspicions never time out: a suspect stays suspect forever unless it
    /// refutes, so a crashed member is never declared failed.
    SuspicionNeverExpires,
}

impl Bug {
    /// Every bug, in the order `chorus-sim bugs --system swim` lists them.
    pub const ALL: [Bug; 4] =
        [Bug::RefutationIgnored, Bug::LowerIncarnationAccepted, Bug::FailedNeverGossiped, Bug::SuspicionNeverExpires];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::RefutationIgnored => "refutation-ignored",
            Bug::LowerIncarnationAccepted => "lower-incarnation-accepted",
            Bug::FailedNeverGossiped => "failed-never-gossiped",
            Bug::SuspicionNeverExpires => "suspicion-never-expires",
        }
    }

    /// One line for `chorus-sim bugs --system swim`.
    pub fn description(self) -> &'static str {
        match self {
            Bug::RefutationIgnored => "a member never refutes a suspicion or failure claim about itself",
            Bug::LowerIncarnationAccepted => "news at a lower incarnation overrides the known state of a member",
            Bug::FailedNeverGossiped => "failure declarations are neither piggybacked nor sent in push-pull state",
            Bug::SuspicionNeverExpires => "suspicion timers never fire, so suspects are never declared failed",
        }
    }

    /// Looks a bug up by its command-line name.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for bug in Bug::ALL {
            assert_eq!(Bug::from_name(bug.name()), Some(bug));
            assert!(!bug.description().is_empty());
        }
        let names: std::collections::BTreeSet<_> = Bug::ALL.iter().map(|bug| bug.name()).collect();
        assert_eq!(names.len(), Bug::ALL.len());
        assert_eq!(Bug::from_name("commit-old-term"), None);
    }
}
