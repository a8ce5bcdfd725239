//! Peer input never panics a node: regressions found by the fuzzers
//! (`fuzz/regressions/raft_node_messages/`), replayed in plain Rust so that
//! `cargo test` keeps them fixed.

use chorus_core::kv::KvStore;
use chorus_core::raft::{Action, Config, Event, Message, MessageBody, RaftNode};
use chorus_core::types::{LogIndex, NodeId, Term, Time, MAX_TERM};

fn node() -> RaftNode<KvStore> {
    let config = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
    RaftNode::new(config, KvStore::default(), Time::ZERO).unwrap()
}

fn drain(node: &mut RaftNode<KvStore>) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

fn violations(actions: &[Action]) -> usize {
    actions.iter().filter(|action| matches!(action, Action::Event(Event::Violation { .. }))).count()
}

#[test]
fn an_append_with_a_maximal_previous_index_is_rejected_as_a_violation() {
    let mut node = node();
    node.handle_message(
        Time::ZERO,
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(0),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(u64::MAX),
                prev_log_term: Term(0),
                entries: vec![],
                leader_commit: LogIndex(0),
            },
        },
    );
    assert_eq!(violations(&drain(&mut node)), 1);
    assert_eq!(node.last_index(), LogIndex(0));
}

#[test]
fn a_maximal_term_from_a_peer_is_ignored_and_elections_still_work() {
    let mut node = node();
    node.handle_message(
        Time::ZERO,
        Message { from: NodeId(2), to: NodeId(1), term: Term(u64::MAX), body: MessageBody::HeartbeatResponse },
    );
    assert_eq!(violations(&drain(&mut node)), 1);
    assert_eq!(node.term(), Term(0), "the node did not adopt the absurd term");
    let deadline = node.poll_timeout();
    node.handle_timeout(deadline);
    drain(&mut node);
}

#[test]
fn the_largest_accepted_term_can_still_be_campaigned_past() {
    let mut node = node();
    node.handle_message(
        Time::ZERO,
        Message { from: NodeId(2), to: NodeId(1), term: MAX_TERM, body: MessageBody::HeartbeatResponse },
    );
    drain(&mut node);
    assert_eq!(node.term(), MAX_TERM);
    for _ in 0..3 {
        let deadline = node.poll_timeout();
        node.handle_timeout(deadline);
        drain(&mut node);
    }
}
