//! The API you write against: implement [`App`], act through [`Context`].
//!
//! The event loop calls your `App` from its one thread. Every callback gets a
//! `Context` for acting on any connection, topic or timer *now*: bytes you send
//! are queued at once and written when the loop finishes the current turn
//! (so several sends to one socket leave in one system call). Callbacks must
//! not block: everything else on the server waits while one runs. Other
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
//!     fn request(&mut self, _: &mut Context, _: ConnId, req: &Request, _body: &[u8]) -> Reply {
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

use std::any::Any;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[cfg(feature = "client")]
use crate::client::ws::{SetupError, WsConfig, WsError};
use crate::engine::handle::{Command, Handle, HandleError};
use crate::engine::stats::Stats;
use crate::engine::store::Waiter;
use crate::engine::Core;
use crate::feeds::{Payload, PublishError, TopicError};
use crate::http::{Request, Response};
use crate::ws::close::CloseCode;
use crate::ws::handshake::Upgrade;

pub use crate::engine::outbox::{Message, SendError};
pub use crate::ids::{ConnId, TimerId, TopicId};

/// What to do with a plain HTTP request.
#[derive(Debug)]
pub enum Reply {
    /// Answer with this response.
    Response(Response),
    /// Short poll: answer at once with the JSON array of the topics' events
    /// after `after` (`0` = all history), see [`crate::feeds`].
    Poll {
        /// The topics polled.
        topics: Vec<TopicId>,
        /// The client's cursor.
        after: u64,
    },
    /// Long poll: like `Poll`, but when nothing is newer than `after`, hold the
    /// request until something is published on one of the topics or
    /// `long_poll_timeout` passes (then answer `[]`).
    LongPoll {
        /// The topics polled.
        topics: Vec<TopicId>,
        /// The client's cursor.
        after: u64,
    },
    /// Serve the topics as `text/event-stream` (WHATWG HTML §9.2). The cursor
    /// is the `Last-Event-ID` header when the browser sends one (a reconnect),
    /// else `after`; `None` streams only new events.
    EventStream {
        /// The topics followed.
        topics: Vec<TopicId>,
        /// The cursor for a first connect (e.g. from a query parameter).
        after: Option<u64>,
    },
    /// Answer later, with [`Context::respond`] (from this thread) or
    /// [`crate::server::Handle::respond`] (from any), before
    /// `Limits::later_timeout` (else `504`). Requests pipelined behind this
    /// one wait.
    Later,
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
    pub(crate) topics: Vec<TopicId>,
    pub(crate) after: Option<u64>,
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

    /// Subscribe the new socket to a topic (call again for more): every event
    /// is sent as a text message holding its JSON object (a binary event as a
    /// binary message). With `after`, history after that cursor — across all
    /// the topics subscribed here — is replayed first, like `Reply::Poll`;
    /// `None` sends only new events.
    pub fn subscribe(mut self, topic: TopicId, after: Option<u64>) -> Self {
        self.topics.push(topic);
        if after.is_some() {
            self.after = after;
        }
        self
    }
}

/// Your application. Every method has a default, so implement only what you use.
pub trait App {
    /// Called once when the loop starts (set timers here).
    fn start(&mut self, ctx: &mut Context) {
        let _ = ctx;
    }

    /// A plain HTTP request with its whole body, from connection `id`.
    /// Default: `404`.
    fn request(&mut self, ctx: &mut Context, id: ConnId, req: &Request, body: &[u8]) -> Reply {
        let _ = (ctx, id, req, body);
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

    /// An outbound WebSocket ([`Context::connect`]) could not be opened: an
    /// attempt failed before its `101` was checked — the name did not
    /// resolve, the connect was refused or timed out
    /// ([`WsError::Connect`]), the server's answer failed RFC 6455 §4.1 (a
    /// status other than `101`, a wrong `Sec-WebSocket-Accept`, a
    /// subprotocol or extension we did not offer, not HTTP at all:
    /// [`WsError::Handshake`]), or it came too late or not at all
    /// ([`WsError::Lost`]). Or the link's [`ReconnectPolicy`] gave up
    /// ([`WsError::GaveUp`]), after a failed attempt or a lost connection.
    ///
    /// `retry` is when the next attempt starts; `None` when the link is over
    /// (its id then names nothing). A connection that opened is never
    /// reported here: `open` and `close` tell its life, and what follows
    /// its end is [`Context::connect`]'s table. (Feature `client`.)
    ///
    /// [`ReconnectPolicy`]: crate::client::backoff::ReconnectPolicy
    #[cfg(feature = "client")]
    fn connect_failed(
        &mut self,
        ctx: &mut Context,
        id: ConnId,
        error: &WsError,
        retry: Option<Duration>,
    ) {
        let _ = (ctx, id, error, retry);
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
    /// Sends a message to one connection: a frame to an open WebSocket, an
    /// event to an event stream, the answer to a held long-poll. A
    /// connection of another loop gets it through that loop's command queue
    /// (`Ok` means queued there; [`SendError::Busy`] if the queue is full).
    pub fn send(&mut self, id: ConnId, message: Message) -> Result<(), SendError> {
        if let Some(token) = self.core.local(id) {
            return self.core.send(token, message);
        }
        let handle = &self.core.handle;
        let queued = match message {
            Message::Text(text) => handle.send_text(id, text),
            Message::Binary(bytes) => handle.send_binary(id, bytes),
        };
        queued.map_err(|error| match error {
            HandleError::Full => SendError::Busy,
            _ => SendError::NotOpen,
        })
    }

    /// Sends a message to every open WebSocket that a client opened to us
    /// (the outbound ones of `Context::connect` mask their own frames and
    /// take no broadcast); encoded once, shared by all queues of this loop,
    /// and queued for the other loops. Returns how many queued it on this
    /// loop.
    pub fn broadcast(&mut self, message: Message) -> usize {
        self.broadcast_to_all(None, message)
    }

    /// Sends a message to every open WebSocket but `except` (socket.io's
    /// `socket.broadcast.emit`).
    pub fn broadcast_except(&mut self, except: ConnId, message: Message) -> usize {
        self.broadcast_to_all(Some(except), message)
    }

    fn broadcast_to_all(&mut self, except: Option<ConnId>, message: Message) -> usize {
        if self.core.loops > 1 {
            // A loop that cannot take it now misses it, as a full queue
            // would drop it here; the others still get it.
            let _ = self.core.handle.broadcast_to_others(|| match message {
                Message::Text(text) => Command::BroadcastText {
                    text: text.to_owned(),
                    except,
                },
                Message::Binary(bytes) => Command::BroadcastBinary {
                    bytes: bytes.to_vec(),
                    except,
                },
            });
        }
        let except = except.and_then(|id| self.core.local(id));
        self.core.broadcast(except, message)
    }

    /// Starts the close handshake (RFC 6455 §7.1.2) with `code` and `reason`
    /// (truncated to 123 bytes). Any other kind of connection is closed after
    /// its queued bytes are written. False when no such connection is open;
    /// for a connection of another loop, true once the request is queued there.
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        match self.core.local(id) {
            Some(token) => self.core.close(token, code, reason),
            None => self.core.handle.close(id, code, reason).is_ok(),
        }
    }

    /// Answers a request the app deferred with [`Reply::Later`]. False if the
    /// connection is not waiting for one (already answered, timed out, gone);
    /// for a connection of another loop, true once the answer is queued there.
    pub fn respond(&mut self, id: ConnId, response: Response) -> bool {
        match self.core.local(id) {
            Some(token) => self.core.respond(token, &response),
            None => self.core.handle.respond(id, response).is_ok(),
        }
    }

    /// Keeps a value of the app's own type with a connection until it closes
    /// (replacing any earlier one; `App::close` can still read it). False if
    /// there is no such connection on this loop (each loop's app keeps the
    /// data of its own connections).
    pub fn set_data<T: Any>(&mut self, id: ConnId, value: T) -> bool {
        let Some(token) = self.core.local(id) else {
            return false;
        };
        if self.core.conns.get(token).is_none() {
            return false;
        }
        self.core.data.insert(token, Box::new(value));
        true
    }

    /// The value kept with a connection, if it is a `T`.
    pub fn data<T: Any>(&self, id: ConnId) -> Option<&T> {
        self.core.data.get(&self.core.local(id)?)?.downcast_ref()
    }

    /// The value kept with a connection, if it is a `T`, to change.
    pub fn data_mut<T: Any>(&mut self, id: ConnId) -> Option<&mut T> {
        let token = self.core.local(id)?;
        self.core.data.get_mut(&token)?.downcast_mut()
    }

    /// Takes the value kept with a connection away, if it is a `T`.
    pub fn take_data<T: Any>(&mut self, id: ConnId) -> Option<T> {
        let token = self.core.local(id)?;
        let value = self.core.data.remove(&token)?;
        match value.downcast::<T>() {
            Ok(value) => Some(*value),
            Err(other) => {
                self.core.data.insert(token, other);
                None
            }
        }
    }

    /// The address of the connection's peer (asked of the socket: nothing is
    /// kept per connection for it); `None` for one of another loop.
    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        let token = self.core.local(id)?;
        self.core.conns.get(token)?.stream.peer_addr().ok()
    }

    /// Bytes queued for a connection and not yet taken by its socket (the
    /// browser's `bufferedAmount`); `None` for an unknown id or one of
    /// another loop.
    pub fn buffered_amount(&self, id: ConnId) -> Option<usize> {
        self.core.buffered_amount(self.core.local(id)?)
    }

    /// The topic of that name, created on first use.
    pub fn topic(&mut self, name: &str) -> Result<TopicId, TopicError> {
        self.core.feeds.topic(name)
    }

    /// The names of every topic, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.core.feeds.names()
    }

    /// The topic of that name, if it exists.
    pub fn find_topic(&self, name: &str) -> Option<TopicId> {
        self.core.feeds.find(name)
    }

    /// The topics of a comma-separated list (`?topics=a,b`): each must exist
    /// ([`TopicError::Unknown`]) unless `create`; a malformed list is
    /// [`TopicError::BadName`]. Answer an error with a `400` and its text.
    pub fn topics(&mut self, list: &str, create: bool) -> Result<Vec<TopicId>, TopicError> {
        self.core.feeds.list(list, create)
    }

    /// Removes a topic: its followers get a last `removed` event and follow
    /// it no more. False if there is no such topic.
    pub fn remove_topic(&mut self, topic: TopicId) -> bool {
        self.core.remove_topic(topic)
    }

    /// Publishes a text event (`event` `None` = the default `message` type)
    /// to a topic's followers of every transport and its waiting long-polls,
    /// and returns its id — once the store has it: with the file log
    /// ([`crate::storage`]) the event is on disk when this returns. With the
    /// Redis backend, whose ids come from Redis later, this refuses with
    /// [`PublishError::AnswersLater`]: use [`Context::publish_for`] or
    /// [`Context::publish_later`], which work with every backend.
    pub fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, PublishError> {
        self.core.publish(topic, event, Payload::Text(data), None)
    }

    /// Publishes any payload (text, raw JSON, binary) to every follower but
    /// `except` (the sender, say), and returns its id (as
    /// [`Context::publish`]: not with the Redis backend).
    pub fn publish_payload(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        except: Option<ConnId>,
    ) -> Result<u64, PublishError> {
        self.core.publish(topic, event, payload, except)
    }

    /// Publishes for the HTTP request connection `id` is serving, and says
    /// how to answer it (return this from [`App::request`]): `200
    /// {"id":N}` once the store has the event — at once in memory and with
    /// the file log, when Redis has it with the Redis backend (the request
    /// is held meanwhile, as [`Reply::Later`]) — or the refusal's status:
    /// `400`/`404`/`413` for the event, `503` with `Retry-After` when the
    /// store cannot take it.
    pub fn publish_for(
        &mut self,
        id: ConnId,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
    ) -> Reply {
        match self.core.publish_for(id, topic, event, payload) {
            Some(response) => Reply::Response(response),
            None => Reply::Later,
        }
    }

    /// Publishes with any backend, without waiting for the id: refused now
    /// when the event is bad or the store is known to be unavailable;
    /// otherwise published now (memory, file log) or sent to Redis. A Redis
    /// that fails it afterwards is counted in [`Stats`] (`store.unavailable`).
    /// `except` is honoured by the memory and file backends; an event read
    /// back from Redis reaches every follower (see [`crate::engine::store`]).
    pub fn publish_later(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        except: Option<ConnId>,
    ) -> Result<(), PublishError> {
        self.core
            .publish_later(topic, event, payload, except, Waiter::Nobody)
    }

    /// Subscribes an open WebSocket or an event stream of this loop to a
    /// topic, replaying history after `after` first when it is given (see
    /// [`Accept::subscribe`]). A connection of another loop:
    /// [`SendError::OtherLoop`] (subscribe it from its own loop's callbacks);
    /// an outbound WebSocket: [`SendError::NotOpen`] (feed events are frames
    /// encoded once, as a server sends them).
    pub fn subscribe(
        &mut self,
        id: ConnId,
        topic: TopicId,
        after: Option<u64>,
    ) -> Result<(), SendError> {
        let token = self.core.local(id).ok_or(SendError::OtherLoop)?;
        self.core.subscribe(token, topic, after)
    }

    /// A connection of this loop stops following a topic. False if it did
    /// not (or is on another loop).
    pub fn unsubscribe(&mut self, id: ConnId, topic: TopicId) -> bool {
        self.core
            .local(id)
            .is_some_and(|token| self.core.unsubscribe(token, topic))
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
        self.core.timers.clear_user(timer)
    }

    /// The loop's clock for this turn.
    pub fn now(&self) -> Instant {
        self.core.std_instant(self.core.now)
    }

    /// Per-transport counters (and, with the `deflate` feature, what
    /// compression did), as of now.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// The counters of every loop, this one's live and the others' as they
    /// last published them (at most `engine::STATS_PERIOD` old); one element
    /// when a single loop runs.
    pub fn every_loop_stats(&self) -> Vec<Stats> {
        self.core.handle.every_loop_stats(&self.core.stats())
    }

    /// The counters of every loop added up (see [`Context::every_loop_stats`]).
    pub fn total_stats(&self) -> Stats {
        Stats::sum(&self.every_loop_stats())
    }

    /// This loop's place among the server's loops (0 when alone).
    pub fn loop_index(&self) -> usize {
        usize::from(self.core.loop_index)
    }

    /// Opens a WebSocket from this loop to a `ws://` URL (feature `client`):
    /// an outbound link, delivered through the same callbacks as the sockets
    /// clients open to us — [`App::open`] once its handshake passed RFC 6455
    /// §4.1's checks, [`App::message`], [`App::close`] — and acted on the
    /// same way: [`Context::send`] (each frame masked with a fresh key from
    /// the OS, §5.3), [`Context::close`]. The returned id names the link for
    /// its whole life, across reconnects; the connection it names changes
    /// (data kept with [`Context::set_data`] goes with each connection).
    ///
    /// Nothing blocks: an IP address is connected to at once; a name is
    /// looked up on a helper thread, whose answer wakes the loop. Each
    /// attempt — the lookup, the TCP connects (each address in turn) and the
    /// handshake — must be done within `config.connect_timeout`. The rest of
    /// [`WsConfig`] applies as to the blocking client: subprotocols, Origin,
    /// extra fields, the heartbeat and the close timeout, size limits (past
    /// them: `1009`), `max_head_bytes` (within the loop's own), the
    /// reconnect policy, and `resume_feed` (each reconnect asks a pushloop
    /// feed for `?after=` the last event's id). `write_timeout` does not:
    /// the loop never blocks on a write, and an outbound socket's queue is
    /// bounded like any other (`Limits::max_queued_bytes`).
    ///
    /// What follows each end:
    ///
    /// | end | then |
    /// |---|---|
    /// | an attempt refused, unanswered, timed out; an answer with a 5xx status | [`App::connect_failed`] with the delay, then the next attempt |
    /// | any other answer that is not a good `101`; no randomness from the OS | [`App::connect_failed`], the end |
    /// | an open connection lost (1006), timed out, or closed by the server with a code that does not say done (1001, 1011, 1012, ...) | [`App::close`], then the next attempt after the delay |
    /// | the server's Close with 1000, 1002, 1003, 1007-1010; our own Close (yours, or a protocol error's: 1002, 1007, 1009) | [`App::close`], the end |
    /// | the [`ReconnectPolicy`] gives up (`max_attempts: Some(0)`: one attempt, no reconnect) | [`App::connect_failed`] with [`WsError::GaveUp`], the end |
    /// | [`Context::close`] while connecting or waiting; shutdown | the end, no callback |
    ///
    /// The link lives on this loop (with several loops, the one whose
    /// callback called this). `wss://` is refused
    /// ([`SetupError::TlsNotInLoop`]), also with the `tls` feature: the loop's
    /// TLS serves only the server's side so far; the blocking client opens
    /// `wss://` (`client::tls`). Errors: the URL, its scheme, or
    /// an option the request cannot carry; nothing was sent.
    ///
    /// [`ReconnectPolicy`]: crate::client::backoff::ReconnectPolicy
    #[cfg(feature = "client")]
    pub fn connect(&mut self, url: &str, config: WsConfig) -> Result<ConnId, SetupError> {
        let token = self.core.connect_link(url, config)?;
        Ok(self.core.conn_id(token))
    }

    /// The subprotocol the server chose for an open outbound WebSocket
    /// ([`Context::connect`]; RFC 6455 §4.1 item 6, one we offered); `None`
    /// when it chose none, and for any other connection. (Feature `client`.)
    #[cfg(feature = "client")]
    pub fn protocol(&self, id: ConnId) -> Option<&str> {
        self.core.link_protocol(self.core.local(id)?)
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.core.handle.clone()
    }

    /// Starts a graceful shutdown of every loop (see
    /// [`crate::server::Server::run`]).
    pub fn shutdown(&mut self) {
        self.core.handle.shutdown();
        self.core.begin_shutdown();
    }
}
