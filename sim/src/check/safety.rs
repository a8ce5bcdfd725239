//! Raft safety, checked online as the run goes.
//!
//! - Election safety: at most one leader per term, and every leader won a
//!   quorum of the votes sent to it, counted (as the checker, not the node,
//!   counts them) by its configuration and each voter's recorded disk. This
//!   catches a wrongly won election even when no second leader shows it.
//! - Log matching: an (index, term) pair names one entry, with one
//!   predecessor term, on every node that ever stores it.
//! - Committed entries never change and never vanish: every commit is checked
//!   against the global committed log, and every new leader must hold all of it.
//! - State-machine safety: every node applies the same command at each index.
//! - Durability across restarts: a restarted node's term is at least every term
//!   it ever sent, its commit index at least what it had made durable, and it
//!   never grants votes to two candidates in one term.
//! - Snapshots: two snapshots of one index hold the same state, and a node's
//!   applied index never goes back (a snapshot never rolls a node back).
//! - Membership: a commit must be safe from every election any node could win
//!   under the configuration it holds, counting only voters on the disk their
//!   configuration records; a node that lost its disk starts a new identity.
//! - Request ids: a node never reuses the tag of a forwarded proposal or a
//!   read-index request in a later life (an answer meant for the earlier
//!   life would be taken for the new request).
//! - Nodes' own protocol-violation reports (peer input they rejected as unsafe).

use chorus_core::raft::voter_name;
use chorus_core::raft::{
    DiskId, Entry, Membership, Message, MessageBody, Payload, PersistRequest, RaftNode, RequestTag, Role,
};
use chorus_core::{LogIndex, NodeId, StateMachine, Term};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most violations kept per run (the first is what matters).
pub const MAX_VIOLATIONS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntryIdentity {
    payload: u64,
    prev_term: Term,
}

#[derive(Default, Clone)]
struct NodeWatch {
    commit_seen: LogIndex,
    /// The index of the snapshot last checked on this node.
    snapshot_seen: Option<LogIndex>,
    applied_seen: LogIndex,
    max_term_sent: Term,
    durable_commit: LogIndex,
    votes: BTreeMap<Term, NodeId>,
}

/// The online Raft safety checker of one run: the simulator reports every
/// send, persist, role change, commit, apply, snapshot and restart, and the
/// checker compares them with what Raft promises (one leader per term,
/// committed entries never change or disappear, and so on). Nodes are 0-based
/// indexes.
#[derive(Default)]
pub struct SafetyChecker {
    leaders: BTreeMap<Term, NodeId>,
    /// Request tags each node sent, with the life (simulator incarnation)
    /// that sent them.
    request_tags: Vec<BTreeMap<RequestTag, u64>>,
    /// Votes granted, by (term, candidate): who granted them, from which disk.
    granted: BTreeMap<(Term, NodeId), BTreeSet<(NodeId, DiskId)>>,
    identities: HashMap<(LogIndex, Term), EntryIdentity>,
    /// committed[i] describes the committed entry at index i + 1.
    committed: Vec<(Term, u64)>,
    /// commit_terms[i]: the term of the first node seen to commit index i + 1
    /// (the term in which it was committed, or later).
    commit_terms: Vec<Term>,
    /// applied[i]: payload applied at index i + 1 by the first node to apply it.
    applied: Vec<u64>,
    nodes: Vec<NodeWatch>,
    /// Hash of the state in the first snapshot seen at each index.
    snapshots: BTreeMap<LogIndex, (usize, u64)>,
    /// What went wrong, first first; at most [`MAX_VIOLATIONS`] are kept.
    pub violations: Vec<String>,
}

/// How one node could take part in an election, for
/// [`SafetyChecker::check_commit_protected`].
#[derive(Clone, Debug)]
pub struct ElectionView {
    /// The node's id.
    pub id: NodeId,
    /// Its current disk.
    pub disk: DiskId,
    /// It considers itself a voter (running), or did when it last ran: it
    /// may campaign. (Any node may grant a vote; the candidate counts it by
    /// its configuration.)
    pub votes: bool,
    /// The configuration it would count votes with.
    pub membership: Membership,
    /// The end of the log it would campaign with.
    pub last: (Term, LogIndex),
    /// It holds the committed entry in question (or a snapshot covering it).
    pub holds: bool,
    /// The end of its durable log: what it votes with after a crash.
    pub durable_last: (Term, LogIndex),
}

/// FNV-1a over the payload: cheap, deterministic, good enough to tell
/// commands apart (values in the workload are unique).
pub fn payload_hash(payload: &Payload) -> u64 {
    let (tag, bytes): (u8, &[u8]) = match payload {
        Payload::Noop => (0, &[]),
        Payload::Command(bytes) => (1, bytes),
        Payload::Read(bytes) => (2, bytes),
        Payload::Config(membership) => return fnv(4, format!("{membership:?}").as_bytes()),
    };
    fnv(tag, bytes)
}

fn fnv(tag: u8, bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ tag as u64;
    for byte in bytes {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl SafetyChecker {
    /// A checker for a cluster of `nodes` nodes (spares included), having
    /// seen nothing.
    pub fn new(nodes: usize) -> SafetyChecker {
        SafetyChecker {
            nodes: vec![NodeWatch::default(); nodes],
            request_tags: vec![BTreeMap::new(); nodes],
            ..SafetyChecker::default()
        }
    }

    /// Whether no violation was found so far.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn fail(&mut self, description: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(description);
        }
    }

    /// How many log entries are known to be committed (by any node).
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// The term of the committed entry at `index`, if it is known committed.
    pub fn committed_term(&self, index: LogIndex) -> Option<Term> {
        let position = usize::try_from(index.0.checked_sub(1)?).ok()?;
        self.committed.get(position).map(|(term, _)| *term)
    }

    /// The election rule must protect every committed entry: a node whose log
    /// lacks the entry at `index` must not be able to collect a quorum of
    /// votes — in the configuration it holds — by log comparison alone (terms
    /// and earlier votes aside, which a candidate can always outwait). Voters
    /// vote with their durable log (their most permissive state, after a
    /// crash), and only count on the disk their configuration records. This
    /// catches a commit that is unsafe before any node exploits it.
    pub fn check_commit_protected(&mut self, index: LogIndex, nodes: &[ElectionView]) {
        let Some(committed_term) = self.committed_term(index) else { return };
        for candidate in nodes {
            if candidate.holds || !candidate.votes || candidate.membership.voters.is_empty() {
                continue;
            }
            let granting: Vec<&ElectionView> = nodes
                .iter()
                .filter(|voter| {
                    voter.id != candidate.id
                        && candidate.membership.is_voter_on(voter.id, voter.disk)
                        && voter.durable_last <= candidate.last
                })
                .collect();
            let wins = candidate.membership.is_quorum(|node, disk| {
                (node == candidate.id && disk == candidate.disk)
                    || granting.iter().any(|voter| voter.id == node && voter.disk == disk)
            });
            if wins {
                let names: Vec<String> = granting.iter().map(|voter| voter.id.to_string()).collect();
                let (last_term, last_index) = candidate.last;
                self.fail(format!(
                    "committed entry {index} (term {committed_term}) is unprotected: {} lacks it yet its log \
                     (last {last_index}/{last_term}) would win votes from {} under {}",
                    candidate.id,
                    names.join(", "),
                    candidate.membership
                ));
                return;
            }
        }
    }

    /// The node lost its disk: it comes back as a new voter identity, with no
    /// promises to keep.
    pub fn on_wipe(&mut self, node: usize) {
        self.nodes[node] = NodeWatch::default();
    }

    /// The commit index the checker last saw on `node`.
    pub fn commit_seen(&self, node: usize) -> LogIndex {
        self.nodes[node].commit_seen
    }

    /// A node asked its disk for a write no correct node asks for (see
    /// `chorus_core::raft::ApplyError`): a durability violation.
    pub fn on_impossible_write(&mut self, description: String) {
        self.fail(format!("durability: {description}"));
    }

    /// A message could not cross the simulated network: the wire codec
    /// refused to encode what a node sent, or to decode what it encoded.
    pub fn on_wire_error(&mut self, description: String) {
        self.fail(format!("wire: {description}"));
    }

    /// A follower handled a message only the leader of its term sends and
    /// does not name that sender its leader: its clients get no leader hint,
    /// its forwarded proposals and reads have nowhere to go.
    pub fn on_leader_unknown(&mut self, node: usize, from: NodeId, term: Term, believed: Option<NodeId>) {
        self.fail(format!(
            "leader knowledge: n{} took a leader's message from {from} in {term} but names {} its leader",
            node + 1,
            believed.map_or("no node".to_string(), |id| id.to_string())
        ));
    }

    /// A follower answered a client `NoLeader` at once, while it followed
    /// `leader`: the client should have been sent there.
    pub fn on_no_leader_answer(&mut self, node: usize, leader: NodeId) {
        self.fail(format!("leader knowledge: n{} answered a client NoLeader while it followed {leader}", node + 1));
    }

    /// `RaftNode::restart` did not refuse a disk that holds nothing (it
    /// answered `got`, `None` for a node).
    pub fn on_restart_refusal(&mut self, node: usize, got: Option<chorus_core::raft::RestartError>) {
        let got = got.map_or("a node".to_string(), |error| format!("{error:?}"));
        self.fail(format!(
            "restart: n{} has an empty disk, and restarting from it gave {got}, not EmptyDisk",
            node + 1
        ));
    }

    /// A leader or a configuration answered the operator wrongly: took a
    /// change it must refuse, or refused a transfer it must take.
    pub fn on_operator_answer(&mut self, description: &str) {
        self.fail(format!("operator: {description}"));
    }

    /// A node reported a peer breaking the protocol.
    pub fn on_node_violation(&mut self, node: usize, description: &str) {
        self.fail(format!("n{} reported a protocol violation: {description}", node + 1));
    }

    /// A leader found a follower that restarted without entries it had
    /// acknowledged. Simulated disks never lose synced writes, so a node
    /// acknowledged what was not durable.
    pub fn on_lost_entries(&mut self, node: usize, follower: NodeId, acknowledged: LogIndex, holds: LogIndex) {
        self.fail(format!(
            "durability: leader n{} saw {follower} restart without entries it had acknowledged (up to \
             {acknowledged}; it holds at most {holds})",
            node + 1
        ));
    }

    /// Disk identity: a node speaks only for the disk it runs on.
    pub fn on_send_disk(&mut self, node: usize, presented: DiskId, actual: DiskId) {
        if presented != actual {
            self.fail(format!(
                "disk identity: n{} sent a message as {presented} while running on {actual} (a node that lost its \
                 disk claims its old identity)",
                node + 1
            ));
        }
    }

    /// Node `node`, in its simulator life `life`, sent `message`.
    pub fn on_send_request_tag(&mut self, node: usize, life: u64, message: &Message) {
        let tag = match &message.body {
            MessageBody::Forward { id, .. } | MessageBody::ReadIndex { id, .. } => *id,
            _ => return,
        };
        let first = *self.request_tags[node].entry(tag).or_insert(life);
        if first != life {
            self.fail(format!(
                "request ids: n{} reused request tag {tag} in a later life (first sent in life {first}, again in life \
                 {life}): an answer meant for the earlier life would be taken for the new request",
                node + 1
            ));
        }
    }

    /// `node` sent `message`: records the highest term it sent (pre-votes
    /// aside) and the votes it granted; a node granting votes to two
    /// candidates in one term is a violation.
    pub fn on_send(&mut self, node: usize, message: &Message) {
        let watch = &mut self.nodes[node];
        // Pre-vote traffic carries a prospective term the sender has not
        // adopted; every other message carries the sender's own term.
        let prospective = matches!(
            message.body,
            MessageBody::RequestVote { pre_vote: true, .. } | MessageBody::RequestVoteResponse { pre_vote: true, .. }
        );
        if !prospective {
            watch.max_term_sent = watch.max_term_sent.max(message.term);
        }
        if let MessageBody::RequestVoteResponse { pre_vote: false, granted: true } = message.body {
            self.granted.entry((message.term, message.to)).or_default().insert((message.from, message.disk));
            match watch.votes.get(&message.term) {
                Some(earlier) if *earlier != message.to => {
                    let earlier = *earlier;
                    self.fail(format!(
                        "vote safety: n{} voted for {} and for {} in term {}",
                        node + 1,
                        earlier,
                        message.to,
                        message.term
                    ));
                }
                _ => {
                    watch.votes.insert(message.term, message.to);
                }
            }
        }
    }

    /// Entries the node is writing, with the term of the entry before the
    /// first of them in the node's log.
    pub fn on_persist(&mut self, node: usize, write: &PersistRequest, prev_term: Term) {
        let mut prev_term = prev_term;
        for entry in &write.entries {
            self.check_identity(node, entry, prev_term);
            prev_term = entry.term;
        }
    }

    fn check_identity(&mut self, node: usize, entry: &Entry, prev_term: Term) {
        let identity = EntryIdentity { payload: payload_hash(&entry.payload), prev_term };
        match self.identities.get(&(entry.index, entry.term)) {
            None => {
                self.identities.insert((entry.index, entry.term), identity);
            }
            Some(known) if *known == identity => {}
            Some(known) => {
                let problem = if known.prev_term != identity.prev_term {
                    format!("follows an entry of term {} where another node has term {}", prev_term, known.prev_term)
                } else {
                    "has a different command than another node's".to_string()
                };
                let description = format!(
                    "log matching: n{} stores entry {} of term {} that {problem}",
                    node + 1,
                    entry.index,
                    entry.term
                );
                self.fail(description);
            }
        }
    }

    /// After each input the node handled: commit and apply progress.
    pub fn after_step<S: StateMachine>(&mut self, node: usize, raft: &RaftNode<S>) {
        let commit = raft.commit_index();
        let seen = self.nodes[node].commit_seen;
        if commit < seen {
            self.fail(format!("n{} commit index went back from {} to {}", node + 1, seen, commit));
        } else if commit > seen {
            self.check_committed(node, raft, seen.next(), commit);
        }
        self.nodes[node].commit_seen = commit;
        self.nodes[node].durable_commit = self.nodes[node].durable_commit.max(raft.durable_hard_state().commit);

        let applied = raft.applied_index();
        let applied_seen = self.nodes[node].applied_seen;
        if applied < applied_seen {
            self.fail(format!("n{} applied index went back from {} to {}", node + 1, applied_seen, applied));
        }
        let snapshot = raft.snapshot().filter(|snapshot| Some(snapshot.meta.index) != self.nodes[node].snapshot_seen);
        if let Some(snapshot) = snapshot {
            self.nodes[node].snapshot_seen = Some(snapshot.meta.index);
            let hash = fnv(9, &snapshot.data);
            match self.snapshots.get(&snapshot.meta.index) {
                Some((other, known)) if *known != hash => {
                    let other = *other;
                    self.fail(format!(
                        "state machine safety: n{} and n{} hold different snapshots at index {}",
                        node + 1,
                        other + 1,
                        snapshot.meta.index
                    ));
                }
                Some(_) => {}
                None => {
                    self.snapshots.insert(snapshot.meta.index, (node, hash));
                }
            }
        }
        let snapshot_index = raft.snapshot().map_or(LogIndex::ZERO, |snapshot| snapshot.meta.index);
        for index in applied_seen.0 + 1..=applied.0 {
            if LogIndex(index) <= snapshot_index && raft.entry(LogIndex(index)).is_none() {
                continue; // installed by snapshot (checked as a whole above)
            }
            let Some(entry) = raft.entry(LogIndex(index)) else {
                self.fail(format!("n{} applied index {index} which is not in its log", node + 1));
                break;
            };
            let hash = payload_hash(&entry.payload);
            let position = index as usize - 1;
            if position < self.applied.len() {
                if self.applied[position] != hash {
                    self.fail(format!(
                        "state machine safety: n{} applied a different command at index {index} than another node",
                        node + 1
                    ));
                }
            } else {
                self.applied.push(hash);
            }
        }
        self.nodes[node].applied_seen = self.nodes[node].applied_seen.max(applied);
    }

    fn check_committed<S: StateMachine>(&mut self, node: usize, raft: &RaftNode<S>, from: LogIndex, to: LogIndex) {
        let snapshot = raft.snapshot().map(|snapshot| (snapshot.meta.index, snapshot.meta.term));
        for index in from.0..=to.0 {
            let Some(entry) = raft.entry(LogIndex(index)) else {
                match snapshot {
                    Some((snapshot_index, snapshot_term)) if LogIndex(index) <= snapshot_index => {
                        // Compacted: only the snapshot's own end can be checked.
                        if LogIndex(index) == snapshot_index
                            && self.committed_term(snapshot_index).is_some_and(|term| term != snapshot_term)
                        {
                            self.fail(format!(
                                "committed entry changed: n{} holds a snapshot ending at {index} in term {snapshot_term}, \
                                 but another term was committed there",
                                node + 1
                            ));
                            return;
                        }
                        if index as usize > self.committed.len() {
                            self.fail(format!(
                                "n{} committed index {index} through a snapshot before any node committed it",
                                node + 1
                            ));
                            return;
                        }
                        continue;
                    }
                    _ => {
                        self.fail(format!("n{} committed index {index} past the end of its log", node + 1));
                        return;
                    }
                }
            };
            let identity = (entry.term, payload_hash(&entry.payload));
            let position = index as usize - 1;
            if position < self.committed.len() {
                if self.committed[position] != identity {
                    self.fail(format!(
                        "committed entry changed: n{} has term {} at committed index {index}, but term {} was committed there",
                        node + 1,
                        entry.term,
                        self.committed[position].0
                    ));
                    return;
                }
            } else {
                debug_assert_eq!(position, self.committed.len());
                self.committed.push(identity);
                self.commit_terms.push(raft.term());
            }
        }
    }

    /// The node's role changed (checked after its actions are drained).
    pub fn on_role<S: StateMachine>(&mut self, node: usize, role: Role, term: Term, raft: &RaftNode<S>) {
        if role != Role::Leader {
            return;
        }
        let id = NodeId(node as u64 + 1);
        match self.leaders.get(&term) {
            Some(other) if *other != id => {
                let other = *other;
                self.fail(format!("election safety: n{} and {} are both leaders of term {}", node + 1, other, term));
            }
            _ => {
                self.leaders.insert(term, id);
            }
        }
        // Election quorum: the votes it was sent (its own included, on its
        // own disk) form a quorum of its configuration, per half and disk.
        let votes = self.granted.get(&(term, id));
        let membership = raft.membership();
        let won = membership.is_quorum(|voter, disk| {
            (voter == id && disk == raft.status().disk) || votes.is_some_and(|votes| votes.contains(&(voter, disk)))
        });
        if !won {
            let granted: Vec<String> =
                votes.into_iter().flatten().map(|(voter, disk)| voter_name(*voter, *disk)).collect();
            self.fail(format!(
                "election quorum: n{} became leader of {term} without a quorum of {membership}: votes granted by [{}]",
                node + 1,
                granted.join(",")
            ));
            return;
        }
        // Leader completeness: every entry committed in an earlier term is in
        // the new leader's log. (A node may win an election for an old term
        // late — say, it was paused holding the votes — so entries committed
        // in later terms are not required.)
        for (position, (committed_term, hash)) in self.committed.iter().enumerate() {
            if self.commit_terms[position] >= term {
                continue;
            }
            let index = LogIndex(position as u64 + 1);
            let covered = raft.snapshot().is_some_and(|snapshot| snapshot.meta.index >= index);
            let holds = covered
                || raft
                    .entry(index)
                    .is_some_and(|entry| entry.term == *committed_term && payload_hash(&entry.payload) == *hash);
            if !holds {
                let description = format!(
                    "leader completeness: n{} became leader of term {} without committed entry {} (term {})",
                    node + 1,
                    term,
                    index,
                    committed_term
                );
                self.fail(description);
                return;
            }
        }
    }

    /// The node restarted from its disk.
    pub fn on_restart<S: StateMachine>(&mut self, node: usize, raft: &RaftNode<S>) {
        let watch = self.nodes[node].clone();
        if raft.term() < watch.max_term_sent {
            self.fail(format!(
                "n{} restarted in term {} after sending messages in term {} (term not durable)",
                node + 1,
                raft.term(),
                watch.max_term_sent
            ));
        }
        if raft.commit_index() < watch.durable_commit {
            self.fail(format!(
                "n{} restarted with commit index {} below its durable {}",
                node + 1,
                raft.commit_index(),
                watch.durable_commit
            ));
        }
        // The restarted log must still agree with everything committed that it holds.
        let restored_commit = raft.commit_index();
        self.nodes[node].commit_seen = LogIndex::ZERO;
        self.check_committed(node, raft, raft.status().first_index, restored_commit);
        self.nodes[node].commit_seen = restored_commit;
        self.nodes[node].applied_seen = LogIndex::ZERO;
        self.after_step(node, raft);
    }
}
