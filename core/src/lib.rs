//! # chorus-core
//!
//! The protocols of Chorus as sans-IO state machines. Nothing in this crate
//! performs I/O, reads a clock, spawns a thread or touches a global RNG: time
//! and seeded randomness are inputs, and every effect is an output the driver
//! performs.
//!
//! ## Driving a Raft node
//!
//! ```
//! use chorus_core::raft::{Action, Config, RaftNode};
//! use chorus_core::kv::KvStore;
//! use chorus_core::types::{NodeId, Time};
//!
//! let config = Config::new(NodeId(1), vec![NodeId(1)]);
//! let mut now = Time::ZERO;
//! let mut node = RaftNode::new(config, KvStore::default(), now).unwrap();
//! for _ in 0..10 {
//!     now = node.poll_timeout();          // sleep until the node's deadline
//!     node.handle_timeout(now);
//!     while let Some(action) = node.poll_action() {
//!         match action {
//!             Action::Send(message) => { /* hand to the transport */ let _ = message; }
//!             Action::Persist(write) => {
//!                 // make `write` durable (append, fsync), then acknowledge it
//!                 node.handle_persisted(now, write.id);
//!             }
//!             Action::Respond { request, result } => { let _ = (request, result); }
//!             Action::Event(event) => { let _ = event; }
//!         }
//!     }
//! }
//! assert!(node.role() == chorus_core::raft::Role::Leader);
//! ```

pub mod cluster;
pub mod kv;
pub mod partition;
pub mod raft;
pub mod state_machine;
pub mod swim;
pub mod types;
pub mod wire;

pub use state_machine::{RestoreError, StateMachine};
pub use types::{LogIndex, NodeId, RequestId, Term, Time};
