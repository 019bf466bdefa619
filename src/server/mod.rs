//! The event loop: one thread, one `mio::Poll`, every transport on one port.
//!
//! ```text
//!   poll(timeout = earliest deadline)
//!     1. listener ready → accept until WouldBlock (pause on EMFILE)
//!     2. waker ready    → run commands from other threads (Handle)
//!     3. socket ready   → read until WouldBlock into the loop's one scratch
//!                         buffer, parse in place, call the App
//!     4. timers due     → deadlines of connections, user timers
//!     5. flush          → write every connection with an answer queued, then
//!                         the next slice of the fan-out line (events and
//!                         broadcasts; poll again without sleeping while it is
//!                         not empty); WRITABLE interest only where bytes remain
//!     6. reap           → remove finished connections (App::close for sockets)
//! ```
//!
//! Input is parsed where it was read. Only an unfinished head, frame header or
//! control frame is copied into the connection (`leftover`); unfinished data
//! payloads go straight into the message being reassembled. An idle connection
//! owns no buffer at all.
//!
//! Start one with [`Server::bind`], get [`Server::topic`]s and a [`Handle`] for
//! other threads, then [`Server::run`] your [`crate::app::App`].

pub(crate) mod connection;
pub(crate) mod core;
mod event_loop;
mod handle;
mod last_write;
pub mod signal;
pub(crate) mod timers;
pub(crate) mod token;
pub mod trace;
pub(crate) mod write_queue;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{SystemTime, UNIX_EPOCH};

pub use handle::{Command, Handle, HandleError};

use crate::app::TopicId;
use crate::limits::Limits;
use crate::topic::HistoryLimits;
use crate::ws::handshake::OriginPolicy;
use connection::{Connection, Transport};

/// Everything a server can be configured with. Start from `Config::default()`.
#[derive(Debug)]
pub struct Config {
    /// The named limits (see [`crate::limits`]).
    pub limits: Limits,
    /// Which `Origin`s may open a WebSocket (RFC 6455 §10.2). Default: any.
    pub origin_policy: OriginPolicy,
    /// History kept per topic.
    pub history: HistoryLimits,
    /// `Access-Control-Allow-Origin` for event streams and polls, so pages from
    /// other origins may read them. Default: none (same origin only).
    pub allow_origin: Option<String>,
    /// The `retry:` an event stream sends first (WHATWG HTML §9.2.6: the
    /// browser's reconnection delay, in ms). Default 2000.
    pub sse_retry_ms: u32,
    /// Commands a [`Handle`] may have in flight before `try_*` calls report
    /// [`HandleError::Full`]. Default 4096.
    pub handle_capacity: usize,
    /// Bytes of the loop-wide read buffer. Default 64 KiB.
    pub read_buffer_bytes: usize,
    /// Where to write the protocol trace (see [`trace`]), if anywhere.
    /// Default: nowhere.
    pub trace: Option<trace::TraceOutput>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            origin_policy: OriginPolicy::default(),
            history: HistoryLimits::default(),
            allow_origin: None,
            sse_retry_ms: 2000,
            handle_capacity: 4096,
            read_buffer_bytes: 64 * 1024,
            trace: None,
        }
    }
}

/// Counters of one transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections now in this transport.
    pub connections: u64,
    /// Requests (or upgrades) served by this transport since start.
    pub requests: u64,
    /// Bytes queued for writing (heads, frames, events).
    pub bytes_written: u64,
    /// Feed events delivered (a long-poll answer counts its events).
    pub events_delivered: u64,
}

/// Per-transport counters of a server (see `GET /stats` in the demo).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Plain HTTP responses.
    pub http: TransportStats,
    /// Short polls.
    pub poll: TransportStats,
    /// Long polls.
    pub long_poll: TransportStats,
    /// Event streams.
    pub event_stream: TransportStats,
    /// WebSockets.
    pub websocket: TransportStats,
    /// Times a queue was past `max_queued_bytes`.
    pub slow_readers: u64,
    /// Messages dropped under `SlowReader::Drop`.
    pub dropped_messages: u64,
    /// Connections refused at `max_connections`.
    pub refused_connections: u64,
    /// Callbacks that panicked (their connection was closed).
    pub panics: u64,
}

impl Stats {
    pub(crate) fn of(&mut self, transport: Transport) -> &mut TransportStats {
        match transport {
            Transport::Http => &mut self.http,
            Transport::LongPoll => &mut self.long_poll,
            Transport::EventStream => &mut self.event_stream,
            Transport::WebSocket => &mut self.websocket,
        }
    }

    /// Moves a connection's count to another transport and counts a request there.
    pub(crate) fn switch(&mut self, conn: &mut Connection, to: Transport) {
        self.of(conn.transport).connections -= 1;
        conn.transport = to;
        let stats = self.of(to);
        stats.connections += 1;
        stats.requests += 1;
    }

    /// The counters as a JSON object, transports by name.
    pub fn to_json(&self) -> String {
        let transports = [
            ("http", &self.http),
            ("poll", &self.poll),
            ("longpoll", &self.long_poll),
            ("sse", &self.event_stream),
            ("websocket", &self.websocket),
        ];
        let mut json = String::from("{");
        for (name, t) in transports {
            json.push_str(&format!(
                "\"{name}\":{{\"connections\":{},\"requests\":{},\"bytes_written\":{},\"events_delivered\":{}}},",
                t.connections, t.requests, t.bytes_written, t.events_delivered
            ));
        }
        json.push_str(&format!(
            "\"slow_readers\":{},\"dropped_messages\":{},\"refused_connections\":{},\"panics\":{}}}",
            self.slow_readers, self.dropped_messages, self.refused_connections, self.panics
        ));
        json
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    pub(crate) inner: event_loop::EventLoop,
}

impl Server {
    /// Binds a listener (use port 0 for an OS-assigned port).
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        // Event ids start at the wall clock in µs, so ids never repeat across
        // restarts (see `crate::topic`).
        let id_seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Ok(Server {
            inner: event_loop::EventLoop::bind(addr, config, id_seed)?,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The topic of that name, created on first use.
    pub fn topic(&mut self, name: &str) -> TopicId {
        self.inner.core.topic(name)
    }

    /// A handle for other threads: send, broadcast, publish, close, shut down.
    pub fn handle(&self) -> Handle {
        self.inner.core.handle.clone()
    }

    /// Runs the loop until a graceful shutdown ([`Handle::shutdown`],
    /// [`crate::app::Context::shutdown`], or a signal wired with
    /// [`signal::shutdown_on_signals`]): stop accepting, close WebSockets
    /// with `1001`, end streams and polls, write what is queued within
    /// `Limits::shutdown_timeout`, return `Ok`. Errors only when polling itself fails.
    pub fn run(self, app: impl crate::app::App) -> io::Result<()> {
        self.inner.run(app)
    }
}
