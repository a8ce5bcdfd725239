//! Raft consensus as a sans-IO state machine.
//!
//! Files follow concepts: [`node`] (the state machine and its inputs and
//! outputs), [`log`] (entries and what of them is durable), [`progress`] (the
//! leader's view of each follower), [`message`] (what nodes say to each
//! other), [`config`] (every knob and limit), [`bug`] (deliberate bugs for the
//! simulator), [`read`] (linearizable reads without log writes), [`transfer`]
//! (leadership transfer).

pub mod bug;
pub mod config;
pub mod log;
pub mod message;
pub mod node;
pub mod progress;
pub mod read;
pub mod transfer;

pub use bug::Bug;
pub use config::{Config, ConfigError, ReadMode};
pub use message::{AppendResponse, ConflictHint, Entry, Message, MessageBody, Payload};
pub use node::{
    Action, ClientResult, DropReason, Event, HardState, PersistId, PersistRequest, RaftNode, RestartError, Role,
    MAX_ENTRIES_PER_MESSAGE,
};
pub use transfer::TransferError;
