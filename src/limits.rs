//! Every limit pushloop enforces, in one place: its name, its default, why the
//! default is what it is, and what the peer sees when it is crossed.
//!
//! Two more live beside what they bound: the lab's, which is off unless asked
//! for ([`crate::engine::lab::LabConfig`]: sessions, lines per second), and
//! the length of a trace line's fields ([`crate::engine::trace::MAX_FIELD_CHARS`]).
//!
//! The protocol layers below the event loop take the numbers they need as plain
//! arguments (they never see this struct); the server hands them out from here.
//! Each limit has a test that crosses it (see the module that enforces it).
//!
//! # The memory bound
//!
//! Together these limits bound what a server holds, whatever its peers do:
//!
//! ```text
//! memory ≤ max_connections × per_connection  +  topics × history.max_bytes  +  loop
//!
//! per_connection = ~0.5 KiB                       the connection's state
//!   + read_buffer_bytes                           input read but not handled yet
//!   + max(max_head_bytes + max_body_bytes,        a request being read,
//!         max_message_bytes)                      or a WebSocket message
//!   + max(max_queued_answer_bytes + one answer,   HTTP: input pauses past the first
//!         max_queued_bytes + one message)         WebSocket, SSE: the slow-reader policy
//!
//! loop = read_buffer_bytes + 2 MiB of spare buffers (64 at most) + 128 KiB of
//!        spare queues + 8 poll answers
//! ```
//!
//! *One answer* is a poll's (at most the polled topics' history) or the
//! app's own response, as large as the app makes it. *One message* is a feed
//! event (at most [`crate::feeds::HistoryLimits::max_event_bytes`]) or a
//! message the app sends (an echo: `max_message_bytes`). Bytes shared by
//! many queues — an event, a broadcast, a poll answer several polls asked
//! for — count once per queue here and are held once, so the bound is loose
//! where sharing is the rule. `topics` is at most [`Limits::max_topics`].
//!
//! With every default, a connection may hold about 6 MiB in the worst case
//! (a 1 MiB body being read while a 4 MiB event waits behind a full 1 MiB
//! queue); size `max_connections`, `max_body_bytes` and `max_event_bytes`
//! for the machine. A client that only pipelines requests without reading
//! the answers holds far less: `read_buffer_bytes + max_queued_answer_bytes
//! + one answer`, about 192 KiB for 64 KiB answers.

use std::time::Duration;

use crate::feeds::InboxLimits;
use crate::http::HttpConfig;
use crate::ws::frame::MessageLimits;
use crate::ws::session::SessionConfig;

/// The named limits of a server. Start from [`Limits::default`] and change
/// what your deployment needs:
///
/// ```
/// let limits = pushloop::limits::Limits {
///     max_message_bytes: 16 << 20,
///     ..Default::default()
/// };
/// assert_eq!(limits.max_head_bytes, 8 * 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in a request head (request line + headers + the blank line).
    /// Default 8 KiB, nginx's `large_client_header_buffers` unit; browsers send
    /// well under 2 KiB. Past it: `431 Request Header Fields Too Large`.
    pub max_head_bytes: usize,
    /// Header fields in a request head. Default 64 (httparse's examples use 16,
    /// Node's limit is 2000 but it counts bytes first). Past it: `431`.
    pub max_headers: usize,
    /// Bytes in a request body, by `Content-Length` or chunked. Default 1 MiB,
    /// nginx's `client_max_body_size`. Past it: `413 Content Too Large`.
    pub max_body_bytes: usize,
    /// Payload bytes in one WebSocket frame, checked against the declared length
    /// before anything is buffered. Default 1 MiB. Past it: close `1009`.
    pub max_frame_bytes: usize,
    /// Payload bytes in one reassembled WebSocket message, checked against the
    /// declared frame lengths before the buffer grows. Default 1 MiB: enough
    /// for any chat or telemetry message, small enough for a 64 MiB device with
    /// a few dozen clients mid-message. Past it: close `1009`.
    pub max_message_bytes: usize,
    /// Frames in one fragmented WebSocket message. Default 131 072: Autobahn
    /// case 9.3.1 sends a 4 MiB message in 65 536 fragments of 64 bytes, and a
    /// flood of empty fragments (which would never reach the size limit) still
    /// ends. Past it: close `1009`.
    pub max_fragments: usize,
    /// Bytes queued for one connection that the socket has not taken yet (the
    /// browser's `bufferedAmount`). A connection whose queue already holds more
    /// than this when a new message is queued is a slow reader and gets the
    /// [`crate::limits::Limits::slow_reader`] policy. A single message larger
    /// than the limit is still accepted into an empty queue. Past the limit
    /// the server also stops *reading* a WebSocket until its queue drains
    /// below half of it, so a peer that floods pings or messages without
    /// reading the answers is paced by its own TCP window (see
    /// [`crate::engine::outbox`] and the memory bound in this module's doc).
    /// An HTTP connection's input pauses at
    /// [`Limits::max_queued_answer_bytes`] instead. With TLS, the records
    /// waiting for the socket count too, and at most 64 KiB of the queue is
    /// encrypted ahead of it. Default 1 MiB.
    pub max_queued_bytes: usize,
    /// Bytes of HTTP answers queued for one connection past which the server
    /// stops reading its further (pipelined) requests, until the queue drains
    /// below half of it; the answer that crosses it is queued whole. It is
    /// apart from [`Limits::max_queued_bytes`], which a server with large
    /// WebSocket messages raises (the demo: 17 MiB) and which would then let
    /// every HTTP connection that pipelines without reading hold that much.
    /// Default 64 KiB: whenever anything is queued here the kernel's send
    /// buffer is full already (Linux grows it up to `tcp_wmem`'s 4 MiB), so
    /// reading again at 32 KiB never lets a reading client's pipe run dry;
    /// and it is the term [`Limits::max_connections`] multiplies in the
    /// memory bound (10 000 × 64 KiB = 625 MiB, against 9.8 GiB at 1 MiB).
    /// Past it: nothing the client sees; its requests wait in the kernel, and
    /// its TCP window paces it.
    pub max_queued_answer_bytes: usize,
    /// What happens to a slow reader (see [`SlowReader`]). Default: close it.
    pub slow_reader: SlowReader,
    /// Open connections (all transports). Default 10 000; past it new sockets
    /// are accepted and closed at once, so the backlog cannot pile up. With
    /// several loops, each takes an equal share (rounded up).
    pub max_connections: usize,
    /// Time from accept to a complete request head (for later requests on a
    /// kept connection: from the head's first byte). Default 10 s: bounds
    /// slowloris-style trickling. Past it the socket is closed (a `408` is
    /// written first when part of a head has arrived). On a TLS listener the
    /// TLS handshake runs inside it too, so a silent or trickling TLS client
    /// is closed by the same deadline (counted as `tls.handshake_timeouts`).
    pub handshake_timeout: Duration,
    /// Time from a complete head to its complete body. Default 60 s
    /// (nginx's `client_body_timeout` is 60 s between two reads; here it is
    /// the whole body): at the default `max_body_bytes` a client needs about
    /// 17 KB/s. Every byte does *not* reset it, so a body trickled a byte at a
    /// time is bounded too. Past it: `408`, then close.
    pub body_timeout: Duration,
    /// Time a connection may send nothing at all. Default 120 s (longer than
    /// `ping_interval + pong_timeout`, so a live WebSocket never hits it; an
    /// idle keep-alive HTTP connection does). Past it: the connection is closed
    /// (WebSocket: close `1001`).
    ///
    /// An HTTP connection whose answer is still being written is not idle
    /// while its reader takes the bytes: each write that makes progress
    /// gives it `idle_timeout` more, on a kept connection as before a close
    /// ([`crate::engine::connection::Connection::on_write_progress`]). A
    /// reader that takes nothing for `idle_timeout` is gone, and what is
    /// still queued for it is dropped. The loop sees progress when the kernel
    /// reports the socket writable again, after about a third of its send
    /// buffer has drained (Linux grows it up to `tcp_wmem`'s 4 MiB), so a
    /// reader slower than that third per `idle_timeout` (with a 4 MiB buffer
    /// and the default, about 11 KB/s) is taken for a stalled one. Asking the kernel for its unsent
    /// bytes (`SIOCOUTQ`) at the deadline would see slower progress too; it
    /// is not done (it needs `unsafe`, and such a reader is rare).
    pub idle_timeout: Duration,
    /// How often the server pings an open WebSocket. Default 25 s, socket.io's
    /// `pingInterval`; browsers answer protocol pings on their own.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered. Default 20 s, socket.io's
    /// `pingTimeout`. Past it: close `1001`, then TCP close.
    pub pong_timeout: Duration,
    /// How long the server waits for the peer's close frame (and then for the
    /// peer to close TCP) after sending its own. Default 5 s.
    pub close_timeout: Duration,
    /// Interval between SSE keep-alive comments. Default 15 s (WHATWG HTML
    /// §9.2.7 suggests "every 15 seconds or so" for proxies that drop idle
    /// connections).
    pub sse_keepalive: Duration,
    /// How long a long-poll is held before it is answered with `[]`.
    /// Default 25 s, under the 30 s that many proxies allow an idle response.
    pub long_poll_timeout: Duration,
    /// How long a request the app defers (`Reply::Later`) may wait for
    /// `Context::respond`. Default 30 s (browsers and proxies commonly give up
    /// on a silent response after 30-60 s). Past it: `504`.
    pub later_timeout: Duration,
    /// How long a graceful shutdown waits for queued bytes to drain. Default 5 s.
    pub shutdown_timeout: Duration,
    /// At shutdown, event streams and held long-polls are told when to come
    /// back (`retry:`, `Retry-After`): at a random point in this window, so a
    /// restart does not bring every client back in the same second. Default
    /// 10 s: a thousand clients then arrive at about a hundred a second.
    pub reconnect_spread: Duration,
    /// Topics (rooms) that may exist at once. Default 10 000: a topic with an
    /// empty history costs a few hundred bytes, so the bound is about memory
    /// a client could make the server spend through an app that creates
    /// topics from requests. Past it, creating one fails
    /// ([`crate::feeds::TopicError::TooMany`]).
    pub max_topics: usize,
    /// Events queued for a loop by the others (several loops, see
    /// [`crate::feeds::hub`]). Default 4096: at 100 000 events a second a
    /// loop may fall 40 ms behind, far more than one turn takes. Past it the
    /// loop's followers catch up from history (counted in
    /// `Stats::inbox_overflows`).
    pub max_inbox_events: usize,
    /// Bytes of the events queued for a loop by the others, every encoding
    /// counted (they are shared with history, so this bounds what the inbox
    /// alone keeps alive). Default 4 MiB, four topics' default history. One
    /// event is always queued into an empty inbox, however big. Past it:
    /// as `max_inbox_events`.
    pub max_inbox_bytes: usize,
}

/// The policy for a connection whose write queue is past
/// [`Limits::max_queued_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowReader {
    /// Close a WebSocket with `1008 Policy Violation` (an event stream or an
    /// HTTP connection is closed at once). Nothing is silently lost: the client
    /// sees the close and can resume from its last event id.
    Close,
    /// Drop the new message for this connection only and keep the connection.
    /// Suits feeds where only the latest value matters (sensor readings).
    Drop,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: 1 << 20,
            max_frame_bytes: 1 << 20,
            max_message_bytes: 1 << 20,
            max_fragments: 1 << 17,
            max_queued_bytes: 1 << 20,
            max_queued_answer_bytes: 64 * 1024,
            slow_reader: SlowReader::Close,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            sse_keepalive: Duration::from_secs(15),
            long_poll_timeout: Duration::from_secs(25),
            shutdown_timeout: Duration::from_secs(5),
            reconnect_spread: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            later_timeout: Duration::from_secs(30),
            max_topics: 10_000,
            max_inbox_events: 4096,
            max_inbox_bytes: 4 << 20,
        }
    }
}

impl Limits {
    /// The limits an HTTP session enforces.
    pub fn http(&self) -> HttpConfig {
        HttpConfig {
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_body_bytes: self.max_body_bytes,
            head_timeout: self.handshake_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
        }
    }

    /// How far a loop may fall behind the others.
    pub fn inbox(&self) -> InboxLimits {
        InboxLimits {
            max_events: self.max_inbox_events,
            max_bytes: self.max_inbox_bytes,
        }
    }

    /// The rules a WebSocket session plays by.
    pub fn websocket(&self) -> SessionConfig {
        SessionConfig {
            limits: MessageLimits {
                max_frame_bytes: self.max_frame_bytes,
                max_message_bytes: self.max_message_bytes,
                max_fragments: self.max_fragments,
            },
            idle_timeout: Some(self.idle_timeout),
            ping_interval: Some(self.ping_interval),
            pong_timeout: self.pong_timeout,
            close_timeout: self.close_timeout,
        }
    }
}
