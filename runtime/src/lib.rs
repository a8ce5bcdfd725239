//! # chorus-runtime
//!
//! The driver that runs a [`chorus_core`] Raft node for real: tokio for
//! tasks and timers, QUIC (quinn) between nodes, an fsync'd log file on disk.
//! The core decides everything and performs nothing; this crate performs
//! everything and decides nothing.
//!
//! ## The driver loop
//!
//! ```text
//!             +-------------------- Driver task --------------------+
//!  peers ---> | inbox ----------> handle_message(now, msg)          |
//!  clients -> | requests -------> propose / read(now, id, bytes)    |
//!  timer ---> | sleep_until ----> handle_timeout(now)               |
//!             |                        |                            |
//!             |                 poll_action() until None            |
//!             |   Send ---------> Transport::send (never waits)     |
//!             |   Persist ------> Storage::append ... sync (fsync)  |
//!             |                   then handle_persisted(now, id)    |
//!             |   Respond ------> the client's oneshot              |
//!             |   Event --------> tracing                           |
//!             |                 arm timer at poll_timeout()         |
//!             +-----------------------------------------------------+
//! ```
//!
//! Starting a node in code:
//!
//! ```no_run
//! use chorus_core::raft::Config;
//! use chorus_core::types::NodeId;
//! use chorus_runtime::{driver::{Driver, Start}, storage::Storage, transport::{Identity, Transport}};
//!
//! # async fn start(peers: Vec<chorus_runtime::transport::Peer>) -> Result<(), Box<dyn std::error::Error>> {
//! let id = NodeId(1);
//! let (storage, recovered) = Storage::open("/var/lib/chorus/1".as_ref())?;
//! let identity = Identity::generate(id)?;
//! let (transport, inbox) = Transport::bind(id, "127.0.0.1:7001".parse()?, &identity, &peers)?;
//! let voters = std::iter::once(id).chain(peers.iter().map(|peer| peer.id)).collect();
//! let (driver, handle) = Driver::new(Start::Bootstrap, Config::new(id, voters), storage, recovered, transport, inbox)?;
//! tokio::spawn(driver.run());
//! // `handle.propose(..)` and `handle.read(..)` submit client requests.
//! # drop(handle);
//! # Ok(())
//! # }
//! ```
//!
//! ## Code map
//!
//! - [`storage`]: the append-only, checksummed log file; replay and
//!   torn-tail recovery on open.
//! - [`transport`]: the QUIC endpoint, node identities (self-signed
//!   certificates), one stream per Raft message.
//! - [`driver`]: the task owning the node; [`driver::DriverHandle`] is the
//!   in-process client API.
//! - `src/main.rs`: the `chorus-node` binary (command-line flags, identity
//!   files, wiring).
//!
//! ## Not yet here
//!
//! Snapshots and log compaction (the log file only grows), membership
//! changes, mutual TLS (received `from` fields are trusted), and a network
//! protocol for clients (clients are in-process, through
//! [`driver::DriverHandle`]).

#![warn(missing_docs)]

pub mod driver;
pub mod storage;
pub mod transport;
