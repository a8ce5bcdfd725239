//! Peer input never panics a node: regressions found by the fuzzers
//! (`fuzz/regressions/raft_node_messages/`), replayed in plain Rust so that
//! `cargo test` keeps them fixed.

use chorus_core::kv::KvStore;
use chorus_core::raft::{Action, Config, DiskId, Event, Message, MessageBody, MessageError, RaftNode};
use chorus_core::types::{LogIndex, NodeId, Term, Time, MAX_PEER_TERM, MAX_TERM, MAX_TERM_JUMP};

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
fn an_append_with_a_maximal_previous_index_is_rejected_whole() {
    let mut node = node();
    let result = node.handle_message(
        Time::ZERO,
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(0),
            disk: DiskId::BOOTSTRAP,
            incarnation: 1,
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(u64::MAX),
                prev_log_term: Term(0),
                entries: vec![],
                leader_commit: LogIndex(0),
            },
        },
    );
    assert_eq!(result, Err(MessageError::IndexTooLarge { index: LogIndex(u64::MAX) }));
    assert_eq!(violations(&drain(&mut node)), 0, "rejected input is reported once, as the error");
    assert_eq!(node.last_index(), LogIndex(0));
}

#[test]
fn a_maximal_term_from_a_peer_is_rejected_and_elections_still_work() {
    let mut node = node();
    let result = node.handle_message(
        Time::ZERO,
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(u64::MAX),
            disk: DiskId::BOOTSTRAP,
            incarnation: 1,
            body: MessageBody::HeartbeatResponse { read_context: 0 },
        },
    );
    assert_eq!(result, Err(MessageError::TermTooLarge { term: Term(u64::MAX) }));
    assert_eq!(node.term(), Term(0), "the node did not adopt the absurd term");
    let deadline = node.poll_timeout();
    node.handle_timeout(deadline);
    drain(&mut node);
}

#[test]
fn a_term_at_the_limit_is_rejected_and_a_large_jump_too() {
    let heartbeat_answer = |term| Message {
        from: NodeId(2),
        to: NodeId(1),
        term,
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
        body: MessageBody::HeartbeatResponse { read_context: 0 },
    };
    for term in [MAX_TERM, MAX_PEER_TERM, Term(MAX_TERM_JUMP + 1)] {
        let mut node = node();
        let result = node.handle_message(Time::ZERO, heartbeat_answer(term));
        let expected = if term > MAX_PEER_TERM {
            MessageError::TermTooLarge { term }
        } else {
            MessageError::TermJump { term, ours: Term(0) }
        };
        assert_eq!(result, Err(expected), "term {term}");
        assert_eq!(node.term(), Term(0), "the node did not adopt term {term}");
    }
    // The largest jump is accepted, and the node can still campaign past it.
    let mut node = node();
    node.handle_message(Time::ZERO, heartbeat_answer(Term(MAX_TERM_JUMP))).unwrap();
    assert_eq!(violations(&drain(&mut node)), 0);
    assert_eq!(node.term(), Term(MAX_TERM_JUMP));
    for _ in 0..3 {
        let deadline = node.poll_timeout();
        node.handle_timeout(deadline);
        drain(&mut node);
    }
}

/// Node 1 of three, made leader of term 1 by hand-fed votes from node 2.
fn leader() -> RaftNode<KvStore> {
    let mut node = node();
    let deadline = node.poll_timeout();
    node.handle_timeout(deadline);
    let vote = |pre_vote| Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
        body: MessageBody::RequestVoteResponse { pre_vote, granted: true },
    };
    node.handle_message(deadline, vote(true)).unwrap();
    node.handle_message(deadline, vote(false)).unwrap();
    drain(&mut node);
    assert_eq!(node.role(), chorus_core::raft::Role::Leader);
    node
}

#[test]
fn a_pre_vote_request_claiming_a_leadership_transfer_is_rejected() {
    let mut node = node();
    let body = MessageBody::RequestVote {
        pre_vote: true,
        last_log_index: LogIndex(0),
        last_log_term: Term(0),
        transfer: true,
    };
    let result = node.handle_message(
        Time::ZERO,
        Message { from: NodeId(2), to: NodeId(1), term: Term(1), disk: DiskId::BOOTSTRAP, incarnation: 1, body },
    );
    assert_eq!(result, Err(MessageError::PreVoteTransfer));
    assert_eq!(node.term(), Term(0));
}

#[test]
fn a_heartbeat_response_to_a_round_never_sent_is_a_violation() {
    let mut node = leader();
    let body = MessageBody::HeartbeatResponse { read_context: u64::MAX };
    node.handle_message(
        node.poll_timeout(),
        Message { from: NodeId(2), to: NodeId(1), term: Term(1), disk: DiskId::BOOTSTRAP, incarnation: 1, body },
    )
    .unwrap();
    assert_eq!(violations(&drain(&mut node)), 1);
    assert_eq!(node.role(), chorus_core::raft::Role::Leader);
}

#[test]
fn timeout_now_sent_to_a_leader_is_a_violation() {
    let mut node = leader();
    let message = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
        body: MessageBody::TimeoutNow,
    };
    node.handle_message(node.poll_timeout(), message).unwrap();
    assert_eq!(violations(&drain(&mut node)), 1);
    assert_eq!(node.role(), chorus_core::raft::Role::Leader);
    assert_eq!(node.term(), Term(1));
}
