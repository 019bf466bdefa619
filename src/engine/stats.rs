//! Counters of a loop: by transport, and why each connection ended — as JSON
//! (`GET /stats` in the demo) and in the Prometheus text exposition format
//! (`GET /metrics`).
//!
//! Reading list: Prometheus "Exposition formats" (text format 0.0.4: `# HELP`,
//! `# TYPE`, `name{label="value"} number`, one sample per line) and "Metric
//! and label naming" (`_total` for counters, base units, bounded label values).

use std::collections::BTreeMap;
use std::fmt::Write as _;

#[cfg(feature = "deflate")]
pub use crate::ws::deflate::Counters as DeflateCounters;

/// The per-transport bucket a connection's counters go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// Plain HTTP responses (including errors and the demo page).
    Http,
    /// Short polls.
    Poll,
    /// Long polls.
    LongPoll,
    /// Server-Sent Events streams.
    EventStream,
    /// WebSockets.
    WebSocket,
}

impl Transport {
    /// Every transport, in the order the counters list them.
    pub const ALL: [Transport; 5] = [
        Transport::Http,
        Transport::Poll,
        Transport::LongPoll,
        Transport::EventStream,
        Transport::WebSocket,
    ];

    /// The transport's name in the counters.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Poll => "poll",
            Transport::LongPoll => "longpoll",
            Transport::EventStream => "sse",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Which deadline ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeoutKind {
    /// A request head (or, over TLS, the handshake) was not complete in time.
    Handshake,
    /// A request body was not complete in time.
    Body,
    /// The peer sent nothing for `idle_timeout`.
    Idle,
    /// A WebSocket ping went unanswered.
    Pong,
    /// A closing handshake, or the last bytes of a closing connection, took too long.
    Close,
}

impl TimeoutKind {
    /// The kind's name in the counters.
    pub fn name(self) -> &'static str {
        match self {
            TimeoutKind::Handshake => "handshake",
            TimeoutKind::Body => "body",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Pong => "pong",
            TimeoutKind::Close => "close",
        }
    }
}

/// Why a connection ended: the first reason the loop learns wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ending {
    /// The peer closed TCP with nothing owed: a kept-alive HTTP client going,
    /// an event stream's reader leaving.
    PeerLeft,
    /// The WebSocket peer sent its Close first, with this code (1005: none).
    CloseReceived(u16),
    /// We sent a Close first, with this code (1002/1007/1009 for the peer's
    /// protocol errors, 1011 for a panic, the app's own codes).
    CloseSent(u16),
    /// A WebSocket ended without any Close frame (RFC 6455 §7.1.5: 1006).
    Lost,
    /// We refused a request with this status and closed (400, 405, 413, 426…).
    Refused(u16),
    /// We closed after an answer (`Connection: close`, HTTP/1.0, a stream's end).
    Answered,
    /// A deadline passed.
    Timeout(TimeoutKind),
    /// Let go under the slow-reader policy.
    SlowReader,
    /// The server shut down.
    Shutdown,
    /// The socket failed (reset, broken pipe).
    Reset,
    /// A TLS error (feature `tls`; which one: [`Stats`]' `tls.faults`).
    #[cfg(feature = "tls")]
    TlsError,
}

impl Ending {
    /// The reason's label value.
    pub fn reason(self) -> &'static str {
        match self {
            Ending::PeerLeft => "peer_left",
            Ending::CloseReceived(_) => "close_received",
            Ending::CloseSent(_) => "close_sent",
            Ending::Lost => "lost",
            Ending::Refused(_) => "refused",
            Ending::Answered => "answered",
            Ending::Timeout(_) => "timeout",
            Ending::SlowReader => "slow_reader",
            Ending::Shutdown => "shutdown",
            Ending::Reset => "reset",
            #[cfg(feature = "tls")]
            Ending::TlsError => "tls_error",
        }
    }

    /// The detail label value: a close code, a status, a timeout's kind, or
    /// empty. Close codes a peer may pick freely (3000-4999, RFC 6455 §7.4.2)
    /// are bucketed by thousand, so a peer cannot grow the label set.
    pub fn detail(self) -> String {
        match self {
            Ending::CloseReceived(code) | Ending::CloseSent(code) => match code {
                3000..=3999 => "3xxx".into(),
                4000..=4999 => "4xxx".into(),
                code => code.to_string(),
            },
            Ending::Lost => "1006".into(),
            Ending::Refused(status) => status.to_string(),
            Ending::Timeout(kind) => kind.name().into(),
            _ => String::new(),
        }
    }
}

/// A metric family per transport: name, type, help, and how to read it.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TransportStats) -> u64,
);

/// Counters of one transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections now in this transport.
    pub connections: u64,
    /// Requests (or upgrades) served by this transport since start.
    pub requests: u64,
    /// Bytes read from its connections.
    pub bytes_read: u64,
    /// Bytes queued for writing (heads, frames, events).
    pub bytes_written: u64,
    /// Feed events delivered (a poll answer counts its events).
    pub events_delivered: u64,
}

/// The store behind the history (see [`crate::storage`]): which one, how
/// far it got, and its trouble.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// `memory`, `file` or `redis` (empty on a loop that has not said).
    pub backend: &'static str,
    /// The id of the newest event this loop has fanned out.
    pub last_id: u64,
    /// Redis: whether the link is up (both connections ready). Always true
    /// for the other backends.
    pub connected: bool,
    /// Redis: how long after Redis stored it the newest event read from the
    /// stream reached this node, in µs (ids are Redis's clock in µs, so
    /// across machines this includes their clocks' difference).
    pub lag_us: u64,
    /// Redis: publishes sent and not answered yet.
    pub in_flight: u64,
    /// Redis: times the link came back after it was lost.
    pub reconnects: u64,
    /// Failures of the store: a file log write or fsync, a Redis error
    /// reply, a Redis connection lost or refused, a reply not understood.
    pub errors: u64,
    /// Publishes refused because the store could not take them (HTTP `503`).
    pub unavailable: u64,
    /// Redis: cursors older than this node's history served from the
    /// stream (`XRANGE` pages asked for).
    pub fetches: u64,
}

impl StoreStats {
    fn add(&mut self, other: &StoreStats) {
        if self.backend.is_empty() {
            self.backend = other.backend;
        }
        self.last_id = self.last_id.max(other.last_id);
        self.connected |= other.connected;
        self.lag_us = self.lag_us.max(other.lag_us);
        self.in_flight += other.in_flight;
        self.reconnects += other.reconnects;
        self.errors += other.errors;
        self.unavailable += other.unavailable;
        self.fetches += other.fetches;
    }
}

/// The counters of a server.
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
    /// Events published (once each, however many received them).
    pub events_published: u64,
    /// Times a queue was past `max_queued_bytes` when data was sent to it.
    pub slow_readers: u64,
    /// Messages dropped under `SlowReader::Drop`.
    pub dropped_messages: u64,
    /// Connections refused at `max_connections`.
    pub refused_connections: u64,
    /// Callbacks that panicked (their connection was closed).
    pub panics: u64,
    /// Times a connection's input was paused because its queue was past its
    /// bound, `max_queued_answer_bytes` for HTTP and `max_queued_bytes` for
    /// a WebSocket (it is read again once the queue drains).
    pub paused_reads: u64,
    /// permessage-deflate: messages and bytes before and after compression,
    /// each way, and how often the compressor ran.
    #[cfg(feature = "deflate")]
    pub deflate: DeflateCounters,
    /// WebSocket opening handshakes refused (RFC 6455 §4.2.1 checks, Origin).
    pub handshake_failures: u64,
    /// Times this loop fell so far behind the others that its inbox was
    /// full, and its followers caught up from history (several loops).
    pub inbox_overflows: u64,
    /// The store behind the history.
    pub store: StoreStats,
    /// Connections ended, by the transport they were in and why.
    pub closes: BTreeMap<(Transport, Ending), u64>,
    /// TLS handshakes, closures and faults (feature `tls`).
    #[cfg(feature = "tls")]
    pub tls: TlsStats,
}

/// TLS counters of a server (feature `tls`): every connection accepted on a
/// TLS listener is counted here as well as in its transport.
#[cfg(feature = "tls")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// TLS connections open now (handshaking or not).
    pub connections: u64,
    /// Handshakes completed (RFC 8446 §4).
    pub handshakes: u64,
    /// Of those, sessions resumed from a ticket or session id (RFC 8446 §2.2).
    pub resumed: u64,
    /// Connections closed by `Limits::handshake_timeout` before their TLS
    /// handshake ended (a silent or trickling client).
    pub handshake_timeouts: u64,
    /// `close_notify` alerts sent (RFC 8446 §6.1).
    pub close_notify_sent: u64,
    /// `close_notify` alerts received.
    pub close_notify_received: u64,
    /// Fatal alerts sent in answer to a fault (RFC 8446 §6.2).
    pub alerts_sent: u64,
    /// Certificates replaced while serving ([`crate::server::Handle::reload_tls`]).
    pub reloads: u64,
    /// Connections ended by a TLS error, by what happened.
    pub faults: TlsFaults,
}

/// Connections ended by a TLS error, one counter per
/// [`crate::tls::Fault`] (alerts and I/O errors of any kind in one each).
#[cfg(feature = "tls")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFaults {
    /// Plain HTTP on the TLS port (answered `400` in plain text).
    pub plain_http: u64,
    /// A first byte that is neither TLS nor HTTP.
    pub not_tls: u64,
    /// No protocol version in common (RFC 8446 §4.2.1).
    pub unsupported_version: u64,
    /// No cipher suite, group or signature scheme in common (RFC 8446 §4.1.1).
    pub no_common_parameters: u64,
    /// ALPN offered without `http/1.1` (RFC 7301 §3.2).
    pub no_common_alpn: u64,
    /// A message that did not parse (`decode_error`).
    pub malformed: u64,
    /// A message at the wrong time (`unexpected_message`).
    pub unexpected_message: u64,
    /// A record whose authentication failed (`bad_record_mac`).
    pub bad_record_mac: u64,
    /// A record longer than the protocol allows.
    pub record_overflow: u64,
    /// A handshake message past `tls::MAX_PENDING_TLS_BYTES`.
    pub handshake_too_large: u64,
    /// Another rule of the protocol broken.
    pub misbehaved: u64,
    /// The peer sent a fatal alert.
    pub peer_alert: u64,
    /// TCP closed mid-handshake or mid-record.
    pub truncated: u64,
    /// The socket failed (a reset, mostly).
    pub io: u64,
    /// Ours: a read buffer too small, keys used up, or rustls failing.
    pub internal: u64,
}

#[cfg(feature = "tls")]
impl TlsFaults {
    /// Counts one connection ended by `fault`.
    pub(crate) fn count(&mut self, fault: crate::tls::Fault) {
        use crate::tls::Fault;
        *match fault {
            Fault::PlainHttp => &mut self.plain_http,
            Fault::NotTls => &mut self.not_tls,
            Fault::UnsupportedVersion => &mut self.unsupported_version,
            Fault::NoCommonParameters => &mut self.no_common_parameters,
            Fault::NoCommonAlpn => &mut self.no_common_alpn,
            Fault::Malformed => &mut self.malformed,
            Fault::UnexpectedMessage => &mut self.unexpected_message,
            Fault::BadRecordMac => &mut self.bad_record_mac,
            Fault::RecordOverflow => &mut self.record_overflow,
            Fault::HandshakeTooLarge => &mut self.handshake_too_large,
            Fault::Misbehaved => &mut self.misbehaved,
            Fault::PeerAlert(_) => &mut self.peer_alert,
            Fault::Truncated => &mut self.truncated,
            Fault::Io(_) => &mut self.io,
            Fault::ReadBufferTooSmall | Fault::KeysExhausted | Fault::Internal => {
                &mut self.internal
            }
        } += 1;
    }

    /// The counters by name, as `/stats` shows them.
    fn named(&self) -> [(&'static str, u64); 15] {
        [
            ("plain_http", self.plain_http),
            ("not_tls", self.not_tls),
            ("unsupported_version", self.unsupported_version),
            ("no_common_parameters", self.no_common_parameters),
            ("no_common_alpn", self.no_common_alpn),
            ("malformed", self.malformed),
            ("unexpected_message", self.unexpected_message),
            ("bad_record_mac", self.bad_record_mac),
            ("record_overflow", self.record_overflow),
            ("handshake_too_large", self.handshake_too_large),
            ("misbehaved", self.misbehaved),
            ("peer_alert", self.peer_alert),
            ("truncated", self.truncated),
            ("io", self.io),
            ("internal", self.internal),
        ]
    }
}

#[cfg(feature = "tls")]
impl TlsStats {
    /// Adds another loop's TLS counters.
    fn add(&mut self, other: &TlsStats) {
        self.connections += other.connections;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.handshake_timeouts += other.handshake_timeouts;
        self.close_notify_sent += other.close_notify_sent;
        self.close_notify_received += other.close_notify_received;
        self.alerts_sent += other.alerts_sent;
        self.reloads += other.reloads;
        let faults = &mut self.faults;
        let more = &other.faults;
        for (count, add) in [
            (&mut faults.plain_http, more.plain_http),
            (&mut faults.not_tls, more.not_tls),
            (&mut faults.unsupported_version, more.unsupported_version),
            (&mut faults.no_common_parameters, more.no_common_parameters),
            (&mut faults.no_common_alpn, more.no_common_alpn),
            (&mut faults.malformed, more.malformed),
            (&mut faults.unexpected_message, more.unexpected_message),
            (&mut faults.bad_record_mac, more.bad_record_mac),
            (&mut faults.record_overflow, more.record_overflow),
            (&mut faults.handshake_too_large, more.handshake_too_large),
            (&mut faults.misbehaved, more.misbehaved),
            (&mut faults.peer_alert, more.peer_alert),
            (&mut faults.truncated, more.truncated),
            (&mut faults.io, more.io),
            (&mut faults.internal, more.internal),
        ] {
            *count += add;
        }
    }

    /// The counters in the Prometheus text format, appended to `out`.
    fn to_prometheus(&self, out: &mut String) {
        let name = "pushloop_tls_connections";
        let _ = writeln!(
            out,
            "# HELP {name} Open TLS connections.\n# TYPE {name} gauge\n{name} {}",
            self.connections
        );
        let totals = [
            (
                "pushloop_tls_handshakes_total",
                "TLS handshakes completed.",
                self.handshakes,
            ),
            (
                "pushloop_tls_resumed_total",
                "TLS sessions resumed.",
                self.resumed,
            ),
            (
                "pushloop_tls_handshake_timeouts_total",
                "TLS handshakes unfinished at handshake_timeout.",
                self.handshake_timeouts,
            ),
            (
                "pushloop_tls_close_notify_sent_total",
                "close_notify alerts sent.",
                self.close_notify_sent,
            ),
            (
                "pushloop_tls_close_notify_received_total",
                "close_notify alerts received.",
                self.close_notify_received,
            ),
            (
                "pushloop_tls_alerts_sent_total",
                "Fatal alerts sent.",
                self.alerts_sent,
            ),
            (
                "pushloop_tls_reloads_total",
                "Certificates reloaded.",
                self.reloads,
            ),
        ];
        for (name, help, value) in totals {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let name = "pushloop_tls_faults_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections ended by a TLS error, by fault.\n# TYPE {name} counter"
        );
        for (fault, count) in self.faults.named() {
            let _ = writeln!(out, "{name}{{fault=\"{fault}\"}} {count}");
        }
    }

    /// The counters as a JSON object.
    fn to_json(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .named()
            .iter()
            .map(|(name, count)| format!("\"{name}\":{count}"))
            .collect();
        format!(
            "{{\"connections\":{},\"handshakes\":{},\"resumed\":{},\"handshake_timeouts\":{},\"close_notify_sent\":{},\"close_notify_received\":{},\"alerts_sent\":{},\"reloads\":{},\"faults\":{{{}}}}}",
            self.connections,
            self.handshakes,
            self.resumed,
            self.handshake_timeouts,
            self.close_notify_sent,
            self.close_notify_received,
            self.alerts_sent,
            self.reloads,
            faults.join(",")
        )
    }
}

impl TransportStats {
    fn add(&mut self, other: &TransportStats) {
        self.connections += other.connections;
        self.requests += other.requests;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.events_delivered += other.events_delivered;
    }
}

impl Stats {
    /// Several loops' counters added up.
    pub fn sum(all: &[Stats]) -> Stats {
        let mut total = Stats::default();
        for stats in all {
            for transport in Transport::ALL {
                total.of(transport).add(stats.get(transport));
            }
            total.events_published += stats.events_published;
            total.slow_readers += stats.slow_readers;
            total.dropped_messages += stats.dropped_messages;
            total.refused_connections += stats.refused_connections;
            total.panics += stats.panics;
            total.paused_reads += stats.paused_reads;
            total.handshake_failures += stats.handshake_failures;
            total.inbox_overflows += stats.inbox_overflows;
            total.store.add(&stats.store);
            for (key, count) in &stats.closes {
                *total.closes.entry(*key).or_default() += count;
            }
            #[cfg(feature = "tls")]
            total.tls.add(&stats.tls);
            #[cfg(feature = "deflate")]
            total.deflate.add(&stats.deflate);
        }
        total
    }

    /// Open connections of every transport.
    pub fn connections(&self) -> u64 {
        Transport::ALL
            .iter()
            .map(|transport| self.get(*transport).connections)
            .sum()
    }

    /// The counters of a transport.
    pub fn of(&mut self, transport: Transport) -> &mut TransportStats {
        match transport {
            Transport::Http => &mut self.http,
            Transport::Poll => &mut self.poll,
            Transport::LongPoll => &mut self.long_poll,
            Transport::EventStream => &mut self.event_stream,
            Transport::WebSocket => &mut self.websocket,
        }
    }

    fn get(&self, transport: Transport) -> &TransportStats {
        match transport {
            Transport::Http => &self.http,
            Transport::Poll => &self.poll,
            Transport::LongPoll => &self.long_poll,
            Transport::EventStream => &self.event_stream,
            Transport::WebSocket => &self.websocket,
        }
    }

    /// Moves a connection's count to another transport and counts a request there.
    pub(crate) fn switch(&mut self, transport: &mut Transport, to: Transport) {
        self.of(*transport).connections -= 1;
        *transport = to;
        let stats = self.of(to);
        stats.connections += 1;
        stats.requests += 1;
    }

    /// Moves a connection's count to another transport without counting a
    /// request (a held long-poll answered goes back to plain HTTP).
    pub(crate) fn move_to(&mut self, transport: &mut Transport, to: Transport) {
        self.of(*transport).connections -= 1;
        *transport = to;
        self.of(to).connections += 1;
    }

    /// Counts a connection that ended.
    pub(crate) fn ended(&mut self, transport: Transport, ending: Ending) {
        self.of(transport).connections -= 1;
        *self.closes.entry((transport, ending)).or_default() += 1;
    }

    /// Connections of `transport` that ended for `reason` (any detail).
    pub fn closes_of(&self, transport: Transport, reason: &str) -> u64 {
        self.closes
            .iter()
            .filter(|((t, ending), _)| *t == transport && ending.reason() == reason)
            .map(|(_, count)| count)
            .sum()
    }

    /// The counters as a JSON object: transports by name, then the totals,
    /// then `closes` as a list of `{transport, reason, detail, count}`.
    pub fn to_json(&self) -> String {
        let mut json = String::from("{");
        for transport in Transport::ALL {
            let t = self.get(transport);
            let _ = write!(
                json,
                "\"{}\":{{\"connections\":{},\"requests\":{},\"bytes_read\":{},\"bytes_written\":{},\"events_delivered\":{}}},",
                transport.name(),
                t.connections,
                t.requests,
                t.bytes_read,
                t.bytes_written,
                t.events_delivered
            );
        }
        #[cfg(feature = "tls")]
        {
            json.push_str("\"tls\":");
            json.push_str(&self.tls.to_json());
            json.push(',');
        }
        #[cfg(feature = "deflate")]
        {
            let d = &self.deflate;
            let _ = write!(
                json,
                "\"deflate\":{{\"messages_sent\":{},\"sent_bytes_before\":{},\"sent_bytes_after\":{},\"compressions\":{},\"messages_received\":{},\"received_bytes_before\":{},\"received_bytes_after\":{}}},",
                d.messages_sent,
                d.sent_bytes_before,
                d.sent_bytes_after,
                d.compressions,
                d.messages_received,
                d.received_bytes_before,
                d.received_bytes_after
            );
        }
        let _ = write!(
            json,
            "\"events_published\":{},\"slow_readers\":{},\"dropped_messages\":{},\"refused_connections\":{},\"panics\":{},\"paused_reads\":{},\"handshake_failures\":{},\"inbox_overflows\":{},\"closes\":[",
            self.events_published,
            self.slow_readers,
            self.dropped_messages,
            self.refused_connections,
            self.panics,
            self.paused_reads,
            self.handshake_failures,
            self.inbox_overflows
        );
        for (i, ((transport, ending), count)) in self.closes.iter().enumerate() {
            let _ = write!(
                json,
                "{}{{\"transport\":\"{}\",\"reason\":\"{}\",\"detail\":\"{}\",\"count\":{count}}}",
                if i > 0 { "," } else { "" },
                transport.name(),
                ending.reason(),
                ending.detail()
            );
        }
        let store = &self.store;
        let _ = write!(
            json,
            "],\"store\":{{\"backend\":\"{}\",\"last_id\":{},\"connected\":{},\"lag_us\":{},\"in_flight\":{},\"reconnects\":{},\"errors\":{},\"unavailable\":{},\"fetches\":{}}}}}",
            store.backend,
            store.last_id,
            store.connected,
            store.lag_us,
            store.in_flight,
            store.reconnects,
            store.errors,
            store.unavailable,
            store.fetches
        );
        json
    }

    /// The counters in the Prometheus text exposition format (0.0.4), one
    /// family per counter, transports and endings as labels.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let per_transport: [Family; 5] = [
            ("pushloop_connections", "gauge", "Open connections.", |t| {
                t.connections
            }),
            (
                "pushloop_requests_total",
                "counter",
                "Requests and upgrades served.",
                |t| t.requests,
            ),
            (
                "pushloop_read_bytes_total",
                "counter",
                "Bytes read from connections.",
                |t| t.bytes_read,
            ),
            (
                "pushloop_written_bytes_total",
                "counter",
                "Bytes queued for writing.",
                |t| t.bytes_written,
            ),
            (
                "pushloop_events_delivered_total",
                "counter",
                "Feed events delivered.",
                |t| t.events_delivered,
            ),
        ];
        for (name, kind, help, value) in per_transport {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for transport in Transport::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{transport=\"{}\"}} {}",
                    transport.name(),
                    value(self.get(transport))
                );
            }
        }
        let totals = [
            (
                "pushloop_events_published_total",
                "Events published.",
                self.events_published,
            ),
            (
                "pushloop_slow_readers_total",
                "Sends to a queue past max_queued_bytes.",
                self.slow_readers,
            ),
            (
                "pushloop_dropped_messages_total",
                "Messages dropped under SlowReader::Drop.",
                self.dropped_messages,
            ),
            (
                "pushloop_refused_connections_total",
                "Connections refused at max_connections.",
                self.refused_connections,
            ),
            (
                "pushloop_panics_total",
                "Callbacks that panicked.",
                self.panics,
            ),
            (
                "pushloop_paused_reads_total",
                "Reads paused while a queue was past its bound.",
                self.paused_reads,
            ),
            (
                "pushloop_handshake_failures_total",
                "WebSocket opening handshakes refused.",
                self.handshake_failures,
            ),
            (
                "pushloop_inbox_overflows_total",
                "Times a loop fell behind the others and caught up from history.",
                self.inbox_overflows,
            ),
        ];
        for (name, help, value) in totals {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        self.store_prometheus(&mut out);
        let name = "pushloop_closes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections ended, by transport, reason and detail (close code, status or timeout).\n# TYPE {name} counter"
        );
        for ((transport, ending), count) in &self.closes {
            let _ = writeln!(
                out,
                "{name}{{transport=\"{}\",reason=\"{}\",detail=\"{}\"}} {count}",
                transport.name(),
                ending.reason(),
                ending.detail()
            );
        }
        #[cfg(feature = "tls")]
        self.tls.to_prometheus(&mut out);
        out
    }
}

impl Stats {
    /// The store's families: an info gauge naming the backend, gauges for
    /// where it stands, counters for its trouble.
    fn store_prometheus(&self, out: &mut String) {
        let store = &self.store;
        let _ = writeln!(
            out,
            "# HELP pushloop_store_info The store behind the history.\n# TYPE pushloop_store_info gauge\npushloop_store_info{{backend=\"{}\"}} 1",
            store.backend
        );
        let gauges = [
            (
                "pushloop_store_last_id",
                "Id of the newest event fanned out.",
                store.last_id as f64,
            ),
            (
                "pushloop_store_connected",
                "1 while the store can take events (Redis: the link is up).",
                f64::from(u8::from(store.connected)),
            ),
            (
                "pushloop_store_lag_seconds",
                "How long after Redis stored it the newest event reached this node.",
                store.lag_us as f64 / 1e6,
            ),
            (
                "pushloop_store_in_flight",
                "Publishes sent to Redis and not answered yet.",
                store.in_flight as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters = [
            (
                "pushloop_store_reconnects_total",
                "Times the Redis link came back after it was lost.",
                store.reconnects,
            ),
            (
                "pushloop_store_errors_total",
                "Store failures: writes, fsyncs, Redis errors and lost connections.",
                store.errors,
            ),
            (
                "pushloop_store_unavailable_total",
                "Publishes refused because the store could not take them.",
                store.unavailable,
            ),
            (
                "pushloop_store_fetches_total",
                "Pages of old events asked of Redis for cursors older than history.",
                store.fetches,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_labelled_samples() {
        let mut stats = Stats::default();
        stats.websocket.connections = 2;
        stats.events_published = 7;
        stats
            .closes
            .insert((Transport::WebSocket, Ending::CloseReceived(1000)), 3);
        stats
            .closes
            .insert((Transport::WebSocket, Ending::CloseSent(4321)), 1);
        stats
            .closes
            .insert((Transport::Http, Ending::Timeout(TimeoutKind::Idle)), 1);
        let text = stats.to_prometheus();
        assert!(text.contains("# TYPE pushloop_connections gauge\n"));
        assert!(text.contains("pushloop_connections{transport=\"websocket\"} 2\n"));
        assert!(text.contains("pushloop_events_published_total 7\n"));
        assert!(text.contains(
            "pushloop_closes_total{transport=\"websocket\",reason=\"close_received\",detail=\"1000\"} 3\n"
        ));
        assert!(
            text.contains("reason=\"close_sent\",detail=\"4xxx\"} 1\n"),
            "a peer's own codes are bucketed"
        );
        assert!(text.contains("reason=\"timeout\",detail=\"idle\"} 1\n"));
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(
                value.parse::<u64>().is_ok(),
                "one number per sample: {line}"
            );
        }
    }

    #[test]
    fn json_lists_the_closes() {
        let mut stats = Stats::default();
        stats
            .closes
            .insert((Transport::EventStream, Ending::SlowReader), 2);
        let json = stats.to_json();
        assert!(json.contains(
            "\"closes\":[{\"transport\":\"sse\",\"reason\":\"slow_reader\",\"detail\":\"\",\"count\":2}],"
        ));
        assert_eq!(stats.closes_of(Transport::EventStream, "slow_reader"), 2);
    }

    #[test]
    fn the_store_is_in_both_formats_and_adds_up_over_loops() {
        let first = Stats {
            store: StoreStats {
                backend: "redis",
                last_id: 1_700_000_000_000_002,
                connected: true,
                lag_us: 1500,
                reconnects: 2,
                unavailable: 3,
                ..StoreStats::default()
            },
            ..Stats::default()
        };
        let mut second = Stats::default();
        second.store.last_id = 1_700_000_000_000_001;
        second.store.unavailable = 1;
        let total = Stats::sum(&[first, second]);
        assert_eq!(total.store.backend, "redis");
        assert_eq!(total.store.last_id, 1_700_000_000_000_002, "the newest");
        assert_eq!(total.store.unavailable, 4, "counted on every loop");
        assert!(total.to_json().ends_with(
            "\"store\":{\"backend\":\"redis\",\"last_id\":1700000000000002,\"connected\":true,\"lag_us\":1500,\"in_flight\":0,\"reconnects\":2,\"errors\":0,\"unavailable\":4,\"fetches\":0}}"
        ));
        let text = total.to_prometheus();
        assert!(text.contains("pushloop_store_info{backend=\"redis\"} 1\n"));
        assert!(text.contains("pushloop_store_last_id 1700000000000002\n"));
        assert!(text.contains("pushloop_store_lag_seconds 0.0015\n"));
        assert!(text.contains("pushloop_store_reconnects_total 2\n"));
        assert!(text.contains("pushloop_store_unavailable_total 4\n"));
    }
}
