//! Test certificates, made at test time (no private key is committed): a CA and
//! a server certificate it signed, as PEM for [`super::TlsConfig::from_pem`],
//! and a rustls client that trusts the CA.
//!
//! The file depends only on `rustls` and the `rcgen` dev-dependency, so a
//! socket test under `tests/` can include it as it is:
//! `#[path = "../src/tls/test_support.rs"] mod tls_support;`.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};

/// A CA and one server certificate signed by it (ECDSA P-256, rcgen's default).
pub struct TestPki {
    /// The CA certificate, for the client's trust store.
    pub ca: CertificateDer<'static>,
    /// The server certificate followed by the CA certificate, as PEM.
    pub chain_pem: String,
    /// The server's private key (PKCS#8), as PEM.
    pub key_pem: String,
    /// The server certificate alone, to compare with what a client saw.
    pub server_cert: CertificateDer<'static>,
}

impl TestPki {
    /// A fresh CA and a server certificate for `names` (DNS names or IPs).
    pub fn new(names: &[&str]) -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let server = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");

        TestPki {
            ca: ca.der().clone(),
            chain_pem: format!("{}{}", server.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
            server_cert: server.der().clone(),
        }
    }

    /// A rustls client (ring provider) that trusts this CA, speaks `versions`
    /// and offers `alpn`.
    pub fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("CA into the trust store");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }
}

/// A hand-made ClientHello (RFC 8446 §4.1.2) from a client that is not
/// rustls: legacy_version, cipher suites, extensions.
pub fn client_hello(legacy_version: u16, suites: &[u16], extensions: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = legacy_version.to_be_bytes().to_vec();
    body.extend([7; 32]); // random
    body.push(0); // legacy_session_id
    body.extend((suites.len() as u16 * 2).to_be_bytes());
    for suite in suites {
        body.extend(suite.to_be_bytes());
    }
    body.extend([1, 0]); // legacy_compression_methods: null
    let mut list = Vec::new();
    for (extension_type, data) in extensions {
        list.extend(extension_type.to_be_bytes());
        list.extend((data.len() as u16).to_be_bytes());
        list.extend(*data);
    }
    body.extend((list.len() as u16).to_be_bytes());
    body.extend(list);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    // TLSPlaintext: ContentType handshake (22), legacy_record_version 3.1 (§5.1).
    let mut record = vec![22, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// supported_groups (x25519, secp256r1), ec_point_formats (uncompressed),
/// signature_algorithms (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256).
pub const TLS12_EXTENSIONS: &[(u16, &[u8])] = &[
    (10, &[0, 4, 0, 0x1d, 0, 0x17]),
    (11, &[1, 0]),
    (13, &[0, 4, 4, 3, 8, 4]),
];
