//! `--tls-ca FILE`: the load over TLS (https://, wss://), with rustls on ring —
//! the same library and provider as pushloop's `tls` feature and the
//! tungstenite-tls-echo peer. [`Io`] reads and writes plaintext the way a
//! non-blocking socket does, so the rest of the load generator is unchanged:
//! `WouldBlock` means "wait for the next edge", and the first write is still
//! the connect check (the ClientHello cannot leave before the TCP handshake).
//!
//! Every connection makes a full handshake: session resumption is off, so
//! `opens` measures what a first visit costs the server.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// A client config that trusts the certificates in `ca_pem` (the server's own
/// self-signed one will do), offers ALPN `http/1.1`, and never resumes.
pub fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(|e| format!("{ca_pem}: {e}"))? {
        roots.add(cert.map_err(|e| format!("{ca_pem}: {e}"))?).map_err(|e| format!("{ca_pem}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A connection's byte stream: the socket, or TLS over it.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<ClientConnection>, TcpStream),
}

impl Io {
    /// TLS to `localhost` (the name the test certificate carries, sent as SNI).
    pub fn tls(sock: TcpStream, config: &Arc<ClientConfig>) -> io::Result<Io> {
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
        Ok(Io::Tls(Box::new(conn), sock))
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Io::Plain(sock) | Io::Tls(_, sock) => sock,
        }
    }

    /// A short read of plaintext says nothing about what the socket holds.
    pub fn is_tls(&self) -> bool {
        matches!(self, Io::Tls(..))
    }

    /// Sends the TLS records waiting (handshake messages, encrypted data);
    /// `WouldBlock` if the socket does not take them all.
    pub fn flush_records(&mut self) -> io::Result<()> {
        if let Io::Tls(tls, sock) = self {
            while tls.wants_write() {
                tls.write_tls(sock)?;
            }
        }
        Ok(())
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Plain(sock) => sock.write(buf),
            Io::Tls(tls, sock) => {
                // Records from before go first; while they cannot, take nothing.
                while tls.wants_write() {
                    tls.write_tls(sock)?;
                }
                let n = tls.writer().write(buf)?;
                if n == 0 {
                    // rustls' plaintext buffer is full until the handshake ends.
                    return Err(ErrorKind::WouldBlock.into());
                }
                while tls.wants_write() {
                    match tls.write_tls(sock) {
                        Ok(_) => {}
                        // Taken: the rest goes on the next writable edge.
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(n)
            }
        }
    }

    /// Plaintext into `buf`; `Ok(0)` at the end of the stream (with or
    /// without the server's close_notify), `WouldBlock` when the socket is empty.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (tls, sock) = match self {
            Io::Plain(sock) => return sock.read(buf),
            Io::Tls(tls, sock) => (tls, sock),
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let n = tls.read_tls(sock)?;
            tls.process_new_packets().map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
            // Handshake answers, and a request written before the handshake ended.
            while tls.wants_write() {
                match tls.write_tls(sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if n == 0 {
                return match tls.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::UnexpectedEof => Ok(0),
                    Err(e) => Err(e),
                };
            }
        }
    }
}
