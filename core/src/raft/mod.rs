//! Raft consensus as a sans-IO state machine.
//!
//! Files follow concepts: [`node`] (the state machine and its inputs and
//! outputs), [`log`] (entries and what of them is durable), [`progress`] (the
//! leader's view of each follower), [`message`] (what nodes say to each
//! other), [`config`] (every knob and limit), [`bug`] (deliberate bugs for the
//! simulator), [`read`] (linearizable reads without log writes), [`transfer`]
//! (leadership transfer), [`membership`] (configurations, joint consensus,
//! disks), [`persist`] (what is made durable, and what a restart reads back).

pub mod bug;
pub mod config;
mod election;
mod forward;
pub mod log;
pub mod membership;
pub mod message;
pub mod node;
pub mod persist;
pub mod progress;
pub mod read;
mod replication;
mod snapshot;
pub mod transfer;

pub use bug::Bug;
pub use config::SnapshotPolicy;
pub use config::{Config, ConfigError, ReadMode};
pub use membership::{ChangeError, DiskId, Membership, MembershipChange, MembershipError, MAX_MEMBERS};
pub use message::{
    AppendResponse, ConflictHint, Entry, ForwardOutcome, Message, MessageBody, MessageError, Payload, RequestTag,
    Snapshot, SnapshotMeta, MAX_ENTRIES_PER_MESSAGE,
};
pub use node::{Action, ClientResult, DropReason, Event, RaftNode, Role, FORWARD_TIMEOUT_ELECTIONS};
pub use persist::{ApplyError, DurableState, HardState, PersistId, PersistRequest, RestartError};
pub use read::ReadConsistency;
pub use transfer::TransferError;
