use super::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn address(text: &str) -> SocketAddr {
    text.parse().expect("a test address")
}

fn target(text: &str) -> DnsTarget {
    DnsTarget::parse(text).expect("a valid test target")
}

#[test]
fn dns_targets_parse_name_and_port() {
    let parsed = target("dns:chorus-headless.default.svc.cluster.local:7001");
    assert_eq!(parsed.name(), "chorus-headless.default.svc.cluster.local");
    assert_eq!(parsed.port(), 7001);
    assert_eq!(parsed.to_string(), "dns:chorus-headless.default.svc.cluster.local:7001");
    assert_eq!(target("dns:localhost:65535").port(), 65535);
    assert_eq!(target("dns:absolute.name.:1").name(), "absolute.name.");
    assert_eq!(target("dns:_chorus._udp.example:1").name(), "_chorus._udp.example");
    assert_eq!("dns:a:2".parse::<DnsTarget>(), Ok(target("dns:a:2")));
}

#[test]
fn malformed_dns_targets_are_refused_naming_the_problem() {
    let long_label = format!("dns:{}:80", "a".repeat(64));
    let long_name = format!("dns:{}:80", ["abcdefghi"; 26].join("."));
    let cases: Vec<(&str, &str)> = vec![
        ("dns:", "the port is missing"),
        ("dns:name", "the port is missing"),
        ("dns:name:", "the port \"\" is not a number"),
        ("dns:name:notaport", "the port \"notaport\" is not a number"),
        ("dns::80", "the name is empty"),
        ("dns:name:0", "the port \"0\" is not a number from 1 to 65535"),
        ("dns:name:65536", "the port \"65536\""),
        ("dns:name:+80", "the port \"+80\""),
        ("dns:name: 80", "the port \" 80\""),
        ("dns:name:-1", "the port \"-1\""),
        ("dns:a..b:80", "\"\" is not a DNS label: it is empty"),
        ("dns:.:80", "\"\" is not a DNS label: it is empty"),
        ("dns:-a:80", "it starts or ends with '-'"),
        ("dns:a-.b:80", "it starts or ends with '-'"),
        ("dns:a b:80", "\"a b\" is not a DNS label: only letters"),
        ("dns:a:b:80", "\"a:b\" is not a DNS label"),
        ("dns:[::1]:80", "\"[::1]\" is not a DNS label"),
        (&long_label, "longer than 63 bytes"),
        (&long_name, "the name is 259 bytes long"),
        ("10.0.0.1:80", "expected dns:NAME:PORT"),
        ("DNS:name:80", "expected dns:NAME:PORT"),
        ("", "expected dns:NAME:PORT"),
    ];
    for (text, problem) in cases {
        match DnsTarget::parse(text) {
            Ok(parsed) => panic!("{text:?} was accepted as {parsed:?}"),
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(problem), "{text:?}: {message:?} does not say {problem:?}");
                assert!(message.contains(&format!("{text:?}")), "{text:?}: {message:?} does not quote the value");
            }
        }
    }
}

#[test]
fn a_static_list_is_sorted_deduplicated_and_bounded() {
    let list = StaticDiscovery::new([address("10.0.0.2:1"), address("10.0.0.1:1"), address("10.0.0.2:1")]);
    assert_eq!(list.addresses(), vec![address("10.0.0.1:1"), address("10.0.0.2:1")]);

    let many = (0..MAX_DISCOVERED_ADDRESSES as u16 + 10).rev().map(|port| address(&format!("10.0.0.1:{}", port + 1)));
    let kept = StaticDiscovery::new(many).addresses();
    assert_eq!(kept.len(), MAX_DISCOVERED_ADDRESSES);
    assert_eq!(kept.first(), Some(&address("10.0.0.1:1")), "the lowest are kept");
    assert!(kept.windows(2).all(|pair| pair[0] < pair[1]));
}

/// A resolver that gives scripted answers in turn (then repeats the last),
/// and counts the calls.
#[derive(Default)]
struct ScriptedResolver {
    answers: Mutex<VecDeque<std::io::Result<Vec<SocketAddr>>>>,
    calls: Arc<AtomicUsize>,
    /// Never answers: the resolution times out.
    hang: bool,
    /// If set, each answer waits for a permit: the test decides when each
    /// round ends, whatever the machine's speed.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl ScriptedResolver {
    fn new(answers: Vec<std::io::Result<Vec<SocketAddr>>>) -> ScriptedResolver {
        ScriptedResolver { answers: Mutex::new(answers.into()), ..ScriptedResolver::default() }
    }

    fn next(&self) -> std::io::Result<Vec<SocketAddr>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.answers.lock().expect("not poisoned");
        let answer = if answers.len() > 1 { answers.pop_front() } else { answers.front().map(clone_answer) };
        answer.unwrap_or_else(|| Err(std::io::Error::other("no answer scripted")))
    }
}

fn clone_answer(answer: &std::io::Result<Vec<SocketAddr>>) -> std::io::Result<Vec<SocketAddr>> {
    match answer {
        Ok(addresses) => Ok(addresses.clone()),
        Err(error) => Err(std::io::Error::new(error.kind(), error.to_string())),
    }
}

impl Resolve for ScriptedResolver {
    fn resolve(&self, _target: &DnsTarget) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send {
        let answer = self.next();
        let (hang, gate) = (self.hang, self.gate.clone());
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            if let Some(gate) = gate {
                gate.acquire().await.expect("the gate is never closed").forget();
            }
            answer
        }
    }
}

fn failure() -> std::io::Result<Vec<SocketAddr>> {
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such host (scripted)"))
}

#[tokio::test]
async fn refresh_follows_the_answers_and_keeps_the_last_good_set_on_failure() {
    let (a, b, c) = (address("10.0.0.1:7001"), address("10.0.0.2:7001"), address("[fd00::3]:7001"));
    let resolver = ScriptedResolver::new(vec![
        Ok(vec![b, a, b]),
        Ok(vec![c, a]),
        failure(),
        Ok(vec![]),
        Ok(vec![a, c]),
        Ok(vec![b]),
    ]);
    let mut discovery = DnsDiscovery::with_resolver(target("dns:chorus:7001"), resolver);
    assert!(discovery.addresses().is_empty(), "nothing before the first round");

    assert!(discovery.refresh().await.expect("round 1"), "the first answer is a change");
    assert_eq!(discovery.addresses(), vec![a, b], "sorted and deduplicated");
    assert!(discovery.refresh().await.expect("round 2"));
    assert_eq!(discovery.addresses(), vec![a, c]);

    let failed = discovery.refresh().await.expect_err("round 3 fails");
    assert!(matches!(failed, ResolveError::Lookup { .. }), "{failed:?}");
    assert!(failed.to_string().contains("dns:chorus:7001"), "{failed}");
    assert_eq!(discovery.addresses(), vec![a, c], "the last good set stays after a failure");
    let empty = discovery.refresh().await.expect_err("round 4 answers nothing");
    assert!(matches!(empty, ResolveError::NoAddress { .. }), "{empty:?}");
    assert_eq!(discovery.addresses(), vec![a, c], "the last good set stays after an empty answer");

    assert!(!discovery.refresh().await.expect("round 5"), "the same set again is no change");
    assert!(discovery.refresh().await.expect("round 6"));
    assert_eq!(discovery.addresses(), vec![b], "addresses that went away are dropped");
}

#[tokio::test]
async fn a_resolver_that_never_answers_times_out_and_keeps_the_set() {
    let a = address("10.0.0.1:7001");
    let mut discovery =
        DnsDiscovery::with_resolver(target("dns:chorus:7001"), ScriptedResolver::new(vec![Ok(vec![a])]));
    discovery.refresh().await.expect("first round");
    discovery.resolver.hang = true;
    discovery.resolve_timeout = Duration::from_millis(20);
    let error = discovery.refresh().await.expect_err("no answer");
    assert!(matches!(error, ResolveError::TimedOut { .. }), "{error:?}");
    assert_eq!(discovery.addresses(), vec![a]);
}

/// Waits for the next change of `watch`, at most a few seconds.
async fn next_set(watch: &mut DiscoveryWatch) -> Vec<SocketAddr> {
    let changed = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
    assert_eq!(changed, Ok(true), "the set changed within 5 s");
    watch.addresses()
}

#[tokio::test]
async fn the_refreshing_task_follows_changes_and_stops_when_dropped() {
    let (a, b) = (address("10.0.0.1:7001"), address("10.0.0.2:7001"));
    let mut resolver =
        ScriptedResolver::new(vec![Ok(vec![a]), failure(), Ok(vec![]), Ok(vec![a]), Ok(vec![a, b]), Ok(vec![b])]);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    resolver.gate = Some(Arc::clone(&gate));
    let calls = Arc::clone(&resolver.calls);
    let discovery = DnsDiscovery::with_resolver(target("dns:chorus:7001"), resolver);
    let mut watch = discovery.spawn(Duration::from_millis(5));
    assert!(watch.addresses().is_empty());

    gate.add_permits(1);
    assert_eq!(next_set(&mut watch).await, vec![a]);
    gate.add_permits(4);
    // Rounds 2 and 3 fail and round 4 finds the same set: the next change
    // is round 5's. Forgetting the set on a failure would show [a] again.
    assert_eq!(next_set(&mut watch).await, vec![a, b]);
    assert!(calls.load(Ordering::SeqCst) >= 5, "the failed rounds ran in between");
    gate.add_permits(1);
    assert_eq!(next_set(&mut watch).await, vec![b]);

    drop(watch);
    let after_drop = calls.load(Ordering::SeqCst);
    gate.add_permits(100);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), after_drop, "no rounds once the watch is dropped");
}

#[tokio::test]
async fn localhost_resolves_to_loopback_addresses_with_the_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    let mut watch = DnsDiscovery::new(target(&format!("dns:localhost:{port}"))).spawn(Duration::from_millis(20));
    let found = next_set(&mut watch).await;

    assert!(!found.is_empty());
    assert!(found.iter().all(|found| found.ip().is_loopback() && found.port() == port), "{found:?}");
    assert!(found.windows(2).all(|pair| pair[0] < pair[1]), "sorted, no duplicates: {found:?}");
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    assert!(found.contains(&v4) || found.contains(&v6), "{found:?}");
    if found.contains(&v4) {
        // The address found reaches the listener.
        let (connected, accepted) = tokio::join!(tokio::net::TcpStream::connect(v4), listener.accept());
        assert!(connected.is_ok() && accepted.is_ok());
    }
}
