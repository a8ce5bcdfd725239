//! Three real drivers on loopback QUIC with logs on disk: a leader is elected
//! and a write followed by a read goes through it.

use chorus_core::kv::{KvCommand, KvOp, KvQuery, KvResponse, KvStore};
use chorus_core::raft::{ClientResult, Config, ReadConsistency, Role};
use chorus_core::types::NodeId;
use chorus_runtime::certs::ClusterCa;
use chorus_runtime::driver::{Driver, DriverHandle, Start};
use chorus_runtime::storage::Storage;
use chorus_runtime::transport::{Identity, Peer, Transport};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

/// Everything must be done within this; no other timing is asserted.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "chorus-three-nodes-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Cluster {
    handles: Vec<DriverHandle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dirs: Vec<TempDir>,
}

async fn start_cluster() -> Cluster {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let ca = ClusterCa::generate().unwrap();
    let identities: Vec<Identity> = ids.iter().map(|id| ca.issue_node(*id).unwrap()).collect();
    let sockets: Vec<UdpSocket> = ids.iter().map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let addresses: Vec<_> = sockets.iter().map(|socket| socket.local_addr().unwrap()).collect();

    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    let mut dirs = Vec::new();
    for (position, socket) in sockets.into_iter().enumerate() {
        let id = ids[position];
        let peers: Vec<Peer> = (0..ids.len())
            .filter(|other| *other != position)
            .map(|other| Peer { id: ids[other], address: addresses[other] })
            .collect();
        let dir = TempDir::new(&format!("n{}", id.0));
        let (storage, recovered) = Storage::open(&dir.0).unwrap();
        let (transport, inbox) = Transport::from_socket(id, socket, &identities[position], &peers).unwrap();
        let config = Config::new(id, ids.to_vec());
        let (driver, handle) =
            Driver::new(Start::Bootstrap, config, KvStore::default(), storage, recovered, transport, inbox).unwrap();
        tasks.push(tokio::spawn(async move {
            driver.run().await.expect("driver stops cleanly");
        }));
        handles.push(handle);
        dirs.push(dir);
    }
    Cluster { handles, tasks, _dirs: dirs }
}

/// Polls until some node is leader and every node agrees who it is.
async fn wait_for_leader(handles: &[DriverHandle]) -> usize {
    loop {
        let statuses: Vec<_> = handles.iter().map(|handle| handle.status().raft).collect();
        if let Some(leader) = statuses.iter().position(|status| status.role == Role::Leader) {
            let leader_id = statuses[leader].id;
            if statuses.iter().all(|status| status.leader == Some(leader_id)) {
                return leader;
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Sends a request to the current leader until it is answered with `Ok`
/// (leadership may move while the cluster settles).
async fn until_ok<F, Fut>(handles: &[DriverHandle], request: F) -> KvResponse
where
    F: Fn(DriverHandle) -> Fut,
    Fut: std::future::Future<Output = chorus_runtime::driver::Answer>,
{
    loop {
        let leader = wait_for_leader(handles).await;
        match request(handles[leader].clone()).await.result {
            ClientResult::Ok(bytes) => return KvResponse::decode(&bytes).unwrap(),
            other => {
                eprintln!("retrying after {other:?}");
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_then_a_get_through_the_leader_sees_the_value() {
    let cluster = start_cluster().await;
    let handles = cluster.handles.clone();
    let scenario = async move {
        // A session makes the put safe to retry: a duplicate applies once.
        let put = KvCommand {
            session: Some(chorus_core::kv::SessionRef { client: 42, sequence: 1 }),
            op: KvOp::Put { key: b"colour".to_vec(), value: b"blue".to_vec() },
        };
        let answer = until_ok(&handles, |handle| {
            let put = put.clone();
            async move { handle.propose(put.encode()).await.unwrap() }
        })
        .await;
        assert_eq!(answer, KvResponse::Done);

        let get = KvQuery::Get { key: b"colour".to_vec() };
        let answer = until_ok(&handles, |handle| {
            let get = get.clone();
            async move { handle.read(get.encode(), ReadConsistency::Linearizable).await.unwrap() }
        })
        .await;
        assert_eq!(answer, KvResponse::Value(Some(b"blue".to_vec())));
    };
    tokio::time::timeout(OVERALL_TIMEOUT, scenario)
        .await
        .expect("the cluster elected a leader and served the put and get in time");

    // Dropping every handle stops the drivers cleanly.
    drop(cluster.handles);
    for task in cluster.tasks {
        tokio::time::timeout(OVERALL_TIMEOUT, task).await.expect("drivers stop once their handles are gone").unwrap();
    }
}

/// One node's start on `dir`, with a throwaway transport.
fn start_on(
    dir: &TempDir,
    start: Start,
) -> Result<(Driver<KvStore>, DriverHandle), chorus_runtime::driver::DriverError> {
    let id = NodeId(1);
    let identity = ClusterCa::generate().unwrap().issue_node(id).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (storage, recovered) = Storage::open(&dir.0).unwrap();
    let (transport, inbox) = Transport::from_socket(id, socket, &identity, &[]).unwrap();
    Driver::new(start, Config::new(id, vec![id]), KvStore::default(), storage, recovered, transport, inbox)
}

/// Deleting a node's data must not bring it back as a voter with an empty
/// log: a restart on an empty directory is refused, with what to do; and a
/// bootstrap is refused once the directory holds Raft state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_data_directory_only_bootstraps_and_bootstrap_happens_once() {
    let dir = TempDir::new("empty");
    let error = start_on(&dir, Start::Restart).err().expect("an empty directory does not restart");
    let text = error.to_string();
    assert!(text.contains("holds no Raft state") && text.contains("join"), "{text}");
    let (driver, handle) = start_on(&dir, Start::Bootstrap).expect("the first start bootstraps");
    let task = tokio::spawn(driver.run());
    // The bootstrap write reaches the disk before the node says anything.
    tokio::time::timeout(OVERALL_TIMEOUT, async {
        while handle.status().raft.term.0 == 0 {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
    .expect("the single node elects itself");
    drop(handle);
    task.await.unwrap().expect("the driver stops cleanly");
    let error = start_on(&dir, Start::Bootstrap).err().expect("a second bootstrap is refused");
    assert!(error.to_string().contains("already holds Raft state"), "{error}");
    start_on(&dir, Start::Restart).expect("it restarts from its state");
}
