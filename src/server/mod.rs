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
//! other threads, then [`Server::run`] your [`crate::app::App`].

mod event_loop;
pub mod signal;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::engine::config::Config;
#[cfg(feature = "deflate")]
pub use crate::engine::config::Deflate;
pub use crate::engine::handle::{Command, Handle, HandleError};
pub use crate::engine::stats::{Stats, TransportStats};
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
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        // Event ids start at the wall clock in µs, so ids never repeat across
        // restarts (see `crate::feeds`).
        let id_seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Ok(Server {
            inner: event_loop::EventLoop::bind(addr, config, id_seed)?,
        })
    }

    /// The address the listener is bound to.
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
}
