//! Mutual TLS between peers: only certificates signed by the cluster CA and
//! naming a node get in, a member cannot speak for another, and garbage on
//! the UDP port changes nothing. Each test also shows the legitimate path
//! working on the same receiver, so a receiver that accepts nothing would
//! fail it.

use chorus_core::raft::{DiskId, Message, MessageBody};
use chorus_core::types::{NodeId, Term};
use chorus_runtime::certs::{ClusterCa, Identity};
use chorus_runtime::transport::{Peer, Transport};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use tokio::sync::mpsc;

/// Bound on every wait; no other timing is asserted.
const WAIT: Duration = Duration::from_secs(10);
const RESEND_INTERVAL: Duration = Duration::from_millis(100);
/// How long a refused sender keeps trying before the test looks.
const ATTACK_DURATION: Duration = Duration::from_millis(1500);

fn message(from: u64, to: u64, term: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
        body: MessageBody::HeartbeatResponse { read_context: 0 },
    }
}

/// Node 2, listening, with a certificate from `ca`.
fn receiver(ca: &ClusterCa) -> (Transport, mpsc::Receiver<Message>, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    let (transport, inbox) =
        Transport::from_socket(NodeId(2), socket, &ca.issue_node(NodeId(2)).unwrap(), &[]).unwrap();
    (transport, inbox, address)
}

/// A node `id` that sends to node 2 at `address` with `identity`.
fn sender(id: u64, identity: &Identity, address: SocketAddr) -> Transport {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peers = [Peer { id: NodeId(2), address }];
    Transport::from_socket(NodeId(id), socket, identity, &peers).unwrap().0
}

/// Sends `message` through `transport` until `inbox` yields a message (returned).
async fn deliver(transport: &Transport, inbox: &mut mpsc::Receiver<Message>, message: &Message) -> Message {
    tokio::time::timeout(WAIT, async {
        loop {
            transport.send(message);
            if let Ok(Some(received)) = tokio::time::timeout(RESEND_INTERVAL, inbox.recv()).await {
                return received;
            }
        }
    })
    .await
    .expect("a message from a legitimate peer arrives")
}

/// Keeps sending `message` for [`ATTACK_DURATION`].
async fn keep_sending(transport: &Transport, message: &Message) {
    let until = tokio::time::Instant::now() + ATTACK_DURATION;
    while tokio::time::Instant::now() < until {
        transport.send(message);
        tokio::time::sleep(RESEND_INTERVAL).await;
    }
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(RESEND_INTERVAL).await;
        }
    })
    .await
    .expect("the condition holds in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_is_refused_and_a_cluster_certificate_is_let_in() {
    let ca = ClusterCa::generate().unwrap();
    let (node2, mut inbox, address) = receiver(&ca);

    // The attacker knows the CA certificate (it is public) and names itself
    // node 1, but signed its certificate itself.
    let forged = rcgen::generate_simple_self_signed(vec!["node-1.chorus".to_string()]).unwrap();
    let attacker_identity = Identity::from_der(
        ca.certificate_der().to_vec(),
        forged.cert.der().to_vec(),
        forged.signing_key.serialize_der(),
    );
    let attacker = sender(1, &attacker_identity, address);
    keep_sending(&attacker, &message(1, 2, 1_000_000)).await;
    assert!(inbox.try_recv().is_err(), "nothing from the self-signed sender reached the node");
    assert!(node2.counters().handshakes_failed >= 1, "{:?}", node2.counters());

    // The same receiver lets a node with a cluster certificate in.
    let node1 = sender(1, &ca.issue_node(NodeId(1)).unwrap(), address);
    let received = deliver(&node1, &mut inbox, &message(1, 2, 3)).await;
    assert_eq!((received.from, received.term), (NodeId(1), Term(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let (node2, mut inbox, address) = receiver(&ca);
    let other_ca = ClusterCa::generate().unwrap();
    let stranger = other_ca.issue_node(NodeId(1)).unwrap();
    // It trusts our CA, so only the receiver's check can stop it.
    let stranger = Identity::from_der(
        ca.certificate_der().to_vec(),
        stranger.certificate_der().to_vec(),
        stranger.private_key_der().to_vec(),
    );
    keep_sending(&sender(1, &stranger, address), &message(1, 2, 1_000_000)).await;
    assert!(inbox.try_recv().is_err());
    assert!(node2.counters().handshakes_failed >= 1, "{:?}", node2.counters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_speak_as_a_node() {
    let ca = ClusterCa::generate().unwrap();
    let (node2, mut inbox, address) = receiver(&ca);
    let client = sender(1, &ca.issue_client("ops").unwrap(), address);
    keep_sending(&client, &message(1, 2, 1_000_000)).await;
    assert!(inbox.try_recv().is_err());
    assert!(node2.counters().connections_without_node >= 1, "{:?}", node2.counters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sending_a_forged_from_is_dropped_and_counted() {
    let ca = ClusterCa::generate().unwrap();
    let (node2, mut inbox, address) = receiver(&ca);
    let node3 = sender(3, &ca.issue_node(NodeId(3)).unwrap(), address);
    // Node 3 pretends to be node 1, with a term that would depose anyone.
    node3.send(&message(1, 2, 1_000_000));
    wait_until(|| node2.counters().forged_from_dropped == 1).await;
    // Its honest messages still get through, and only those.
    let received = deliver(&node3, &mut inbox, &message(3, 2, 4)).await;
    assert_eq!((received.from, received.term), (NodeId(3), Term(4)));
    while let Ok(extra) = inbox.try_recv() {
        assert_eq!(extra.from, NodeId(3), "a forged message reached the inbox");
    }
    assert_eq!(node2.counters().forged_from_dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_change_nothing() {
    let ca = ClusterCa::generate().unwrap();
    let (node2, mut inbox, address) = receiver(&ca);
    let noise = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..500usize {
        // xorshift: varied bytes, lengths up to a full datagram; some start
        // like a QUIC long header to get past the first check.
        let length = 1 + (round * 37) % 1400;
        let mut datagram = Vec::with_capacity(length);
        for _ in 0..length {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            datagram.push(state as u8);
        }
        if round % 2 == 0 {
            datagram[0] = 0xc0;
        }
        noise.send_to(&datagram, address).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(inbox.try_recv().is_err(), "garbage never decodes into a message");
    let node1 = sender(1, &ca.issue_node(NodeId(1)).unwrap(), address);
    let received = deliver(&node1, &mut inbox, &message(1, 2, 5)).await;
    assert_eq!(received.term, Term(5));
    assert_eq!(node2.counters().forged_from_dropped, 0);
}
