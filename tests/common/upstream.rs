//! Upstreams for client tests: a hostile (or merely scripted) WebSocket
//! server — one `std::net` thread per test, on `127.0.0.1:0`, playing the
//! server's side of RFC 6455 by hand so that each test can break one rule —
//! and pushloop's own server with a small feed app.
//!
//! Nothing waits without a bound: a server accepts within [`WAIT`] or
//! panics, and its reads time out after [`WAIT`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pushloop::app::{Accept, App, ConnId, Context, Message, TopicId, Upgrading};
use pushloop::http::{Request, Response};
use pushloop::ws::close::CloseCode;
use pushloop::ws::frame::{apply_mask, decode_header, encode_frame, OpCode, Role};
use pushloop::ws::handshake::{accept_key, Upgrade};

use super::TestServer;

/// How long a test server waits for the client to connect or send.
pub const WAIT: Duration = Duration::from_secs(5);

/// A millisecond.
pub const MS: Duration = Duration::from_millis(1);

/// A test server's thread; joined (and its panic raised) by [`Server::join`].
pub struct Server(JoinHandle<()>);

impl Server {
    /// Listens on 127.0.0.1:0 and runs `script` on the listener.
    pub fn start(script: impl FnOnce(TcpListener) + Send + 'static) -> (Server, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        (Server(thread::spawn(move || script(listener))), addr)
    }

    /// One connection: accepted, its request head read, then `script`.
    pub fn one(script: impl FnOnce(Peer) + Send + 'static) -> (Server, SocketAddr) {
        Server::start(|listener| script(Peer::accept(&listener)))
    }

    pub fn join(self) {
        if let Err(panic) = self.0.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// A frame as a client sent it: what the server under test saw.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RFC 7692 §6: the message is compressed (only when [`Peer::deflate`]).
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

/// The server's end of one connection (plain TCP, or TLS over it).
pub struct Peer<S = TcpStream> {
    pub stream: S,
    /// The request head, as the client sent it.
    pub head: String,
    /// Bytes read after the head, not yet taken as frames.
    pub buffered: Vec<u8>,
    /// The script accepted permessage-deflate: the client may set RSV1
    /// (RFC 7692 §6); otherwise a frame with it fails the test.
    pub deflate: bool,
}

/// Accepts one connection within [`WAIT`], with a read timeout of [`WAIT`].
pub fn accept_tcp(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + WAIT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(2 * MS)
            }
            Err(e) => panic!("no connection within {WAIT:?}: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

impl Peer {
    /// Accepts one connection within [`WAIT`] and reads its request head.
    pub fn accept(listener: &TcpListener) -> Peer {
        Peer::read_head(accept_tcp(listener))
    }

    /// True when the client closes TCP within `time` (bytes it still sends
    /// are read and dropped).
    pub fn eof_within(&mut self, time: Duration) -> bool {
        let deadline = Instant::now() + time;
        let mut buf = [0; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(e) => panic!("reading the client: {e}"),
            }
        }
    }
}

impl<S: Read + Write> Peer<S> {
    /// Reads the request head from a new connection.
    pub fn read_head(mut stream: S) -> Peer<S> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("the request head");
            head.push(byte[0]);
            assert!(head.len() < 8192, "request head too long");
        }
        Peer {
            stream,
            head: String::from_utf8(head).expect("an ASCII head"),
            buffered: Vec::new(),
            deflate: false,
        }
    }

    /// The value of a request field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }

    /// The `Sec-WebSocket-Accept` for this request's key (§4.2.2).
    pub fn accept_value(&self) -> String {
        let key = self.field("Sec-WebSocket-Key").expect("a key");
        String::from_utf8(accept_key(key.as_bytes()).to_vec()).expect("base64")
    }

    /// Writes a `101` with these extra field lines (each ending in CRLF).
    pub fn switch(&mut self, extra: &str) {
        let head = switching_head(&self.accept_value(), extra);
        self.write(&head);
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the client");
    }

    /// One unmasked frame, as a server sends it.
    pub fn send(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, opcode, None, payload);
        self.write(&out);
    }

    /// The next frame from the client, unmasked; `None` at EOF (or a reset).
    pub fn frame(&mut self) -> Option<Frame> {
        loop {
            let header = decode_header(&self.buffered, Role::Server, 64 << 20, self.deflate)
                .expect("a valid client frame");
            if let Some((header, header_len)) = header {
                let end = header_len + header.payload_len as usize;
                if self.buffered.len() >= end {
                    let mut payload = self.buffered[header_len..end].to_vec();
                    if let Some(key) = header.mask {
                        apply_mask(&mut payload, key, 0);
                    }
                    self.buffered.drain(..end);
                    return Some(Frame {
                        fin: header.fin,
                        rsv1: header.rsv1,
                        opcode: header.opcode,
                        mask: header.mask,
                        payload,
                    });
                }
            }
            let mut buf = [0; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.buffered.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading the client: {e}"),
            }
        }
    }

    /// The client's Close: its code (`None` for an empty payload).
    pub fn expect_close(&mut self) -> Option<u16> {
        let frame = self.frame().expect("a Close frame before EOF");
        assert_eq!(frame.opcode, OpCode::Close, "{frame:?}");
        frame
            .payload
            .get(..2)
            .map(|code| u16::from_be_bytes([code[0], code[1]]))
    }
}

/// A `101` answer's head with `Sec-WebSocket-Accept: accept` and these extra
/// field lines (each ending in CRLF).
pub fn switching_head(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A close payload: the code, big-endian, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

// ---- Pushloop as the upstream -------------------------------------------------

/// Echoes on `/echo` (choosing the subprotocol `echo.v1` when offered);
/// follows the `feed` topic on `/chat` the way the demo's `/chat` does,
/// recording each cursor asked for; closes or publishes on request (`close
/// me`, `kick`, `done`, `say …`); records each close.
pub struct Upstream {
    topic: TopicId,
    cursors: Arc<Mutex<Vec<Option<String>>>>,
    closes: Arc<Mutex<Vec<(u16, String)>>>,
}

impl App for Upstream {
    fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, offer: &Upgrade) -> Upgrading {
        match req.path() {
            "/echo" => {
                let mut accept = Accept::new();
                if offer.offers_protocol("echo.v1") {
                    accept = accept.protocol("echo.v1");
                }
                Upgrading::Accept(accept)
            }
            "/chat" => {
                let cursor = req.query_param("after").map(|after| after.into_owned());
                let after = cursor.as_deref().and_then(|after| after.parse().ok());
                self.cursors.lock().unwrap().push(cursor);
                Upgrading::Accept(Accept::new().subscribe(self.topic, after))
            }
            _ => Upgrading::Reject(Response::text(404, "no")),
        }
    }

    fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
        match message {
            Message::Text("close me") => {
                ctx.close(id, CloseCode::GOING_AWAY, "as you wish");
            }
            Message::Text("done") => {
                ctx.close(id, CloseCode::NORMAL, "that is all");
            }
            Message::Text("kick") => {
                // A restart of this one connection, and an event it misses.
                ctx.close(id, CloseCode::SERVICE_RESTART, "restart");
                let _ = ctx.publish(self.topic, None, "while you were away");
            }
            Message::Text(text) if text.starts_with("say ") => {
                let _ = ctx.publish(self.topic, Some("chat"), &text[4..]);
            }
            other => {
                let _ = ctx.send(id, other);
            }
        }
    }

    fn close(&mut self, _: &mut Context, _: ConnId, code: CloseCode, reason: &str) {
        self.closes
            .lock()
            .unwrap()
            .push((code.0, reason.to_owned()));
    }
}

/// A pushloop upstream, and what its app recorded.
pub struct Pushloop {
    pub server: TestServer,
    /// The `?after=` of each `/chat` upgrade, in order.
    pub cursors: Arc<Mutex<Vec<Option<String>>>>,
    /// The code and reason of each WebSocket's end, in order.
    pub closes: Arc<Mutex<Vec<(u16, String)>>>,
}

/// A pushloop upstream on `addr` (`127.0.0.1:0` for a new port).
pub fn pushloop_on(addr: SocketAddr) -> Pushloop {
    pushloop_with(addr, super::quick_config())
}

/// A pushloop upstream on `addr` with this configuration.
pub fn pushloop_with(addr: SocketAddr, config: pushloop::server::Config) -> Pushloop {
    let cursors = Arc::new(Mutex::new(Vec::new()));
    let closes = Arc::new(Mutex::new(Vec::new()));
    let (c, d) = (cursors.clone(), closes.clone());
    let server = super::serve_on(addr, config, move |server| Upstream {
        topic: server.topic("feed").expect("a topic"),
        cursors: c,
        closes: d,
    });
    Pushloop {
        server,
        cursors,
        closes,
    }
}

/// A pushloop upstream on a new port.
pub fn pushloop() -> Pushloop {
    pushloop_on(SocketAddr::from(([127, 0, 0, 1], 0)))
}
