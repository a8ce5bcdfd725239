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
    /// Every update is piggybacked `⌈log10(n + 1)⌉` times, as if λ were 1,
    /// whatever the configured retransmit multiplier: news dies out before
    /// it reaches everyone and waits for push-pull.
    RetransmitOnce,
    /// Messages carry no piggybacked updates from the queue (only the buddy
    /// system's suspicion): news spreads by gossip rounds and push-pull only.
    NoPiggyback,
    /// The protocol period is ten times the configured probe interval:
    /// crashes are noticed, and news spreads, ten times slower.
    SlowProbes,
    /// The protocol period is a tenth of the configured probe interval: ten
    /// probes per period, ten times the load.
    HastyProbes,
    /// Suspicion timeouts are ten times what the configuration says.
    LongSuspicion,
    /// A member refutes (raises its incarnation) but never sends its new
    /// alive record: it is not queued for piggybacking, and claims against
    /// the member are not answered with it, so nobody hears of the
    /// refutation.
    RefutationNotSpread,
    /// A helper waits five probe timeouts, not 80% of one, before it nacks
    /// a ping-req whose target stays silent.
    LateNacks,
    /// News that another member is alive is passed on without its
    /// metadata: members that learn of it by gossip hold empty metadata.
    MetadataDropped,
    /// A member reports `Updated` when it hears a member alive at a newer
    /// incarnation with the address and metadata it already knew.
    SpuriousUpdates,
}

impl Bug {
    /// Every bug, in the order `chorus-sim bugs --system swim` lists them.
    pub const ALL: [Bug; 13] = [
        Bug::RefutationIgnored,
        Bug::LowerIncarnationAccepted,
        Bug::FailedNeverGossiped,
        Bug::SuspicionNeverExpires,
        Bug::RetransmitOnce,
        Bug::NoPiggyback,
        Bug::SlowProbes,
        Bug::HastyProbes,
        Bug::LongSuspicion,
        Bug::RefutationNotSpread,
        Bug::LateNacks,
        Bug::MetadataDropped,
        Bug::SpuriousUpdates,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::RefutationIgnored => "refutation-ignored",
            Bug::LowerIncarnationAccepted => "lower-incarnation-accepted",
            Bug::FailedNeverGossiped => "failed-never-gossiped",
            Bug::SuspicionNeverExpires => "suspicion-never-expires",
            Bug::RetransmitOnce => "retransmit-once",
            Bug::NoPiggyback => "no-piggyback",
            Bug::SlowProbes => "slow-probes",
            Bug::HastyProbes => "hasty-probes",
            Bug::LongSuspicion => "long-suspicion",
            Bug::RefutationNotSpread => "refutation-not-spread",
            Bug::LateNacks => "late-nacks",
            Bug::MetadataDropped => "metadata-dropped",
            Bug::SpuriousUpdates => "spurious-updates",
        }
    }

    /// One line for `chorus-sim bugs --system swim`.
    pub fn description(self) -> &'static str {
        match self {
            Bug::RefutationIgnored => "a member never refutes a suspicion or failure claim about itself",
            Bug::LowerIncarnationAccepted => "news at a lower incarnation overrides the known state of a member",
            Bug::FailedNeverGossiped => "failure declarations are neither piggybacked nor sent in push-pull state",
            Bug::SuspicionNeverExpires => "suspicion timers never fire, so suspects are never declared failed",
            Bug::RetransmitOnce => "updates are piggybacked as if the retransmit multiplier were 1",
            Bug::NoPiggyback => "nothing from the piggyback queue rides on protocol messages",
            Bug::SlowProbes => "the protocol period is ten times the configured probe interval",
            Bug::HastyProbes => "the protocol period is a tenth of the configured probe interval",
            Bug::LongSuspicion => "suspicion timeouts are ten times the configured formula",
            Bug::RefutationNotSpread => "a refuting member raises its incarnation but never spreads it",
            Bug::LateNacks => "helpers nack a silent target after five probe timeouts instead of 80% of one",
            Bug::MetadataDropped => "news that a member is alive is passed on without its metadata",
            Bug::SpuriousUpdates => "a newer incarnation with unchanged address and metadata is reported as Updated",
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
