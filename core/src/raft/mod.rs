//! Raft consensus as a sans-IO state machine.
//!
//! One file per concern, as in the SWIM core; everything public is
//! re-exported here. `node.rs` holds [`RaftNode`]: its state, its inputs and
//! outputs, and the drain order. The protocol's parts live beside it as
//! further `impl RaftNode` blocks or as types of their own:
//!
//! - `election.rs`: pre-votes, votes, role changes, who may campaign,
//!   check-quorum;
//! - `replication.rs`: appends, heartbeats, the commit rule, configuration
//!   changes (checked by the pure [`Membership::apply_change`]);
//! - `snapshot.rs`: taking, compacting, sending in chunks, installing;
//! - `read.rs`: linearizable, lease, session and stale reads;
//! - `forward.rs`: proposals a follower forwards to the leader;
//! - `transfer.rs`: leadership transfer;
//! - `quiesce.rs`: idle groups that stop ticking (opt-in);
//! - `persist.rs`: the durability barrier, [`PersistRequest`],
//!   [`DurableState`] and its one reference applier
//!   ([`DurableState::apply`]);
//! - `output.rs`: what a node tells its driver ([`Action`], [`Event`],
//!   [`ClientResult`], [`Status`]);
//! - `log.rs` (entries held and what of them is durable), `progress.rs` (the
//!   leader's view of each follower), `message.rs` (what nodes say, and
//!   [`Message::validate`]), `membership.rs` (configurations, joint
//!   consensus, disks), `config.rs` (every knob and limit), `bug.rs`
//!   (deliberate bugs, compiled only with the `bug-injection` feature).

mod bug;
mod config;
mod election;
mod forward;
mod log;
mod membership;
mod message;
mod node;
mod output;
mod persist;
mod progress;
mod quiesce;
mod read;
mod replication;
mod snapshot;
mod transfer;

pub use bug::Bug;
pub use config::SnapshotPolicy;
pub use config::{Config, ConfigError, ReadMode, MAX_PAYLOAD_BYTES};
pub use membership::{
    voter_name, ChangeError, DiskId, Membership, MembershipChange, MembershipError, VoteTally, MAX_MEMBERS,
};
pub use message::{
    AppendResponse, ConflictHint, Entry, ForwardOutcome, Message, MessageBody, MessageError, Payload, RequestTag,
    Snapshot, SnapshotMeta, MAX_ENTRIES_PER_MESSAGE,
};
pub use node::{RaftNode, Role, FORWARD_TIMEOUT_ELECTIONS};
pub use output::{Action, ClientResult, DropReason, Event, Status};
pub use persist::{ApplyError, DurableState, HardState, PersistId, PersistRequest, RestartError};
pub use read::ReadConsistency;
pub use transfer::TransferError;
