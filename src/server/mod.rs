//! The event loop: one thread, one `mio::Poll`, every transport on one port.
//!
//! ```text
//!   poll(timeout = earliest deadline; 0 while connections are ready)
//!     1. listener ready → accept until WouldBlock (pause on EMFILE)
//!     2. waker ready    → run commands from other threads (Handle), signals
//!     3. socket ready   → one read per connection into the loop's scratch
//!                         buffer, handed to its session, the App called;
//!                         then the connections whose last read filled the
//!                         buffer (fairness: one read each per turn)
//!     4. timers due     → sessions' and connections' deadlines, user timers
//!     5. flush          → write every connection with an answer queued, then
//!                         the next slice of the fan-out line; WRITABLE
//!                         interest only where bytes remain
//!     6. reap           → remove finished connections (App::close for sockets)
//! ```
//!
//! Input is parsed where it was read. Only an unfinished head, frame header or
//! control frame is copied into the connection (`leftover`); unfinished data
//! payloads go straight into the message being reassembled. An idle connection
//! owns no buffer at all.
//!
//! Start one with [`Server::bind`], get [`Server::topic`]s and a [`Handle`] for
//! other threads, then [`Server::run`] your [`crate::app::App`] — or
//! [`Server::run_threads`] one loop per core, each with its own app, on the
//! same port and the same topics.

mod event_loop;
pub mod reuseport;
pub mod signal;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(feature = "deflate")]
pub use crate::engine::config::Deflate;
pub use crate::engine::config::{Config, SharePort};
pub use crate::engine::handle::{Command, Handle, HandleError, OwnedPayload};
pub use crate::engine::lab::LabConfig;
pub use crate::engine::stats::{Stats, TransportStats};
#[cfg(feature = "tls")]
pub use crate::engine::stats::{TlsFaults, TlsStats};
pub use crate::engine::trace::TraceOutput;

use crate::feeds::TopicError;
use crate::ids::TopicId;

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    inner: event_loop::EventLoop,
}

impl Server {
    /// Binds a listener (use port 0 for an OS-assigned port).
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let addr = first_addr(addr)?;
        Ok(Server {
            inner: event_loop::EventLoop::bind(addr, config, id_seed(), false)?,
        })
    }

    /// Binds a TLS listener (feature `tls`): every connection on it speaks
    /// TLS first (https://, wss://), with `config.tls`'s certificate. For a
    /// plain listener beside it, bind with [`Server::bind`] and add this one
    /// with [`Server::add_tls_listener`].
    #[cfg(feature = "tls")]
    pub fn bind_tls(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        if config.tls.is_none() {
            return Err(no_certificate());
        }
        let addr = first_addr(addr)?;
        Ok(Server {
            inner: event_loop::EventLoop::bind(addr, config, id_seed(), true)?,
        })
    }

    /// Adds a TLS listener to a server bound with [`Server::bind`] (feature
    /// `tls`; `config.tls` must be set): plain and TLS side by side, on one
    /// loop. Returns the address bound.
    #[cfg(feature = "tls")]
    pub fn add_tls_listener(&mut self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        self.inner.add_tls_listener(first_addr(addr)?)
    }

    /// The TLS listener's address, if there is one (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.inner.tls_addr()
    }

    /// The address the first listener is bound to (the TLS one for
    /// `Server::bind_tls`, feature `tls`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.local_addr())
    }

    /// The topic of that name, created on first use.
    pub fn topic(&mut self, name: &str) -> Result<TopicId, TopicError> {
        self.inner.core.feeds.topic(name)
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

    /// Runs `threads` loops, each on its own thread with its own `mio::Poll`
    /// and its own app from `make_app` (`0`: one per CPU;
    /// `1`: [`Server::run`] on this thread, with no lock and no atomic added
    /// anywhere). Returns once every loop has ended.
    ///
    /// With several loops:
    /// - connections are spread over the loops by the kernel (`SO_REUSEPORT`,
    ///   Linux) or handed out in turn by the first (see [`reuseport`]);
    /// - topics are shared: a publish on any loop, or from a [`Handle`],
    ///   reaches every follower on every loop, with one id sequence and one
    ///   history, encoded once, in the same order everywhere (see
    ///   [`crate::feeds::hub`]);
    /// - a [`crate::app::ConnId`] names its loop: `Context::send`, `close` and
    ///   `respond` reach a connection of another loop through that loop's
    ///   command queue; per-connection data stays with each loop's app;
    /// - [`crate::app::Context::total_stats`] adds every loop's counters up;
    /// - a shutdown, from any loop, a `Handle` or a signal, stops them all.
    ///
    /// What apps must share beyond that goes through topics or a `Handle`
    /// (each loop's app is its own: no lock on the hot path). A loop whose
    /// thread panics outside the app (a bug in pushloop) ends alone, its
    /// connections dropped; the others go on, and the panic is returned as
    /// an error once they end.
    pub fn run_threads<A, F>(mut self, threads: usize, make_app: F) -> io::Result<()>
    where
        A: crate::app::App,
        F: Fn() -> A + Sync,
    {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        if threads == 1 {
            return self.inner.run(make_app());
        }
        let others = self.inner.split(threads)?;
        let make_app = &make_app;
        std::thread::scope(|scope| {
            let mut running = Vec::with_capacity(threads);
            for (index, event_loop) in others.into_iter().enumerate() {
                let thread = std::thread::Builder::new()
                    .name(format!("pushloop-{}", index + 1))
                    .spawn_scoped(scope, move || event_loop.run(make_app()))?;
                running.push(thread);
            }
            let first = self.inner.run(make_app());
            let mut result = first;
            for thread in running {
                let ended = thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a loop's thread panicked")));
                result = result.and(ended);
            }
            result
        })
    }
}

/// The first address `addr` names.
fn first_addr(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))
}

/// Event ids start at the wall clock in µs, so ids never repeat across
/// restarts (see `crate::feeds`).
fn id_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

#[cfg(feature = "tls")]
fn no_certificate() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a TLS listener needs a certificate: set Config::tls",
    )
}
