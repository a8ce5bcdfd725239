//! SWIM membership and failure detection with the Lifeguard extensions, as a
//! sans-IO state machine.
//!
//! Each [`SwimNode`] probes one member per protocol period (round-robin over a
//! shuffled list), falls back to indirect probes through `k` helpers when the
//! direct ping goes unanswered, suspects members that stay silent, and
//! declares them failed when the suspicion times out unless they refute by
//! raising their [`Incarnation`]. Membership news rides piggybacked on every
//! message within a hard byte budget, and goes out in gossip rounds to a few
//! random members while it waits; joins, periodic anti-entropy and
//! reconnection to failed members use full-state push-pull exchanges.
//!
//! Lifeguard ([`Config::lifeguard`]) adds three things: a local health
//! multiplier that slows a node down when it notices it is the slow one
//! (fed by nacks from helpers), suspicion timeouts that start long and
//! shrink as independent confirmations arrive, and the buddy system (a ping
//! to a suspect carries the suspicion, so the suspect refutes at once).
//!
//! Files follow concepts: [`node`] (the state machine, its inputs, outputs and
//! errors), [`member`] (identity, state and incarnation precedence),
//! [`message`] (what nodes say, and what a node rejects), [`wire`] (encoding with a size limit),
//! [`probe`] (probe order and probes in flight), [`bug`] (deliberate bugs the
//! simulator must catch), [`suspicion`] (Lifeguard's
//! suspicion timer), [`health`] (Lifeguard's local health multiplier),
//! [`dissemination`] (the piggyback queue), [`config`] (every knob and limit).
//!
//! # Driving a node
//!
//! The driver owns the transport and the clock. It hands the node received
//! datagrams and the passing of time, and performs what the node asks:
//!
//! ```
//! use chorus_core::swim::{Action, Address, Config, SwimNode};
//! use chorus_core::types::{NodeId, Time};
//!
//! let mut config = Config::new(NodeId(2), Address::new(b"10.0.0.2:7946".to_vec()));
//! config.seeds = vec![Address::new(b"10.0.0.1:7946".to_vec())];
//! let mut now = Time::ZERO;
//! let mut node = SwimNode::new(config, now).unwrap();
//! let mut datagrams_out = Vec::new();
//! for _ in 0..5 {
//!     // Sleep until the deadline or until a datagram arrives; here, no
//!     // datagram ever does.
//!     now = node.poll_timeout();
//!     node.handle_timeout(now);
//!     // A received datagram would go in with:
//!     //     if let Err(error) = node.handle_datagram(now, &bytes) { log it }
//!     while let Some(action) = node.poll_action() {
//!         match action {
//!             Action::Send { to, message } => {
//!                 let bytes = chorus_core::swim::wire::encode(&message, node.config().max_message_bytes)
//!                     .expect("the node builds messages within its budget");
//!                 datagrams_out.push((to, bytes));
//!             }
//!             Action::Event(event) => { let _ = event; /* membership changes for the layers above */ }
//!         }
//!     }
//! }
//! // Alone, the node keeps asking its seed to let it join.
//! assert!(datagrams_out.iter().all(|(to, _)| to.as_bytes() == b"10.0.0.1:7946"));
//! ```
//!
//! # Architecture invariants
//!
//! - No I/O, no clock, no threads, no global RNG: time comes in as `now`, and
//!   randomness from a ChaCha8 stream seeded by [`Config::rng_seed`].
//! - Peer input never panics a node: bytes that do not decode, and messages
//!   that break a limit, are rejected whole as a [`MessageError`].
//! - Every message the node builds fits [`Config::max_message_bytes`],
//!   measured with the same encoder the driver uses.
//! - Every collection is bounded by a named limit in [`Config`].

pub mod bug;
pub mod config;
pub mod dissemination;
pub mod health;
pub mod member;
pub mod message;
pub mod node;
pub mod probe;
pub mod suspicion;
pub mod wire;

pub use bug::Bug;
pub use config::{Config, ConfigError};
pub use member::{
    Address, Incarnation, Member, MemberId, MemberRecord, MemberState, Metadata, SharedBytes, MAX_INCARNATION,
};
pub use message::{Message, MessageBody, MessageError, ProbeNumber, Update};
pub use node::{Action, Event, MetadataError, SwimNode};
pub use suspicion::{Suspicion, SuspicionTimeouts};
pub use wire::WireError;
