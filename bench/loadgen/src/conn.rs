//! One client connection: connect, send a request, read the response head,
//! then speak WebSocket or read an event stream. Writes go straight out; only
//! what the socket refuses stays queued.
//!
//! The socket is registered once, READABLE | WRITABLE, edge-triggered, and
//! never re-registered: on Linux a TCP socket raises a writable edge only
//! after a write found its buffer full (SOCK_NOSPACE), so the standing
//! interest costs no wake-ups, and it saves an `epoll_ctl` per state change.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::http::{self, Dechunk, SseLines};
use crate::tls::Io;
use crate::ws;

/// What the connection speaks once its request is answered.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    /// `GET /echo` upgraded to WebSocket.
    Ws,
    /// `GET /events`, a text/event-stream response.
    Sse,
    /// `POST /publish`: every complete response (head and `Content-Length`
    /// body) is counted, so one keep-alive connection can carry many.
    Publish,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Request sent (or being sent); reading the response head.
    Head,
    /// Head accepted: WebSocket frames or the event stream.
    Open,
    /// WebSocket close frame sent; waiting for the server to close TCP.
    Closing,
}

/// What one readiness event brought.
#[derive(Default)]
pub struct Got {
    /// The response head arrived and was accepted.
    pub opened: bool,
    /// Whole WebSocket data messages received.
    pub msgs: u64,
    /// Messages whose length was not the one sent.
    pub wrong_len: u64,
    /// The server sent a WebSocket close frame.
    pub close: bool,
    /// The server closed its side of TCP.
    pub eof: bool,
    /// Publish: complete responses received (each one a 2xx).
    pub responses: u64,
    /// The 101 accepted permessage-deflate (RFC 7692).
    pub deflate: bool,
    /// WebSocket data messages that came compressed.
    pub compressed: u64,
}

/// Where SSE deliveries are counted: every `data:` line is `SEQ SENT_US ...`,
/// SENT_US being microseconds since `base` when the publish was sent.
pub struct SseSink {
    pub base: Instant,
    pub received: u64,
    pub latency_us: Vec<u32>,
    pub last_rx: Option<Instant>,
}

impl SseSink {
    pub fn new(base: Instant) -> Self {
        SseSink { base, received: 0, latency_us: Vec::new(), last_rx: None }
    }

    /// A WebSocket message from the feed: the data itself, or pushloop's JSON
    /// object around it (`{"id":…,"data":"SEQ SENT_US …"}`).
    fn record_message(&mut self, message: &[u8], now: Instant) {
        const DATA: &[u8] = b"\"data\":\"";
        let data = match message.windows(DATA.len()).position(|w| w == DATA) {
            Some(at) => &message[at + DATA.len()..],
            None => message,
        };
        self.record(data, now);
    }

    fn record(&mut self, data: &[u8], now: Instant) {
        self.received += 1;
        self.last_rx = Some(now);
        let sent = data
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(sent) = sent {
            let now_us = now.duration_since(self.base).as_micros() as u64;
            self.latency_us.push(now_us.saturating_sub(sent).min(u32::MAX as u64) as u32);
        }
    }
}

pub struct Conn {
    /// The socket, or TLS over it.
    sock: Io,
    pub kind: Kind,
    pub phase: Phase,
    /// Response head so far; freed once parsed.
    head: Vec<u8>,
    /// One-off bytes to send: the request, pongs, a message, a close frame.
    out: Vec<u8>,
    out_pos: usize,
    /// Echo stream: a ring of masked frames, back to back, sent in turn.
    frames: Vec<u8>,
    /// Where each frame of the ring starts, and the ring's end.
    starts: Vec<usize>,
    /// Stream bytes owed to the server: a whole frame for every echo received.
    owed: usize,
    /// The next frame of the ring to owe.
    owe_next: usize,
    /// Offset in the ring of the next byte to send.
    cycle: usize,
    /// The frame of the ring `cycle` is in.
    at_frame: usize,
    /// The request offers permessage-deflate.
    offers_deflate: bool,
    /// Masking key of this connection (RFC 6455 §5.3).
    pub key: [u8; 4],
    pub ws: ws::Parser,
    dechunk: Option<Dechunk>,
    lines: SseLines,
    /// When the connection was started or last changed phase.
    pub since: Instant,
}

impl Conn {
    /// Start a non-blocking connect and queue `request` for when it completes.
    pub fn connect(
        addr: SocketAddr,
        registry: &Registry,
        token: Token,
        kind: Kind,
        request: Vec<u8>,
        key: [u8; 4],
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    ) -> io::Result<Conn> {
        let mut sock = TcpStream::connect(addr)?;
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        let offers_deflate = request.windows(18).any(|w| w == b"permessage-deflate");
        let sock = match tls {
            Some(config) => Io::tls(sock, config)?,
            None => Io::Plain(sock),
        };
        Ok(Conn {
            sock,
            kind,
            phase: Phase::Connecting,
            head: Vec::new(),
            out: request,
            out_pos: 0,
            frames: Vec::new(),
            starts: Vec::new(),
            owed: 0,
            owe_next: 0,
            cycle: 0,
            at_frame: 0,
            offers_deflate,
            key,
            ws: ws::Parser::default(),
            dechunk: None,
            lines: SseLines::default(),
            since: Instant::now(),
        })
    }

    /// Send the request on a socket whose connect may still be in progress.
    /// Linux fails such a write with EAGAIN until the handshake is done, and
    /// with the connect's own error if it failed, so the write is the connect
    /// check: no `getsockopt`/`getpeername` per connection. On loopback the
    /// handshake is usually done by the time `connect` returns, so this is
    /// tried once straight away and then on each event until it goes through.
    pub fn try_request(&mut self) -> Result<(), &'static str> {
        loop {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(n) => {
                    self.out_pos += n;
                    self.phase = Phase::Head;
                    self.since = Instant::now();
                    return self.flush();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::NotConnected => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err("connect failed"),
            }
        }
    }

    /// Give the connection its echo stream: `frames` holds a ring of masked
    /// frames back to back, each starting at `starts[i]` (`starts` ends with
    /// the ring's length); the first `depth` of them are owed at once, and
    /// each echo owes the next one of the ring.
    pub fn start_stream(&mut self, frames: Vec<u8>, starts: Vec<usize>, depth: usize) {
        // A stream keeps unacknowledged bytes in flight: no Nagle delay (RFC 896).
        let _ = self.sock.socket().set_nodelay(true);
        let ring = starts.len() - 1;
        debug_assert!(depth <= ring && starts[ring] == frames.len());
        self.owed = starts[depth];
        self.owe_next = depth % ring;
        self.frames = frames;
        self.starts = starts;
        self.cycle = 0;
        self.at_frame = 0;
    }

    /// `n` echoes came back: owe that many frames again, the next ones of the ring.
    pub fn owe_frames(&mut self, n: u64) {
        let ring = self.starts.len() - 1;
        for _ in 0..n {
            self.owed += self.starts[self.owe_next + 1] - self.starts[self.owe_next];
            self.owe_next = (self.owe_next + 1) % ring;
        }
    }

    /// Queue a compressed one-off message (RSV1 set, RFC 7692 §6.1).
    pub fn queue_compressed(&mut self, opcode: u8, compressed: &[u8]) {
        ws::push_compressed_frame(&mut self.out, opcode, compressed, self.key);
    }

    /// Queue a one-off frame (sent between stream frames, never inside one).
    pub fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        ws::push_client_frame(&mut self.out, opcode, payload, self.key);
    }

    /// Handle one readiness event. `drain`: read until `WouldBlock` rather than
    /// stopping at a short read (needed to see an EOF that came with data).
    pub fn on_event(
        &mut self,
        readable: bool,
        writable: bool,
        drain: bool,
        scratch: &mut [u8],
        sink: &mut SseSink,
    ) -> Result<Got, &'static str> {
        let mut got = Got::default();
        if self.phase == Phase::Connecting {
            self.try_request()?;
            if self.phase == Phase::Connecting {
                return Ok(got);
            }
        }
        if readable {
            // Closing waits for the EOF, which may come with the close frame.
            self.read(scratch, sink, drain || self.phase == Phase::Closing, &mut got)?;
        }
        if writable && !got.eof {
            self.flush()?;
        }
        Ok(got)
    }

    fn read(&mut self, scratch: &mut [u8], sink: &mut SseSink, drain: bool, got: &mut Got) -> Result<(), &'static str> {
        // Through TLS a short read of plaintext says nothing about the socket.
        let drain = drain || self.sock.is_tls();
        loop {
            let n = match self.sock.read(scratch) {
                Ok(0) => {
                    got.eof = true;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err("read failed"),
            };
            self.consume(&scratch[..n], sink, got)?;
            // A short read emptied the socket; new data raises a new edge.
            if n < scratch.len() && !drain {
                return Ok(());
            }
        }
    }

    fn consume(&mut self, data: &[u8], sink: &mut SseSink, got: &mut Got) -> Result<(), &'static str> {
        if self.kind == Kind::Publish {
            return self.responses(data, got);
        }
        if self.phase != Phase::Head {
            return self.body(data, sink, got);
        }
        self.head.extend_from_slice(data);
        let Some(end) = http::head_end(&self.head) else {
            return if self.head.len() > 16 * 1024 { Err("response head too large") } else { Ok(()) };
        };
        let mut head = std::mem::take(&mut self.head);
        let rest = head.split_off(end);
        let status = http::status(&head);
        match self.kind {
            Kind::Ws => {
                if status != Some(101) {
                    return Err("upgrade refused");
                }
                // RFC 6455 §4.1: the client MUST check Sec-WebSocket-Accept.
                if http::header(&head, "sec-websocket-accept") != Some(ws::ACCEPT) {
                    return Err("wrong Sec-WebSocket-Accept");
                }
                // RFC 7692 §5: the one extension offered, accepted or not.
                if let Some(extensions) = http::header(&head, "sec-websocket-extensions") {
                    if !self.offers_deflate || !extensions.starts_with("permessage-deflate") {
                        return Err("an extension that was not offered");
                    }
                    self.ws.agree_deflate();
                    got.deflate = true;
                }
            }
            Kind::Sse => {
                if status != Some(200) {
                    return Err("/events refused");
                }
                let ct = http::header(&head, "content-type").unwrap_or("");
                if !ct.starts_with("text/event-stream") {
                    return Err("/events is not text/event-stream");
                }
                let te = http::header(&head, "transfer-encoding").unwrap_or("");
                if te.eq_ignore_ascii_case("chunked") {
                    self.dechunk = Some(Dechunk::default());
                }
            }
            Kind::Publish => unreachable!("publish responses are read by `responses`"),
        }
        self.phase = Phase::Open;
        self.since = Instant::now();
        got.opened = true;
        self.body(&rest, sink, got)
    }

    fn body(&mut self, data: &[u8], sink: &mut SseSink, got: &mut Got) -> Result<(), &'static str> {
        if data.is_empty() {
            return Ok(());
        }
        match self.kind {
            Kind::Ws => {
                let mut seen = ws::Seen::default();
                self.ws.feed(data, &mut seen)?;
                got.msgs += seen.msgs;
                got.wrong_len += seen.wrong_len;
                got.close |= seen.close;
                got.compressed += seen.compressed;
                if !seen.payloads.is_empty() {
                    let now = Instant::now();
                    for message in &seen.payloads {
                        sink.record_message(message, now);
                    }
                }
                for ping in std::mem::take(&mut self.ws.pongs_owed) {
                    self.queue_frame(ws::OP_PONG, &ping); // RFC 6455 §5.5.2
                }
            }
            Kind::Sse => {
                let now = Instant::now();
                let lines = &mut self.lines;
                match &mut self.dechunk {
                    Some(d) => d.feed(data, |b| lines.feed(b, |v| sink.record(v, now)))?,
                    None => lines.feed(data, |v| sink.record(v, now)),
                }
            }
            Kind::Publish => {}
        }
        Ok(())
    }

    /// Publish: count every complete response in the bytes so far. A response
    /// is a head and `Content-Length` bytes of body (none for 204 or when the
    /// header is absent: every server here sends one or answers 204).
    fn responses(&mut self, data: &[u8], got: &mut Got) -> Result<(), &'static str> {
        self.head.extend_from_slice(data);
        let mut at = 0;
        while let Some(end) = http::head_end(&self.head[at..]) {
            let head = &self.head[at..at + end];
            if !matches!(http::status(head), Some(200..=299)) {
                return Err("/publish refused");
            }
            let body = match http::header(head, "content-length") {
                Some(v) => v.parse::<usize>().map_err(|_| "bad Content-Length")?,
                None => 0,
            };
            if self.head.len() < at + end + body {
                break;
            }
            at += end + body;
            got.responses += 1;
            if self.phase == Phase::Head {
                self.phase = Phase::Open;
                got.opened = true;
            }
        }
        self.head.drain(..at);
        if self.head.len() > 16 * 1024 {
            return Err("response head too large");
        }
        Ok(())
    }

    /// Queue raw bytes (a further request on a keep-alive connection).
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Write what is queued: one-off bytes first when at a frame boundary, then
    /// the echo stream, until done or the socket refuses more (a writable
    /// edge will come when it has room).
    pub fn flush(&mut self) -> Result<(), &'static str> {
        if self.phase == Phase::Connecting {
            return Ok(());
        }
        // TLS records still waiting (a handshake answer, data encrypted
        // before the socket filled up) go first.
        match self.sock.flush_records() {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err("write failed"),
        }
        loop {
            let one_off = self.out_pos < self.out.len();
            let boundary = self.starts.is_empty() || self.cycle == self.starts[self.at_frame];
            let res = if one_off && boundary {
                self.sock.write(&self.out[self.out_pos..])
            } else if self.owed > 0 {
                // Stop at the end of this frame if a one-off frame waits (§5.4:
                // control frames go between frames, never inside one); else
                // at the ring's end, or where what is owed ends.
                let ring_end = self.frames.len();
                let end = if one_off { self.starts[self.at_frame + 1] } else { (self.cycle + self.owed).min(ring_end) };
                self.sock.write(&self.frames[self.cycle..end])
            } else {
                break;
            };
            match res {
                Ok(0) => return Err("write returned 0"),
                Ok(n) if one_off && boundary => {
                    self.out_pos += n;
                    if self.out_pos == self.out.len() {
                        self.out.clear();
                        self.out_pos = 0;
                    }
                }
                Ok(n) => {
                    self.owed -= n;
                    self.cycle = (self.cycle + n) % self.frames.len();
                    while self.cycle >= self.starts[self.at_frame + 1] || self.cycle < self.starts[self.at_frame] {
                        self.at_frame = (self.at_frame + 1) % (self.starts.len() - 1);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err("write failed"),
            }
        }
        Ok(())
    }
}
