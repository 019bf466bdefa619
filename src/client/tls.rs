//! TLS for the clients (features `client` and `tls`): `wss://` and
//! `https://` through rustls' client side, a [`Connect`] like plain TCP.
//!
//! Reading list: RFC 8446 (TLS 1.3) §4.1 (the handshake), RFC 6066 §3 (SNI:
//! the URL's host), RFC 7301 §3 (ALPN: `http/1.1`, what an HTTP/1.1 upgrade
//! and an event stream speak), RFC 6125 §6 (the certificate names the host),
//! RFC 6455 §3 and §4.1 item 5 (`wss://` is a WebSocket over TLS, on 443).
//!
//! The caller gives the trust roots: this crate bundles no CA list (the
//! `webpki-roots` or `rustls-native-certs` crates supply one; a device may
//! trust only its own CA). The TLS handshake runs inside
//! [`Connect::connect`], so an untrusted certificate is a connect error
//! ([`std::io::ErrorKind::InvalidData`]), which the reconnecting clients do
//! not retry.
//!
//! ```no_run
//! use pushloop::client::tls::{RootCertStore, TlsConnector};
//! use pushloop::client::url::Url;
//! use pushloop::client::ws::{WebSocket, WsConfig};
//! # fn ca() -> pushloop::client::tls::CertificateDer<'static> { unimplemented!() }
//! let mut roots = RootCertStore::empty();
//! roots.add(ca())?;
//! let config = WsConfig::default();
//! let mut tls = TlsConnector::new(roots)?.with_tcp(config.tcp_connector());
//! let url = Url::parse("wss://example.com/chat")?;
//! let mut ws = WebSocket::connect_via(&url, &config, &mut tls)?;
//! ws.send_text("over TLS")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::client::transport::{Connect, ReadTimeout, TcpConnector};
use crate::client::url::Url;

pub use rustls::pki_types::CertificateDer;
pub use rustls::RootCertStore;

/// A TLS connection over TCP, as the clients read and write it.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Opens TCP, then TLS, for `wss://` and `https://` URLs.
#[derive(Clone, Debug)]
pub struct TlsConnector {
    tcp: TcpConnector,
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    /// Trusts `roots`, with rustls' ring provider and its default versions
    /// (TLS 1.3 and 1.2), offering ALPN `http/1.1`; TCP with
    /// [`TcpConnector::default`]'s timeouts. An error means the provider
    /// cannot do those versions (it can; the `Result` keeps it a
    /// `Result`).
    pub fn new(roots: RootCertStore) -> Result<TlsConnector, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // RFC 7301 §3: the protocol spoken inside; a server that does ALPN
        // then knows it is HTTP/1.1, and an upgrade, not h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConnector::with_config(Arc::new(config)))
    }

    /// A connector with a rustls configuration of the caller's (client
    /// certificates, another provider, pinned versions).
    pub fn with_config(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector {
            tcp: TcpConnector::default(),
            config,
        }
    }

    /// The same connector with these TCP timeouts (e.g.
    /// [`crate::client::ws::WsConfig::tcp_connector`]). The read timeout
    /// also bounds each wait of the TLS handshake.
    pub fn with_tcp(self, tcp: TcpConnector) -> TlsConnector {
        TlsConnector { tcp, ..self }
    }
}

impl Connect for TlsConnector {
    type Stream = TlsStream;

    /// Connects TCP, then completes the TLS handshake for `url.host()` (the
    /// SNI name, and the name the certificate must carry: a DNS name or an
    /// IP address).
    fn connect(&mut self, url: &Url) -> io::Result<TlsStream> {
        let name = ServerName::try_from(url.host().to_owned())
            .map_err(|error| io::Error::new(ErrorKind::InvalidInput, error))?;
        let connection = ClientConnection::new(self.config.clone(), name)
            .map_err(|error| io::Error::new(ErrorKind::InvalidData, error))?;
        let mut stream = StreamOwned::new(connection, self.tcp.connect(url)?);
        // The handshake now, so that its failure is a connect error and not
        // the first read's. rustls reports TLS errors as `InvalidData`.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }
}

impl ReadTimeout for TlsStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
}
