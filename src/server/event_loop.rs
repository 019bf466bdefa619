//! The loop itself: poll, accept, read, hand bytes to the sessions, call the
//! app, timers, write, reap.
//!
//! Read this file top to bottom as the life of one turn ([`EventLoop::run`]),
//! then the life of one connection: accepted ([`EventLoop::accept`]), read
//! ([`EventLoop::read`]), its bytes handed to its session
//! ([`EventLoop::process_http`], [`EventLoop::process_websocket`]), and
//! finally reaped ([`EventLoop::reap`]). Every protocol rule is in a session
//! of the protocol crate; what is here is moving bytes, time and callbacks.
//!
//! **Fairness.** A connection is read at most once per turn (one fill of the
//! loop's read buffer); if the read filled it, the connection is listed as
//! *ready* and read again next turn, after every other socket had its turn,
//! the answers were written, signals and `Handle` commands were served and
//! timers ran. A connection whose queue is past its bound
//! (`max_queued_answer_bytes` for HTTP, `max_queued_bytes` for a WebSocket),
//! or whose request is being answered later, is not read at all until that
//! changes.

use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::app::{Accept, App, Context, Reply, Upgrading};
use crate::engine::config::{Config, SharePort};
use crate::engine::connection::{Closing, Connection, Ending, Kind, Transport, Waiting, WsConn};
use crate::engine::handle::{Command, Handle, Port};
use crate::engine::lab::Tag;
#[cfg(feature = "client")]
use crate::engine::outbound::Answer;
use crate::engine::outbox::{Kind as Chunk, Message};
#[cfg(feature = "tls")]
use crate::engine::slab::TLS_LISTENER;
use crate::engine::slab::{LISTENER, WAKER};
#[cfg(feature = "redis")]
use crate::engine::slab::{REDIS_COMMANDS, REDIS_READER};
use crate::engine::store::{self, Waiter};
use crate::engine::timers::Wake;
use crate::engine::Core;
use crate::feeds::Feeds;
use crate::http::{httparse, HttpSession, HttpStep, Request, Response};
use crate::ids::TopicId;
use crate::server::reuseport;
use crate::sse;
use crate::ws::close::CloseCode;
#[cfg(feature = "deflate")]
use crate::ws::deflate::{accept_offer, AgreedParams};
use crate::ws::frame::Observed;
use crate::ws::frame::Role;
use crate::ws::handshake::{self, HandshakeError, Upgrade};
use crate::ws::session::{Event, Session, Step};

/// Header slots kept on the stack (the default limit); more come from the
/// heap. Every slot is written before parsing, and writing 256 for every
/// request cost about as much as parsing a small head.
const STACK_HEADER_SLOTS: usize = 64;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Events taken from one `poll` call.
const EVENTS_PER_POLL: usize = 1024;
/// Fan-out recipients written per turn before the loop looks for input again
/// (see [`crate::engine::outbox`]): small enough that a publisher waiting for
/// its answer is not kept behind a thousand writes, large enough that the
/// extra `epoll_wait` is noise.
const FANOUT_SLICE: usize = 64;
/// Output past which a connection is written right after its read, not at
/// the end of the turn. With 16 sockets echoing 64 KiB each per turn, a
/// megabyte of answers waited for the turn to end, the first of them long
/// out of the cache; written at once, they leave while still warm. Measured
/// (16 KiB echo, 16 × 4, 5 interleaved runs of `bench/cpu-split.sh`'s echo):
/// 6.24–6.55 → 5.70–6.05 CPU-s per million messages (9d7a182: 5.70–6.20).
/// Smaller answers wait for the end of the turn, where what else comes for
/// the socket joins them in one write.
const EARLY_FLUSH_BYTES: usize = 32 * 1024;

pub(crate) struct EventLoop {
    poll: Poll,
    /// Wakes this loop from other threads: commands, other loops' events.
    waker: Arc<Waker>,
    /// The plain listener (`None` for a TLS-only server, or once shutting down).
    listener: Option<TcpListener>,
    /// The TLS listener (feature `tls`): its connections get a `TlsStream`.
    #[cfg(feature = "tls")]
    tls_listener: Option<TcpListener>,
    #[cfg(feature = "tls")]
    tls_addr: Option<SocketAddr>,
    /// The first listener's address.
    local_addr: SocketAddr,
    /// The loops to hand accepted connections to, in turn, when loops share
    /// the port through this one's acceptor (see [`crate::server::reuseport`]).
    hand_out: Option<HandOut>,
    /// The loop-wide read buffer: every socket is read into it and parsed in place.
    scratch: Vec<u8>,
    pub(crate) core: Core,
    commands: Receiver<Command>,
    /// The commands of one wake-up (kept to reuse its buffer).
    batch: Vec<Command>,
    accept_paused: bool,
    /// Accepting failed for want of file descriptors and has not succeeded
    /// since (logged once per episode, not at every retry).
    out_of_descriptors: bool,
    /// Seeds the loops' jitter generators.
    seed: u64,
}

/// A loop made by [`EventLoop::split`], to be built on its own thread (a
/// running loop holds the app's per-connection data, which need not be
/// `Send`).
pub(crate) struct Unstarted {
    parts: Parts,
    listener: Option<TcpListener>,
    /// Its own listener in the TLS listener's `SO_REUSEPORT` group.
    #[cfg(feature = "tls")]
    tls_listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: Config,
    handle: Handle,
    feeds: Feeds,
    loop_index: u16,
    loops: usize,
    seed: u64,
}

impl Unstarted {
    /// Builds the loop and runs `app` on it.
    pub(crate) fn run(self, app: impl App) -> io::Result<()> {
        let mut event_loop = EventLoop::new(
            self.parts,
            self.listener,
            self.config,
            self.handle,
            self.feeds,
            self.loop_index,
            self.seed,
        )?;
        event_loop.local_addr = self.local_addr;
        event_loop.core.loops = self.loops;
        #[cfg(feature = "tls")]
        if let Some(listener) = self.tls_listener {
            event_loop.listen_tls(listener)?;
        }
        event_loop.run(app)
    }
}

/// Round-robin over the loops, for the one-acceptor way of sharing a port.
struct HandOut {
    loops: usize,
    next: usize,
}

/// What a loop is made of before it runs: its poll, its waker and the
/// receiving end of its commands (the sending end is a [`Port`]).
struct Parts {
    poll: Poll,
    waker: Arc<Waker>,
    commands: Receiver<Command>,
}

impl Parts {
    fn new(config: &Config) -> io::Result<(Parts, Port)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, commands) = sync_channel(config.handle_capacity.max(1));
        let port = Port::new(sender, Arc::clone(&waker));
        Ok((
            Parts {
                poll,
                waker,
                commands,
            },
            port,
        ))
    }
}

/// What the reply to a request asks the engine to do, once the request
/// (which borrows the session and the read buffer) is dropped.
enum Next {
    Respond(Response),
    /// Refuse with this response and close (counted as a refusal).
    Refuse(Response),
    /// The opening handshake broke RFC 6455 §4.2.1 (or the Origin policy).
    HandshakeRefused(HandshakeError),
    Poll(Vec<TopicId>, u64),
    LongPoll(Vec<TopicId>, u64),
    EventStream(Vec<TopicId>, Option<u64>),
    /// The lab's stream of a session's trace lines.
    Lab(Tag),
    Later,
    /// Switch to WebSocket: the 101 head, what the app asked for, and the
    /// extensions agreed.
    Upgrade(Vec<u8>, Accept, Extensions),
}

/// What the opening handshake agreed on beside the 101 (RFC 6455 §9.1).
#[derive(Default)]
struct Extensions {
    /// permessage-deflate's parameters (RFC 7692 §7.1), when it was offered
    /// and accepted.
    #[cfg(feature = "deflate")]
    deflate: Option<AgreedParams>,
}

impl EventLoop {
    /// A loop with one listener: TLS if `secure` (feature `tls`), else plain.
    pub(crate) fn bind(
        addr: SocketAddr,
        config: Config,
        seed: u64,
        secure: bool,
    ) -> io::Result<EventLoop> {
        let listener = reuseport::bind(addr)?;
        let (parts, port) = Parts::new(&config)?;
        let handle = Handle::new(port, config.history);
        let (feeds, notes) = store::open_feeds(&config, seed)?;
        let mut event_loop = if secure {
            #[cfg(feature = "tls")]
            {
                let mut event_loop = EventLoop::new(parts, None, config, handle, feeds, 0, seed)?;
                event_loop.local_addr = event_loop.listen_tls(listener)?;
                event_loop
            }
            #[cfg(not(feature = "tls"))]
            return Err(io::Error::new(
                ErrorKind::Unsupported,
                "TLS needs the `tls` feature",
            ));
        } else {
            EventLoop::new(parts, Some(listener), config, handle, feeds, 0, seed)?
        };
        for note in notes {
            event_loop.core.log(&note);
        }
        #[cfg(feature = "redis")]
        if let crate::storage::Storage::Redis(redis) = &event_loop.core.config.storage {
            let redis = redis.clone();
            event_loop.core.start_redis(&redis)?;
        }
        event_loop.core.arm_store_timer();
        Ok(event_loop)
    }

    /// Adds a TLS listener beside the plain one (feature `tls`).
    #[cfg(feature = "tls")]
    pub(crate) fn add_tls_listener(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        if self.core.tls.is_none() {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "a TLS listener needs Config::tls",
            ));
        }
        if self.tls_listener.is_some() {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                "this server has a TLS listener",
            ));
        }
        self.listen_tls(reuseport::bind(addr)?)
    }

    /// Serves TLS on `listener` (feature `tls`); its address.
    #[cfg(feature = "tls")]
    fn listen_tls(&mut self, mut listener: TcpListener) -> io::Result<SocketAddr> {
        let local_addr = listener.local_addr()?;
        self.poll
            .registry()
            .register(&mut listener, TLS_LISTENER, Interest::READABLE)?;
        self.tls_listener = Some(listener);
        self.tls_addr = Some(local_addr);
        Ok(local_addr)
    }

    /// The TLS listener's address (feature `tls`).
    #[cfg(feature = "tls")]
    pub(crate) fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    fn new(
        parts: Parts,
        mut listener: Option<TcpListener>,
        config: Config,
        handle: Handle,
        feeds: Feeds,
        loop_index: u16,
        seed: u64,
    ) -> io::Result<EventLoop> {
        let Parts {
            poll,
            waker,
            commands,
        } = parts;
        let local_addr = match listener.as_mut() {
            Some(listener) => {
                poll.registry()
                    .register(listener, LISTENER, Interest::READABLE)?;
                listener.local_addr()?
            }
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        // The buffer must hold an unfinished head plus room to read more;
        // with TLS, room for a record and its plaintext (see `read_tls`).
        let unfinished = config.limits.max_head_bytes + 4096;
        #[cfg(feature = "tls")]
        let unfinished = if config.tls.is_some() {
            unfinished + crate::tls::MIN_READ_BUFFER
        } else {
            unfinished
        };
        let scratch_len = config.read_buffer_bytes.max(unfinished);
        let mut core = Core::new(
            config,
            poll.registry().try_clone()?,
            handle,
            feeds,
            seed.wrapping_add(u64::from(loop_index)),
            std::time::Instant::now(),
        );
        core.loop_index = loop_index;
        Ok(EventLoop {
            poll,
            waker,
            listener,
            #[cfg(feature = "tls")]
            tls_listener: None,
            #[cfg(feature = "tls")]
            tls_addr: None,
            local_addr,
            hand_out: None,
            scratch: vec![0; scratch_len],
            core,
            commands,
            batch: Vec::new(),
            accept_paused: false,
            out_of_descriptors: false,
            seed,
        })
    }

    /// Makes `threads - 1` more loops beside this one (loop 0), sharing the
    /// port and the topics; returns them in loop order. Each new loop gets
    /// its own listener on the port through `SO_REUSEPORT`, where the kernel
    /// spreads connections over such listeners (Linux); elsewhere, or if
    /// that fails, or as `Config::share_port` says, this loop accepts for all
    /// and hands the connections out in turn.
    pub(crate) fn split(&mut self, threads: usize) -> io::Result<Vec<Unstarted>> {
        if threads > usize::from(u16::MAX) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "at most 65 535 loops",
            ));
        }
        let extra = threads.saturating_sub(1);
        // `max_connections` bounds the server (descriptors are the process's):
        // each loop takes its share.
        let limits = &mut self.core.config.limits;
        limits.max_connections = limits.max_connections.div_ceil(threads);
        let mut listeners = match (&self.listener, self.core.config.share_port) {
            (Some(listener), SharePort::ReusePort) => {
                reuseport::more_listeners(listener, extra).ok()
            }
            _ => None,
        };
        #[cfg(feature = "tls")]
        let mut tls_listeners = match (&self.tls_listener, self.core.config.share_port) {
            (Some(listener), SharePort::ReusePort) => {
                reuseport::more_listeners(listener, extra).ok()
            }
            _ => None,
        };
        // One way for every listener: each spread by the kernel, or all
        // handed out by this loop.
        #[cfg(feature = "tls")]
        if (self.listener.is_some() && listeners.is_none())
            || (self.tls_listener.is_some() && tls_listeners.is_none())
        {
            listeners = None;
            tls_listeners = None;
        }
        #[cfg(feature = "tls")]
        let spread = listeners.is_some() || tls_listeners.is_some();
        #[cfg(not(feature = "tls"))]
        let spread = listeners.is_some();
        if !spread {
            self.hand_out = Some(HandOut {
                loops: threads,
                next: 0,
            });
        }
        self.core.log(&format!(
            "{threads} loops; connections {}",
            if spread {
                "spread over them by the kernel (SO_REUSEPORT)"
            } else {
                "accepted by loop 0 and handed out in turn"
            }
        ));
        let mut parts = Vec::with_capacity(extra);
        let mut ports = Vec::with_capacity(extra);
        let mut wakers = vec![Arc::clone(&self.waker)];
        for _ in 0..extra {
            let (part, port) = Parts::new(&self.core.config)?;
            wakers.push(Arc::clone(&part.waker));
            parts.push(part);
            ports.push(port);
        }
        let feeds = self
            .core
            .feeds
            .share(wakers, self.core.config.limits.inbox());
        let handles = self.core.handle.add_loops(ports);
        self.core.loops = threads;
        let mut made = Vec::with_capacity(extra);
        for (index, ((parts, feeds), handle)) in
            parts.into_iter().zip(feeds).zip(handles).enumerate()
        {
            #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
            let mut config = self.core.config.for_another_loop();
            // The certificate this loop serves now (a reload reaches every loop).
            #[cfg(feature = "tls")]
            {
                config.tls = self.core.tls.clone();
            }
            made.push(Unstarted {
                parts,
                listener: listeners.as_mut().and_then(Vec::pop),
                #[cfg(feature = "tls")]
                tls_listener: tls_listeners.as_mut().and_then(Vec::pop),
                local_addr: self.local_addr,
                config,
                handle,
                feeds,
                loop_index: u16::try_from(index + 1).unwrap_or(u16::MAX),
                loops: threads,
                seed: self.seed,
            });
        }
        Ok(made)
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn run(mut self, mut app: impl App) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        self.core.handle.set_loop_thread();
        self.core.tick();
        self.core.log(&format!(
            "listening on {} (at most {} connections)",
            self.local_addr, self.core.config.limits.max_connections
        ));
        guarded(&mut self.core, &mut app, |app, ctx| app.start(ctx));
        loop {
            // 5 and 6 of the previous turn (and of `start`): the lab's lines
            // join their streams' queues, answers are written, then a slice
            // of the fan-out line, then reap.
            self.core.flush_lab();
            self.core.flush_dirty();
            let fanout_left = self.core.flush_fanout(FANOUT_SLICE);
            self.reap(&mut app);
            self.core.feeds.wake_others();
            self.core.share_stats();
            if let Some(deadline) = self.core.shutdown_deadline {
                if self.core.conns.is_empty() || self.core.now >= deadline {
                    let left = self.core.conns.len();
                    self.core.log(&match left {
                        0 => "shutdown: done, every connection closed".to_owned(),
                        n => format!("shutdown: deadline passed, {n} connections cut"),
                    });
                    self.core.close_store();
                    return Ok(());
                }
            }
            // Sleep until the earliest deadline, unless there is more to do.
            // (Lines the lab gathered while writing and reaping, a closed
            // connection's last line among them, go out with one more turn.)
            let timeout = if fanout_left || !self.core.ready.is_empty() || self.core.lab_waiting() {
                Some(Duration::ZERO)
            } else {
                let wake_at = match (self.core.timers.next(), self.core.shutdown_deadline) {
                    (Some(timer), Some(shutdown)) => Some(timer.min(shutdown)),
                    (timer, shutdown) => timer.or(shutdown),
                };
                self.core.tick();
                wake_at.map(|when| when.saturating_duration_since(self.core.now))
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            self.core.tick();
            // 1-3. Connections read last turn that may have more go first in
            // line behind the new events (each gets one read per turn).
            let ready = self.core.ready.len();
            for event in events.iter() {
                match event.token() {
                    // 1. New connections.
                    LISTENER => self.accept(false),
                    #[cfg(feature = "tls")]
                    TLS_LISTENER => self.accept(true),
                    // 2. Commands from other threads.
                    WAKER => self.run_commands(),
                    // The Redis link's sockets (loop 0).
                    #[cfg(feature = "redis")]
                    token @ (REDIS_READER | REDIS_COMMANDS) => {
                        self.core.redis_ready(token, &mut self.scratch)
                    }
                    // 3. Socket readiness: read before write, so that answers
                    //    to this turn's input join what is already queued.
                    token => {
                        // An outbound connect under way: readiness is its outcome.
                        #[cfg(feature = "client")]
                        if self.core.is_connecting(token) {
                            self.core.link_connect_ready(token);
                            continue;
                        }
                        if event.is_read_closed() || event.is_error() {
                            // A paused connection is not read, so its FIN
                            // would go unseen: act on it now.
                            match self.core.conns.get_mut(token) {
                                Some(conn) if conn.paused => self.peer_closed(token),
                                Some(conn) => conn.peer_fin = true,
                                None => {}
                            }
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(&mut app, token);
                        }
                        if event.is_writable() {
                            self.core.flush(token);
                        }
                    }
                }
            }
            for _ in 0..ready {
                let Some(token) = self.core.ready.pop_front() else {
                    break;
                };
                if let Some(conn) = self.core.conns.get_mut(token) {
                    conn.in_ready = false;
                    self.read(&mut app, token);
                }
            }
            // 4. Deadlines.
            self.run_timers(&mut app);
        }
    }

    /// Accepts until `WouldBlock`, from the TLS listener if `secure`. Past
    /// `max_connections` a socket is closed at once; out of descriptors
    /// (EMFILE/ENFILE), accepting pauses briefly instead of spinning on a
    /// listener that stays readable.
    fn accept(&mut self, secure: bool) {
        if self.accept_paused {
            return;
        }
        loop {
            #[cfg(feature = "tls")]
            let listener = if secure {
                self.tls_listener.as_ref()
            } else {
                self.listener.as_ref()
            };
            #[cfg(not(feature = "tls"))]
            let listener = self.listener.as_ref().filter(|_| !secure);
            let Some(listener) = listener else {
                return;
            };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if is_out_of_descriptors(&error) => {
                    if !self.out_of_descriptors {
                        self.out_of_descriptors = true;
                        self.core.log(&format!(
                            "accept: {error}; pausing {} ms at a time until one is free",
                            ACCEPT_PAUSE.as_millis()
                        ));
                    }
                    self.accept_paused = true;
                    self.core
                        .timers
                        .arm(self.core.now + ACCEPT_PAUSE, Wake::Accept);
                    return;
                }
                // A connection reset before we took it, and the like.
                Err(_) => continue,
            };
            if self.out_of_descriptors {
                self.out_of_descriptors = false;
                self.core.log("accept: descriptors available again");
            }
            let stream = match self.hand_out.as_mut() {
                Some(hand_out) => {
                    let to = hand_out.next;
                    hand_out.next = (to + 1) % hand_out.loops;
                    if to == usize::from(self.core.loop_index) {
                        stream
                    } else {
                        // A loop that cannot take it now: this one serves it.
                        #[cfg(feature = "tls")]
                        let handed = if secure {
                            self.core.handle.adopt_tls(to, stream)
                        } else {
                            self.core.handle.adopt(to, stream)
                        };
                        #[cfg(not(feature = "tls"))]
                        let handed = self.core.handle.adopt(to, stream);
                        match handed {
                            Ok(()) => continue,
                            Err(stream) => stream,
                        }
                    }
                }
                None => stream,
            };
            self.serve(stream, secure);
        }
    }

    /// Starts serving an accepted connection (accepted here, or by another
    /// loop that hands connections out): refused past `max_connections` or
    /// during a shutdown, else registered and waiting for its first request.
    /// On a TLS listener's connection (`secure`), a TLS stream sits between
    /// the socket and the session; its handshake is bounded by the session's
    /// head deadline.
    fn serve(&mut self, stream: mio::net::TcpStream, secure: bool) {
        let core = &mut self.core;
        if core.conns.len() >= core.config.limits.max_connections
            || core.shutdown_deadline.is_some()
        {
            core.stats.refused_connections += 1;
            return;
        }
        // Small frames must not wait for Nagle's algorithm (on Linux the
        // socket has it from its listener already).
        if !reuseport::ACCEPTED_HAVE_NODELAY {
            let _ = stream.set_nodelay(true);
        }
        let session = HttpSession::new(core.now);
        let token = core.conns.insert_with(|_| Connection::new(stream, session));
        let registered = match core.conns.get_mut(token) {
            Some(conn) => core
                .registry
                .register(&mut conn.stream, token, Interest::READABLE)
                .is_ok(),
            None => false,
        };
        #[cfg(feature = "tls")]
        let registered = registered && (!secure || core.start_tls(token));
        if !registered {
            core.conns.remove(token);
            return;
        }
        core.stats.http.connections += 1;
        core.rearm(token);
        if core.tracing(token) {
            let peer = core
                .conns
                .get(token)
                .and_then(|conn| conn.stream.peer_addr().ok());
            let over = if secure { " (TLS)" } else { "" };
            let from = match peer {
                Some(peer) => format!("accepted from {peer}{over}"),
                None => format!("accepted{over}"),
            };
            core.trace(|tracer, now| tracer.note(now, token, "tcp", &from, ""));
        }
    }

    /// One read of a connection (its budget for this turn), handed to its
    /// session. A read that filled the buffer lists the connection to be
    /// read again next turn; a short one drained the socket (epoll reports
    /// new data with a new edge). A connection that is paused is not read:
    /// it is listed again when it may go on.
    fn read(&mut self, app: &mut impl App, token: Token) {
        let Some(conn) = self.core.conns.get_mut(token) else {
            return;
        };
        if conn.paused {
            // A FIN that came with the very request that paused the
            // connection (a long-poll, held since) was seen before the
            // request was handled, and no later edge announces it again.
            if conn.peer_fin && conn.is_held_long_poll() {
                self.peer_closed(token);
            }
            return;
        }
        #[cfg(feature = "tls")]
        if conn.tls.is_some() {
            return self.read_tls(app, token);
        }
        let kept = conn.leftover.len();
        self.scratch[..kept].copy_from_slice(&conn.leftover);
        conn.leftover = Box::default();
        let room = self.scratch.len() - kept;
        let lingering = matches!(conn.kind, Kind::Closing(Closing::Lingering));
        let result = loop {
            match conn.stream.read(&mut self.scratch[kept..]) {
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        match result {
            // The rest of the peer's input is read only to see its FIN.
            Ok(n) if lingering && n > 0 => self.core.make_ready(token),
            Ok(0) => {
                if kept > 0 {
                    self.process(app, token, kept);
                }
                self.peer_closed(token);
            }
            Ok(n) => {
                let transport = conn.transport;
                self.core.stats.of(transport).bytes_read += n as u64;
                self.process(app, token, kept + n);
                self.flush_if_large(token);
                let peer_fin = self.core.conns.get(token).is_some_and(|c| c.peer_fin);
                // A full read may have left more; a FIN seen with data must
                // still be read as EOF (no later edge announces it again).
                if n == room || peer_fin {
                    self.core.make_ready(token);
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if kept > 0 {
                    self.process(app, token, kept);
                }
            }
            Err(_) => {
                self.core.end(token, Ending::Reset);
                self.peer_closed(token);
            }
        }
    }

    /// [`EventLoop::read`] through TLS (feature `tls`): one read of
    /// ciphertext into the scratch buffer after the input kept from last
    /// time; the plaintext lands right behind that input, and the session
    /// sees one run of plaintext, as from a plain socket. Handshake records
    /// and alerts the read produced are written at the end of the turn.
    #[cfg(feature = "tls")]
    fn read_tls(&mut self, app: &mut impl App, token: Token) {
        let Some(conn) = self.core.conns.get_mut(token) else {
            return;
        };
        let kept = conn.leftover.len();
        self.scratch[..kept].copy_from_slice(&conn.leftover);
        conn.leftover = Box::default();
        let Some(tls) = conn.tls.as_deref_mut() else {
            return;
        };
        if self.scratch.len() - kept < crate::tls::MIN_READ_BUFFER {
            // Input kept while paused leaves no room for a record: handle it
            // first, read next turn.
            self.process(app, token, kept);
            self.core.make_ready(token);
            return;
        }
        let handshaking = tls.is_handshaking();
        let received = match tls.read_from(&mut conn.stream, &mut self.scratch[kept..]) {
            Ok(received) => received,
            Err(error) => return self.core.tls_failed(token, error),
        };
        let handshake_done = handshaking && !tls.is_handshaking();
        if tls.wants_write() {
            // Handshake records, a key update's answer: out at the end of the turn.
            self.core.mark_dirty(token);
        }
        if handshake_done {
            self.core.tls_handshake_done(token);
        }
        let len = kept + received.plaintext;
        if len > 0 {
            self.process(app, token, len);
            self.flush_if_large(token);
        }
        match received.closed {
            Some(how) => {
                self.core.tls_peer_closed(token, how);
                self.peer_closed(token);
            }
            None => {
                // The socket may hold more; a FIN seen with the data must
                // still be read as EOF (no later edge announces either).
                let peer_fin = self.core.conns.get(token).is_some_and(|c| c.peer_fin);
                if !received.drained || peer_fin {
                    self.core.make_ready(token);
                }
            }
        }
    }

    /// Writes what a read made the connection owe now if it is at least
    /// [`EARLY_FLUSH_BYTES`]; less waits for the end of the turn.
    fn flush_if_large(&mut self, token: Token) {
        if self
            .core
            .conns
            .get(token)
            .is_some_and(|conn| conn.queued_bytes() >= EARLY_FLUSH_BYTES)
        {
            self.core.flush(token);
        }
    }

    /// The peer closed TCP (or reset it).
    fn peer_closed(&mut self, token: Token) {
        let Some(conn) = self.core.conns.get_mut(token) else {
            return;
        };
        conn.peer_fin = true;
        let owes = conn.queued_bytes() > 0;
        match &mut conn.kind {
            // RFC 9112 §9.6: a client may half-close after its requests; what
            // we owe it still goes out, then close. A held long-poll is
            // answered at once with what there is: a FIN is how most clients
            // leave, and holding their sockets until the poll's timeout would
            // let clients that come and go pile them up.
            Kind::Http(http) if matches!(http.waiting, Waiting::LongPoll { .. }) => {
                self.core.answer_long_poll(token);
            }
            // Every request received before the FIN is answered, in order
            // (RFC 9112 §9.3.2). A connection that stopped reading them (its
            // queue is full, or an answer is being waited for) goes on when
            // it may, reads the FIN again, and comes back here.
            Kind::Http(http) if conn.paused || http.session.is_responding() => {}
            // The input is exhausted (what is left of it cannot become a
            // request): the answers go out, then close, without lingering.
            Kind::Http(_) if owes => {
                self.core.close_after_answer(token, false);
            }
            // Still writing our last bytes: the close follows them.
            Kind::Closing(Closing::Flushing { .. }) => {}
            // A half-closed reader gets what is queued for it, then the end.
            Kind::EventStream => {
                self.core.end(token, Ending::PeerLeft);
                self.core.close_after_answer(token, false);
            }
            // RFC 6455 §7.1.5: no Close frame was received: 1006 (reported
            // when the connection is reaped).
            Kind::WebSocket(ws) => {
                ws.session.on_eof();
                self.core.end(token, Ending::Lost);
                self.core.dead.push(token);
            }
            _ => {
                self.core.end(token, Ending::PeerLeft);
                self.core.dead.push(token);
            }
        }
    }

    /// Hands `scratch[..len]` to the connection's session, as often as the
    /// connection changes kind (a head upgrades to a WebSocket and the rest
    /// are frames).
    fn process(&mut self, app: &mut impl App, token: Token, len: usize) {
        let mut pos = 0;
        while pos < len {
            let Some(conn) = self.core.conns.get(token) else {
                return;
            };
            pos = match conn.kind {
                Kind::Http(_) => match self.process_http(app, token, pos, len) {
                    Some(next) => next,
                    None => return,
                },
                Kind::WebSocket(_) => return self.process_websocket(app, token, pos, len),
                // An outbound WebSocket's handshake answer; its frames follow.
                #[cfg(feature = "client")]
                Kind::Dialing(_) => match self.process_answer(app, token, pos, len) {
                    Some(next) => next,
                    None => return,
                },
                // A stream's client has nothing to say; a closing socket's input
                // is read only to see the peer's FIN.
                Kind::EventStream | Kind::Closing(_) => return,
            };
        }
    }

    /// Keeps unconsumed input for the next turn (at most one read's worth).
    fn keep(&mut self, token: Token, pos: usize, len: usize) {
        if let Some(conn) = self.core.conns.get_mut(token) {
            if pos < len {
                conn.leftover = self.scratch[pos..len].into();
            }
        }
    }

    /// Stops reading a connection whose queue is past its bound, keeping the
    /// rest of this read; it goes on once the queue drains (see `Core::flush`).
    fn pause(&mut self, token: Token, pos: usize, len: usize) {
        self.keep(token, pos, len);
        if let Some(conn) = self.core.conns.get_mut(token) {
            conn.paused = true;
            self.core.stats.paused_reads += 1;
        }
    }

    /// Reads requests from `scratch[pos..len]`. Returns where the next kind
    /// (a WebSocket) should continue, or `None` when everything was consumed,
    /// kept, or the connection stopped reading.
    fn process_http(
        &mut self,
        app: &mut impl App,
        token: Token,
        mut pos: usize,
        len: usize,
    ) -> Option<usize> {
        let (now, http_config) = (self.core.now, self.core.http);
        loop {
            // The session leaves the connection while its request is handled:
            // the request borrows it (a body that spanned reads), and the
            // callback may act on this very connection.
            let http = self.core.conns.get_mut(token)?.http()?;
            let mut session = std::mem::replace(&mut http.session, HttpSession::new(now));
            let mut interim = Vec::new();
            let (mut stack, mut heap) = ([httparse::EMPTY_HEADER; STACK_HEADER_SLOTS], Vec::new());
            let headers = header_slots(http_config.max_headers, &mut stack, &mut heap);
            let step = session.step(
                &self.scratch[pos..len],
                headers,
                now,
                &http_config,
                &mut interim,
            );
            let (next, used) = match step {
                Ok(HttpStep::Request {
                    request,
                    head,
                    body,
                    used,
                }) => {
                    // The lab learns whose the connection is before its head
                    // is traced, so the head is the session's first line.
                    self.core.lab_tag(token, &request);
                    self.core
                        .trace(|tracer, now| tracer.head_in(now, token, head));
                    (
                        Some(dispatch(&mut self.core, app, token, &request, body)),
                        used,
                    )
                }
                Ok(HttpStep::Progress { used }) => (None, used),
                Ok(HttpStep::NeedMore) => {
                    self.put_back(token, session);
                    self.keep(token, pos, len);
                    self.core.rearm(token);
                    return None;
                }
                Ok(HttpStep::Blocked) => {
                    // RFC 9112 §9.3.2: this request waits for the answer
                    // before it; it stays unread (here, then in the kernel).
                    self.put_back(token, session);
                    self.keep(token, pos, len);
                    if let Some(conn) = self.core.conns.get_mut(token) {
                        conn.paused = true;
                    }
                    return None;
                }
                Err(error) => {
                    self.put_back(token, session);
                    self.core.end(token, Ending::Refused(error.status()));
                    self.core
                        .push_protocol(token, &|out| error.write_response(out));
                    self.core.close_after_answer(token, true);
                    return None;
                }
            };
            self.put_back(token, session);
            if !interim.is_empty() {
                self.core
                    .push_protocol(token, &|out| out.extend_from_slice(&interim));
            }
            pos += used;
            if let Some(next) = next {
                if self.act(app, token, next) {
                    // Switched to WebSocket: the rest of the input is frames.
                    return Some(pos);
                }
            }
            self.core.rearm(token);
            let conn = self.core.conns.get(token)?;
            if !matches!(conn.kind, Kind::Http(_)) || conn.paused {
                self.keep(token, pos, len);
                return None;
            }
            if self.core.output_full(token) {
                self.pause(token, pos, len);
                return None;
            }
            if pos == len {
                return None;
            }
        }
    }

    /// Puts a session back into its connection, if it is still an HTTP one
    /// (a callback may have closed it).
    fn put_back(&mut self, token: Token, session: HttpSession) {
        if let Some(http) = self.core.conns.get_mut(token).and_then(Connection::http) {
            http.session = session;
        }
    }
}

/// Asks the app about a request and says what to do with its reply.
fn dispatch(core: &mut Core, app: &mut impl App, token: Token, req: &Request, body: &[u8]) -> Next {
    let id = core.conn_id(token);
    // With the lab on, its stream is the engine's own route.
    if let Some(lab) = core.lab_request(req) {
        return match lab {
            Ok(session) => Next::Lab(session),
            Err(refusal) => Next::Respond(refusal),
        };
    }
    if handshake::is_upgrade_request(req) {
        return upgrade(core, app, token, req);
    }
    let Some(reply) = guarded(core, app, |app, ctx| app.request(ctx, id, req, body)) else {
        return Next::Refuse(Response::text(500, "internal error"));
    };
    match reply {
        Reply::Response(response) => {
            core.stats.http.requests += 1;
            Next::Respond(response)
        }
        Reply::Poll { topics, after } => Next::Poll(topics, after),
        Reply::LongPoll { topics, after } => Next::LongPoll(topics, after),
        Reply::EventStream { topics, after } => {
            // WHATWG HTML §9.2.4: a reconnecting EventSource sends the last
            // id it saw as `Last-Event-ID`; it wins over the first cursor.
            match req.header("last-event-id").map(sse::parse_last_event_id) {
                Some(Ok(id)) => Next::EventStream(topics, Some(id)),
                Some(Err(_)) => Next::Refuse(Response::text(
                    400,
                    "Last-Event-ID must be a decimal event id",
                )),
                None => Next::EventStream(topics, after),
            }
        }
        Reply::Later => Next::Later,
    }
}

/// RFC 6455 §4.2: validate the handshake, apply the Origin policy, ask
/// the app; the 101 head is built here, while the request is at hand.
fn upgrade(core: &mut Core, app: &mut impl App, token: Token, req: &Request) -> Next {
    let offer = match handshake::check(req) {
        Ok(offer) => offer,
        Err(error) => return Next::HandshakeRefused(error),
    };
    if !core.config.origin_policy.allows(offer.origin()) {
        return Next::HandshakeRefused(HandshakeError::ForbiddenOrigin);
    }
    let id = core.conn_id(token);
    let accept = match guarded(core, app, |app, ctx| app.upgrade(ctx, id, req, &offer)) {
        Some(Upgrading::Accept(accept)) => accept,
        Some(Upgrading::Reject(response)) => return Next::Refuse(response),
        None => return Next::Refuse(Response::text(500, "internal error")),
    };
    let (extensions, agreed) = negotiate(core, &offer);
    let mut switching = Vec::with_capacity(160);
    if offer
        .write_accept(
            accept.protocol.as_deref(),
            extensions.as_deref(),
            &mut switching,
        )
        .is_err()
    {
        // The app chose a subprotocol the client did not offer: our bug.
        return Next::Refuse(Response::text(500, "internal error"));
    }
    Next::Upgrade(switching, accept, agreed)
}

/// RFC 7692 §5: accepts the client's first permessage-deflate offer the
/// server's settings can honour; the `Sec-WebSocket-Extensions` value of the
/// 101 and what was agreed. No offer, none acceptable, or compression turned
/// off: neither (RFC 6455 §9.1: the 101 names no extension).
#[cfg(feature = "deflate")]
fn negotiate(core: &Core, offer: &Upgrade) -> (Option<String>, Extensions) {
    let Some(deflate) = core.config.deflate else {
        return (None, Extensions::default());
    };
    let mut value = Vec::new();
    let agreed = accept_offer(
        offer.offered_extensions(),
        deflate.negotiation(),
        &mut value,
    );
    // accept_offer writes tokens and digits only: ASCII.
    let value = agreed.and(String::from_utf8(value).ok());
    (value, Extensions { deflate: agreed })
}

/// Without the `deflate` feature every extension is declined (RFC 6455 §9.1).
#[cfg(not(feature = "deflate"))]
fn negotiate(_: &Core, _: &Upgrade) -> (Option<String>, Extensions) {
    (None, Extensions::default())
}

impl EventLoop {
    /// Carries out a reply. True when the connection switched to WebSocket.
    fn act(&mut self, app: &mut impl App, token: Token, next: Next) -> bool {
        match next {
            Next::Respond(response) => self.core.answer_with(token, &response),
            Next::Refuse(response) => {
                self.core.end(token, Ending::Refused(response.status));
                let closing = response.header("Connection", "close");
                self.core.answer_with(token, &closing);
            }
            Next::HandshakeRefused(error) => {
                self.core.stats.handshake_failures += 1;
                self.core.end(token, Ending::Refused(error.status()));
                self.core
                    .answer(token, true, &|_, out| error.write_response(out));
            }
            Next::Poll(topics, after) => self.core.answer_poll(token, &topics, after),
            Next::LongPoll(topics, after) => self.core.start_long_poll(token, topics, after),
            Next::EventStream(topics, cursor) => {
                self.core.start_event_stream(token, &topics, cursor)
            }
            Next::Lab(session) => self.core.start_lab_stream(token, session),
            Next::Later => self.core.hold_for_later(token),
            Next::Upgrade(head, accept, agreed) => {
                return self.open_websocket(app, token, head, accept, agreed)
            }
        }
        false
    }

    /// Writes the 101, turns the connection into a WebSocket, and tells the app.
    fn open_websocket(
        &mut self,
        app: &mut impl App,
        token: Token,
        head: Vec<u8>,
        accept: Accept,
        agreed: Extensions,
    ) -> bool {
        let now = self.core.now;
        let Some(http) = self.core.conns.get_mut(token).and_then(Connection::http) else {
            return false;
        };
        http.session.answer(now, true);
        http.session.finish();
        self.core
            .push_protocol(token, &|out| out.extend_from_slice(&head));
        let limits = self.core.websocket.limits;
        let Some(conn) = self.core.conns.get_mut(token) else {
            return false;
        };
        let Extensions {
            #[cfg(feature = "deflate")]
            deflate,
        } = agreed;
        #[cfg(feature = "deflate")]
        let (session, _) = match deflate {
            Some(agreed) => Session::with_deflate(Role::Server, limits, now, agreed),
            None => Session::new(Role::Server, limits, now),
        };
        #[cfg(not(feature = "deflate"))]
        let (session, _) = Session::new(Role::Server, limits, now);
        conn.kind = Kind::WebSocket(Box::new(WsConn::new(session)));
        self.core
            .stats
            .switch(&mut conn.transport, Transport::WebSocket);
        self.core.rearm(token);
        self.core.follow(token, &accept.topics, accept.after);
        let id = self.core.conn_id(token);
        if guarded(&mut self.core, app, |app, ctx| app.open(ctx, id)).is_none() {
            self.core.close(token, CloseCode::INTERNAL_ERROR, "");
        }
        true
    }

    /// Feeds `scratch[pos..len]` to the WebSocket's session and acts on each
    /// event; keeps an unfinished frame header or control frame as leftover.
    fn process_websocket(&mut self, app: &mut impl App, token: Token, mut pos: usize, len: usize) {
        // Asked once per batch, not per message: only another connection (a
        // lab stream opening) changes it, and none is served meanwhile.
        let traced = self.core.tracing(token);
        // The decoder leaves the connection while its messages are handled,
        // so callbacks can act on this very connection (send, close).
        let Some(ws) = self
            .core
            .conns
            .get_mut(token)
            .and_then(Connection::websocket)
        else {
            return;
        };
        let mut before = ws.session.state();
        let kept = ws.decoder.take();
        let Some(mut decoder) = kept.or_else(|| self.core.fresh_decoder(token)) else {
            return;
        };
        loop {
            let mut observed = Observed::default();
            let input = &mut self.scratch[pos..len];
            let decoder = &mut decoder;
            let observed_slot = &mut observed;
            let Some((step, written)) =
                self.core
                    .ws_do_untraced(token, Chunk::Protocol, move |session, env| {
                        session.step_observed(decoder, input, env, observed_slot)
                    })
            else {
                break;
            };
            if traced {
                // What came in, then what it made us write.
                trace_step(&mut self.core, token, observed, &step);
                self.core.trace_frames_out(token, written);
            }
            let (event, used) = match step {
                Step::NeedMore => {
                    self.keep(token, pos, len);
                    break;
                }
                Step::Progress { used } => {
                    pos += used;
                    continue;
                }
                Step::Event { event, used } => (event, used),
            };
            pos += used;
            if traced {
                if let Some(now_state) = ws_state(&self.core, token) {
                    self.core
                        .trace(|tracer, now| tracer.ws_state(now, token, before, now_state));
                    before = now_state;
                }
            }
            match event {
                Event::Text(text) => {
                    #[cfg(feature = "client")]
                    self.core.link_saw_text(token, text);
                    message(&mut self.core, app, token, Message::Text(text))
                }
                Event::Binary(bytes) => message(&mut self.core, app, token, Message::Binary(bytes)),
                // Answered by the session (a pong owed while the output is
                // backed up goes out after the batch, below).
                Event::Ping(_) | Event::Pong(_) => {}
                Event::Closed { code, reason } => {
                    self.core.end(token, Ending::CloseReceived(code.0));
                    report_close(&mut self.core, app, token, code, reason);
                    self.core.finish_websocket(token);
                    break;
                }
                Event::Failed(error) => {
                    self.core
                        .end(token, Ending::CloseSent(error.close_code().0));
                    report_close(&mut self.core, app, token, error.close_code(), "");
                    self.core.finish_websocket(token);
                    break;
                }
            }
            let Some(conn) = self.core.conns.get(token) else {
                break;
            };
            if !matches!(conn.kind, Kind::WebSocket(_)) {
                break;
            }
            if self.core.output_full(token) {
                self.pause(token, pos, len);
                break;
            }
            if pos == len {
                break;
            }
        }
        // Put the decoder back (without the message it last handed out: an
        // idle socket holds no buffer), unless a fresh one would do (then an
        // idle socket holds no decoder); then owe what is owed: the pong for
        // the latest ping (RFC 6455 §5.5.3), once per batch. This last step
        // arms the connection's timer for the whole batch (`Core::ws_do`).
        decoder.release();
        if !decoder.is_fresh() {
            if let Some(ws) = self
                .core
                .conns
                .get_mut(token)
                .and_then(Connection::websocket)
            {
                ws.decoder = Some(decoder);
            }
        }
        let after = self.core.ws_do(token, Chunk::Protocol, |session, env| {
            session.poll_transmit(env);
            session.state()
        });
        if let Some(after) = after {
            self.core
                .trace(|tracer, now| tracer.ws_state(now, token, before, after));
            if self
                .core
                .conns
                .get(token)
                .is_some_and(|conn| match &conn.kind {
                    Kind::WebSocket(ws) => ws.session.wants_tcp_close(),
                    _ => false,
                })
            {
                self.core.finish_websocket(token);
            }
        }
    }

    /// Runs what other threads sent: the commands, after the events other
    /// loops published before they were sent (the inbox is read again once
    /// the commands are taken), so that a thread whose publish was answered
    /// (`publish_and_wait`) sees what it sends next arrive after the event.
    fn run_commands(&mut self) {
        if self.core.handle.shutdown_requested() {
            self.begin_shutdown();
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.extend(self.commands.try_iter());
        self.core.feeds.collect_arrivals();
        self.core.deliver_arrivals();
        for command in batch.drain(..) {
            let core = &mut self.core;
            match command {
                Command::SendText(id, text) => {
                    if let Some(token) = core.local(id) {
                        let _ = core.send(token, Message::Text(&text));
                    }
                }
                Command::SendBinary(id, bytes) => {
                    if let Some(token) = core.local(id) {
                        let _ = core.send(token, Message::Binary(&bytes));
                    }
                }
                Command::BroadcastText { text, except } => {
                    let except = except.and_then(|id| core.local(id));
                    let _ = core.broadcast(except, Message::Text(&text));
                }
                Command::BroadcastBinary { bytes, except } => {
                    let except = except.and_then(|id| core.local(id));
                    let _ = core.broadcast(except, Message::Binary(&bytes));
                }
                Command::Publish {
                    topic,
                    event,
                    payload,
                    reply,
                } => {
                    // Answered now, or when the store has it (Redis).
                    let waiter = reply.map_or(Waiter::Nobody, Waiter::Thread);
                    let _ = core.publish_later(
                        topic,
                        event.as_deref(),
                        payload.as_payload(),
                        None,
                        waiter,
                    );
                }
                Command::Topic { name, reply } => {
                    let _ = reply.send(core.feeds.topic(&name));
                }
                Command::Close(id, code, reason) => {
                    if let Some(token) = core.local(id) {
                        core.close(token, code, &reason);
                    }
                }
                Command::Respond(id, response) => {
                    if let Some(token) = core.local(id) {
                        core.respond(token, &response);
                    }
                }
                Command::Adopt(stream) => self.serve(stream, false),
                #[cfg(feature = "tls")]
                Command::AdoptTls(stream) => self.serve(stream, true),
                #[cfg(feature = "tls")]
                Command::ReloadTls(config) => self.core.reload_tls(config),
                #[cfg(feature = "client")]
                Command::Resolved {
                    link,
                    attempt,
                    addrs,
                } => core.link_resolved(link, attempt, addrs),
                #[cfg(feature = "redis")]
                store @ (Command::StorePublish { .. }
                | Command::StoreFetch { .. }
                | Command::StoreFetched { .. }) => core.store_command(store),
            }
        }
        self.batch = batch;
    }

    /// Stops accepting and closes everything (see [`Core::begin_shutdown`]).
    fn begin_shutdown(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.core.registry.deregister(&mut listener);
        }
        #[cfg(feature = "tls")]
        if let Some(mut listener) = self.tls_listener.take() {
            let _ = self.core.registry.deregister(&mut listener);
        }
        self.core.begin_shutdown();
    }

    /// A listener is still open.
    fn listening(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls_listener.is_some() {
            return true;
        }
        self.listener.is_some()
    }

    fn run_timers(&mut self, app: &mut impl App) {
        let now = self.core.now;
        if self.core.shutdown_deadline.is_some() && self.listening() {
            self.begin_shutdown();
        }
        while let Some((when, wake)) = self.core.timers.pop_due(now) {
            match wake {
                Wake::Accept => {
                    self.accept_paused = false;
                    self.accept(false);
                    self.accept(true);
                }
                Wake::User(slot, generation) => {
                    if let Some(timer) = self.core.timers.user_fired(when, slot, generation) {
                        guarded(&mut self.core, app, |app, ctx| app.timer(ctx, timer));
                    }
                }
                Wake::Connection(token) => self.core.connection_timer(token, when),
                // The end of this turn publishes the counters if they changed.
                Wake::ShareStats => {}
                #[cfg(feature = "client")]
                Wake::Link(token) => self.core.link_timer(token, when),
                Wake::Store => self.core.store_timer(when),
            }
        }
    }

    /// Removes finished connections; an opened WebSocket's `App::close` is
    /// called first if it has not been (1006: it ended without a complete
    /// closing handshake, RFC 6455 §7.1.5).
    fn reap(&mut self, app: &mut impl App) {
        while let Some(token) = self.core.dead.pop() {
            report_close(&mut self.core, app, token, CloseCode::ABNORMAL, "");
            // After App::close, which may still read it.
            self.core.data.remove(&token);
            self.core.feeds.forget(token);
            self.core.catching_up.remove(&token);
            #[cfg(feature = "tls")]
            self.core.tls_reaped(token);
            // An outbound WebSocket's connection leaves its link's token behind.
            #[cfg(feature = "client")]
            let conn = match self.core.take_link_conn(token) {
                Some(conn) => Some(conn),
                None => self.core.conns.remove(token),
            };
            #[cfg(not(feature = "client"))]
            let conn = self.core.conns.remove(token);
            if let Some(conn) = conn {
                self.core
                    .trace(|tracer, now| tracer.note(now, token, "tcp", "closed", ""));
                self.core.lab_forget(token);
                // A WebSocket that ends with no reason known lost its peer
                // (RFC 6455 §7.1.5); anything else saw its peer go.
                let ending = conn.ending.unwrap_or(match conn.kind {
                    Kind::WebSocket(_) => Ending::Lost,
                    _ => Ending::PeerLeft,
                });
                self.core.stats.ended(conn.transport, ending);
                // Dropping the stream closes the socket and removes it from epoll.
            }
        }
        // What follows each outbound attempt or connection that ended: the
        // next attempt, or the end; the app hears of failures.
        #[cfg(feature = "client")]
        for failure in self.core.settle_links() {
            let id = self.core.conn_id(failure.token);
            guarded(&mut self.core, app, |app, ctx| {
                app.connect_failed(ctx, id, &failure.error, failure.retry)
            });
        }
    }

    /// Hands `scratch[pos..len]` to an outbound WebSocket's attempt as its
    /// handshake answer (feature `client`). Returns where its frames start
    /// once it opened (the app is told first), or `None` when the input was
    /// kept for more or the attempt failed.
    #[cfg(feature = "client")]
    fn process_answer(
        &mut self,
        app: &mut impl App,
        token: Token,
        pos: usize,
        len: usize,
    ) -> Option<usize> {
        match self.core.link_answer(token, &self.scratch[pos..len]) {
            Answer::NeedMore => {
                self.keep(token, pos, len);
                None
            }
            Answer::Failed => None,
            Answer::Opened { used } => {
                let id = self.core.conn_id(token);
                if guarded(&mut self.core, app, |app, ctx| app.open(ctx, id)).is_none() {
                    self.core.close(token, CloseCode::INTERNAL_ERROR, "");
                }
                Some(pos + used)
            }
        }
    }
}

/// Hands one message to the app.
fn message(core: &mut Core, app: &mut impl App, token: Token, message: Message) {
    let id = core.conn_id(token);
    if guarded(core, app, |app, ctx| app.message(ctx, id, message)).is_none() {
        core.close(token, CloseCode::INTERNAL_ERROR, "");
    }
}

/// Calls `App::close` once for an opened WebSocket.
fn report_close(core: &mut Core, app: &mut impl App, token: Token, code: CloseCode, reason: &str) {
    let Some(ws) = core.conns.get_mut(token).and_then(Connection::websocket) else {
        return;
    };
    if ws.reported {
        return;
    }
    ws.reported = true;
    let id = core.conn_id(token);
    guarded(core, app, |app, ctx| app.close(ctx, id, code, reason));
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE || code == libc::ENOBUFS || code == libc::ENOMEM)
}

/// Runs a callback with a context; a panic is caught and counted, and `None`
/// tells the caller to close the connection concerned.
fn guarded<A: App, R>(
    core: &mut Core,
    app: &mut A,
    call: impl FnOnce(&mut A, &mut Context) -> R,
) -> Option<R> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        call(app, &mut Context { core: &mut *core })
    }));
    if result.is_err() {
        core.stats.panics += 1;
    }
    result.ok()
}

/// Empty header slots, as many as `max_headers`: from `stack` for the usual
/// limit, else from `heap`.
fn header_slots<'s, 'h>(
    max_headers: usize,
    stack: &'s mut [httparse::Header<'h>; STACK_HEADER_SLOTS],
    heap: &'s mut Vec<httparse::Header<'h>>,
) -> &'s mut [httparse::Header<'h>] {
    if max_headers <= STACK_HEADER_SLOTS {
        &mut stack[..max_headers]
    } else {
        heap.resize(max_headers, httparse::EMPTY_HEADER);
        heap
    }
}

/// Where a WebSocket's session is, if the connection is one.
fn ws_state(core: &Core, token: Token) -> Option<crate::ws::session::State> {
    match &core.conns.get(token)?.kind {
        Kind::WebSocket(ws) => Some(ws.session.state()),
        _ => None,
    }
}

/// Traces the frame header a step decoded and the event it delivered (with
/// its compressed size, if it came compressed).
fn trace_step(core: &mut Core, token: Token, observed: Observed, step: &Step) {
    core.trace(|tracer, now| {
        if let Some((header, header_len)) = observed.header {
            tracer.frame_in(now, token, &header, header_len);
        }
        if let Step::Event { event, .. } = step {
            tracer.event_in(now, token, event, observed.inflated);
        }
    });
}
