//! TLS on a connection's way out (feature `tls`): the outbox written through
//! its [`TlsStream`], `close_notify` on close, and the end of a connection
//! that a TLS error stopped. The way in is the loop's (`server::event_loop`,
//! `read_tls`); the transform itself is [`crate::tls`].
//!
//! **Writing.** The outbox is flushed into a [`Sink`] instead of the socket:
//! small chunks are gathered into one record's worth of plaintext (each
//! [`TlsStream::send`] makes at least one record, 22-29 bytes of overhead),
//! large ones are handed over a slice at a time, and after each `send` the
//! records go to the socket. Once the socket would block, nothing more is
//! encrypted: the plaintext stays in the outbox, so ciphertext waiting for
//! the socket is at most one slice ([`SEND_SLICE`]) plus a handshake flight,
//! and a drained connection keeps no buffer.
//!
//! **Closing.** A connection that closes after its last bytes gets a
//! `close_notify` behind them (RFC 8446 §6.1), in the same write (with the
//! FIN, see [`crate::engine::last_write`]). One closed by a deadline or at
//! shutdown gets it when it is reaped, if nothing it was owed is lost.
//!
//! **Errors.** [`Core::tls_failed`]: count the fault, trace it, write the
//! alert (or the plain `400`) once, shut the write side, close.

use std::io::{self, ErrorKind, IoSlice, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use mio::Token;

use crate::engine::connection::{Closing, Kind};
use crate::engine::last_write::LastWrite;
use crate::engine::outbox::Flushed;
use crate::engine::stats::Ending;
use crate::engine::Core;
use crate::tls::{Answer, Fault, Flush, PeerClose, TlsConfig, TlsError, TlsStream};

/// Plaintext of one TLS record: 2^14 bytes (RFC 8446 §5.1). Chunks smaller
/// than this are gathered up to it before they are encrypted.
const RECORD_PLAINTEXT: usize = 1 << 14;

/// Plaintext handed to one [`TlsStream::send`] at most: four records. It
/// bounds the ciphertext that waits for a socket that stopped taking bytes.
pub(crate) const SEND_SLICE: usize = 4 * RECORD_PLAINTEXT;

/// The outbox's writer for a TLS connection: plaintext in, records out to
/// the socket.
struct Sink<'a> {
    tls: &'a mut TlsStream,
    socket: &'a mut TcpStream,
    /// The loop's gathering buffer ([`Core::tls_gather`]).
    gather: &'a mut Vec<u8>,
    /// The socket would block: encrypt nothing more this time.
    blocked: bool,
    /// The error that stopped the writing, as TLS tells it.
    error: Option<TlsError>,
}

impl Sink<'_> {
    fn fail(&mut self, error: TlsError) -> io::Error {
        self.error = Some(error);
        io::Error::other(error)
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.blocked {
            return Err(ErrorKind::WouldBlock.into());
        }
        // Records left from before go first: they may be what keeps `send`
        // from taking more, and a socket that takes them all raises no
        // WRITABLE edge to come back for the rest.
        if self.tls.wants_write() {
            match self.tls.write_to(self.socket) {
                Ok(Flush::Drained) => {}
                Ok(Flush::Blocked) => {
                    self.blocked = true;
                    return Err(ErrorKind::WouldBlock.into());
                }
                Err(error) => return Err(self.fail(error)),
            }
        }
        let first = bufs.first().map_or(&[][..], |buf| &buf[..]);
        let sent = if first.len() >= RECORD_PLAINTEXT || bufs.len() == 1 {
            // Large enough for whole records on its own: no copy.
            self.tls.send(&first[..first.len().min(SEND_SLICE)])
        } else {
            self.gather.clear();
            for buf in bufs {
                let room = RECORD_PLAINTEXT - self.gather.len();
                if room == 0 {
                    break;
                }
                self.gather.extend_from_slice(&buf[..buf.len().min(room)]);
            }
            self.tls.send(&self.gather[..])
        };
        let taken = match sent {
            Ok(taken) => taken,
            Err(error) => return Err(self.fail(error)),
        };
        if taken == 0 {
            // Still handshaking (the queue is empty now): the plaintext
            // waits in the outbox until the handshake ends.
            return Err(ErrorKind::WouldBlock.into());
        }
        match self.tls.write_to(self.socket) {
            Ok(Flush::Drained) => {}
            Ok(Flush::Blocked) => self.blocked = true,
            Err(error) => return Err(self.fail(error)),
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Core {
    /// Puts a new TLS stream on a connection just accepted on a TLS
    /// listener, with the certificate served now. False if there is no
    /// certificate or rustls refuses it (the connection is then dropped).
    pub(crate) fn start_tls(&mut self, token: Token) -> bool {
        let max_queued = self.config.limits.max_queued_bytes;
        let (Some(config), Some(conn)) = (self.tls.as_ref(), self.conns.get_mut(token)) else {
            return false;
        };
        match TlsStream::new(config, max_queued) {
            Ok(stream) => {
                conn.tls = Some(Box::new(stream));
                self.stats.tls.connections += 1;
                true
            }
            Err(_) => {
                self.stats.tls.faults.count(Fault::Internal);
                false
            }
        }
    }

    /// Writes a TLS connection's outbox through its stream, queues its
    /// `close_notify` if it closes once drained, and sends the records.
    /// `drained` means nothing waits, plaintext or ciphertext.
    pub(crate) fn write_tls(&mut self, token: Token) -> Result<Flushed, TlsError> {
        let Core {
            conns,
            spare,
            tls_gather,
            stats,
            ..
        } = self;
        let drained = Flushed {
            written: 0,
            drained: true,
        };
        let Some(conn) = conns.get_mut(token) else {
            return Ok(drained);
        };
        let closing = matches!(conn.kind, Kind::Closing(Closing::Flushing { .. }));
        let last = conn.closes_when_drained();
        let Some(tls) = conn.tls.as_deref_mut() else {
            return Ok(drained);
        };
        let mut sink = Sink {
            tls,
            socket: &mut conn.stream,
            gather: tls_gather,
            blocked: false,
            error: None,
        };
        let result = conn.outbox.flush_into(&mut sink, spare);
        let (blocked, error) = (sink.blocked, sink.error);
        if let Some(error) = error {
            return Err(error);
        }
        let flushed = result.map_err(|error| TlsError {
            fault: Fault::Io(error.kind()),
            answer: Answer::Nothing,
        })?;
        let mut notified = false;
        if closing && flushed.drained {
            // RFC 8446 §6.1: "Each party MUST send a "close_notify" alert
            // before closing its write side of the connection."
            notified = tls.send_close_notify();
        }
        let state = if blocked {
            Flush::Blocked
        } else if last {
            tls.write_to(&mut LastWrite(&mut conn.stream))?
        } else {
            tls.write_to(&mut conn.stream)?
        };
        if notified {
            stats.tls.close_notify_sent += 1;
            self.trace(|tracer, now| tracer.tls_close_notify(now, token, false));
        }
        Ok(Flushed {
            written: flushed.written,
            drained: flushed.drained && state == Flush::Drained,
        })
    }

    /// A TLS error ended the connection: count it, trace it, write what TLS
    /// answered (an alert, or the plain `400`) as far as the socket takes it
    /// at once, shut the write side and close. Nothing else can be said: the
    /// stream is broken.
    pub(crate) fn tls_failed(&mut self, token: Token, error: TlsError) {
        let tls_stats = &mut self.stats.tls;
        tls_stats.faults.count(error.fault);
        if matches!(error.answer, Answer::Alert(_) | Answer::EncryptedAlert) {
            tls_stats.alerts_sent += 1;
        }
        self.trace(|tracer, now| tracer.tls_error(now, token, error));
        self.end(
            token,
            match error.answer {
                Answer::BadRequest => Ending::Refused(400),
                _ => Ending::TlsError,
            },
        );
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.outbox.clear();
        conn.leftover = Box::default();
        if let Some(tls) = conn.tls.as_deref_mut() {
            let _ = tls.write_to(&mut conn.stream);
        }
        let _ = conn.stream.shutdown(Shutdown::Write);
        self.dead.push(token);
    }

    /// The handshake of a TLS connection finished: count it, trace what it
    /// settled, and write what waited for it.
    pub(crate) fn tls_handshake_done(&mut self, token: Token) {
        let Some(tls) = self.conns.get(token).and_then(|conn| conn.tls.as_deref()) else {
            return;
        };
        let Some(negotiated) = tls.negotiated() else {
            return;
        };
        self.stats.tls.handshakes += 1;
        if negotiated.resumed {
            self.stats.tls.resumed += 1;
        }
        if let Some(tracer) = self.tracer.as_mut() {
            tracer.tls_handshake(self.now, token, &negotiated);
        }
        self.mark_dirty(token);
    }

    /// The peer ended its side: count and trace a `close_notify`.
    pub(crate) fn tls_peer_closed(&mut self, token: Token, how: PeerClose) {
        if how == PeerClose::CloseNotify {
            self.stats.tls.close_notify_received += 1;
            self.trace(|tracer, now| tracer.tls_close_notify(now, token, true));
        }
    }

    /// Serves `config` to the handshakes that start from now on; open
    /// connections keep the keys they have.
    pub(crate) fn reload_tls(&mut self, config: TlsConfig) {
        self.tls = Some(config);
        self.stats.tls.reloads += 1;
        self.log("tls: certificate reloaded; handshakes from now on use it");
    }

    /// The head's deadline closed a connection: count it if it was a TLS
    /// one that never finished its handshake.
    pub(crate) fn tls_handshake_timeout(&mut self, token: Token) {
        let handshaking = self
            .conns
            .get(token)
            .and_then(|conn| conn.tls.as_deref())
            .is_some_and(TlsStream::is_handshaking);
        if handshaking {
            self.stats.tls.handshake_timeouts += 1;
            self.trace(|tracer, now| {
                tracer.note(
                    now,
                    token,
                    "tls",
                    "handshake unfinished at the deadline",
                    "",
                )
            });
        }
    }

    /// A TLS connection is being removed: if it ends cleanly (its handshake
    /// done, nothing it was owed left unsent, no `close_notify` yet), say
    /// `close_notify` (RFC 8446 §6.1) as far as the socket takes it at once.
    /// One that loses bytes ends without it, so the peer can tell a cut
    /// answer from a whole one (RFC 9112 §9.8).
    pub(crate) fn tls_reaped(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let clean = conn.queued_bytes() == 0;
        let Some(tls) = conn.tls.as_deref_mut() else {
            return;
        };
        self.stats.tls.connections -= 1;
        if clean && tls.send_close_notify() {
            let _ = tls.write_to(&mut conn.stream);
            self.stats.tls.close_notify_sent += 1;
            self.trace(|tracer, now| tracer.tls_close_notify(now, token, false));
        }
    }
}
