//! Everything a server can be configured with.

use crate::engine::lab::LabConfig;
use crate::engine::trace::TraceOutput;
use crate::feeds::HistoryLimits;
use crate::limits::Limits;
use crate::storage::Storage;
#[cfg(feature = "deflate")]
use crate::ws::deflate::{ServerConfig, ServerMode, DEFAULT_THRESHOLD, MAX_WINDOW_BITS};
use crate::ws::handshake::OriginPolicy;

/// Everything a server can be configured with. Start from `Config::default()`.
#[derive(Debug)]
pub struct Config {
    /// The named limits (see [`crate::limits`]).
    pub limits: Limits,
    /// Which `Origin`s may open a WebSocket (RFC 6455 §10.2). Default: any.
    pub origin_policy: OriginPolicy,
    /// History kept per topic, and the largest event.
    pub history: HistoryLimits,
    /// `Access-Control-Allow-Origin` for event streams and polls, so pages from
    /// other origins may read them. Default: none (same origin only).
    pub allow_origin: Option<String>,
    /// The `retry:` an event stream sends first (WHATWG HTML §9.2.6: the
    /// browser's reconnection delay, in ms). Default 2000.
    pub sse_retry_ms: u32,
    /// Commands a [`crate::server::Handle`] may have in flight before `try_*`
    /// calls report [`crate::server::HandleError::Full`]. Default 4096.
    pub handle_capacity: usize,
    /// Bytes of the loop-wide read buffer, also the most one connection gets
    /// read in one turn of the loop. Default 64 KiB.
    pub read_buffer_bytes: usize,
    /// Where to write the protocol trace (see [`crate::engine::trace`]), if
    /// anywhere. Default: nowhere.
    pub trace: Option<TraceOutput>,
    /// Write a line on stderr for each notable event: out of descriptors,
    /// listener errors, the phases of a shutdown. Default off (a library
    /// does not print unasked); the demo binary turns it on (`--quiet` off).
    pub log: bool,
    /// How several loops share the listening port (see
    /// [`crate::server::reuseport`]). Default: `SO_REUSEPORT` where the
    /// kernel balances with it, else one acceptor.
    pub share_port: SharePort,
    /// The lab: `GET /lab/events?session=S` streams the trace lines of the
    /// connections whose requests carried `?session=S` (see
    /// [`crate::engine::lab`]), within these limits. Default: off (the
    /// route is then the app's, like any other). For learning: the lines
    /// show request heads, cookies included, to whoever has the token.
    /// With several loops, each loop's lab shows its own connections.
    pub lab: Option<LabConfig>,
    /// Where topic history is kept (see [`crate::storage`]): in memory only
    /// (default), in an append-only file log that survives restarts, or in
    /// Redis Streams shared by several nodes (feature `redis`).
    pub storage: Storage,
    /// The certificate and key that TLS listeners serve (feature `tls`; see
    /// [`crate::server::Server::bind_tls`]). Default: none, so no TLS
    /// listener can be bound. Replace it while serving with
    /// [`crate::server::Handle::reload_tls`].
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsConfig>,
    /// permessage-deflate (RFC 7692, feature `deflate`): accepted when a
    /// client offers it, with these settings. `None`: never (the 101 names no
    /// extension). Default: [`Deflate::default`], the shared mode.
    #[cfg(feature = "deflate")]
    pub deflate: Option<Deflate>,
}

/// How several loops share one listening port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SharePort {
    /// A listener per loop in one `SO_REUSEPORT` group: the kernel spreads
    /// connections (Linux). Falls back to `OneAcceptor` where it cannot.
    #[default]
    ReusePort,
    /// The first loop accepts every connection and hands each to the next
    /// loop in turn (any system).
    OneAcceptor,
}

/// How a server compresses WebSocket messages (RFC 7692). See
/// [`crate::ws::deflate`] for the codec and [`crate::ws::deflate::state`] for
/// where its state lives and what it costs.
#[cfg(feature = "deflate")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// [`ServerMode::Shared`] (the default): no context takeover either way,
    /// so one compressor and one inflater per loop serve every socket, an idle
    /// compressed socket costs what an uncompressed one does, and a published
    /// event is compressed once for all its followers.
    /// [`ServerMode::ContextTakeover`]: better ratios for sockets that send
    /// many alike messages, at ~360 KB per socket that has compressed (its own
    /// compressor and window) and one compression per recipient.
    pub mode: ServerMode,
    /// Messages shorter than this go uncompressed. Default
    /// [`DEFAULT_THRESHOLD`] (1 KiB, as Node `ws`).
    pub threshold: usize,
    /// The largest LZ77 window the server uses, log2, 8..=15 (RFC 7692
    /// §7.1.2). Default 15; below it the server's compressor encodes runs
    /// only (see [`crate::ws::deflate`]'s module doc).
    pub max_window_bits: u8,
}

#[cfg(feature = "deflate")]
impl Default for Deflate {
    fn default() -> Self {
        Deflate {
            mode: ServerMode::Shared,
            threshold: DEFAULT_THRESHOLD,
            max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

#[cfg(feature = "deflate")]
impl Deflate {
    /// What negotiation accepts (RFC 7692 §5).
    pub fn negotiation(&self) -> ServerConfig {
        ServerConfig {
            mode: self.mode,
            max_window_bits: self.max_window_bits,
        }
    }
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
            log: false,
            share_port: SharePort::default(),
            lab: None,
            storage: Storage::Memory,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "deflate")]
            deflate: Some(Deflate::default()),
        }
    }
}

impl Config {
    /// The configuration of another loop of the same server: the same in
    /// every way but the trace, which only the first loop writes (one
    /// writer, and its lines stay in order).
    pub(crate) fn for_another_loop(&self) -> Config {
        Config {
            limits: self.limits,
            origin_policy: self.origin_policy.clone(),
            history: self.history,
            allow_origin: self.allow_origin.clone(),
            sse_retry_ms: self.sse_retry_ms,
            handle_capacity: self.handle_capacity,
            read_buffer_bytes: self.read_buffer_bytes,
            trace: None,
            log: self.log,
            share_port: self.share_port,
            lab: self.lab,
            storage: self.storage.clone(),
            // Set by the loop that splits: the certificate it serves now.
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "deflate")]
            deflate: self.deflate,
        }
    }
}
