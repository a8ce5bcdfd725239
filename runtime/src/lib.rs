//! # chorus-runtime
//!
//! The driver that runs a [`chorus_core`] Raft node for real: tokio for
//! tasks and timers, QUIC (quinn) between nodes, a segmented write-ahead log
//! and snapshot files on disk.
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
//! Starting a node in code, with your own [`StateMachine`](chorus_core::StateMachine)
//! (here the built-in key-value store):
//!
//! ```no_run
//! use chorus_core::kv::{KvCommand, KvOp, KvStore};
//! use chorus_core::raft::{Config, ReadConsistency};
//! use chorus_core::types::NodeId;
//! use chorus_runtime::certs::Identity;
//! use chorus_runtime::driver::{Driver, Start};
//! use chorus_runtime::storage::Storage;
//! use chorus_runtime::transport::{Peer, Transport};
//! use std::time::Duration;
//!
//! # async fn start(peers: Vec<Peer>) -> Result<(), Box<dyn std::error::Error>> {
//! let id = NodeId(1);
//! // Issued by `chorus certs init` and `chorus certs node --id 1`.
//! let identity = Identity::load_node("/etc/chorus/certs".as_ref(), id)?;
//! let (storage, recovered) = Storage::open("/var/lib/chorus/1".as_ref())?;
//! let (transport, inbox) = Transport::bind(id, "127.0.0.1:7001".parse()?, &identity, &peers)?;
//! let voters = std::iter::once(id).chain(peers.iter().map(|peer| peer.id)).collect();
//! let (driver, handle) =
//!     Driver::new(Start::Bootstrap, Config::new(id, voters), KvStore::default(), storage, recovered, transport, inbox)?;
//! tokio::spawn(driver.run());
//!
//! let leader = handle.wait_for_leader(Duration::from_secs(10)).await?;
//! let put = KvCommand { session: None, op: KvOp::Put { key: b"k".to_vec(), value: b"v".to_vec() } };
//! let answer = handle.propose(put.encode()).await?; // answer.result: the state machine's bytes
//! let after = answer.session_index; // read-your-writes token
//! let get = chorus_core::kv::KvQuery::Get { key: b"k".to_vec() }.encode();
//! let _ = handle.read(get, ReadConsistency::Session { after }).await?;
//! println!("leader {leader}, status {:?}", handle.status());
//! # Ok(())
//! # }
//! ```
//!
//! ## Code map
//!
//! - [`storage`]: the write-ahead log in checksummed segments, snapshot
//!   files written atomically, compaction behind snapshots; replay and
//!   torn-tail recovery on open.
//! - [`certs`]: the cluster CA, node and client certificates (rcgen).
//! - [`transport`]: the QUIC endpoint with mutual TLS; a peer's node id
//!   comes from its certificate; one stream per Raft message.
//! - [`driver`]: the task owning the node, generic over the state machine;
//!   [`driver::DriverHandle`] is the in-process client API (`propose`,
//!   `read`, `is_leader`, `leader_id`, `wait_for_leader`, `status`,
//!   `change_membership`, `add_peer`).
//! - [`http`]: the HTTP/JSON client API (axum) for a key-value node, over
//!   TLS on request: keys, status, members (join, list, remove), `/metrics`
//!   and `/v1/events`, with a request-rate limit.
//! - [`discovery`]: where a node finds others: a static list, or
//!   `dns:NAME:PORT` re-resolved periodically (a Kubernetes headless
//!   service); `chorus node --join` uses it.
//! - [`events`]: what happens to a node, as `DriverHandle::subscribe` and
//!   `/v1/events` stream it. [`metrics`]: counters, histograms and the
//!   Prometheus text format.
//! - `src/bin/chorus/`: the `chorus` binary (`certs`, `node`, and the
//!   client commands).
//!
//! ## Not yet here
//!
//! SWIM seeds from [`discovery`], an embedded engine for large state
//! machines, and the benchmark against etcd (see issue 14 and
//! `docs/runtime.md`).

#![warn(missing_docs)]

pub mod certs;
pub mod discovery;
pub mod driver;
pub mod events;
pub mod http;
pub mod metrics;
pub mod storage;
pub mod transport;
