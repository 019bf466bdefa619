//! The API you write against: implement [`App`], act through [`Context`].
//!
//! The event loop calls your `App` from its one thread. Every callback gets a
//! `Context` for acting on any connection, topic or timer *now*: bytes you send
//! are queued at once and written when the loop finishes the current batch of
//! events (so several sends to one socket leave in one system call). Callbacks
//! must not block: everything else on the server waits while one runs. Other
//! threads act through a [`crate::server::Handle`] instead.
//!
//! A panic in a callback is caught: the connection it concerned is closed
//! (WebSocket close `1011`, HTTP `500`) and every other connection carries on.
//!
//! ```no_run
//! use pushloop::app::{Accept, App, ConnId, Context, Message, Reply, Upgrading};
//! use pushloop::http::{Request, Response};
//! use pushloop::ws::handshake::Upgrade;
//!
//! struct Echo;
//!
//! impl App for Echo {
//!     fn request(&mut self, _: &mut Context, req: &Request, _body: &[u8]) -> Reply {
//!         Reply::Response(Response::text(404, &format!("no route for {}", req.path())))
//!     }
//!     fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
//!         match req.path() {
//!             "/echo" => Upgrading::Accept(Accept::new()),
//!             _ => Upgrading::Reject(Response::text(404, "not found")),
//!         }
//!     }
//!     fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
//!         let _ = ctx.send(id, message);
//!     }
//! }
//!
//! let server = pushloop::server::Server::bind("127.0.0.1:6788", Default::default())?;
//! server.run(Echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use crate::http::{Request, Response};
use crate::server::core::Core;
use crate::server::Handle;
use crate::server::Stats;
use crate::sse::SseError;
use crate::ws::close::CloseCode;
use crate::ws::handshake::Upgrade;

/// A connection, as the loop knows it. Ids are not reused while a stale copy
/// could matter: a slot's generation changes when its connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) mio::Token);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::server::token::display_token(self.0))
    }
}

/// A timer set with [`Context::set_timeout`] or [`Context::set_interval`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
}

/// A topic created with [`crate::server::Server::topic`] or [`Context::topic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopicId(pub(crate) usize);

/// A WebSocket data message (RFC 6455 §5.6), borrowed for the callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message: always valid UTF-8 (RFC 6455 §8.1 is checked first).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// What to do with a plain HTTP request.
#[derive(Debug)]
pub enum Reply {
    /// Answer with this response.
    Response(Response),
    /// Short poll: answer at once with the JSON array of the topic's events after
    /// `after` (`0` = all history), see [`crate::topic::Topic::poll_json`].
    Poll {
        /// The feed.
        topic: TopicId,
        /// The client's cursor.
        after: u64,
    },
    /// Long poll: like `Poll`, but when nothing is newer than `after`, hold the
    /// request until something is published or `long_poll_timeout` passes
    /// (then answer `[]`).
    LongPoll {
        /// The feed.
        topic: TopicId,
        /// The client's cursor.
        after: u64,
    },
    /// Serve the topic as `text/event-stream` (WHATWG HTML §9.2). The cursor is
    /// the `Last-Event-ID` header when the browser sends one (a reconnect), else
    /// `after`; `None` streams only new events.
    EventStream {
        /// The feed.
        topic: TopicId,
        /// The cursor for a first connect (e.g. from a query parameter).
        after: Option<u64>,
    },
}

/// How to answer a WebSocket upgrade request that passed RFC 6455 §4.2.1 checks.
#[derive(Debug)]
pub enum Upgrading {
    /// Switch protocols.
    Accept(Accept),
    /// Refuse with this response (the connection then closes).
    Reject(Response),
}

/// The accepting side of an upgrade.
#[derive(Debug, Default)]
pub struct Accept {
    pub(crate) protocol: Option<String>,
    pub(crate) subscribe: Option<(TopicId, Option<u64>)>,
}

impl Accept {
    /// Accept with no subprotocol.
    pub fn new() -> Self {
        Accept::default()
    }

    /// Select a subprotocol (RFC 6455 §4.2.2 `Sec-WebSocket-Protocol`). It must
    /// be one the client offered (see [`Upgrade::offered_protocols`]); if it is
    /// not, the server answers `500`, since that is a bug on our side.
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.to_owned());
        self
    }

    /// Subscribe the new socket to a topic: every event is sent as a text
    /// message holding its JSON object. `after` replays history first, like
    /// `Reply::Poll`; `None` sends only new events.
    pub fn subscribe(mut self, topic: TopicId, after: Option<u64>) -> Self {
        self.subscribe = Some((topic, after));
        self
    }
}

/// Why a send did not queue anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No open WebSocket has this id (never was, or already closing: RFC 6455
    /// §5.5.1 forbids data after a Close frame).
    NotOpen,
    /// The connection's queue is full and the policy is `SlowReader::Drop`.
    Dropped,
    /// The queue was full and the connection is being closed (`SlowReader::Close`).
    Closing,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NotOpen => "no open WebSocket with this id",
            SendError::Dropped => "the connection's write queue is full; message dropped",
            SendError::Closing => "the connection's write queue is full; closing it (1008)",
        })
    }
}

impl std::error::Error for SendError {}

/// Your application. Every method has a default, so implement only what you use.
pub trait App {
    /// Called once when the loop starts (set timers here).
    fn start(&mut self, ctx: &mut Context) {
        let _ = ctx;
    }

    /// A plain HTTP request with its whole body. Default: `404`.
    fn request(&mut self, ctx: &mut Context, req: &Request, body: &[u8]) -> Reply {
        let _ = (ctx, req, body);
        Reply::Response(Response::text(404, "not found"))
    }

    /// A valid WebSocket upgrade request (`offer` holds the key, Origin and the
    /// offered subprotocols; the server's Origin policy already allowed it).
    /// Default: `404`.
    fn upgrade(
        &mut self,
        ctx: &mut Context,
        id: ConnId,
        req: &Request,
        offer: &Upgrade,
    ) -> Upgrading {
        let _ = (ctx, id, req, offer);
        Upgrading::Reject(Response::text(404, "not found"))
    }

    /// A WebSocket is open (the 101 response is queued).
    fn open(&mut self, ctx: &mut Context, id: ConnId) {
        let _ = (ctx, id);
    }

    /// A whole message arrived (fragments reassembled, text validated).
    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        let _ = (ctx, id, message);
    }

    /// The WebSocket is closed, called exactly once per opened socket: `code`
    /// is the peer's close code (`1005` when its Close frame had none), the code
    /// we closed with on a protocol error, or `1006` when the connection ended
    /// without a Close frame (RFC 6455 §7.1.5, §7.4.1).
    fn close(&mut self, ctx: &mut Context, id: ConnId, code: CloseCode, reason: &str) {
        let _ = (ctx, id, code, reason);
    }

    /// A timer fired.
    fn timer(&mut self, ctx: &mut Context, timer: TimerId) {
        let _ = (ctx, timer);
    }
}

/// What a callback can do. Borrowed from the loop for the callback's duration.
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
}

impl Context<'_> {
    /// Sends a message to one WebSocket.
    pub fn send(&mut self, id: ConnId, message: Message) -> Result<(), SendError> {
        self.core.send(id.0, message)
    }

    /// Sends a message to every open WebSocket; encoded once, shared by all
    /// queues. Returns how many queued it.
    pub fn broadcast(&mut self, message: Message) -> usize {
        self.core.broadcast(None, message)
    }

    /// Sends a message to every open WebSocket but `except` (socket.io's
    /// `socket.broadcast.emit`).
    pub fn broadcast_except(&mut self, except: ConnId, message: Message) -> usize {
        self.core.broadcast(Some(except.0), message)
    }

    /// Starts the close handshake (RFC 6455 §7.1.2) with `code` and `reason`
    /// (truncated to 123 bytes). Any other kind of connection is closed after
    /// its queued bytes are written. False when no such connection is open.
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.core.close(id.0, code, reason)
    }

    /// Bytes queued for a connection and not yet taken by its socket (the
    /// browser's `bufferedAmount`); `None` for an unknown id.
    pub fn buffered_amount(&self, id: ConnId) -> Option<usize> {
        self.core.buffered_amount(id.0)
    }

    /// The topic of that name, created on first use with the configured history limits.
    pub fn topic(&mut self, name: &str) -> TopicId {
        self.core.topic(name)
    }

    /// Publishes an event (`event` `None` = the default `message` type) to a
    /// topic's WebSockets, event streams and waiting long-polls, and returns
    /// its id. Fails only for an event name with CR, LF or NUL.
    pub fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, SseError> {
        self.core.publish(topic, event, data)
    }

    /// Subscribes an open WebSocket to a topic (see [`Accept::subscribe`]).
    pub fn subscribe(
        &mut self,
        id: ConnId,
        topic: TopicId,
        after: Option<u64>,
    ) -> Result<(), SendError> {
        self.core.subscribe_socket(id.0, topic, after)
    }

    /// Calls [`App::timer`] once, after `delay`.
    pub fn set_timeout(&mut self, delay: Duration) -> TimerId {
        self.core.set_timer(delay, None)
    }

    /// Calls [`App::timer`] every `period` (the seeds' `setInterval`). Ticks do
    /// not drift: each is scheduled from the previous deadline, not from when
    /// the callback ran.
    pub fn set_interval(&mut self, period: Duration) -> TimerId {
        self.core.set_timer(period, Some(period))
    }

    /// Cancels a timer; false if it already fired (a timeout) or was cleared.
    pub fn clear_timer(&mut self, timer: TimerId) -> bool {
        self.core.clear_timer(timer)
    }

    /// The loop's clock for this batch of events.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// Per-transport counters.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.core.handle.clone()
    }

    /// Starts a graceful shutdown (see [`crate::server::Server::run`]).
    pub fn shutdown(&mut self) {
        self.core.begin_shutdown();
    }
}
