//! Where a node finds other nodes: a [`Discovery`] answers "which addresses
//! now?".
//!
//! - [`StaticDiscovery`]: a fixed list, given on the command line.
//! - [`DnsDiscovery`]: a DNS name and a port (`dns:NAME:PORT`), resolved
//!   again and again; a Kubernetes headless service answers with the
//!   addresses of its ready pods. [`DnsDiscovery::spawn`] re-resolves every
//!   interval ([`DEFAULT_DNS_INTERVAL`]) in a task of its own.
//!
//! Every answer is sorted, deduplicated and cut at
//! [`MAX_DISCOVERED_ADDRESSES`], so two nodes that see the same DNS answer
//! in a different order do the same thing. A failed resolution (an error,
//! no answer within [`RESOLVE_TIMEOUT`], or no address at all) changes
//! nothing: the last good set stays, and the failure is logged. A seed list
//! never empties because a DNS server hiccupped.
//!
//! Discovery finds addresses, not identities: who answers at an address is
//! what its certificate says (see [`crate::transport`]).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// Most addresses one discovery keeps (the lowest, once sorted); the rest
/// of a larger answer is dropped with a warning. The core's member limit.
pub const MAX_DISCOVERED_ADDRESSES: usize = crate::transport::MAX_PEERS;

/// How often [`DnsDiscovery::spawn`] resolves the name again, unless told
/// otherwise (`chorus node --discovery-interval-secs`).
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(30);

/// The shortest interval [`DnsDiscovery::spawn`] accepts; shorter ones are
/// raised to it (a zero interval would spin).
pub const MIN_DNS_INTERVAL: Duration = Duration::from_millis(10);

/// A resolution that has not answered within this long has failed.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest DNS name accepted, in bytes (RFC 1035, without the final dot).
pub const MAX_DNS_NAME_BYTES: usize = 253;

/// Longest label (the part between dots) of a DNS name, in bytes.
pub const MAX_DNS_LABEL_BYTES: usize = 63;

/// The prefix that marks a DNS source on the command line.
pub const DNS_PREFIX: &str = "dns:";

/// A source of peer addresses.
pub trait Discovery: Send + Sync {
    /// The addresses known now: sorted, without duplicates, at most
    /// [`MAX_DISCOVERED_ADDRESSES`]. Never waits.
    fn addresses(&self) -> Vec<SocketAddr>;
}

/// A fixed list of addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticDiscovery {
    addresses: Vec<SocketAddr>,
}

impl StaticDiscovery {
    /// The list, sorted and deduplicated; beyond
    /// [`MAX_DISCOVERED_ADDRESSES`] the highest are dropped (logged).
    pub fn new(addresses: impl IntoIterator<Item = SocketAddr>) -> StaticDiscovery {
        StaticDiscovery { addresses: normalize(addresses.into_iter().collect(), "the static list") }
    }
}

impl Discovery for StaticDiscovery {
    fn addresses(&self) -> Vec<SocketAddr> {
        self.addresses.clone()
    }
}

/// Sorts and deduplicates `addresses`, and keeps the first
/// [`MAX_DISCOVERED_ADDRESSES`] (warning about the rest, naming `source`).
fn normalize(mut addresses: Vec<SocketAddr>, source: &str) -> Vec<SocketAddr> {
    addresses.sort_unstable();
    addresses.dedup();
    if addresses.len() > MAX_DISCOVERED_ADDRESSES {
        tracing::warn!(
            source,
            found = addresses.len(),
            limit = MAX_DISCOVERED_ADDRESSES,
            "too many addresses; keeping the lowest"
        );
        addresses.truncate(MAX_DISCOVERED_ADDRESSES);
    }
    addresses
}

/// `dns:NAME:PORT`: a DNS name to resolve and the port to pair with every
/// address it resolves to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DnsTarget {
    name: String,
    port: u16,
}

/// Why a `dns:NAME:PORT` value was refused. Nothing is resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsTargetError {
    /// The value does not start with `dns:`.
    #[error("{text:?}: expected dns:NAME:PORT")]
    NotDns {
        /// The value.
        text: String,
    },
    /// Nothing after `dns:`, or no `:PORT`.
    #[error("{text:?}: expected dns:NAME:PORT, the port is missing")]
    MissingPort {
        /// The value.
        text: String,
    },
    /// `dns::PORT`.
    #[error("{text:?}: expected dns:NAME:PORT, the name is empty")]
    EmptyName {
        /// The value.
        text: String,
    },
    /// The name is longer than [`MAX_DNS_NAME_BYTES`].
    #[error("{text:?}: the name is {bytes} bytes long, more than DNS allows ({MAX_DNS_NAME_BYTES})")]
    NameTooLong {
        /// The value.
        text: String,
        /// The name's length.
        bytes: usize,
    },
    /// A label of the name is empty, too long, or holds a character other
    /// than a letter, a digit, `-` or `_`, or starts or ends with `-`.
    #[error("{text:?}: {label:?} is not a DNS label: {problem}")]
    BadLabel {
        /// The value.
        text: String,
        /// The offending label.
        label: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The port is not a decimal number from 1 to 65535.
    #[error("{text:?}: the port {port:?} is not a number from 1 to 65535")]
    BadPort {
        /// The value.
        text: String,
        /// The port as written.
        port: String,
    },
}

impl DnsTarget {
    /// Parses `dns:NAME:PORT` strictly: NAME a DNS name (letters, digits,
    /// `-` and `_` in dot-separated labels, an optional final dot), PORT
    /// from 1 to 65535 in decimal digits.
    pub fn parse(text: &str) -> Result<DnsTarget, DnsTargetError> {
        let owned = || text.to_string();
        let rest = text.strip_prefix(DNS_PREFIX).ok_or_else(|| DnsTargetError::NotDns { text: owned() })?;
        let (name, port) = rest.rsplit_once(':').ok_or_else(|| DnsTargetError::MissingPort { text: owned() })?;
        if name.is_empty() && port.is_empty() {
            return Err(DnsTargetError::MissingPort { text: owned() });
        }
        let bad_port = || DnsTargetError::BadPort { text: owned(), port: port.to_string() };
        if port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(bad_port());
        }
        let port: u16 = port.parse().map_err(|_| bad_port())?;
        if port == 0 {
            return Err(bad_port());
        }
        check_name(text, name)?;
        Ok(DnsTarget { name: name.to_string(), port })
    }

    /// The name to resolve.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port paired with every resolved address.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Display for DnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{DNS_PREFIX}{}:{}", self.name, self.port)
    }
}

impl std::str::FromStr for DnsTarget {
    type Err = DnsTargetError;

    fn from_str(text: &str) -> Result<DnsTarget, DnsTargetError> {
        DnsTarget::parse(text)
    }
}

/// Checks `name` (from the value `text`) is a DNS name.
fn check_name(text: &str, name: &str) -> Result<(), DnsTargetError> {
    if name.is_empty() {
        return Err(DnsTargetError::EmptyName { text: text.to_string() });
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_DNS_NAME_BYTES {
        return Err(DnsTargetError::NameTooLong { text: text.to_string(), bytes: name.len() });
    }
    for label in name.split('.') {
        let problem = if label.is_empty() {
            Some("it is empty")
        } else if label.len() > MAX_DNS_LABEL_BYTES {
            Some("it is longer than 63 bytes")
        } else if !label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') {
            Some("only letters, digits, '-' and '_' are allowed")
        } else if label.starts_with('-') || label.ends_with('-') {
            Some("it starts or ends with '-'")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(DnsTargetError::BadLabel { text: text.to_string(), label: label.to_string(), problem });
        }
    }
    Ok(())
}

/// Turns a [`DnsTarget`] into addresses. [`SystemResolver`] asks the
/// operating system; tests inject their own answers.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `target` resolves to now (with its port).
    fn resolve(&self, target: &DnsTarget) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send;
}

/// The operating system's resolver (`getaddrinfo`, through
/// [`tokio::net::lookup_host`]): `/etc/hosts`, then DNS.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, target: &DnsTarget) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send {
        let (name, port) = (target.name.clone(), target.port);
        async move { Ok(tokio::net::lookup_host((name.as_str(), port)).await?.collect()) }
    }
}

/// Why a resolution failed. Each leaves the last good addresses in place.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The resolver returned an error (no such name, no DNS server, ...).
    #[error("cannot resolve {target}: {source}")]
    Lookup {
        /// What was resolved.
        target: DnsTarget,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The resolver did not answer within [`RESOLVE_TIMEOUT`].
    #[error("no answer for {target} within {timeout:?}")]
    TimedOut {
        /// What was resolved.
        target: DnsTarget,
        /// How long it waited.
        timeout: Duration,
    },
    /// The resolver answered with no address.
    #[error("{target} resolved to no address")]
    NoAddress {
        /// What was resolved.
        target: DnsTarget,
    },
}

/// The addresses a DNS name resolves to, as of the last successful
/// [`refresh`](Self::refresh). Starts empty.
#[derive(Debug)]
pub struct DnsDiscovery<R = SystemResolver> {
    target: DnsTarget,
    resolver: R,
    addresses: Vec<SocketAddr>,
    resolve_timeout: Duration,
}

impl DnsDiscovery<SystemResolver> {
    /// Resolves `target` with the operating system's resolver.
    pub fn new(target: DnsTarget) -> DnsDiscovery<SystemResolver> {
        DnsDiscovery::with_resolver(target, SystemResolver)
    }
}

impl<R: Resolve> DnsDiscovery<R> {
    /// Resolves `target` with `resolver`.
    pub fn with_resolver(target: DnsTarget, resolver: R) -> DnsDiscovery<R> {
        DnsDiscovery { target, resolver, addresses: Vec::new(), resolve_timeout: RESOLVE_TIMEOUT }
    }

    /// What is resolved.
    pub fn target(&self) -> &DnsTarget {
        &self.target
    }

    /// Resolves the name once. `Ok(true)` if the set changed. On `Err`
    /// (logged as a warning) the last good set stays.
    pub async fn refresh(&mut self) -> Result<bool, ResolveError> {
        let target = &self.target;
        let answer = match tokio::time::timeout(self.resolve_timeout, self.resolver.resolve(target)).await {
            Ok(Ok(answer)) if answer.is_empty() => Err(ResolveError::NoAddress { target: target.clone() }),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) => Err(ResolveError::Lookup { target: target.clone(), source }),
            Err(_) => Err(ResolveError::TimedOut { target: target.clone(), timeout: self.resolve_timeout }),
        };
        let answer = match answer {
            Ok(answer) => normalize(answer, &target.name),
            Err(error) => {
                tracing::warn!(%error, kept = ?self.addresses, "DNS discovery failed; keeping the last good addresses");
                return Err(error);
            }
        };
        if answer == self.addresses {
            return Ok(false);
        }
        tracing::info!(%target, addresses = ?answer, "DNS discovery found new addresses");
        self.addresses = answer;
        Ok(true)
    }

    /// Resolves now and then every `interval` (at least
    /// [`MIN_DNS_INTERVAL`]) in a task of its own, until the returned
    /// handle is dropped. Must be called inside a tokio runtime.
    pub fn spawn(self, interval: Duration) -> DiscoveryWatch {
        let (sender, receiver) = watch::channel(self.addresses.clone());
        let task = tokio::spawn(refresh_every(self, interval.max(MIN_DNS_INTERVAL), sender));
        DiscoveryWatch { addresses: receiver, task }
    }
}

impl<R: Resolve> Discovery for DnsDiscovery<R> {
    fn addresses(&self) -> Vec<SocketAddr> {
        self.addresses.clone()
    }
}

async fn refresh_every<R: Resolve>(
    mut discovery: DnsDiscovery<R>,
    interval: Duration,
    sender: watch::Sender<Vec<SocketAddr>>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = sender.closed() => return,
        }
        // A failure is logged by refresh and keeps the last good set.
        if let Ok(true) = discovery.refresh().await {
            sender.send_replace(discovery.addresses.clone());
        }
    }
}

/// The latest addresses of a [`DnsDiscovery`] refreshed in the background
/// ([`DnsDiscovery::spawn`]). Dropping it stops the refreshing task.
#[derive(Debug)]
pub struct DiscoveryWatch {
    addresses: watch::Receiver<Vec<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl DiscoveryWatch {
    /// Waits until the set changes; false if the task has stopped.
    pub async fn changed(&mut self) -> bool {
        self.addresses.changed().await.is_ok()
    }
}

impl Discovery for DiscoveryWatch {
    fn addresses(&self) -> Vec<SocketAddr> {
        self.addresses.borrow().clone()
    }
}

impl Drop for DiscoveryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
