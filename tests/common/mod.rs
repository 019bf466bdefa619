//! Shared helpers for socket-level tests: a server on 127.0.0.1:0 in a thread,
//! a blocking HTTP client, and a small WebSocket client built from pushloop's
//! own codec (whose units are tested against RFC 6455 §5.7 vectors).
#![allow(dead_code)]

pub mod example;
pub mod upstream;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pushloop::app::App;
use pushloop::server::{Config, Handle, Server};
use pushloop::sse::{ParsedEvent, StreamParser};
use pushloop::ws::close::CloseCode;
#[cfg(feature = "deflate")]
use pushloop::ws::deflate::{accept_response, ClientConfig, Deflater};
use pushloop::ws::frame::{encode_frame, OpCode, Role};
use pushloop::ws::frame::{Decoded, MessageDecoder, MessageLimits, Observed, Step};

/// How long any single test read waits before failing the test.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A server running in its own thread; shut down and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Handle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Shuts down and returns what `run` returned.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("loop thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// Starts an app on an OS-assigned port. The server is bound and run inside
/// its own thread (its state is single-threaded by design); `setup` runs there
/// before the loop starts, creates topics, and builds the app.
pub fn serve<A: App + 'static>(
    config: Config,
    setup: impl FnOnce(&mut Server) -> A + Send + 'static,
) -> TestServer {
    serve_on(SocketAddr::from(([127, 0, 0, 1], 0)), config, setup)
}

/// [`serve`] on a given address (a restart on the port of a stopped server).
pub fn serve_on<A: App + 'static>(
    addr: SocketAddr,
    config: Config,
    setup: impl FnOnce(&mut Server) -> A + Send + 'static,
) -> TestServer {
    let (ready, started) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut server = Server::bind(addr, config)?;
        let app = setup(&mut server);
        ready
            .send((server.local_addr()?, server.handle()))
            .expect("test thread waits");
        server.run(app)
    });
    let (addr, handle) = started.recv().expect("server started");
    TestServer {
        addr,
        handle,
        thread: Some(thread),
    }
}

/// A counter from `/stats`, e.g. `stat(addr, "sse", "connections")`.
pub fn stat(addr: SocketAddr, transport: &str, field: &str) -> u64 {
    let json = get(addr, "/stats").text();
    let section = &json[json
        .find(&format!("\"{transport}\":{{"))
        .expect("transport")..];
    let value =
        &section[section.find(&format!("\"{field}\":")).expect("field") + field.len() + 3..];
    value[..value.find([',', '}']).expect("end")]
        .parse()
        .expect("number")
}

/// An event-stream reader: a socket plus the browser's parser.
pub struct EventStream {
    pub stream: TcpStream,
    pub parser: StreamParser,
    pub head: HttpResponse,
    pub raw: Vec<u8>,
    /// Events dispatched by bytes that came with the head.
    early: Vec<ParsedEvent>,
}

impl EventStream {
    pub fn open(addr: SocketAddr, path: &str, last_event_id: Option<u64>) -> EventStream {
        let mut stream = connect(addr);
        let header = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{header}\r\n"
        )
        .unwrap();
        let mut buffered = Vec::new();
        let mut buf = [0; 4096];
        let head_end = loop {
            let n = stream.read(&mut buf).expect("head");
            assert!(n > 0, "closed before the head");
            buffered.extend_from_slice(&buf[..n]);
            if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let mut headers = [pushloop::http::httparse::EMPTY_HEADER; 32];
        let mut response = pushloop::http::httparse::Response::new(&mut headers);
        response.parse(&buffered).expect("head parses");
        let head = HttpResponse {
            status: response.code.unwrap_or(0),
            headers: response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
        };
        let mut reader = EventStream {
            stream,
            parser: StreamParser::new(1 << 20),
            head,
            raw: Vec::new(),
            early: Vec::new(),
        };
        let rest = buffered.split_off(head_end);
        reader.raw.extend_from_slice(&rest);
        reader.early = reader.pending(&rest);
        reader
    }

    pub fn pending(&mut self, bytes: &[u8]) -> Vec<ParsedEvent> {
        self.parser.feed(bytes).expect("valid event stream")
    }

    /// Reads until `count` events were dispatched (or panics after the timeout).
    pub fn events(&mut self, count: usize) -> Vec<ParsedEvent> {
        let mut events = std::mem::take(&mut self.early);
        let mut buf = [0; 65536];
        while events.len() < count {
            let n = self.stream.read(&mut buf).expect("stream read");
            assert!(n > 0, "stream ended after {} events", events.len());
            self.raw.extend_from_slice(&buf[..n]);
            events.extend(self.pending(&buf[..n]));
        }
        events
    }
}

/// A connected socket with a read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads until the peer closes (or the timeout); returns everything read.
pub fn read_to_close(stream: &mut impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read failed after {} bytes: {e}", all.len()),
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response with a Content-Length body (or up to close without one).
pub fn read_response(stream: &mut impl Read, buffered: &mut Vec<u8>) -> HttpResponse {
    let mut buf = [0; 65536];
    loop {
        let mut headers = [pushloop::http::httparse::EMPTY_HEADER; 64];
        let mut response = pushloop::http::httparse::Response::new(&mut headers);
        if let Ok(pushloop::http::httparse::Status::Complete(head_len)) = response.parse(buffered) {
            let status = response.code.expect("status");
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse::<usize>().expect("length"));
            let body = match length {
                Some(length) => {
                    while buffered.len() < head_len + length {
                        let n = stream.read(&mut buf).expect("body");
                        assert!(n > 0, "closed inside a body");
                        buffered.extend_from_slice(&buf[..n]);
                    }
                    let body = buffered[head_len..head_len + length].to_vec();
                    buffered.drain(..head_len + length);
                    body
                }
                // RFC 9110 §15.2: 1xx responses (100 Continue, 101) have no body.
                None if (100..200).contains(&status) => {
                    buffered.drain(..head_len);
                    Vec::new()
                }
                None => {
                    let mut rest = buffered.split_off(head_len);
                    buffered.clear();
                    rest.extend(read_to_close(stream));
                    rest
                }
            };
            return HttpResponse {
                status,
                headers,
                body,
            };
        }
        let n = stream.read(&mut buf).expect("head");
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(buffered)
        );
        buffered.extend_from_slice(&buf[..n]);
    }
}

/// Sends raw request bytes and reads one response.
pub fn request(addr: SocketAddr, raw: &str) -> HttpResponse {
    let mut stream = connect(addr);
    stream.write_all(raw.as_bytes()).expect("write");
    read_response(&mut stream, &mut Vec::new())
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// `POST path` with a body.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    request(
        addr,
        &format!("POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    )
}

/// The RFC 6455 §1.3 sample key.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request for `path` with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A frame as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// The server closed TCP.
    Eof,
}

/// A blocking WebSocket client (masks what it sends, per RFC 6455 §5.3),
/// over TCP or any other byte stream (TLS in tests/tls.rs).
pub struct WsClient<S: Read + Write = TcpStream> {
    pub stream: S,
    decoder: MessageDecoder,
    buffered: Vec<u8>,
    pub response: HttpResponse,
    /// permessage-deflate, when the server accepted the offer: our compressor.
    #[cfg(feature = "deflate")]
    deflater: Option<Deflater>,
    /// The last message received came compressed: (bytes received, inflated).
    pub inflated: Option<(usize, usize)>,
}

/// The limits of the test client: far above anything a test sends.
const CLIENT_LIMITS: MessageLimits = MessageLimits {
    max_frame_bytes: 64 << 20,
    max_message_bytes: 64 << 20,
    max_fragments: 1 << 20,
};

impl WsClient {
    /// Connects and completes the handshake (asserting 101).
    pub fn connect(addr: SocketAddr, path: &str) -> WsClient {
        let client = WsClient::try_connect(addr, &upgrade_request(path, ""));
        assert_eq!(
            client.response.status,
            101,
            "upgrade refused: {}",
            client.response.text()
        );
        client
    }

    /// Sends a raw upgrade request and reads the response, whatever it is.
    pub fn try_connect(addr: SocketAddr, raw: &str) -> WsClient {
        WsClient::try_connect_bytes(addr, raw.as_bytes())
    }

    /// Sends raw bytes (a head, maybe followed by frames) and reads the response.
    pub fn try_connect_bytes(addr: SocketAddr, raw: &[u8]) -> WsClient {
        WsClient::over(connect(addr), raw)
    }

    /// Connects offering permessage-deflate as `config` writes it (RFC 7692
    /// §5); compresses and inflates as the server's answer agreed, if it did.
    #[cfg(feature = "deflate")]
    pub fn connect_deflate(addr: SocketAddr, path: &str, config: ClientConfig) -> WsClient {
        WsClient::try_connect(addr, &deflate_upgrade_request(path, config)).agree_deflate(config)
    }
}

/// An upgrade request offering permessage-deflate as `config` writes it.
#[cfg(feature = "deflate")]
pub fn deflate_upgrade_request(path: &str, config: ClientConfig) -> String {
    let mut offer = Vec::new();
    pushloop::ws::deflate::write_offer(config, &mut offer);
    let offer = String::from_utf8(offer).expect("ASCII");
    upgrade_request(path, &format!("Sec-WebSocket-Extensions: {offer}\r\n"))
}

impl<S: Read + Write> WsClient<S> {
    /// Sends raw bytes (a head, maybe followed by frames) over `stream` and
    /// reads the response.
    pub fn over(mut stream: S, raw: &[u8]) -> WsClient<S> {
        stream.write_all(raw).expect("write");
        let mut buffered = Vec::new();
        let response = read_response(&mut stream, &mut buffered);
        WsClient {
            stream,
            decoder: MessageDecoder::new(Role::Client, CLIENT_LIMITS),
            buffered,
            response,
            #[cfg(feature = "deflate")]
            deflater: None,
            inflated: None,
        }
    }

    /// Takes up what the server's 101 agreed to for an offer `config`
    /// wrote (RFC 7692 §5): compresses and inflates from now on, if it did.
    #[cfg(feature = "deflate")]
    pub fn agree_deflate(mut self, config: ClientConfig) -> WsClient<S> {
        assert_eq!(self.response.status, 101, "{}", self.response.text());
        let answer = self.response.header("sec-websocket-extensions");
        let agreed = accept_response(answer.map(str::as_bytes), config).expect("a valid answer");
        if let Some(agreed) = agreed {
            self.decoder = MessageDecoder::inflating(
                Role::Client,
                CLIENT_LIMITS,
                agreed.receiving(Role::Client),
            );
            self.deflater = Some(Deflater::new(agreed.sending(Role::Client)));
        }
        self
    }

    /// Sends one message compressed (RSV1 set, RFC 7692 §6.1), masked.
    #[cfg(feature = "deflate")]
    pub fn send_compressed(&mut self, opcode: OpCode, payload: &[u8]) {
        let deflater = self.deflater.as_mut().expect("deflate agreed");
        let mut compressed = Vec::new();
        deflater.compress_message(payload, &mut compressed);
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            true,
            opcode,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            &compressed,
        );
        out[0] |= pushloop::ws::frame::RSV1;
        self.stream.write_all(&out).expect("send");
    }

    /// Sends one frame, masked.
    pub fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let mut out = Vec::with_capacity(payload.len() + 14);
        encode_frame(
            &mut out,
            fin,
            opcode,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            payload,
        );
        self.stream.write_all(&out).expect("send");
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, OpCode::Text, text.as_bytes());
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send_frame(true, OpCode::Binary, bytes);
    }

    /// Sends a Close frame with a code and reason.
    pub fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(true, OpCode::Close, &payload);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send raw");
    }

    /// Reads the next message or control frame.
    pub fn recv(&mut self) -> Received {
        let mut buf = vec![0; 1 << 16];
        loop {
            let mut observed = Observed::default();
            match self
                .decoder
                .step_observed(&mut self.buffered, &mut observed)
            {
                Ok(Step::Message { message, used }) => {
                    self.inflated = observed.inflated;
                    let received = match message {
                        Decoded::Text(t) => Received::Text(t.to_owned()),
                        Decoded::Binary(b) => Received::Binary(b.to_vec()),
                        Decoded::Ping(p) => Received::Ping(p.to_vec()),
                        Decoded::Pong(p) => Received::Pong(p.to_vec()),
                        Decoded::Close(None) => Received::Close(None, String::new()),
                        Decoded::Close(Some((code, reason))) => {
                            Received::Close(Some(code.0), reason.to_owned())
                        }
                    };
                    self.buffered.drain(..used);
                    return received;
                }
                Ok(Step::Progress { used }) => {
                    self.buffered.drain(..used);
                    continue;
                }
                Ok(Step::NeedMore) => {}
                Err(e) => panic!("server sent an invalid frame: {e:?}"),
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Received::Eof,
                Ok(n) => self.buffered.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Received::Eof,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until a data message, answering nothing and skipping pings/pongs.
    pub fn recv_data(&mut self) -> Received {
        loop {
            match self.recv() {
                Received::Ping(_) | Received::Pong(_) => continue,
                other => return other,
            }
        }
    }

    /// Reads until the Close frame; returns its code; asserts TCP closes after it.
    pub fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.recv() {
                Received::Close(code, _) => {
                    let rest = read_to_close(&mut self.stream);
                    assert!(rest.is_empty() || rest.len() < 1 << 20, "data after close");
                    return code;
                }
                Received::Eof => panic!("TCP closed without a Close frame"),
                _ => continue,
            }
        }
    }
}

/// Polls `check` every few ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    check()
}

/// Short timeouts for tests that exercise them.
pub fn quick_config() -> Config {
    let mut config = Config::default();
    config.limits.close_timeout = Duration::from_millis(500);
    config.limits.shutdown_timeout = Duration::from_secs(2);
    config
}

pub fn code(c: CloseCode) -> Option<u16> {
    Some(c.0)
}
