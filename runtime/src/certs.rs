//! The cluster's certificate authority and the certificates it issues.
//!
//! Every node and every client of a cluster holds a certificate signed by
//! one cluster CA (made by `chorus certs init`). Peers authenticate each
//! other with it in both directions (mutual TLS, see
//! [`transport`](crate::transport)), and a node learns who a peer is from
//! the peer's certificate, never from what the peer says.
//!
//! ## Names
//!
//! | certificate      | subject alternative name | extended key usage      |
//! |------------------|--------------------------|-------------------------|
//! | node `N`         | `node-N.chorus`          | server and client auth  |
//! | client `NAME`    | `client-NAME.chorus`     | client auth only        |
//!
//! A client certificate therefore names no node: a connection presenting
//! one is refused by peers.
//!
//! ## Files (in the certificate directory)
//!
//! | file                                  | holds                       | mode |
//! |---------------------------------------|-----------------------------|------|
//! | `ca.crt`                              | the CA certificate (PEM)    | 0644 |
//! | `ca.key`                              | the CA private key (PEM)    | 0600 |
//! | `node-N.crt`, `node-N.key`            | node `N`'s certificate, key | 0644, 0600 |
//! | `client-NAME.crt`, `client-NAME.key`  | a client's certificate, key | 0644, 0600 |
//!
//! A node needs `ca.crt` and its own pair; `ca.key` stays with the operator.

use chorus_core::types::NodeId;
use quinn::rustls::pki_types::pem::PemObject;
use quinn::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// File name of the CA certificate.
pub const CA_CERTIFICATE_FILE: &str = "ca.crt";
/// File name of the CA private key.
pub const CA_KEY_FILE: &str = "ca.key";

/// Longest client name accepted by [`ClusterCa::issue_client`].
pub const MAX_CLIENT_NAME_BYTES: usize = 64;

/// The DNS name a node's certificate carries and peers check.
pub fn node_name(node: NodeId) -> String {
    format!("node-{}.chorus", node.0)
}

/// The DNS name a client's certificate carries.
pub fn client_name(name: &str) -> String {
    format!("client-{name}.chorus")
}

/// Paths of node `node`'s certificate and key in `dir`.
pub fn node_files(dir: &Path, node: NodeId) -> (PathBuf, PathBuf) {
    (dir.join(format!("node-{}.crt", node.0)), dir.join(format!("node-{}.key", node.0)))
}

/// Paths of client `name`'s certificate and key in `dir`.
pub fn client_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("client-{name}.crt")), dir.join(format!("client-{name}.key")))
}

/// Why a certificate operation failed. Files are written only once
/// everything they depend on succeeded; a failure leaves no partial pair
/// behind except as noted.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file could not be read or written. When writing a pair, the
    /// certificate may exist without its key: delete both and retry.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file to be written exists already; nothing was written.
    #[error("{0} exists already; delete it first to replace it")]
    Exists(PathBuf),
    /// A PEM file did not hold what was expected; nothing was written.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating or signing a certificate failed; nothing was written.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A client name must be 1 to [`MAX_CLIENT_NAME_BYTES`] ASCII letters,
    /// digits, `-` or `_`; nothing was written.
    #[error("invalid client name {0:?}: use 1 to 64 ASCII letters, digits, '-' or '_'")]
    BadClientName(String),
    /// An extra name for a node certificate is empty or ends in `.chorus`
    /// (the names the cluster gives its members); nothing was written.
    #[error("invalid certificate name {0:?}: give an IP address or a DNS name not ending in .chorus")]
    BadName(String),
}

/// Names every node certificate carries besides `node-N.chorus`, so that
/// HTTPS clients on the node's machine can verify it by these addresses.
pub const DEFAULT_NODE_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A node's (or client's) TLS identity: its certificate and private key,
/// and the cluster CA it trusts peers by.
#[derive(Clone)]
pub struct Identity {
    ca: CertificateDer<'static>,
    certificate: CertificateDer<'static>,
    private_key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Identity").field("certificate_bytes", &self.certificate.len()).finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity from DER parts: the CA certificate to trust, this
    /// holder's certificate, and its PKCS#8 private key.
    pub fn from_der(ca_der: Vec<u8>, certificate_der: Vec<u8>, private_key_der: Vec<u8>) -> Identity {
        Identity {
            ca: CertificateDer::from(ca_der),
            certificate: CertificateDer::from(certificate_der),
            private_key_der,
        }
    }

    /// Loads node `node`'s identity from the certificate directory `dir`
    /// (`ca.crt`, `node-N.crt`, `node-N.key`).
    pub fn load_node(dir: &Path, node: NodeId) -> Result<Identity, CertsError> {
        let (certificate, key) = node_files(dir, node);
        let ca = read_certificate(&dir.join(CA_CERTIFICATE_FILE))?;
        let certificate = read_certificate(&certificate)?;
        if node_of_certificate(&certificate) != Some(node) {
            return Err(CertsError::BadFile {
                path: node_files(dir, node).0,
                reason: format!(
                    "does not name {} (issue it with `chorus certs node --id {}`)",
                    node_name(node),
                    node.0
                ),
            });
        }
        let private_key_der = read_private_key(&key)?;
        Ok(Identity { ca, certificate, private_key_der })
    }

    /// The CA certificate this identity trusts, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca
    }

    /// This holder's certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// The private key, PKCS#8 DER. Secret.
    pub fn private_key_der(&self) -> &[u8] {
        &self.private_key_der
    }

    pub(crate) fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    pub(crate) fn certificate(&self) -> CertificateDer<'static> {
        self.certificate.clone()
    }

    pub(crate) fn private_key(&self) -> PrivatePkcs8KeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.private_key_der.clone())
    }
}

/// The node a certificate names (its `node-N.chorus` alternative name), or
/// `None` if it names none (a client certificate, or not a certificate).
/// Says nothing about who signed it: only call it on a verified certificate.
pub fn node_of_certificate(certificate_der: &[u8]) -> Option<NodeId> {
    let (_, certificate) = x509_parser::parse_x509_certificate(certificate_der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &names.value.general_names {
        if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
            let id = dns.strip_prefix("node-").and_then(|rest| rest.strip_suffix(".chorus"));
            if let Some(id) = id.and_then(|id| id.parse::<u64>().ok()).filter(|id| *id > 0) {
                if found.is_some_and(|other| other != id) {
                    return None; // a certificate naming two nodes names none
                }
                found = Some(id);
            }
        }
    }
    found.map(NodeId)
}

/// A cluster certificate authority, able to issue certificates.
pub struct ClusterCa {
    certificate: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

impl ClusterCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<ClusterCa, CertsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "Chorus cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(ClusterCa { certificate: certificate.der().clone(), issuer: Issuer::new(params, key), key_pem })
    }

    /// Loads the CA kept in `dir` (`ca.crt` and `ca.key`).
    pub fn load(dir: &Path) -> Result<ClusterCa, CertsError> {
        let certificate_path = dir.join(CA_CERTIFICATE_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let certificate = read_certificate(&certificate_path)?;
        let key_pem = read_text(&key_path)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|error| CertsError::BadFile { path: key_path.clone(), reason: error.to_string() })?;
        let issuer = Issuer::from_ca_cert_der(&certificate, key)
            .map_err(|error| CertsError::BadFile { path: certificate_path, reason: error.to_string() })?;
        Ok(ClusterCa { certificate, issuer, key_pem })
    }

    /// Creates a CA and writes it to `dir` (created if missing). Refuses to
    /// replace an existing CA: every certificate it issued would stop
    /// working.
    pub fn init(dir: &Path) -> Result<ClusterCa, CertsError> {
        let certificate_path = dir.join(CA_CERTIFICATE_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for path in [&certificate_path, &key_path] {
            if path.exists() {
                return Err(CertsError::Exists(path.clone()));
            }
        }
        let ca = ClusterCa::generate()?;
        std::fs::create_dir_all(dir).map_err(|source| CertsError::Io { path: dir.to_path_buf(), source })?;
        write_file(&key_path, ca.key_pem.as_bytes(), true)?;
        write_file(&certificate_path, pem("CERTIFICATE", &ca.certificate).as_bytes(), false)?;
        Ok(ca)
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// A certificate for node `node`, usable to serve and to connect, with
    /// no extra names (see [`issue_node_named`](Self::issue_node_named)).
    pub fn issue_node(&self, node: NodeId) -> Result<Identity, CertsError> {
        self.issue_node_named(node, &[])
    }

    /// A certificate for node `node`, usable to serve and to connect. Its
    /// names: `node-N.chorus` (the peer identity), [`DEFAULT_NODE_NAMES`],
    /// and `extra_names` (IP addresses or DNS names HTTPS clients reach the
    /// node by).
    pub fn issue_node_named(&self, node: NodeId, extra_names: &[String]) -> Result<Identity, CertsError> {
        if let Some(bad) = extra_names.iter().find(|name| name.is_empty() || name.ends_with(".chorus")) {
            return Err(CertsError::BadName(bad.clone()));
        }
        let names: Vec<String> =
            DEFAULT_NODE_NAMES.iter().map(|name| name.to_string()).chain(extra_names.iter().cloned()).collect();
        let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(node_name(node), &names, usages)
    }

    /// A certificate for client `name`, usable only to connect.
    pub fn issue_client(&self, name: &str) -> Result<Identity, CertsError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_CLIENT_NAME_BYTES
            && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !valid {
            return Err(CertsError::BadClientName(name.to_string()));
        }
        self.issue(client_name(name), &[], vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// Issues node `node`'s certificate and writes the pair into `dir`.
    /// Returns the paths written (certificate, key).
    pub fn write_node(
        &self,
        dir: &Path,
        node: NodeId,
        extra_names: &[String],
    ) -> Result<(PathBuf, PathBuf), CertsError> {
        let identity = self.issue_node_named(node, extra_names)?;
        let (certificate, key) = node_files(dir, node);
        write_pair(&identity, &certificate, &key)?;
        Ok((certificate, key))
    }

    /// Issues client `name`'s certificate and writes the pair into `dir`.
    /// Returns the paths written (certificate, key).
    pub fn write_client(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertsError> {
        let identity = self.issue_client(name)?;
        let (certificate, key) = client_files(dir, name);
        write_pair(&identity, &certificate, &key)?;
        Ok((certificate, key))
    }

    fn issue(
        &self,
        dns_name: String,
        extra_names: &[String],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Identity, CertsError> {
        let names: Vec<String> = std::iter::once(dns_name.clone()).chain(extra_names.iter().cloned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            ca: self.certificate.clone(),
            certificate: certificate.der().clone(),
            private_key_der: key.serialize_der(),
        })
    }
}

fn write_pair(identity: &Identity, certificate: &Path, key: &Path) -> Result<(), CertsError> {
    for path in [certificate, key] {
        if path.exists() {
            return Err(CertsError::Exists(path.to_path_buf()));
        }
    }
    write_file(key, pem("PRIVATE KEY", &identity.private_key_der).as_bytes(), true)?;
    write_file(certificate, pem("CERTIFICATE", &identity.certificate).as_bytes(), false)
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("invariant: base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// Writes a new file; a secret one is created readable only by its owner
/// (mode 0600 on Unix) before any byte is written.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), CertsError> {
    use std::io::Write;
    let io = |source| CertsError::Io { path: path.to_path_buf(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => CertsError::Exists(path.to_path_buf()),
        _ => io(source),
    })?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io)
}

fn read_text(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|source| CertsError::Io { path: path.to_path_buf(), source })
}

fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, CertsError> {
    let text = read_text(path)?;
    CertificateDer::from_pem_slice(text.as_bytes()).map_err(|error| CertsError::BadFile {
        path: path.to_path_buf(),
        reason: format!("no PEM certificate: {error}"),
    })
}

fn read_private_key(path: &Path) -> Result<Vec<u8>, CertsError> {
    let text = read_text(path)?;
    PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes()).map(|key| key.secret_pkcs8_der().to_vec()).map_err(|error| {
        CertsError::BadFile { path: path.to_path_buf(), reason: format!("no PKCS#8 PEM key: {error}") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("chorus-certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    #[test]
    fn a_node_certificate_names_its_node_and_a_client_certificate_names_none() {
        let ca = ClusterCa::generate().unwrap();
        let node = ca.issue_node(NodeId(7)).unwrap();
        assert_eq!(node_of_certificate(node.certificate_der()), Some(NodeId(7)));
        let client = ca.issue_client("alice").unwrap();
        assert_eq!(node_of_certificate(client.certificate_der()), None);
        assert_eq!(node_of_certificate(b"garbage"), None);
        assert!(matches!(ca.issue_client("a/b"), Err(CertsError::BadClientName(_))));
    }

    #[test]
    fn files_round_trip_keys_are_private_and_nothing_is_overwritten() {
        let dir = temp_dir("files");
        let ca = ClusterCa::init(&dir).unwrap();
        assert!(matches!(ClusterCa::init(&dir), Err(CertsError::Exists(_))));
        let loaded = ClusterCa::load(&dir).unwrap();
        assert_eq!(loaded.certificate_der(), ca.certificate_der());
        let (_, key) = loaded.write_node(&dir, NodeId(2), &[]).unwrap();
        assert!(matches!(loaded.write_node(&dir, NodeId(2), &[]), Err(CertsError::Exists(_))));
        loaded.write_client(&dir, "ops").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for secret in [key, dir.join(CA_KEY_FILE), client_files(&dir, "ops").1] {
                let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", secret.display());
            }
        }
        let identity = Identity::load_node(&dir, NodeId(2)).unwrap();
        assert_eq!(identity.ca_der(), ca.certificate_der());
        assert_eq!(node_of_certificate(identity.certificate_der()), Some(NodeId(2)));
        // Node 3's files do not exist; node 2's certificate is not node 3's.
        assert!(Identity::load_node(&dir, NodeId(3)).is_err());
        std::fs::copy(node_files(&dir, NodeId(2)).0, node_files(&dir, NodeId(3)).0).unwrap();
        std::fs::copy(node_files(&dir, NodeId(2)).1, node_files(&dir, NodeId(3)).1).unwrap();
        let error = Identity::load_node(&dir, NodeId(3)).unwrap_err().to_string();
        assert!(error.contains("does not name node-3.chorus"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
