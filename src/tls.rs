//! TLS as a byte transform between a non-blocking socket and the plaintext
//! sessions (feature `tls`, off by default).
//!
//! Reading list: RFC 8446 (TLS 1.3) §4.1.2 (ClientHello), §5.1-5.2 (records),
//! §6 (alerts), §6.1 (closure); RFC 5246 §6.2 (TLS 1.2 records); RFC 6066 §3
//! (SNI); RFC 7301 §3 (ALPN); RFC 9112 §9.8 (closing TLS under HTTP/1.1);
//! RFC 7468 (PEM).
//!
//! ## Where TLS sits in the byte path
//!
//! ```text
//!  socket ──read──▶ scratch: [ reserve 16 KiB │ kept tail │ new ciphertext ]
//!                                 ▲                  │ rustls decrypts record by record
//!                                 └── plaintext ◀────┘ written at the front
//!                   scratch[..n] ──▶ http / ws session (unchanged: it only sees plaintext)
//!
//!  outbox ──send(plaintext)──▶ encrypted records (only while the socket can't take them)
//!                                   ──write_to──▶ socket
//! ```
//!
//! A [`TlsStream`] wraps rustls' *unbuffered* server connection. Ciphertext is
//! read straight into the loop's scratch buffer; each whole record is
//! decrypted and its plaintext copied to the front of the same buffer, so the
//! loop hands `scratch[..n]` to the session as it does for a plain socket. A
//! record cut by the end of a read is kept (`pending_in`) until the rest
//! arrives; on the way out, records wait (`pending_out`) only while the socket
//! cannot take them. An idle connection holds neither buffer.
//!
//! ## Driving it (the contract)
//!
//! 1. READABLE: call [`TlsStream::read_from`] until [`Received::drained`]
//!    (`WouldBlock`, or a short read); hand `buf[..plaintext]` to the session
//!    each time.
//! 2. After every read and every [`TlsStream::send`]: while
//!    [`TlsStream::wants_write`], call [`TlsStream::write_to`]; register
//!    WRITABLE only while it answers [`Flush::Blocked`]. Handshake records
//!    and alerts leave this way too.
//! 3. Outgoing plaintext: [`TlsStream::send`] takes what fits under the
//!    queue limit and returns how much; keep the rest in the outbox. Gather
//!    small chunks first (the scratch buffer is free while writing): each
//!    `send` makes at least one record, with 22-29 bytes of overhead.
//! 4. On an error, flush once more with [`TlsStream::write_to`] (the alert or
//!    the plain `400` is queued there), then close. [`TlsError`] says what the
//!    peer did ([`Fault`]) and what it was told ([`Answer`]), for the stats.
//! 5. To close: [`TlsStream::send_close_notify`], flush, close.
//!
//! ## Memory
//!
//! Measured by `idle_connection_memory` below with a counting allocator, after a
//! handshake and one message each way (ECDSA P-256 certificate, ring, x86-64):
//!
//! | an idle connection                          | heap    | inline  |
//! |---------------------------------------------|---------|---------|
//! | `TlsStream`, TLS 1.3                        | 2.2 KiB | 1.2 KiB |
//! | … plus its 2 tickets in the resumption cache| 2.6 KiB |         |
//! | `TlsStream`, TLS 1.2                        | 2.3 KiB |         |
//! | rustls' buffered `ServerConnection`, TLS 1.3| 6.5 KiB | 1.2 KiB |
//!
//! What stays is rustls' state: traffic keys and secrets, small queues.
//! `TlsStream` adds no buffer at rest. The buffered `ServerConnection` also
//! keeps a 4 KiB read buffer for good (and reads at most about that much per
//! syscall, where the unbuffered one reads into the loop's 64 KiB buffer);
//! that is why the unbuffered API is used here. The resumption cache lives in
//! the `ServerConfig`, shared by every connection: 256 sessions at most.
//!
//! Bounds: `pending_in` never exceeds [`MAX_PENDING_TLS_BYTES`];
//! `pending_out` never exceeds the `max_queued_bytes` given to
//! [`TlsStream::new`] plus the records' overhead (under 30 bytes per 16 KiB).
//! While a large message goes out, the outbox's plaintext and these records
//! both count, so a busy connection can hold up to twice the limit.
//!
//! Costs that remain: rustls 0.23's unbuffered reader copies each record's
//! plaintext into a fresh `Vec` before handing it out (in-place decryption is
//! on its to-do list), so each record costs one allocation and one copy more
//! than it could. And the unbuffered connection does not expose the SNI, so
//! it is read from the ClientHello here (RFC 6066 §3, about 90 lines).
//!
//! ## Why ring, and what is on
//!
//! rustls needs a crypto provider. `ring` builds with a C compiler alone;
//! `aws-lc-rs` (rustls' default) needs cmake. ring offers TLS 1.3 and 1.2
//! with AES-GCM and ChaCha20-Poly1305, X25519 and the NIST curves, but no
//! post-quantum hybrid key exchange (X25519MLKEM768 needs aws-lc-rs). The
//! feature adds about 1.1 MB to the stripped demo binary (rustls 280 KiB and
//! ring 340 KiB of code, plus ring's tables); TLS 1.2, kept for older
//! embedded clients, is 60 KB of it. 0-RTT data is off (replayable, RFC 8446
//! §8); resumption by session ID and tickets is on (rustls' defaults).
//!
//! ## Plain HTTP on the TLS port
//!
//! Like nginx, the first byte decides: a TLS connection starts with a
//! handshake record (22), an HTTP request with a method in capitals. Such a
//! peer gets a plain-text `400` saying to use `https://` or `wss://`, not an
//! alert it could not read; any other first byte gets rustls' `decode_error`.
//!
//! ## Certificate reload
//!
//! [`TlsConfig`] is a cheap handle (`Arc<ServerConfig>`). A connection takes
//! its own `Arc` when it starts, so replacing the loop's `TlsConfig` with
//! [`TlsConfig::reload_from_files`]'s result changes only the handshakes that
//! start afterwards; open connections keep their keys.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{ServerConfig, ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError, ReadTraffic,
    WriteTraffic,
};
use rustls::{HandshakeKind, InvalidMessage, PeerIncompatible, PeerMisbehaved};

pub use rustls::{AlertDescription, CipherSuite, NamedGroup, ProtocolVersion};

#[cfg(test)]
pub(crate) mod test_support;

/// Largest plaintext in one record: 2^14 bytes (RFC 8446 §5.1; RFC 5246 §6.2.1).
const MAX_RECORD_PLAINTEXT: usize = 1 << 14;

/// Largest record on the wire: a 5-byte header and 2^14 + 2048 bytes of
/// TLS 1.2 ciphertext (RFC 5246 §6.2.3; TLS 1.3 allows only 2^14 + 256, RFC
/// 8446 §5.2). rustls refuses a longer record from its header alone.
const MAX_RECORD_BYTES: usize = 5 + MAX_RECORD_PLAINTEXT + 2048;

/// The front of the read buffer kept free for plaintext: one record's worth.
/// A record's plaintext is shorter than the record, so once the first record
/// has landed, the plaintext of the next always fits in front of it.
pub const PLAINTEXT_RESERVE: usize = MAX_RECORD_PLAINTEXT;

/// Limit: ciphertext kept between reads — an unfinished record, or a
/// handshake message spread over several records (RFC 8446 §5.1).
///
/// Default: one largest record (18 437 bytes), so any record can complete.
/// A handshake message longer than that can only be a ClientHello of more than
/// 16 KiB (no client certificates are asked for); browsers send 0.5-2 KiB.
/// Past it: a fatal `decode_error` alert, as rustls answers for its own 64 KiB
/// handshake limit, and [`Fault::HandshakeTooLarge`].
pub const MAX_PENDING_TLS_BYTES: usize = MAX_RECORD_BYTES;

/// The smallest buffer [`TlsStream::read_from`] accepts: the plaintext
/// reserve, a kept tail and 1 KiB to read into. The loop's 64 KiB scratch
/// buffer leaves 30 KiB or more for each read.
pub const MIN_READ_BUFFER: usize = PLAINTEXT_RESERVE + MAX_PENDING_TLS_BYTES + 1024;

/// RFC 8446 §5.1: `ContentType handshake(22)`, the first byte of a ClientHello.
const HANDSHAKE_RECORD: u8 = 22;

/// The answer to plain HTTP on the TLS port. nginx says "400 The plain HTTP
/// request was sent to HTTPS port"; this one also says what to do.
const PLAIN_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 75\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS: use https:// or wss:// instead of http:// or ws://\n";

/// The TLS side of one server connection. See the module doc for the driving
/// contract.
pub struct TlsStream {
    conn: UnbufferedServerConnection,
    /// Ciphertext read but not processed yet: an unfinished record. Empty and
    /// unallocated between whole records.
    pending_in: Vec<u8>,
    /// Bytes for the socket (records, an alert, or the plain `400`); the
    /// first `out_sent` of them are gone. Unallocated once drained.
    pending_out: Vec<u8>,
    out_sent: usize,
    /// The limit on unsent bytes that `send` respects.
    max_queued: usize,
    /// The first byte the peer sent, once it has sent one.
    first_byte: Option<u8>,
    /// The first record has been looked at for SNI (whatever it held).
    client_hello_read: bool,
    /// RFC 6066 §3: the host name the client asked for, if any.
    server_name: Option<Box<str>>,
    /// RFC 8446 §6.1: the peer's `close_notify` has arrived.
    peer_notified: bool,
    /// We queued our `close_notify`; further input is read and dropped.
    sent_close_notify: bool,
    /// The error that ended the connection; every later call returns it.
    failed: Option<TlsError>,
}

/// What one [`TlsStream::read_from`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Plaintext bytes now at the front of the buffer.
    pub plaintext: usize,
    /// The socket had nothing more: it returned `WouldBlock`, or fewer bytes
    /// than there was room for. Read again after the next READABLE event.
    pub drained: bool,
    /// The peer will send nothing more, and how it said so.
    pub closed: Option<PeerClose>,
}

/// How the peer ended its side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerClose {
    /// RFC 8446 §6.1: it sent `close_notify`; anything after it is ignored.
    /// TCP may still be open: we may still send, then close.
    CloseNotify,
    /// TCP FIN. Without a `close_notify` first this is an "incomplete close"
    /// (RFC 9112 §9.8), harmless for HTTP/1.1 and WebSocket: both frame
    /// their own messages, so a cut message is noticed anyway.
    Eof,
}

/// Whether [`TlsStream::write_to`] emptied the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Nothing waits: drop WRITABLE interest.
    Drained,
    /// The socket would block with bytes still queued: wait for WRITABLE.
    Blocked,
}

/// The end of a TLS connection: what the peer did, and what it was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsError {
    /// What happened.
    pub fault: Fault,
    /// What went out on the wire in answer.
    pub answer: Answer,
}

/// What ended a TLS connection. All but the last three are the peer's doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The peer spoke plain HTTP to the TLS port (its first byte was an
    /// ASCII capital, as in `GET`): nginx's "plain HTTP request was sent to
    /// HTTPS port".
    PlainHttp,
    /// The peer's first byte was neither a TLS handshake record (RFC 8446
    /// §5.1: 22) nor plain HTTP.
    NotTls,
    /// The peer offered no protocol version we speak (RFC 8446 §4.2.1;
    /// TLS 1.0 and 1.1 are gone, RFC 8996).
    UnsupportedVersion,
    /// The peer's cipher suites, groups or signature schemes have nothing in
    /// common with ours (RFC 8446 §4.1.1).
    NoCommonParameters,
    /// The peer offered ALPN protocols but not `http/1.1` (RFC 7301 §3.2).
    NoCommonAlpn,
    /// A message did not parse (RFC 8446 §6.2, `decode_error`).
    Malformed,
    /// A message came at the wrong time (RFC 8446 §6.2, `unexpected_message`).
    UnexpectedMessage,
    /// A record's authentication tag was wrong (RFC 8446 §5.2).
    BadRecordMac,
    /// A record was longer than the protocol allows (RFC 8446 §5.1-5.2).
    /// rustls answers a too-long header with `decode_error`, a too-long
    /// decrypted record with `record_overflow`.
    RecordOverflow,
    /// A handshake message needed more than [`MAX_PENDING_TLS_BYTES`].
    HandshakeTooLarge,
    /// The peer broke another rule of the protocol (rustls'
    /// `PeerMisbehaved`, and certificate-related errors).
    Misbehaved,
    /// The peer sent this fatal alert (RFC 8446 §6.2); nothing is answered.
    PeerAlert(AlertDescription),
    /// The peer closed TCP mid-handshake or mid-record (RFC 8446 §6.1).
    Truncated,
    /// The socket failed (usually a reset by the peer).
    Io(ErrorKind),
    /// Ours: the buffer given to `read_from` is smaller than
    /// [`MIN_READ_BUFFER`].
    ReadBufferTooSmall,
    /// Ours: a TLS 1.2 key reached its usage limit (RFC 8446 §5.5 explains
    /// the limits; TLS 1.3 updates its keys instead).
    KeysExhausted,
    /// Ours: rustls failed for a reason that is not the peer's.
    Internal,
}

impl Fault {
    /// The section of the spec the fault breaks, for a protocol trace
    /// (empty for our own faults and the socket's).
    pub fn section(self) -> &'static str {
        match self {
            Fault::PlainHttp | Fault::NotTls | Fault::RecordOverflow | Fault::HandshakeTooLarge => {
                "RFC 8446 §5.1"
            }
            Fault::UnsupportedVersion => "RFC 8446 §4.2.1",
            Fault::NoCommonParameters => "RFC 8446 §4.1.1",
            Fault::NoCommonAlpn => "RFC 7301 §3.2",
            Fault::Malformed | Fault::UnexpectedMessage | Fault::Misbehaved => "RFC 8446 §6.2",
            Fault::PeerAlert(_) => "RFC 8446 §6.2",
            Fault::BadRecordMac => "RFC 8446 §5.2",
            Fault::Truncated => "RFC 8446 §6.1",
            Fault::Io(_) | Fault::ReadBufferTooSmall | Fault::KeysExhausted | Fault::Internal => "",
        }
    }
}

/// What the peer was told when its connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// This fatal alert (RFC 8446 §6.2).
    Alert(AlertDescription),
    /// A fatal alert went out encrypted, and rustls does not say which.
    EncryptedAlert,
    /// A plain-text `HTTP/1.1 400 Bad Request`.
    BadRequest,
    /// Nothing (the peer is gone, sent the alert itself, or rustls closes
    /// silently).
    Nothing,
}

impl TlsError {
    /// The alert that went out, if one did and its name is known.
    pub fn alert(self) -> Option<AlertDescription> {
        match self.answer {
            Answer::Alert(alert) => Some(alert),
            _ => None,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS: {:?}; answered ", self.fault)?;
        match self.answer {
            Answer::Alert(alert) => write!(f, "alert {alert:?}"),
            Answer::EncryptedAlert => f.write_str("an encrypted alert"),
            Answer::BadRequest => f.write_str("400 in plain text"),
            Answer::Nothing => f.write_str("nothing"),
        }
    }
}

impl std::error::Error for TlsError {}

/// What the handshake settled, for a protocol trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated<'a> {
    /// RFC 8446 §4.2.1 (`supported_versions`); TLS 1.2 per RFC 5246 §7.4.1.3.
    pub version: ProtocolVersion,
    /// RFC 8446 §4.1.3 (ServerHello.cipher_suite), values in §B.4.
    pub cipher_suite: CipherSuite,
    /// RFC 8446 §4.2.7-4.2.8 (`supported_groups`, `key_share`).
    pub key_exchange: Option<NamedGroup>,
    /// RFC 7301 §3.1 (ALPN), listed in RFC 8446 §4.2.
    pub alpn: Option<&'a [u8]>,
    /// RFC 6066 §3 (SNI), which RFC 8446 §9.2 makes mandatory to implement.
    pub server_name: Option<&'a str>,
    /// RFC 8446 §2.2: the session was resumed from a ticket.
    pub resumed: bool,
}

impl fmt::Display for Negotiated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}", self.version, self.cipher_suite)?;
        if let Some(group) = self.key_exchange {
            write!(f, " {group:?}")?;
        }
        if let Some(alpn) = self.alpn {
            write!(f, " alpn={}", String::from_utf8_lossy(alpn))?;
        }
        if let Some(name) = self.server_name {
            write!(f, " sni={name}")?;
        }
        if self.resumed {
            f.write_str(" resumed")?;
        }
        Ok(())
    }
}

/// One step of rustls' state machine, as [`TlsStream::receive`] sees it.
enum Step {
    /// Call `process_tls_records` again.
    Continue,
    /// Nothing more to do with the bytes we have.
    Stop,
    /// rustls refused the peer's bytes.
    Refused(rustls::Error),
    /// Something that cannot happen did (see where it is made).
    Broken,
}

impl TlsStream {
    /// A connection that has yet to see its ClientHello. `max_queued_bytes`
    /// bounds the ciphertext waiting for the socket; pass the loop's
    /// `Limits::max_queued_bytes` (at least one record is always allowed).
    pub fn new(config: &TlsConfig, max_queued_bytes: usize) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream {
            conn: UnbufferedServerConnection::new(config.server.clone())?,
            pending_in: Vec::new(),
            pending_out: Vec::new(),
            out_sent: 0,
            max_queued: max_queued_bytes.max(MAX_RECORD_PLAINTEXT),
            first_byte: None,
            client_hello_read: false,
            server_name: None,
            peer_notified: false,
            sent_close_notify: false,
            failed: None,
        })
    }

    /// Reads once from `socket` into `buf` and decrypts what it can; the
    /// plaintext is then at `buf[..plaintext]`. `buf` is scratch space (the
    /// loop's shared buffer, at least [`MIN_READ_BUFFER`] long); nothing in
    /// it is kept. `WouldBlock` is not an error. Never panics.
    pub fn read_from(
        &mut self,
        socket: &mut impl Read,
        buf: &mut [u8],
    ) -> Result<Received, TlsError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let kept = self.pending_in.len();
        let start = PLAINTEXT_RESERVE + kept;
        let room = buf.len().saturating_sub(start);
        if buf.len() < MIN_READ_BUFFER || room == 0 {
            return Err(self.fail(Fault::ReadBufferTooSmall, Answer::Nothing));
        }
        buf[PLAINTEXT_RESERVE..start].copy_from_slice(&self.pending_in);
        let read = loop {
            match socket.read(&mut buf[start..]) {
                Ok(read) => break read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    return Ok(self.received(0, true));
                }
                Err(error) => return Err(self.fail(Fault::Io(error.kind()), Answer::Nothing)),
            }
        };
        if read == 0 {
            return self.end_of_stream();
        }
        let plaintext = self.receive(buf, start + read)?;
        Ok(self.received(plaintext, read < room))
    }

    /// Encrypts as much of `plaintext` as the queue limit allows and returns
    /// how many bytes it took: 0 while the handshake runs, after a
    /// `close_notify` either way, or while the queue is full. Then flush with
    /// [`TlsStream::write_to`].
    pub fn send(&mut self, plaintext: &[u8]) -> Result<usize, TlsError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let room = self.max_queued.saturating_sub(self.queued_bytes());
        let take = plaintext.len().min(room);
        if take == 0 || self.sent_close_notify || self.conn.is_handshaking() {
            return Ok(0);
        }
        let plaintext = &plaintext[..take];
        // A record adds at most 5 (header) + 8 (TLS 1.2 nonce) + 1 (TLS 1.3
        // inner type) + 16 (tag) bytes; a key update may go first. rustls says
        // exactly how much it needs if the guess is short.
        let guess = take + (take / MAX_RECORD_PLAINTEXT + 1) * 32 + 64;
        let encrypted = self.with_write_traffic(|traffic, out| {
            append(out, guess, |buf| match traffic.encrypt(plaintext, buf) {
                Ok(written) => Ok(written),
                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    Err(Some(required_size))
                }
                Err(_) => Err(None),
            })
        })?;
        match encrypted {
            Some(true) => Ok(take),
            Some(false) => Err(self.fail(Fault::KeysExhausted, Answer::Nothing)),
            None => Ok(0),
        }
    }

    /// Writes queued bytes to `socket` until none are left or it would block.
    /// Works after an error too, to flush the alert or the `400`.
    pub fn write_to(&mut self, socket: &mut impl Write) -> Result<Flush, TlsError> {
        while self.out_sent < self.pending_out.len() {
            match socket.write(&self.pending_out[self.out_sent..]) {
                Ok(0) => return Err(self.fail(Fault::Io(ErrorKind::WriteZero), Answer::Nothing)),
                Ok(written) => self.out_sent += written,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(error) => return Err(self.fail(Fault::Io(error.kind()), Answer::Nothing)),
            }
        }
        // Drained: an idle connection keeps no buffer.
        self.pending_out = Vec::new();
        self.out_sent = 0;
        Ok(Flush::Drained)
    }

    /// Queues our `close_notify` (RFC 8446 §6.1); flush, then close the
    /// socket. Returns false if there is nothing to say it to: during the
    /// handshake (rustls offers no alert then; just close), after an error, or
    /// if it was queued before. Input after it is read and dropped.
    pub fn send_close_notify(&mut self) -> bool {
        if self.failed.is_some() || self.sent_close_notify || self.conn.is_handshaking() {
            return false;
        }
        let queued = self.with_write_traffic(|traffic, out| {
            append(out, 64, |buf| match traffic.queue_close_notify(buf) {
                Ok(written) => Ok(written),
                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    Err(Some(required_size))
                }
                Err(_) => Err(None),
            })
        });
        self.sent_close_notify = matches!(queued, Ok(Some(true)));
        self.sent_close_notify
    }

    /// Bytes wait for the socket: call [`TlsStream::write_to`].
    pub fn wants_write(&self) -> bool {
        self.out_sent < self.pending_out.len()
    }

    /// Bytes queued for the socket and not yet taken by it.
    pub fn queued_bytes(&self) -> usize {
        self.pending_out.len() - self.out_sent
    }

    /// The handshake has not finished: no plaintext flows yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// What the handshake settled; `None` until it has finished.
    pub fn negotiated(&self) -> Option<Negotiated<'_>> {
        if self.conn.is_handshaking() {
            return None;
        }
        Some(Negotiated {
            version: self.conn.protocol_version()?,
            cipher_suite: self.conn.negotiated_cipher_suite()?.suite(),
            key_exchange: self
                .conn
                .negotiated_key_exchange_group()
                .map(|group| group.name()),
            alpn: self.conn.alpn_protocol(),
            server_name: self.server_name.as_deref(),
            resumed: self.conn.handshake_kind() == Some(HandshakeKind::Resumed),
        })
    }

    fn received(&self, plaintext: usize, drained: bool) -> Received {
        Received {
            plaintext,
            drained,
            closed: self.peer_notified.then_some(PeerClose::CloseNotify),
        }
    }

    /// TCP FIN from the peer.
    fn end_of_stream(&mut self) -> Result<Received, TlsError> {
        // RFC 8446 §6.1: a FIN mid-record or mid-handshake cut the peer's
        // data short. A connection closed before its first byte is not an
        // error: browsers and load balancers open spare connections.
        let cut = !self.peer_notified
            && !self.sent_close_notify
            && (!self.pending_in.is_empty()
                || (self.first_byte.is_some() && self.conn.is_handshaking()));
        if cut {
            return Err(self.fail(Fault::Truncated, Answer::Nothing));
        }
        self.pending_in = Vec::new();
        Ok(Received {
            plaintext: 0,
            drained: true,
            closed: Some(PeerClose::Eof),
        })
    }

    /// Processes the ciphertext at `buf[PLAINTEXT_RESERVE..end]` (kept tail,
    /// then new bytes); writes plaintext at `buf[..]` and returns its length.
    fn receive(&mut self, buf: &mut [u8], end: usize) -> Result<usize, TlsError> {
        let input = buf.get(PLAINTEXT_RESERVE..end).unwrap_or_default();
        if self.first_byte.is_none() {
            self.first_byte = input.first().copied();
            // Like nginx, one byte decides: a TLS record starts with a
            // content type (20-24, RFC 8446 §5.1), an HTTP method with a
            // capital letter (RFC 9110 §9).
            if input.first().is_some_and(u8::is_ascii_uppercase) {
                self.pending_out.extend_from_slice(PLAIN_HTTP_RESPONSE);
                return Err(self.fail(Fault::PlainHttp, Answer::BadRequest));
            }
        }
        if self.peer_notified || self.sent_close_notify {
            // RFC 8446 §6.1: data after a closure alert is ignored.
            self.pending_in = Vec::new();
            return Ok(0);
        }
        if !self.client_hello_read {
            if let Some(record) = whole_first_record(input) {
                self.client_hello_read = true;
                self.server_name = client_hello_server_name(record).map(Box::from);
            }
        }

        let mut consumed = PLAINTEXT_RESERVE;
        let mut plaintext = 0;
        loop {
            let (front, rest) = buf.split_at_mut(consumed);
            let input = rest.get_mut(..end - consumed).unwrap_or_default();
            let status = self.conn.process_tls_records(input);
            let discard = status.discard;
            let step = match status.state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    copy_plaintext(&mut traffic, front, &mut plaintext)
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    if encode(&mut self.pending_out, &mut data) {
                        Step::Continue
                    } else {
                        Step::Broken
                    }
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // The records are queued in `pending_out`; write_to sends them.
                    data.done();
                    Step::Continue
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_notified = true;
                    Step::Continue
                }
                // BlockedHandshake or WriteTraffic: no whole record is left.
                // Closed: both sides said close_notify. (Early data is off, so
                // no ReadEarlyData.)
                Ok(_) => Step::Stop,
                Err(error) => Step::Refused(error),
            };
            consumed += discard;
            match step {
                Step::Continue => {}
                Step::Stop => break,
                Step::Refused(error) => {
                    let rest = buf.get_mut(consumed..end).unwrap_or_default();
                    return Err(self.refused(error, rest));
                }
                Step::Broken => return Err(self.fail(Fault::Internal, Answer::Nothing)),
            }
        }

        let tail = buf.get(consumed..end).unwrap_or_default();
        if tail.is_empty() || self.peer_notified {
            self.pending_in = Vec::new();
        } else if tail.len() > MAX_PENDING_TLS_BYTES {
            // Only a handshake message spread over records can get here
            // (rustls refuses a long record from its header), so the alert
            // goes out in plain text, as during any handshake.
            self.pending_out
                .extend_from_slice(&plaintext_alert(AlertDescription::DecodeError));
            return Err(self.fail(
                Fault::HandshakeTooLarge,
                Answer::Alert(AlertDescription::DecodeError),
            ));
        } else {
            self.pending_in.clear();
            self.pending_in.extend_from_slice(tail);
        }
        Ok(plaintext)
    }

    /// Runs rustls on the kept input until it offers `WriteTraffic`, then
    /// lets `write` append records to `pending_out`. `None` while the
    /// handshake runs or once the connection is closed.
    fn with_write_traffic<T>(
        &mut self,
        write: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> T,
    ) -> Result<Option<T>, TlsError> {
        let mut write = Some(write);
        loop {
            let status = self.conn.process_tls_records(&mut self.pending_in);
            let discard = status.discard;
            let (step, result) = match status.state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let result = write
                        .take()
                        .map(|write| write(&mut traffic, &mut self.pending_out));
                    (Step::Stop, result)
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    if encode(&mut self.pending_out, &mut data) {
                        (Step::Continue, None)
                    } else {
                        (Step::Broken, None)
                    }
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    (Step::Continue, None)
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_notified = true;
                    (Step::Continue, None)
                }
                // BlockedHandshake, Closed. ReadTraffic cannot come: reads
                // leave no whole record behind; if it did, its plaintext would
                // stay in rustls for the next read.
                Ok(_) => (Step::Stop, None),
                Err(error) => (Step::Refused(error), None),
            };
            self.pending_in.drain(..discard.min(self.pending_in.len()));
            match step {
                Step::Continue => {}
                Step::Stop => return Ok(result),
                Step::Refused(error) => {
                    let mut rest = std::mem::take(&mut self.pending_in);
                    return Err(self.refused(error, &mut rest));
                }
                Step::Broken => return Err(self.fail(Fault::Internal, Answer::Nothing)),
            }
        }
    }

    /// rustls refused the peer's bytes: collect the alert it queued, if any,
    /// and end the connection. `rest` is the input after what rustls
    /// discarded.
    fn refused(&mut self, error: rustls::Error, rest: &mut [u8]) -> TlsError {
        // rustls queued the alert (after any records it had queued before
        // failing). It hands queued records out before it parses input, and
        // `wants_write` says whether any are left, so `rest` is never parsed
        // again (a second error would queue a second alert).
        let mut last = None;
        while self.conn.wants_write() {
            let before = self.pending_out.len();
            let encoded = match self.conn.process_tls_records(rest).state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut self.pending_out, &mut data)
                }
                _ => false,
            };
            if !encoded {
                break;
            }
            last = Some(before);
        }
        let answer = match last {
            None => Answer::Nothing,
            Some(start) => match read_plaintext_alert(&self.pending_out[start..]) {
                Some(alert) => Answer::Alert(alert),
                None => alert_rustls_sends(&error).map_or(Answer::EncryptedAlert, Answer::Alert),
            },
        };
        let fault = if self.first_byte != Some(HANDSHAKE_RECORD) {
            Fault::NotTls
        } else {
            fault_of(&error, answer)
        };
        self.fail(fault, answer)
    }

    /// Ends the connection; the first error stays its cause (a failed flush
    /// of the alert afterwards does not replace it).
    fn fail(&mut self, fault: Fault, answer: Answer) -> TlsError {
        let error = TlsError { fault, answer };
        self.failed.get_or_insert(error);
        self.pending_in = Vec::new();
        error
    }
}

/// Copies each decrypted record to `front[*plaintext..]`.
fn copy_plaintext(
    traffic: &mut ReadTraffic<'_, '_, ServerConnectionData>,
    front: &mut [u8],
    plaintext: &mut usize,
) -> Step {
    while let Some(record) = traffic.next_record() {
        let payload = match record {
            Ok(record) => record.payload,
            Err(error) => return Step::Refused(error),
        };
        // The reserve guarantees room (see PLAINTEXT_RESERVE).
        let Some(slot) = front.get_mut(*plaintext..*plaintext + payload.len()) else {
            return Step::Broken;
        };
        slot.copy_from_slice(payload);
        *plaintext += payload.len();
    }
    Step::Continue
}

/// Appends a handshake record or alert that rustls has ready. False only if
/// rustls misbehaves.
fn encode(out: &mut Vec<u8>, data: &mut EncodeTlsData<'_, ServerConnectionData>) -> bool {
    append(out, 1024, |buf| match data.encode(buf) {
        Ok(written) => Ok(written),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Err(Some(required_size))
        }
        Err(_) => Err(None),
    })
}

/// Appends what `write` puts into a zeroed tail of `out`, growing the tail
/// to the size `write` asks for (`Err(Some(size))`). False if `write` fails
/// otherwise; `out` is then unchanged.
fn append(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> bool {
    let len = out.len();
    let mut size = guess;
    loop {
        out.resize(len + size, 0);
        match write(&mut out[len..]) {
            Ok(written) => {
                out.truncate(len + written.min(size));
                return true;
            }
            Err(Some(required)) if required > size => size = required,
            Err(_) => {
                out.truncate(len);
                return false;
            }
        }
    }
}

/// A fatal alert record in plain text (RFC 8446 §5.1, §6): type 21, version
/// 0x0303, length 2, level fatal(2), description.
fn plaintext_alert(alert: AlertDescription) -> [u8; 7] {
    [21, 3, 3, 0, 2, 2, u8::from(alert)]
}

/// The description of a plain-text alert record, as rustls writes them
/// before the handshake keys exist.
fn read_plaintext_alert(record: &[u8]) -> Option<AlertDescription> {
    match record {
        [21, 3, _, 0, 2, _, description] => Some(AlertDescription::from(*description)),
        _ => None,
    }
}

/// The alert rustls sends for errors found after the handshake, when it goes
/// out encrypted (mirrors `handle_deframe_error` and `process_main_protocol`
/// in rustls 0.23).
fn alert_rustls_sends(error: &rustls::Error) -> Option<AlertDescription> {
    use rustls::Error as E;
    match error {
        E::InvalidMessage(message) => Some(AlertDescription::from(*message)),
        E::DecryptError => Some(AlertDescription::BadRecordMac),
        E::PeerSentOversizedRecord => Some(AlertDescription::RecordOverflow),
        E::NoApplicationProtocol => Some(AlertDescription::NoApplicationProtocol),
        E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec)
        | E::PeerMisbehaved(PeerMisbehaved::KeyEpochWithPendingFragment) => {
            Some(AlertDescription::UnexpectedMessage)
        }
        _ => None,
    }
}

/// What the peer did, from rustls' error and the alert that went out.
fn fault_of(error: &rustls::Error, answer: Answer) -> Fault {
    use rustls::Error as E;
    match error {
        E::PeerIncompatible(
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic,
        ) => Fault::UnsupportedVersion,
        E::PeerIncompatible(_) if answer == Answer::Alert(AlertDescription::ProtocolVersion) => {
            Fault::UnsupportedVersion
        }
        E::PeerIncompatible(_) => Fault::NoCommonParameters,
        E::NoApplicationProtocol => Fault::NoCommonAlpn,
        // rustls answers `decode_error` here, where RFC 8446 §5.2 asks for
        // `record_overflow`; the fault is the same either way.
        E::InvalidMessage(InvalidMessage::MessageTooLarge) => Fault::RecordOverflow,
        E::InvalidMessage(_) => Fault::Malformed,
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            Fault::UnexpectedMessage
        }
        E::DecryptError => Fault::BadRecordMac,
        E::PeerSentOversizedRecord => Fault::RecordOverflow,
        E::AlertReceived(alert) => Fault::PeerAlert(*alert),
        E::PeerMisbehaved(_)
        | E::InvalidCertificate(_)
        | E::NoCertificatesPresented
        | E::UnsupportedNameType
        | E::InvalidEncryptedClientHello(_) => Fault::Misbehaved,
        _ => Fault::Internal,
    }
}

/// The first record of `input`, if it is all there.
fn whole_first_record(input: &[u8]) -> Option<&[u8]> {
    let [_, _, _, high, low, ..] = *input else {
        return None;
    };
    input.get(..5 + usize::from(u16::from_be_bytes([high, low])))
}

/// The host name a ClientHello asks for (RFC 6066 §3), read from the first
/// record of a connection before rustls sees it. `None` if there is none,
/// if the ClientHello does not fit this record, or if the name is not a valid
/// DNS name (rustls ignores those too). Never panics: each length is checked.
fn client_hello_server_name(record: &[u8]) -> Option<&str> {
    let mut r = Reader(record);
    // RFC 8446 §5.1: TLSPlaintext = type(1) legacy_record_version(2) length(2).
    if r.u8()? != HANDSHAKE_RECORD {
        return None;
    }
    r.take(2)?;
    let fragment = r.vec16()?;
    // §4: Handshake = msg_type(1) = client_hello(1), length(3).
    let mut r = Reader(fragment);
    if r.u8()? != 1 {
        return None;
    }
    let [a, b, c] = *r.take(3)? else {
        return None;
    };
    let mut r = Reader(r.take(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))?);
    // §4.1.2: legacy_version(2) random(32) legacy_session_id<0..32>
    // cipher_suites<2..2^16-2> legacy_compression_methods<1..2^8-1>
    // extensions<8..2^16-1>.
    r.take(2 + 32)?;
    r.vec8()?;
    r.vec16()?;
    r.vec8()?;
    let mut extensions = Reader(r.vec16()?);
    while !extensions.0.is_empty() {
        // §4.2: Extension = extension_type(2) extension_data<0..2^16-1>.
        let extension_type = extensions.u16()?;
        let data = extensions.vec16()?;
        if extension_type != 0 {
            continue;
        }
        // RFC 6066 §3: server_name(0) holds ServerNameList =
        // ServerName<1..2^16-1>, ServerName = name_type(1) HostName<1..2^16-1>;
        // host_name(0) is the only name type.
        let mut names = Reader(Reader(data).vec16()?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                return DnsName::try_from(name).is_ok().then_some(name);
            }
        }
        return None;
    }
    None
}

/// Reads the TLS presentation language's integers and vectors (RFC 8446 §3).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let [high, low] = *self.take(2)? else {
            return None;
        };
        Some(u16::from_be_bytes([high, low]))
    }

    /// §3.4: a vector with a one-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// §3.4: a vector with a two-byte length.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

/// Server-side TLS settings: a certificate chain and key (PEM), TLS 1.3 and
/// 1.2, ALPN `http/1.1`. Cheap to clone (an `Arc`); see the module doc for
/// reloading.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    /// Where the PEM came from, for [`TlsConfig::reload_from_files`].
    files: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("files", &self.files)
            .field("alpn", &self.server.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug)]
pub enum ConfigError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The PEM text is broken (RFC 7468).
    Pem(pem::Error),
    /// No `CERTIFICATE` section in the certificate PEM.
    NoCertificate,
    /// No `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` section in the
    /// key PEM.
    NoKey,
    /// rustls refused the pair (for example, the key does not match the
    /// certificate, or its type is not supported).
    Rejected(rustls::Error),
    /// [`TlsConfig::reload_from_files`] on a config built from bytes.
    NoFiles,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "reading {}: {error}", path.display()),
            ConfigError::Pem(error) => write!(f, "PEM: {error}"),
            ConfigError::NoCertificate => f.write_str("no CERTIFICATE in the certificate PEM"),
            ConfigError::NoKey => f.write_str("no private key in the key PEM"),
            ConfigError::Rejected(error) => write!(f, "certificate and key refused: {error}"),
            ConfigError::NoFiles => f.write_str("this TLS config was not read from files"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl TlsConfig {
    /// Builds from PEM text: the certificate chain (leaf first, RFC 8446
    /// §4.4.2) and its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsConfig, ConfigError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::Pem)?;
        if chain.is_empty() {
            return Err(ConfigError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
            pem::Error::NoItemsFound => ConfigError::NoKey,
            error => ConfigError::Pem(error),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ConfigError::Rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(ConfigError::Rejected)?;
        // RFC 7301 §3.2: a client that offers ALPN without http/1.1 gets
        // `no_application_protocol`; one that offers none is served.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        // `max_early_data_size` stays 0: no 0-RTT data, which an attacker
        // could replay (RFC 8446 §8).
        Ok(TlsConfig {
            server: Arc::new(server),
            files: None,
        })
    }

    /// Builds from PEM files, remembering the paths for
    /// [`TlsConfig::reload_from_files`]. Reads the files (blocking I/O).
    pub fn from_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, ConfigError> {
        let (cert_chain, key) = (cert_chain.as_ref(), key.as_ref());
        let read = |path: &Path| {
            std::fs::read(path).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })
        };
        let mut config = TlsConfig::from_pem(&read(cert_chain)?, &read(key)?)?;
        config.files = Some((cert_chain.to_path_buf(), key.to_path_buf()));
        Ok(config)
    }

    /// Reads the same files again into a new config; `self` is unchanged, so
    /// on an error the server keeps serving the old certificate. The loop
    /// replaces its `TlsConfig` with the result: handshakes that start after
    /// that use the new certificate, open connections carry on (each holds
    /// its own keys). Call it off the loop thread (it reads files) and send
    /// the result to each loop.
    pub fn reload_from_files(&self) -> Result<TlsConfig, ConfigError> {
        let (cert_chain, key) = self.files.as_ref().ok_or(ConfigError::NoFiles)?;
        TlsConfig::from_files(cert_chain, key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use rustls::pki_types::ServerName;
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConfig, ClientConnection};

    use super::test_support::{client_hello, TestPki, TLS12_EXTENSIONS};
    use super::*;

    // ---- fixtures ----------------------------------------------------------

    /// xorshift64: deterministic, so a failing seed can be replayed.
    /// (`bad_input_never_panics` builds its input with it too.)
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }
    }

    /// One direction of an in-memory TCP connection. With `faults`, reads and
    /// writes are short and return `WouldBlock` at random points; `capacity`
    /// plays the kernel's socket buffer.
    struct Wire {
        bytes: VecDeque<u8>,
        /// Everything ever written, for tests that check exact bytes.
        written: Vec<u8>,
        faults: Option<Rng>,
        capacity: usize,
        eof: bool,
    }

    impl Wire {
        fn new(faults: Option<u64>) -> Wire {
            Wire {
                bytes: VecDeque::new(),
                written: Vec::new(),
                // xorshift must not start at 0, where it stays.
                faults: faults.map(|seed| Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)),
                capacity: usize::MAX,
                eof: false,
            }
        }

        /// A length for this call: short at random when faults are on.
        fn chunk(&mut self, len: usize) -> Result<usize, io::Error> {
            let Some(rng) = &mut self.faults else {
                return Ok(len);
            };
            if rng.below(4) == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            Ok(1 + rng.below(len))
        }
    }

    impl Read for Wire {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.bytes.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(ErrorKind::WouldBlock.into())
                };
            }
            let len = self.chunk(buf.len().min(self.bytes.len()))?;
            for (slot, byte) in buf.iter_mut().zip(self.bytes.drain(..len)) {
                *slot = byte;
            }
            Ok(len)
        }
    }

    impl Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self
                .capacity
                .saturating_sub(self.bytes.len())
                .min(buf.len());
            if room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let len = self.chunk(room)?;
            self.bytes.extend(&buf[..len]);
            self.written.extend_from_slice(&buf[..len]);
            Ok(len)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A rustls client and our server, joined by two wires.
    struct Pair {
        client: ClientConnection,
        server: TlsStream,
        to_server: Wire,
        to_client: Wire,
        scratch: Vec<u8>,
        server_got: Vec<u8>,
        client_got: Vec<u8>,
        server_error: Option<TlsError>,
        client_error: Option<rustls::Error>,
        closed: Option<PeerClose>,
        /// Heap bytes allocated minus freed inside the server's calls.
        server_heap: isize,
    }

    fn pki() -> TestPki {
        TestPki::new(&["localhost"])
    }

    fn server_config(pki: &TestPki) -> TlsConfig {
        TlsConfig::from_pem(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes()).expect("config")
    }

    fn tls13(pki: &TestPki) -> Arc<ClientConfig> {
        pki.client_config(&[&TLS13], &[b"http/1.1"])
    }

    impl Pair {
        fn new(server: &TlsConfig, client: Arc<ClientConfig>, faults: Option<u64>) -> Pair {
            Pair::with_limit(server, client, faults, 1 << 20)
        }

        fn with_limit(
            server: &TlsConfig,
            client: Arc<ClientConfig>,
            faults: Option<u64>,
            max_queued: usize,
        ) -> Pair {
            let name = ServerName::try_from("localhost").expect("name");
            let mut server_heap = 0;
            let server = counting::measure(&mut server_heap, || {
                TlsStream::new(server, max_queued).expect("server")
            });
            Pair {
                client: ClientConnection::new(client, name).expect("client"),
                server,
                to_server: Wire::new(faults),
                to_client: Wire::new(faults.map(|seed| seed.wrapping_mul(31) | 1)),
                scratch: vec![0; 64 * 1024],
                server_got: Vec::new(),
                client_got: Vec::new(),
                server_error: None,
                client_error: None,
                closed: None,
                server_heap,
            }
        }

        fn connected(server: &TlsConfig, client: Arc<ClientConfig>) -> Pair {
            let mut pair = Pair::new(server, client, None);
            pair.pump();
            assert!(!pair.server.is_handshaking(), "{:?}", pair.server_error);
            assert!(!pair.client.is_handshaking(), "{:?}", pair.client_error);
            pair
        }

        /// Moves bytes both ways until both sides are quiet.
        fn pump(&mut self) {
            for _ in 0..100_000 {
                self.client_writes();
                self.server_reads();
                self.server_writes();
                self.client_reads();
                let server_quiet = self.server_error.is_some()
                    || (self.to_server.bytes.is_empty()
                        && (!self.to_server.eof || self.closed == Some(PeerClose::Eof)));
                let client_quiet = self.to_client.bytes.is_empty() || self.client_error.is_some();
                if server_quiet
                    && client_quiet
                    && !self.client.wants_write()
                    && !self.server.wants_write()
                {
                    return;
                }
            }
            panic!("the pair never went quiet");
        }

        fn client_writes(&mut self) {
            while self.client.wants_write() {
                match self.client.write_tls(&mut self.to_server) {
                    Ok(_) => {}
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) => panic!("{error}"),
                }
            }
        }

        fn server_reads(&mut self) {
            while self.server_error.is_none() {
                let (server, wire, scratch) =
                    (&mut self.server, &mut self.to_server, &mut self.scratch);
                match counting::measure(&mut self.server_heap, || server.read_from(wire, scratch)) {
                    Ok(received) => {
                        self.server_got
                            .extend_from_slice(&self.scratch[..received.plaintext]);
                        self.closed = received.closed.or(self.closed);
                        if received.drained {
                            break;
                        }
                    }
                    Err(error) => self.server_error = Some(error),
                }
            }
        }

        fn server_writes(&mut self) {
            let (server, wire) = (&mut self.server, &mut self.to_client);
            if let Err(error) = counting::measure(&mut self.server_heap, || server.write_to(wire)) {
                self.server_error = Some(error);
            }
        }

        fn client_reads(&mut self) {
            while !self.to_client.bytes.is_empty() && self.client_error.is_none() {
                match self.client.read_tls(&mut self.to_client) {
                    Ok(_) => {
                        if let Err(error) = self.client.process_new_packets() {
                            self.client_error = Some(error);
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) => panic!("{error}"),
                }
                self.client_takes_plaintext();
            }
            self.client_takes_plaintext();
        }

        fn client_takes_plaintext(&mut self) {
            let mut buf = [0; 4096];
            while let Ok(read @ 1..) = self.client.reader().read(&mut buf) {
                self.client_got.extend_from_slice(&buf[..read]);
            }
        }

        /// Sends all of `data` from the server, pumping whenever the queue
        /// is full; checks the queue never passes its limit.
        fn server_sends(&mut self, data: &[u8], limit: usize) {
            let mut sent = 0;
            while sent < data.len() {
                let server = &mut self.server;
                let taken = counting::measure(&mut self.server_heap, || server.send(&data[sent..]))
                    .expect("send");
                // One send's records: the plaintext plus at most 29 bytes each.
                assert!(self.server.queued_bytes() <= limit + limit / 16_384 * 29 + 64);
                sent += taken;
                self.pump();
            }
        }

        /// Writes raw bytes to the server, as a client that is not rustls,
        /// and lets the server read them (and the FIN, if `to_server.eof`).
        fn raw_to_server(&mut self, bytes: &[u8]) {
            self.to_server.bytes.extend(bytes);
            for _ in 0..100_000 {
                self.server_reads();
                self.server_writes();
                if self.server_error.is_some()
                    || (self.to_server.bytes.is_empty()
                        && (!self.to_server.eof || self.closed.is_some()))
                {
                    return;
                }
            }
            panic!(
                "the server never went quiet: {} bytes left, eof {}, closed {:?}, pending {}",
                self.to_server.bytes.len(),
                self.to_server.eof,
                self.closed,
                self.server.pending_in.len()
            );
        }

        /// Sends all of `data` from the client, pumping whenever rustls'
        /// own buffer is full.
        fn client_sends(&mut self, data: &[u8]) {
            let mut sent = 0;
            while sent < data.len() {
                sent += self
                    .client
                    .writer()
                    .write(&data[sent..])
                    .expect("client write");
                self.pump();
            }
        }

        fn server_failed(&self) -> TlsError {
            self.server_error.expect("the server should have failed")
        }

        /// Everything the server wrote.
        fn wire_to_client(&self) -> &[u8] {
            &self.to_client.written
        }
    }

    /// The first flight of a rustls client, for the SNI parser.
    fn rustls_client_hello(name: &str) -> Vec<u8> {
        let pki = pki();
        let name = ServerName::try_from(name.to_string()).expect("name");
        let mut client = ClientConnection::new(tls13(&pki), name).expect("client");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("hello");
        hello
    }

    // ---- handshake and data ------------------------------------------------

    #[test]
    fn tls13_handshake_then_data_both_ways() {
        let pki = pki();
        let mut pair = Pair::connected(&server_config(&pki), tls13(&pki));

        let negotiated = pair.server.negotiated().expect("negotiated");
        assert_eq!(negotiated.version, ProtocolVersion::TLSv1_3);
        assert_eq!(negotiated.alpn, Some(&b"http/1.1"[..]));
        assert_eq!(negotiated.server_name, Some("localhost"));
        assert_eq!(negotiated.key_exchange, Some(NamedGroup::X25519));
        assert!(!negotiated.resumed);
        assert_eq!(
            negotiated.to_string(),
            format!(
                "TLSv1_3 {:?} X25519 alpn=http/1.1 sni=localhost",
                negotiated.cipher_suite
            )
        );

        pair.client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .expect("write");
        pair.pump();
        assert_eq!(pair.server_got, b"GET / HTTP/1.1\r\n\r\n");

        pair.server_sends(b"HTTP/1.1 204 No Content\r\n\r\n", 1 << 20);
        assert_eq!(pair.client_got, b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(pair.server_error, None);
        assert!(!pair.server.wants_write());
    }

    #[test]
    fn tls12_handshake_then_data_both_ways() {
        let pki = pki();
        let client = pki.client_config(&[&TLS12], &[b"http/1.1"]);
        let mut pair = Pair::connected(&server_config(&pki), client);
        let negotiated = pair.server.negotiated().expect("negotiated");
        assert_eq!(negotiated.version, ProtocolVersion::TLSv1_2);
        assert_eq!(negotiated.server_name, Some("localhost"));

        pair.client.writer().write_all(b"ping").expect("write");
        pair.pump();
        pair.server_sends(b"pong", 1 << 20);
        assert_eq!(
            (&pair.server_got[..], &pair.client_got[..]),
            (&b"ping"[..], &b"pong"[..])
        );
    }

    #[test]
    fn request_in_the_same_flight_as_the_client_finished() {
        let pki = pki();
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        // rustls holds this until the handshake ends, then sends it right
        // after its Finished: handshake and plaintext in one read.
        pair.client
            .writer()
            .write_all(b"GET /early HTTP/1.1\r\n\r\n")
            .expect("write");
        pair.pump();
        assert_eq!(pair.server_got, b"GET /early HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn client_key_update_is_answered_and_traffic_goes_on() {
        let pki = pki();
        let mut pair = Pair::connected(&server_config(&pki), tls13(&pki));
        // RFC 8446 §4.6.3: update_requested obliges us to update ours too.
        pair.client.refresh_traffic_keys().expect("key update");
        pair.client.writer().write_all(b"after").expect("write");
        pair.pump();
        pair.server_sends(b"still readable", 1 << 20);
        assert_eq!(
            (&pair.server_got[..], &pair.client_got[..]),
            (&b"after"[..], &b"still readable"[..])
        );
        assert_eq!(
            (pair.server_error, pair.client_error.is_none()),
            (None, true)
        );
    }

    #[test]
    fn client_without_alpn_or_sni_is_served() {
        let pki = TestPki::new(&["127.0.0.1"]);
        let name = ServerName::try_from("127.0.0.1").expect("ip");
        let mut pair = Pair::new(
            &server_config(&pki),
            pki.client_config(&[&TLS13], &[]),
            None,
        );
        pair.client =
            ClientConnection::new(pki.client_config(&[&TLS13], &[]), name).expect("client");
        pair.pump();
        let negotiated = pair.server.negotiated().expect("negotiated");
        assert_eq!((negotiated.alpn, negotiated.server_name), (None, None));
    }

    #[test]
    fn survives_short_reads_short_writes_and_would_block() {
        let pki = pki();
        let config = server_config(&pki);
        let up: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let down: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 241) as u8).collect();
        for seed in 1..=20 {
            let mut pair = Pair::new(&config, tls13(&pki), Some(seed));
            pair.pump();
            assert!(
                !pair.server.is_handshaking(),
                "seed {seed}: {:?}",
                pair.server_error
            );
            pair.client_sends(&up);
            pair.server_sends(&down, 1 << 20);
            assert_eq!(pair.server_got, up, "seed {seed}");
            assert_eq!(pair.client_got, down, "seed {seed}");
            assert_eq!(pair.server_error, None, "seed {seed}");
        }
    }

    #[test]
    fn large_transfer_stays_under_the_queue_limit() {
        let pki = pki();
        let limit = 64 * 1024;
        let mut pair = Pair::with_limit(&server_config(&pki), tls13(&pki), None, limit);
        pair.pump();
        // A small socket buffer, so the queue fills and waits for WRITABLE.
        pair.to_client.capacity = 16 * 1024;
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 253) as u8).collect();
        pair.server_sends(&data, limit);
        assert!(pair.client_got == data);

        pair.client_sends(&data);
        assert!(pair.server_got == data);
        assert!(pair.server.pending_in.capacity() <= MAX_PENDING_TLS_BYTES);
    }

    #[test]
    fn send_takes_nothing_during_the_handshake() {
        let pki = pki();
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        assert_eq!(pair.server.send(b"early"), Ok(0));
        assert!(!pair.server.send_close_notify());
        assert_eq!(pair.server.negotiated(), None);
        pair.pump();
        assert_eq!(pair.server.send(b"now"), Ok(3));
    }

    // ---- closure -----------------------------------------------------------

    #[test]
    fn client_close_notify_then_fin() {
        let pki = pki();
        let mut pair = Pair::connected(&server_config(&pki), tls13(&pki));
        pair.client
            .writer()
            .write_all(b"last words")
            .expect("write");
        pair.client.send_close_notify();
        pair.pump();
        assert_eq!(pair.server_got, b"last words");
        assert_eq!(pair.closed, Some(PeerClose::CloseNotify));

        // RFC 8446 §6.1: data after close_notify is ignored, even garbage.
        pair.raw_to_server(&[23, 3, 3, 0, 1, 0xff, 1, 2, 3]);
        assert_eq!(
            (pair.server_error, &pair.server_got[..]),
            (None, &b"last words"[..])
        );

        pair.to_server.eof = true;
        pair.pump();
        assert_eq!(pair.closed, Some(PeerClose::Eof));
        assert_eq!(pair.server_error, None);
    }

    #[test]
    fn server_close_notify_reaches_the_client() {
        let pki = pki();
        let mut pair = Pair::connected(&server_config(&pki), tls13(&pki));
        assert!(pair.server.send_close_notify());
        assert!(!pair.server.send_close_notify(), "only once");
        assert_eq!(pair.server.send(b"too late"), Ok(0));
        pair.pump();
        // The client's reader reports a clean end: Ok(0), not UnexpectedEof.
        assert_eq!(
            pair.client.reader().read(&mut [0; 8]).expect("clean close"),
            0
        );
    }

    #[test]
    fn fin_without_close_notify_is_an_incomplete_close_not_an_error() {
        let pki = pki();
        let mut pair = Pair::connected(&server_config(&pki), tls13(&pki));
        pair.to_server.eof = true;
        pair.pump();
        assert_eq!(
            (pair.closed, pair.server_error),
            (Some(PeerClose::Eof), None)
        );
    }

    #[test]
    fn fin_before_any_byte_is_not_an_error() {
        let pki = pki();
        let mut server = TlsStream::new(&server_config(&pki), 1 << 20).expect("server");
        let mut wire = Wire::new(None);
        wire.eof = true;
        let received = server.read_from(&mut wire, &mut [0; 64 * 1024]);
        assert_eq!(received.map(|r| r.closed), Ok(Some(PeerClose::Eof)));
    }

    // ---- bad input -----------------------------------------------------------

    #[test]
    fn garbage_instead_of_client_hello_gets_decode_error() {
        let pki = pki();
        for garbage in [&[0xff; 16][..], &[0; 5], &[0x80, 0x2e, 0x01, 0x03, 0x01]] {
            let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
            pair.raw_to_server(garbage);
            let error = pair.server_failed();
            assert_eq!(error.fault, Fault::NotTls, "{garbage:?}");
            assert_eq!(error.alert(), Some(AlertDescription::DecodeError));
            assert_eq!(
                pair.wire_to_client(),
                plaintext_alert(AlertDescription::DecodeError)
            );
        }
    }

    #[test]
    fn malformed_client_hello_gets_decode_error() {
        let pki = pki();
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        // A ClientHello that ends after its legacy_version.
        pair.raw_to_server(&[22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]);
        let error = pair.server_failed();
        assert_eq!(error.fault, Fault::Malformed);
        assert_eq!(
            pair.wire_to_client(),
            plaintext_alert(AlertDescription::DecodeError)
        );
    }

    #[test]
    fn plain_http_gets_a_plain_400() {
        let pki = pki();
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        pair.raw_to_server(b"GET / HTTP/1.1\r\nHost: localhost:6788\r\n\r\n");
        assert_eq!(
            pair.server_failed(),
            TlsError {
                fault: Fault::PlainHttp,
                answer: Answer::BadRequest
            }
        );
        let answer = String::from_utf8(pair.wire_to_client().to_vec()).expect("text");
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").expect("head");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{answer}"
        );
        // Later reads return the same error and queue nothing more.
        let (server, wire, scratch) = (&mut pair.server, &mut pair.to_server, &mut pair.scratch);
        assert_eq!(
            server.read_from(wire, scratch),
            Err(pair.server_error.expect("error"))
        );
    }

    #[test]
    fn truncated_handshake_is_reported() {
        let pki = pki();
        let hello = rustls_client_hello("localhost");
        for cut in [1, 5, 50, hello.len() - 1] {
            let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
            pair.to_server.eof = true;
            pair.raw_to_server(&hello[..cut]);
            assert_eq!(
                pair.server_failed(),
                TlsError {
                    fault: Fault::Truncated,
                    answer: Answer::Nothing
                },
                "cut at {cut}"
            );
        }
        // The whole ClientHello, then FIN before the client's Finished.
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        pair.to_server.eof = true;
        pair.raw_to_server(&hello);
        assert_eq!(pair.server_failed().fault, Fault::Truncated);
    }

    #[test]
    fn tls10_client_gets_protocol_version() {
        let pki = pki();
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        // TLS 1.0 (0x0301), no supported_versions: RFC 8996 retired it.
        pair.raw_to_server(&client_hello(0x0301, &[0xc02b, 0xc013], TLS12_EXTENSIONS));
        let error = pair.server_failed();
        assert_eq!(error.fault, Fault::UnsupportedVersion);
        assert_eq!(
            pair.wire_to_client(),
            plaintext_alert(AlertDescription::ProtocolVersion)
        );
    }

    #[test]
    fn client_without_a_common_cipher_suite_gets_handshake_failure() {
        let pki = pki();
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        // TLS_RSA_WITH_AES_128_CBC_SHA and TLS_RSA_WITH_3DES_EDE_CBC_SHA only.
        pair.raw_to_server(&client_hello(0x0303, &[0x002f, 0x000a], TLS12_EXTENSIONS));
        let error = pair.server_failed();
        assert_eq!(error.fault, Fault::NoCommonParameters);
        assert_eq!(
            pair.wire_to_client(),
            plaintext_alert(AlertDescription::HandshakeFailure)
        );
    }

    #[test]
    fn client_without_http11_in_alpn_gets_no_application_protocol() {
        let pki = pki();
        let mut pair = Pair::new(
            &server_config(&pki),
            pki.client_config(&[&TLS13], &[b"h2"]),
            None,
        );
        pair.pump();
        let error = pair.server_failed();
        assert_eq!(error.fault, Fault::NoCommonAlpn);
        assert_eq!(error.alert(), Some(AlertDescription::NoApplicationProtocol));
        assert_eq!(
            pair.client_error,
            Some(rustls::Error::AlertReceived(
                AlertDescription::NoApplicationProtocol
            ))
        );
    }

    #[test]
    fn client_that_rejects_our_certificate_is_a_peer_alert() {
        let pki = pki();
        let stranger = TestPki::new(&["localhost"]);
        let mut pair = Pair::new(&server_config(&pki), tls13(&stranger), None);
        pair.pump();
        let error = pair.server_failed();
        assert!(matches!(error.fault, Fault::PeerAlert(_)), "{error}");
        assert_eq!(error.answer, Answer::Nothing);
    }

    #[test]
    fn tampered_record_gets_bad_record_mac() {
        let pki = pki();
        let mut pair = Pair::connected(&server_config(&pki), tls13(&pki));
        pair.client.writer().write_all(b"hello").expect("write");
        pair.client_writes();
        let last = pair.to_server.bytes.back_mut().expect("a record");
        *last ^= 1;
        pair.pump();
        let error = pair.server_failed();
        assert_eq!(error.fault, Fault::BadRecordMac);
        // Encrypted, so the alert is named from rustls' rule; the client
        // decrypts it and confirms.
        assert_eq!(error.alert(), Some(AlertDescription::BadRecordMac));
        assert_eq!(
            pair.client_error,
            Some(rustls::Error::AlertReceived(AlertDescription::BadRecordMac))
        );
    }

    #[test]
    fn oversized_record_header_is_refused() {
        let pki = pki();
        let mut pair = Pair::connected(&server_config(&pki), tls13(&pki));
        // A header declaring 65 535 bytes: refused before the body arrives.
        pair.raw_to_server(&[23, 3, 3, 0xff, 0xff]);
        pair.pump();
        let error = pair.server_failed();
        assert_eq!(error.fault, Fault::RecordOverflow);
        assert_eq!(error.alert(), Some(AlertDescription::DecodeError));
        assert_eq!(
            pair.client_error,
            Some(rustls::Error::AlertReceived(AlertDescription::DecodeError))
        );
    }

    #[test]
    fn client_hello_past_the_pending_limit_gets_decode_error() {
        let pki = pki();
        let mut pair = Pair::new(&server_config(&pki), tls13(&pki), None);
        // A ClientHello announcing 40 000 bytes, in whole 16 KiB records:
        // rustls keeps the fragments until the message is complete.
        let mut fragment = vec![1, 0, 0x9c, 0x40];
        fragment.resize(1 << 14, 0);
        let mut records = vec![22, 3, 1, 0x40, 0];
        records.extend(&fragment);
        records.extend([22, 3, 1, 0x40, 0]);
        records.extend(&fragment[..3000]);
        assert!(records.len() > MAX_PENDING_TLS_BYTES);
        // Just under the limit: kept, no answer yet.
        pair.raw_to_server(&records[..MAX_PENDING_TLS_BYTES]);
        assert_eq!((pair.server_error, pair.to_client.bytes.len()), (None, 0));
        pair.raw_to_server(&records[MAX_PENDING_TLS_BYTES..]);
        let error = pair.server_failed();
        assert_eq!(error.fault, Fault::HandshakeTooLarge);
        assert_eq!(
            pair.wire_to_client(),
            plaintext_alert(AlertDescription::DecodeError)
        );
    }

    #[test]
    fn read_buffer_smaller_than_the_minimum_is_our_error() {
        let pki = pki();
        let mut server = TlsStream::new(&server_config(&pki), 1 << 20).expect("server");
        let mut wire = Wire::new(None);
        wire.bytes.extend(rustls_client_hello("localhost"));
        let error = server.read_from(&mut wire, &mut [0; MIN_READ_BUFFER - 1]);
        assert_eq!(error.map_err(|e| e.fault), Err(Fault::ReadBufferTooSmall));
    }

    #[test]
    fn bad_input_never_panics() {
        // Random bytes after a valid record header, and every truncation of
        // a real ClientHello followed by garbage, fed in random slices.
        let pki = pki();
        let config = server_config(&pki);
        let hello = rustls_client_hello("localhost");
        let mut rng = Rng(0x5eed);
        for round in 0..300 {
            let mut input = if round % 2 == 0 {
                vec![22, 3, 1, 0, 200]
            } else {
                hello[..rng.below(hello.len())].to_vec()
            };
            input.extend((0..rng.below(400)).map(|_| rng.below(256) as u8));
            let mut pair = Pair::new(&config, tls13(&pki), Some(round));
            pair.to_server.eof = true;
            pair.raw_to_server(&input);
            assert!(
                pair.server_error.is_some(),
                "round {round} ended without an error"
            );
        }
    }

    // ---- SNI parser (RFC 6066 §3) ------------------------------------------

    #[test]
    fn sni_is_read_from_a_real_client_hello() {
        let hello = rustls_client_hello("pushloop.example");
        let record = whole_first_record(&hello).expect("whole record");
        assert_eq!(client_hello_server_name(record), Some("pushloop.example"));
        // An IP address is never sent as SNI (RFC 6066 §3).
        let hello = rustls_client_hello("192.0.2.1");
        assert_eq!(client_hello_server_name(&hello), None);
    }

    #[test]
    fn sni_parser_refuses_every_truncation() {
        let hello = rustls_client_hello("localhost");
        for cut in 0..hello.len() {
            assert_eq!(
                client_hello_server_name(&hello[..cut]),
                None,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn sni_from_a_handmade_hello_and_invalid_names() {
        let sni = |name: &[u8]| {
            let mut data = ((name.len() + 3) as u16).to_be_bytes().to_vec();
            data.push(0);
            data.extend((name.len() as u16).to_be_bytes());
            data.extend(name);
            client_hello(0x0303, &[0x1301], &[(10, &[0, 2, 0, 0x1d]), (0, &data)])
        };
        assert_eq!(
            client_hello_server_name(&sni(b"a.example")),
            Some("a.example")
        );
        assert_eq!(client_hello_server_name(&sni(b"bad name")), None);
        assert_eq!(client_hello_server_name(&sni(b"\xff\xfe")), None);
        assert_eq!(
            client_hello_server_name(&client_hello(0x0303, &[0x1301], &[])),
            None
        );
    }

    // ---- configuration and reload ----------------------------------------------

    #[test]
    fn config_errors_say_what_is_wrong() {
        let pki = pki();
        let (chain, key) = (pki.chain_pem.as_bytes(), pki.key_pem.as_bytes());
        assert!(matches!(
            TlsConfig::from_pem(b"", key),
            Err(ConfigError::NoCertificate)
        ));
        assert!(matches!(
            TlsConfig::from_pem(chain, b""),
            Err(ConfigError::NoKey)
        ));
        let other = TestPki::new(&["localhost"]);
        assert!(matches!(
            TlsConfig::from_pem(chain, other.key_pem.as_bytes()),
            Err(ConfigError::Rejected(_))
        ));
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            TlsConfig::from_pem(broken, key),
            Err(ConfigError::Pem(_))
        ));
        let missing = TlsConfig::from_files("/nonexistent/cert.pem", "/nonexistent/key.pem");
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
        let from_bytes = TlsConfig::from_pem(chain, key).expect("config");
        assert!(matches!(
            from_bytes.reload_from_files(),
            Err(ConfigError::NoFiles)
        ));
    }

    #[test]
    fn reload_serves_the_new_certificate_and_keeps_open_connections() {
        let dir = std::env::temp_dir().join(format!("pushloop-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        let write = |pki: &TestPki| {
            std::fs::write(&cert_path, &pki.chain_pem).expect("cert");
            std::fs::write(&key_path, &pki.key_pem).expect("key");
        };
        let (old, new) = (pki(), pki());
        write(&old);
        let config = TlsConfig::from_files(&cert_path, &key_path).expect("config");
        let mut before = Pair::connected(&config, tls13(&old));

        write(&new);
        let reloaded = config.reload_from_files().expect("reload");
        let mut after = Pair::connected(&reloaded, tls13(&new));
        let seen = |pair: &Pair| pair.client.peer_certificates().expect("certs")[0].clone();
        assert_eq!(seen(&after), new.server_cert);
        assert_eq!(seen(&before), old.server_cert);

        // The connection from before the reload carries on.
        before
            .client
            .writer()
            .write_all(b"still here")
            .expect("write");
        before.pump();
        before.server_sends(b"yes", 1 << 20);
        assert_eq!(
            (&before.server_got[..], &before.client_got[..]),
            (&b"still here"[..], &b"yes"[..])
        );
        after.server_sends(b"new", 1 << 20);
        assert_eq!(after.client_got, b"new");

        // A broken file leaves the caller with the config it had.
        std::fs::write(&key_path, "not a key").expect("key");
        assert!(matches!(
            reloaded.reload_from_files(),
            Err(ConfigError::NoKey)
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    // ---- memory --------------------------------------------------------------

    /// The figures in the module doc. `cargo test --features tls idle -- --nocapture`
    /// prints them.
    #[test]
    fn idle_connection_memory() {
        let pki = pki();
        let config = server_config(&pki);
        let idle = |config: &TlsConfig, client: Arc<ClientConfig>| {
            let mut pair = Pair::new(config, client, None);
            // Wires that never grow, so only the server's own heap is counted.
            pair.to_client.bytes.reserve(1 << 16);
            pair.to_client.written.reserve(1 << 16);
            pair.pump();
            pair.client
                .writer()
                .write_all(b"GET /echo HTTP/1.1\r\n\r\n")
                .expect("write");
            pair.pump();
            pair.server_sends(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 1 << 20);
            assert!(
                pair.server.pending_in.capacity() == 0 && pair.server.pending_out.capacity() == 0
            );
            pair.server_heap
        };
        let tls13_heap = idle(&config, tls13(&pki));
        let tls12_heap = idle(&config, pki.client_config(&[&TLS12], &[b"http/1.1"]));

        // Without resumption, nothing lands in the shared session cache.
        let mut no_resumption = (*config.server).clone();
        no_resumption.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        no_resumption.send_tls13_tickets = 0;
        let no_resumption = TlsConfig {
            server: Arc::new(no_resumption),
            files: None,
        };
        let own_heap = idle(&no_resumption, tls13(&pki));

        let buffered_heap = buffered_idle_heap(&config, tls13(&pki));
        let inline = std::mem::size_of::<TlsStream>();
        println!(
            "idle TLS connection: {own_heap} B heap (TLS 1.3, no tickets), {tls13_heap} B \
             (TLS 1.3 with the 2 tickets in the shared cache), {tls12_heap} B (TLS 1.2); \
             {inline} B inline. rustls' buffered ServerConnection: {buffered_heap} B heap."
        );
        assert!(own_heap <= 3 * 1024, "{own_heap}");
        assert!(tls13_heap <= 3 * 1024 + 512, "{tls13_heap}");
        assert!(inline <= 1280, "{inline}");
        assert!(buffered_heap > own_heap + 3 * 1024, "{buffered_heap}");
    }

    /// The same exchange through rustls' buffered `ServerConnection`, for the
    /// comparison in the module doc.
    fn buffered_idle_heap(config: &TlsConfig, client: Arc<ClientConfig>) -> isize {
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(client, name).expect("client");
        let mut heap = 0;
        let mut server = counting::measure(&mut heap, || {
            rustls::ServerConnection::new(config.server.clone()).expect("server")
        });
        let mut wire = Vec::with_capacity(1 << 16);
        let mut plaintext = [0; 64];
        for round in 0..4 {
            if round == 3 {
                client
                    .writer()
                    .write_all(b"GET /echo HTTP/1.1\r\n\r\n")
                    .expect("write");
            }
            wire.clear();
            while client.wants_write() {
                client.write_tls(&mut wire).expect("client out");
            }
            counting::measure(&mut heap, || {
                let mut input = &wire[..];
                while !input.is_empty() {
                    server.read_tls(&mut input).expect("read_tls");
                    server.process_new_packets().expect("process");
                }
                let _ = server.reader().read(&mut plaintext);
            });
            wire.clear();
            counting::measure(&mut heap, || {
                if round == 3 {
                    server
                        .writer()
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                        .expect("w");
                }
                while server.wants_write() {
                    server.write_tls(&mut wire).expect("server out");
                }
            });
            let mut input = &wire[..];
            while !input.is_empty() {
                client.read_tls(&mut input).expect("client in");
                client.process_new_packets().expect("client process");
            }
        }
        assert!(!server.is_handshaking());
        heap
    }

    /// A global allocator that counts, per thread, the bytes allocated minus
    /// the bytes freed; only this module's tests read it.
    #[allow(unsafe_code)]
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
        }

        fn add(bytes: isize) {
            // `try_with`: a thread being torn down still allocates.
            let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
        }

        /// Runs `f`, adding the heap bytes it kept (allocated minus freed) to `heap`.
        pub fn measure<T>(heap: &mut isize, f: impl FnOnce() -> T) -> T {
            let before = LIVE.with(Cell::get);
            let result = f();
            *heap += LIVE.with(Cell::get) - before;
            result
        }

        struct Counting;

        // SAFETY: every method forwards to `System` with the caller's
        // arguments unchanged, so `System`'s guarantees hold; the counting
        // touches only a const-initialised thread-local `Cell`, which never
        // allocates.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                add(layout.size() as isize);
                // SAFETY: as above; `layout` comes from the caller.
                unsafe { System.alloc(layout) }
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                add(layout.size() as isize);
                // SAFETY: as above.
                unsafe { System.alloc_zeroed(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                add(-(layout.size() as isize));
                // SAFETY: `ptr` was allocated by `System` with `layout`.
                unsafe { System.dealloc(ptr, layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                add(new_size as isize - layout.size() as isize);
                // SAFETY: `ptr` was allocated by `System` with `layout`.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    }
}
