//! What a client reads and writes: any blocking `Read + Write` stream, opened
//! by a [`Connect`]. [`TcpConnector`] opens plain TCP; a TLS connector (for
//! `https://` and `wss://`, `client::tls` with the `tls` feature) plugs in
//! the same way, wrapping the socket in a TLS stream before handing it back.
//!
//! The WebSocket client keeps deadlines of its own (a heartbeat ping falls
//! due, a close handshake runs out of time) and so sets the read timeout
//! before each read: its streams are also [`ReadTimeout`].

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::client::url::Url;

/// Opens a blocking byte stream to a URL's host and port.
///
/// The stream's reads must not block forever: give it a read timeout, so a
/// server that went silent (or a network that dropped the connection without
/// a FIN) is noticed. A read that times out returns
/// [`io::ErrorKind::WouldBlock`] or [`io::ErrorKind::TimedOut`], and the
/// client treats the connection as lost and reconnects.
pub trait Connect {
    /// The stream a connection reads and writes.
    type Stream: Read + Write;

    /// Connects to `url.host()` and `url.port()` (and, for a TLS connector,
    /// runs the TLS handshake for `url.host()`).
    fn connect(&mut self, url: &Url) -> io::Result<Self::Stream>;
}

/// A stream whose reads can be bounded in time.
pub trait ReadTimeout {
    /// From now on, a read that waits longer than `timeout` fails with
    /// [`io::ErrorKind::WouldBlock`] or [`io::ErrorKind::TimedOut`]; `None`
    /// waits for ever. A zero `timeout` is not allowed (as for
    /// [`TcpStream::set_read_timeout`]).
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

/// Plain TCP, with the three timeouts every blocking socket needs. No TLS:
/// `https://` and `wss://` URLs need another [`Connect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConnector {
    /// How long one TCP connect may take, per resolved address. Default 10 s,
    /// as the server's `handshake_timeout`: long enough for a slow mobile
    /// network, short enough that a black-holed address is given up on.
    pub connect_timeout: Duration,
    /// How long a read may wait for any byte. Default 45 s: a pushloop server
    /// sends an SSE keep-alive comment every 15 s (WHATWG HTML §9.2.7), so
    /// three missed ones mean the connection is dead. Past it: reconnect.
    pub read_timeout: Duration,
    /// How long a write may block. Default 10 s: a request head is a few
    /// hundred bytes; a server that cannot take them is not there.
    pub write_timeout: Duration,
}

impl Default for TcpConnector {
    fn default() -> Self {
        TcpConnector {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(45),
            write_timeout: Duration::from_secs(10),
        }
    }
}

impl Connect for TcpConnector {
    type Stream = TcpStream;

    /// Resolves the host and tries each address in turn; the last error is
    /// returned if none answers.
    fn connect(&mut self, url: &Url) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        for addr in (url.host(), url.port()).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(self.read_timeout))?;
                    stream.set_write_timeout(Some(self.write_timeout))?;
                    // The request head goes in one write; do not hold it back.
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }
}
