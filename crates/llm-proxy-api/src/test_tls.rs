//! The test certificate: a throwaway self-signed certificate for 127.0.0.1 (and
//! `localhost`), made for the TLS tests, with its key (`tests/fixtures/`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn certificate() -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(include_bytes!("../tests/fixtures/self-signed-cert.pem"))
        .unwrap()
}

/// A server configuration presenting the test certificate, offering `alpn`.
pub(crate) fn server_config(alpn: &[&[u8]]) -> rustls::ServerConfig {
    let key =
        PrivateKeyDer::from_pem_slice(include_bytes!("../tests/fixtures/self-signed-key.pem"))
            .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate()], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Roots that trust the test certificate alone.
pub(crate) fn roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate()).unwrap();
    roots
}
