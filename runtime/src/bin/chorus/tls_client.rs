//! The client side of the HTTPS API: trust only the cluster CA, present a
//! certificate it signed.

use base64::Engine;
use std::path::Path;
use std::sync::Arc;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// A TLS configuration trusting `ca_der` and presenting `certificate_der`
/// with its PKCS#8 `key_der`.
pub(crate) fn from_der(ca_der: &[u8], certificate_der: &[u8], key_der: &[u8]) -> TlsConfig {
    let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_der(ca_der).to_owned()]));
    // ureq reads a DER key only with a key kind it does not export: go
    // through PEM.
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(key_der)
    );
    let key = PrivateKey::from_pem(pem.as_bytes()).expect("invariant: a PEM made of a PKCS#8 key parses");
    let client = ClientCert::new_with_certs(&[Certificate::from_der(certificate_der).to_owned()], key);
    TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(roots).client_cert(Some(client)).build()
}

/// A TLS configuration from PEM files (the CA's certificate, and the
/// client's certificate and key); the error names the file at fault.
pub(crate) fn from_files(cacert: &Path, cert: &Path, key: &Path) -> Result<TlsConfig, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()));
    let certificate = |path: &Path| {
        Certificate::from_pem(&read(path)?)
            .map_err(|error| format!("{}: not a PEM certificate ({error})", path.display()))
    };
    let roots = RootCerts::Specific(Arc::new(vec![certificate(cacert)?]));
    let key = PrivateKey::from_pem(&read(key)?)
        .map_err(|error| format!("{}: not a PEM private key ({error})", key.display()))?;
    let client = ClientCert::new_with_certs(&[certificate(cert)?], key);
    Ok(TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(roots).client_cert(Some(client)).build())
}
