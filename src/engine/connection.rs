//! One connection: a socket, what it is doing, and the bytes it owes.
//!
//! ```text
//!            ┌──────────────── keep-alive: next request ───────────────┐
//!            ▼                                                          │
//!  accept → Http ──(101)──→ WebSocket ──(close handshake)──────┐       │
//!            │ ├──(Reply::EventStream)──→ EventStream ─────────┤       │
//!            │ ├──(Reply::LongPoll, nothing new: held)─────────┼───────┤
//!            │ └──(an answer)───────────────────────────────────────────┘
//!            └──(error, Connection: close, timeout, shutdown)──→ Closing → gone
//!
//!  Context::connect → Dialing ──(101 checked)──→ WebSocket (client role)
//!                        └──(refused, bad answer, timeout)──→ gone
//! ```
//!
//! The protocol rules of each state live in the sans-IO sessions
//! ([`crate::http::HttpSession`], [`crate::ws::session::Session`]); this
//! struct only holds them next to the socket and the outbox.
//!
//! A connection accepted on a TLS listener (feature `tls`) also holds its
//! `crate::tls::TlsStream`, boxed, between the socket and the sessions:
//! a plain connection pays one null pointer for it, and only when the
//! feature is on.

use std::time::Duration;

#[cfg(feature = "client")]
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::engine::outbox::{self, Outbox};
pub use crate::engine::stats::{Ending, Transport};
use crate::engine::trace::Outgoing;
#[cfg(feature = "client")]
use crate::http::response_head::ResponseHeadScanner;
use crate::http::HttpSession;
use crate::ids::TopicId;
use crate::limits::Limits;
use crate::time::Instant;
use crate::ws::frame::{MessageDecoder, Role};
#[cfg(feature = "client")]
use crate::ws::handshake_client::ClientKey;
use crate::ws::session::Session;

/// What a connection is doing.
pub enum Kind {
    /// Reading requests, or answering one.
    Http(Box<HttpConn>),
    /// An open (or closing) WebSocket.
    WebSocket(Box<WsConn>),
    /// A `text/event-stream` response that never ends; the topics it follows
    /// are in the feeds.
    EventStream,
    /// Writing the last bytes, then closing.
    Closing(Closing),
    /// An outbound WebSocket being opened (feature `client`): its TCP
    /// connect, then its opening handshake.
    #[cfg(feature = "client")]
    Dialing(Box<Dialing>),
}

/// One attempt of an outbound WebSocket ([`crate::app::Context::connect`]):
/// the TCP connect, then our request and the server's answer (RFC 6455
/// §4.1). What outlives the attempt — the URL, the options, the reconnects —
/// is the link's, in [`crate::engine::outbound`].
#[cfg(feature = "client")]
pub struct Dialing {
    /// The TCP connect is under way: the socket's WRITABLE (or an error)
    /// will say how it went.
    pub connecting: bool,
    /// The addresses still to try if this one fails, in the resolver's order.
    pub next_addrs: std::vec::IntoIter<SocketAddr>,
    /// Our `Sec-WebSocket-Key` (§4.1 item 7), which the server's
    /// `Sec-WebSocket-Accept` must answer (§4.1 item 4).
    pub key: ClientKey,
    /// Finds the end of the server's answer across reads, bounded by
    /// `max_head_bytes`.
    pub scanner: ResponseHeadScanner,
}

/// An HTTP connection: its session and, while a request is answered later,
/// what it waits for.
pub struct HttpConn {
    /// Heads, bodies, keep-alive, the order of answers.
    pub session: HttpSession,
    /// Why the request being answered is not answered yet.
    pub waiting: Waiting,
}

/// A request whose answer is not written yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Nothing is held: the session is reading, or the answer is queued.
    Nothing,
    /// A long-poll held until an event newer than `after` on `topics`, or its
    /// deadline (then `[]`).
    LongPoll {
        /// The topics it polls.
        topics: Vec<TopicId>,
        /// The client's cursor.
        after: u64,
    },
    /// The app said `Reply::Later` and answers with `Context::respond` before
    /// the deadline (else `504`).
    Later,
}

/// An open WebSocket.
pub struct WsConn {
    /// Every RFC 6455 rule of the endpoint.
    pub session: Session,
    /// The peer's frames → messages, kept beside the session (and lent to
    /// each turn, so the message being handled can borrow it). `None` while
    /// a fresh one would do ([`MessageDecoder::is_fresh`]): an idle socket
    /// keeps none, and the next input gets one from
    /// [`Session::fresh_decoder`]. That saves an idle WebSocket the
    /// decoder's 144 bytes (160 with the allocator's header) for one
    /// allocation per batch of input on a busy one.
    pub decoder: Option<Box<MessageDecoder>>,
    /// `App::close` has been called (it is called exactly once).
    pub reported: bool,
}

impl WsConn {
    /// An open WebSocket, its decoder made when input comes.
    pub fn new(session: Session) -> WsConn {
        WsConn {
            session,
            decoder: None,
            reported: false,
        }
    }
}

/// The steps of closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Writing what is queued. Then, with `linger`, a half-close and
    /// [`Closing::Lingering`]; without it, the socket is closed at once.
    /// Lingering is skipped when the peer has said its last word (its FIN, or
    /// its WebSocket Close frame, RFC 6455 §5.5.1: nothing may follow it), so
    /// no input of its can still arrive and reset our last bytes.
    Flushing {
        /// Wait for the peer's FIN before closing.
        linger: bool,
        /// The peer is owed these bytes (an answer): every write that makes
        /// progress extends the deadline by `idle_timeout`, so a slow reader
        /// gets all of it — the rule of an answer on a kept connection too
        /// ([`Connection::on_write_progress`]). Otherwise (a failed or
        /// finished WebSocket, a slow reader being let go) the deadline is
        /// `close_timeout`, fixed.
        patient: bool,
    },
    /// Our side is shut (FIN sent); reading and discarding until the peer's
    /// FIN, so unread input cannot turn our last bytes into a reset (RFC 9112
    /// §9.6).
    Lingering,
}

/// One connection.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// What the connection is doing.
    pub kind: Kind,
    /// Outgoing bytes the socket has not taken.
    pub outbox: Outbox,
    /// Input not consumed yet: part of a head or a frame header, or input
    /// left when processing paused. Empty = no allocation. A boxed slice,
    /// not a `Vec`: it is never grown, and the 8 bytes of capacity it saves
    /// pay for the TLS pointer below.
    pub leftover: Box<[u8]>,
    /// The connection's own deadline, beside its session's: the event
    /// stream's keep-alive, a held answer's time limit, or closing.
    pub deadline: Option<Instant>,
    /// The time of the timer entry armed for this connection, if any.
    pub armed: Option<Instant>,
    /// Which counters this connection's traffic goes to.
    pub transport: Transport,
    /// WRITABLE interest is registered.
    pub wants_writable: bool,
    /// Waiting in the loop's fan-out line.
    pub in_fanout: bool,
    /// Listed for the end-of-turn flush.
    pub in_dirty: bool,
    /// Listed to be read (or its leftover processed) next turn.
    pub in_ready: bool,
    /// Input is not read while this is set: the outbox is past its bound, or
    /// an answer is held (pipelined requests wait in the kernel).
    pub paused: bool,
    /// The peer has sent its FIN (it may still read).
    pub peer_fin: bool,
    /// Why the connection is ending, once known (the first reason wins).
    pub ending: Option<Ending>,
    /// TLS between the socket and the sessions, on a TLS listener's
    /// connections (feature `tls`). Boxed: `None` costs a plain connection
    /// one pointer (`size_of::<Connection>()` is 96 bytes on x86-64 with the feature,
    /// 88 without it).
    #[cfg(feature = "tls")]
    pub tls: Option<Box<crate::tls::TlsStream>>,
}

impl Connection {
    /// A connection just accepted, reading its first request.
    pub fn new(stream: TcpStream, session: HttpSession) -> Connection {
        Connection {
            stream,
            kind: Kind::Http(Box::new(HttpConn {
                session,
                waiting: Waiting::Nothing,
            })),
            outbox: Outbox::default(),
            leftover: Box::default(),
            deadline: None,
            armed: None,
            transport: Transport::Http,
            wants_writable: false,
            in_fanout: false,
            in_dirty: false,
            in_ready: false,
            paused: false,
            peer_fin: false,
            ending: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Bytes owed to the peer and not yet taken by the socket: the outbox,
    /// plus the TLS records waiting for the socket (feature `tls`). This is
    /// what `max_queued_bytes` bounds.
    pub fn queued_bytes(&self) -> usize {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return self.outbox.len() + tls.queued_bytes();
        }
        self.outbox.len()
    }

    /// Whether `len` more bytes of data may be queued (the slow-reader rule,
    /// [`Outbox::admits`], counting what TLS holds too).
    pub fn admits(&self, len: usize, max_queued: usize) -> bool {
        outbox::admits(self.queued_bytes(), len, max_queued)
    }

    /// The WebSocket, if this is one.
    pub fn websocket(&mut self) -> Option<&mut WsConn> {
        match &mut self.kind {
            Kind::WebSocket(ws) => Some(ws),
            _ => None,
        }
    }

    /// The WebSocket, if this is one that may still send data (RFC 6455
    /// §5.5.1: no data frames after our Close frame).
    pub fn open_websocket(&self) -> Option<&WsConn> {
        match &self.kind {
            Kind::WebSocket(ws) if ws.session.can_send() => Some(ws),
            _ => None,
        }
    }

    /// The WebSocket and the outbox, apart, if this is a WebSocket (a
    /// session writes its frames straight into the outbox).
    pub fn websocket_and_outbox(&mut self) -> Option<(&mut WsConn, &mut Outbox)> {
        match &mut self.kind {
            Kind::WebSocket(ws) => Some((ws, &mut self.outbox)),
            _ => None,
        }
    }

    /// The HTTP connection, if this is one.
    pub fn http(&mut self) -> Option<&mut HttpConn> {
        match &mut self.kind {
            Kind::Http(http) => Some(http),
            _ => None,
        }
    }

    /// True for a WebSocket that may still send data (RFC 6455 §5.5.1: no
    /// data frames after our Close frame).
    pub fn is_open_websocket(&self) -> bool {
        matches!(&self.kind, Kind::WebSocket(ws) if ws.session.can_send())
    }

    /// True for an open WebSocket a client opened to us: shared frames —
    /// broadcasts, feed events — are encoded once, unmasked, as a server
    /// sends them (RFC 6455 §5.1), so only a server-role socket can take
    /// them; an outbound socket masks each frame of its own (§5.3).
    pub fn takes_shared_frames(&self) -> bool {
        matches!(&self.kind, Kind::WebSocket(ws) if ws.session.can_send() && ws.session.role() == Role::Server)
    }

    /// True for an event stream.
    pub fn is_event_stream(&self) -> bool {
        matches!(self.kind, Kind::EventStream)
    }

    /// True for a long-poll being held.
    pub fn is_held_long_poll(&self) -> bool {
        matches!(&self.kind, Kind::Http(http) if matches!(http.waiting, Waiting::LongPoll { .. }))
    }

    /// True once the connection is only writing its last bytes.
    pub fn is_closing(&self) -> bool {
        matches!(self.kind, Kind::Closing(_))
    }

    /// Queued bytes past which this connection's input is not read (until
    /// the queue drains below half of it): HTTP answers have their own,
    /// small bound ([`Limits::max_queued_answer_bytes`]); a WebSocket's
    /// pongs and echoes the queue's ([`Limits::max_queued_bytes`]).
    pub fn input_pause_bytes(&self, limits: &Limits) -> usize {
        match self.kind {
            Kind::Http(_) => limits.max_queued_answer_bytes,
            Kind::WebSocket(_) | Kind::EventStream | Kind::Closing(_) => limits.max_queued_bytes,
            // Our opening request is all an outbound attempt queues.
            #[cfg(feature = "client")]
            Kind::Dialing(_) => limits.max_queued_bytes,
        }
    }

    /// A write made progress at `now`. A reader that takes the bytes it is
    /// owed is not idle, whether the answer goes out on a kept connection or
    /// before a close: the kept HTTP connection's idle deadline
    /// ([`HttpSession::on_write_progress`]) and a patient close's deadline
    /// ([`Closing::Flushing`]) both run `idle_timeout` from the last write
    /// that made progress. One that takes nothing for that long is gone.
    pub fn on_write_progress(&mut self, now: Instant, idle_timeout: Duration) {
        match &mut self.kind {
            Kind::Http(http) => http.session.on_write_progress(now),
            Kind::Closing(Closing::Flushing { patient: true, .. }) => {
                self.deadline = Some(now + idle_timeout);
            }
            Kind::WebSocket(_) | Kind::EventStream | Kind::Closing(_) => {}
            // An attempt is bounded by its link's `connect_timeout` instead.
            #[cfg(feature = "client")]
            Kind::Dialing(_) => {}
        }
    }

    /// The socket closes as soon as its queue is written (no lingering), so
    /// the last write can carry the FIN.
    pub fn closes_when_drained(&self) -> bool {
        matches!(
            self.kind,
            Kind::Closing(Closing::Flushing { linger: false, .. })
        )
    }

    /// What the bytes queued for this connection are, for the trace.
    pub fn outgoing(&self) -> Outgoing {
        match self.kind {
            Kind::WebSocket(_) => Outgoing::Frames,
            Kind::EventStream => Outgoing::Events,
            Kind::Http(_) | Kind::Closing(_) => Outgoing::Http,
            #[cfg(feature = "client")]
            Kind::Dialing(_) => Outgoing::Http,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection's inline size (with the slot around it, all an
    /// idle event stream holds): a plain connection pays one pointer for TLS
    /// when the feature is on. The deadlines are 8 bytes each
    /// (`time::Instant`'s niche), the leftover a boxed slice, the outbox a
    /// pointer until it holds bytes.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_connection_is_small() {
        let size = std::mem::size_of::<Connection>();
        if cfg!(feature = "tls") {
            assert_eq!(size, 96);
        } else {
            assert_eq!(size, 88);
        }
    }
}
