//! One HTTP/1.1 connection, server side: heads, bodies, `100-continue`,
//! keep-alive, the order of answers, and the deadlines that bound a slow
//! client — as one sans-IO state machine.
//!
//! Reading list:
//! - RFC 9112 §9.3 (persistence: one request after another on a
//!   connection), §9.3.2 (pipelining: "A server MUST send its responses to
//!   those requests in the same order that the requests were received"),
//!   §9.5 (closing an idle connection), §9.6 (`Connection: close`).
//! - RFC 9110 §9.3.2 (`HEAD`: the head of a `GET` answer, no body), §10.1.1
//!   (`Expect: 100-continue`), §7.8 (`Upgrade`), §15.5.9 (408).
//!
//! ```text
//!            first byte              head complete, body pending
//!  Waiting ─────────────▶ Head ──────────────────────────────▶ Body
//!     ▲                    │ head complete, no body             │ body complete
//!     │ answer(),          ▼                                    │
//!     │ keep-alive   ┌────────────┐ ◀──────────────────────────┘
//!     └───────────── │ Responding │   (pipelined input waits here)
//!                    └────────────┘
//!                          │ answer() with close, finish() (a stream,
//!                          ▼ an upgrade), an error, a timeout
//!                        Done
//! ```
//!
//! Driving it: hand the unconsumed input to [`HttpSession::step`] (with
//! header slots for the parser), drop `used` bytes, repeat until it says
//! [`HttpStep::NeedMore`] or [`HttpStep::Blocked`]. A [`HttpStep::Request`]
//! is answered with [`HttpSession::answer`] (which says how to frame the
//! response) — now, or later (a held long-poll): until then the session is
//! [`HttpStep::Blocked`] and the caller should stop reading this connection,
//! so pipelined requests wait in the kernel, not in memory. An
//! [`HttpError`] is answered with its own response (`error.write_response`),
//! then the connection closes. Ask [`HttpSession::poll_timeout`] when to call
//! [`HttpSession::handle_timeout`], and report each write of an answer that
//! makes progress ([`HttpSession::on_write_progress`]): a connection whose
//! reader is still taking its answer is not idle.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use crate::http::body::{BodyDecoder, BodyFraming};
use crate::http::error::HttpError;
use crate::http::request::{parse_request, HeadScanner, Request};
use crate::http::response::{Framing, Response};
use crate::time::Instant;

/// The limits and deadlines of one server's HTTP connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Bytes in a request head; past it: 431.
    pub max_head_bytes: usize,
    /// Header fields in a head; past it: 431. The caller's header slots must
    /// number at least this many.
    pub max_headers: usize,
    /// Bytes in a request body; past it: 413.
    pub max_body_bytes: usize,
    /// A head must be complete this long after the connection was accepted
    /// (first request) or after its first byte (later requests): slowloris.
    pub head_timeout: Duration,
    /// A body must be complete this long after its head: a body trickled a
    /// byte at a time is bounded too.
    pub body_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request.
    pub idle_timeout: Duration,
}

/// A head kept until its body is complete.
#[derive(Debug)]
struct PendingBody {
    /// The head's bytes, parsed again once the body is complete (cheap, and
    /// it keeps [`Request`] a borrowed view).
    head: Vec<u8>,
    decoder: BodyDecoder,
    body: Vec<u8>,
    /// What the head asked of its answer.
    asked: Asked,
}

/// What the request being answered asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Asked {
    /// The client wants the connection kept (RFC 9112 §9.3).
    keep_alive: bool,
    /// The method was `HEAD` (RFC 9110 §9.3.2).
    head_only: bool,
}

#[derive(Debug)]
enum Phase {
    /// No byte of the next request yet. `first`: no request yet at all, so
    /// the head deadline runs from the accept.
    Waiting { first: bool },
    /// Part of a head has arrived.
    Head(HeadScanner),
    /// The head is complete; the body is arriving.
    Body(Box<PendingBody>),
    /// A request was handed out and is not answered yet. `held` keeps the
    /// bytes its `Request` borrowed when its body spanned reads.
    Responding {
        asked: Asked,
        held: Option<Box<PendingBody>>,
    },
    /// No more requests on this connection.
    Done,
}

/// What one call to [`HttpSession::step`] did.
#[derive(Debug)]
pub enum HttpStep<'a> {
    /// A whole request: answer it with [`HttpSession::answer`]. `used` input
    /// bytes were consumed (head and, if it was there, body).
    Request {
        /// The parsed head.
        request: Request<'a>,
        /// The head's bytes (for a protocol trace).
        head: &'a [u8],
        /// The whole body (empty if there is none).
        body: &'a [u8],
        /// Input bytes consumed.
        used: usize,
    },
    /// `used` > 0 bytes consumed (part of a body, or a head whose body is
    /// pending); nothing to hand out yet.
    Progress {
        /// Input bytes consumed.
        used: usize,
    },
    /// Nothing consumed: keep the bytes, call again when more arrive.
    NeedMore,
    /// Nothing consumed: the previous request is not answered yet, and
    /// answers go out in order (RFC 9112 §9.3.2). Stop reading; call again
    /// after [`HttpSession::answer`].
    Blocked,
}

/// Which deadline passed, as [`HttpSession::handle_timeout`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpTimeout {
    /// Nothing was asked in time: close without a word (RFC 9112 §9.5).
    Idle,
    /// A head was started but not finished in time: `408` was written.
    Head,
    /// A body was not finished in time: `408` was written.
    Body,
}

impl HttpTimeout {
    /// The timeout's name, for counters and traces.
    pub fn name(self) -> &'static str {
        match self {
            HttpTimeout::Idle => "idle",
            HttpTimeout::Head => "head",
            HttpTimeout::Body => "body",
        }
    }
}

/// One HTTP/1.1 connection (see the module doc). About 40 bytes between
/// requests, and no heap: a body that spans reads is the only thing it keeps.
#[derive(Debug)]
pub struct HttpSession {
    phase: Phase,
    /// When the current phase's deadline started.
    since: Instant,
}

/// The interim answer to `Expect: 100-continue` (RFC 9110 §15.2.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl HttpSession {
    /// A session for a connection accepted at `now`.
    pub fn new(now: Instant) -> HttpSession {
        HttpSession {
            phase: Phase::Waiting { first: true },
            since: now,
        }
    }

    /// No request is in progress or being answered: the connection is between
    /// requests (a graceful shutdown may close it at once).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. })
    }

    /// A request is handed out and not answered yet.
    pub fn is_responding(&self) -> bool {
        matches!(self.phase, Phase::Responding { .. })
    }

    /// One step over `input`, the unconsumed bytes. `headers` are the parser's
    /// slots (at least `max_headers` of them). Writes `100 Continue` to `out`
    /// when a client asked for it. After an `Err`, write the error's response
    /// and close: the framing of what follows is unknown. Never panics.
    pub fn step<'a>(
        &'a mut self,
        input: &'a [u8],
        headers: &'a mut [httparse::Header<'a>],
        now: Instant,
        config: &HttpConfig,
        out: &mut Vec<u8>,
    ) -> Result<HttpStep<'a>, HttpError> {
        // The phase is taken out while this step works on it and put back (or
        // moved on) only on success: after an error the session is `Done`.
        let scanner = match core::mem::replace(&mut self.phase, Phase::Done) {
            // RFC 9112 §9.3.2: the next request waits for this one's answer.
            phase @ Phase::Responding { .. } => {
                self.phase = phase;
                return Ok(HttpStep::Blocked);
            }
            // RFC 9112 §9.6: after `Connection: close` (or a switch to another
            // protocol) no further request is read.
            Phase::Done => {
                return Ok(match input.len() {
                    0 => HttpStep::NeedMore,
                    used => HttpStep::Progress { used },
                })
            }
            Phase::Body(mut pending) => {
                let progress = pending.decoder.decode(input, &mut pending.body)?;
                if !progress.done {
                    self.phase = Phase::Body(pending);
                    // The decoder keeps no partial lines: what it did not use
                    // (part of a chunk-size line) waits for more bytes.
                    return Ok(match progress.used {
                        0 => HttpStep::NeedMore,
                        used => HttpStep::Progress { used },
                    });
                }
                self.phase = Phase::Responding {
                    asked: pending.asked,
                    held: Some(pending),
                };
                // The request borrows the kept head and body, which now live
                // in the session until the answer.
                let this: &'a HttpSession = self;
                let Phase::Responding {
                    held: Some(held), ..
                } = &this.phase
                else {
                    return Err(HttpError::Unterminated);
                };
                return Ok(HttpStep::Request {
                    request: parse_request(&held.head, headers)?,
                    head: &held.head,
                    body: &held.body,
                    used: progress.used,
                });
            }
            Phase::Waiting { first } => {
                if input.is_empty() {
                    self.phase = Phase::Waiting { first };
                    return Ok(HttpStep::NeedMore);
                }
                // The head deadline of the first request runs from the accept;
                // a later one's from its first byte.
                if !first {
                    self.since = now;
                }
                HeadScanner::new(config.max_head_bytes)
            }
            Phase::Head(scanner) => scanner,
        };
        let mut scanner = scanner;
        let Some(head_len) = scanner.scan(input)? else {
            self.phase = Phase::Head(scanner);
            return Ok(HttpStep::NeedMore);
        };
        let head = input.get(..head_len).unwrap_or_default();
        let request = parse_request(head, headers)?;
        let framing = request.body_framing(config.max_body_bytes)?;
        // RFC 9110 §7.8: `Upgrade` switches protocols right after this
        // request. The one switch this server makes is to WebSocket (the
        // test of `ws::handshake::is_upgrade_request`); with a body, the
        // switch point would depend on who honours the length (request
        // smuggling into a WebSocket), so that is refused outright. Any other
        // offer (`h2c`, `TLS/1.0`) is one §7.8 lets a server ignore: the
        // request is served over HTTP/1.1, body and all.
        let has_body = !matches!(framing, BodyFraming::None | BodyFraming::Length(0));
        if has_body && request.has_token("upgrade", "websocket") {
            return Err(HttpError::UpgradeWithBody);
        }
        let asked = asked_by(&request);
        let body = match framing {
            BodyFraming::None => Some(&[][..]),
            BodyFraming::Length(len) => input.get(head_len..head_len.saturating_add(len)),
            BodyFraming::Chunked => None,
        };
        if let Some(body) = body {
            self.phase = Phase::Responding { asked, held: None };
            return Ok(HttpStep::Request {
                used: head_len + body.len(),
                request,
                head,
                body,
            });
        }
        // The body spans reads: keep the head and decode the body as it comes.
        // RFC 9110 §10.1.1: a client that sent `Expect: 100-continue` waits for
        // this interim answer before the body (one over the limit was already
        // refused with 413 by `body_framing`).
        if head_len == input.len()
            && request.minor_version() == 1
            && request.has_token("expect", "100-continue")
        {
            out.extend_from_slice(CONTINUE);
        }
        self.phase = Phase::Body(Box::new(PendingBody {
            head: head.to_vec(),
            decoder: BodyDecoder::new(framing, config.max_body_bytes),
            body: Vec::new(),
            asked,
        }));
        self.since = now;
        Ok(HttpStep::Progress { used: head_len })
    }

    /// The request handed out is answered now: returns how to frame the
    /// answer, and moves on — to the next request if the connection stays
    /// open, else to the end. `closing`: the server wants this connection to
    /// end after the answer (a shutdown, or the answer itself says so).
    pub fn answer(&mut self, now: Instant, closing: bool) -> Framing {
        let Phase::Responding { asked, .. } = self.phase else {
            debug_assert!(false, "answer() without a request being answered");
            return Framing {
                keep_alive: false,
                head_only: false,
            };
        };
        let keep_alive = asked.keep_alive && !closing;
        self.phase = if keep_alive {
            self.since = now;
            Phase::Waiting { first: false }
        } else {
            Phase::Done
        };
        Framing {
            keep_alive,
            head_only: asked.head_only,
        }
    }

    /// Answers the request handed out with `response` (see
    /// [`HttpSession::answer`]) and returns whether the connection stays open.
    pub fn write_response(
        &mut self,
        response: &Response,
        now: Instant,
        closing: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let framing = self.answer(now, closing || response_closes(response));
        response.write_framed(out, framing);
        framing.keep_alive
    }

    /// The peer took some of what it is owed at `now` (a write made
    /// progress). A kept connection is not idle while its answers are still
    /// being written to a reader that takes them: its idle deadline runs from
    /// the last write that made progress, so a slow reader of a large answer
    /// is never cut mid-answer (RFC 9112 §9.5 lets a server close a
    /// connection that is idle, which this one is not). A request being read
    /// keeps its own deadline.
    pub fn on_write_progress(&mut self, now: Instant) {
        if let Phase::Waiting { first: false } = self.phase {
            self.since = now;
        }
    }

    /// The connection stops carrying requests: it switched protocols (101)
    /// or became an event stream, or it closes.
    pub fn finish(&mut self) {
        self.phase = Phase::Done;
    }

    /// When [`HttpSession::handle_timeout`] should be called next, if ever.
    pub fn poll_timeout(&self, config: &HttpConfig) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { first: true } | Phase::Head(_) => {
                Some(self.since + config.head_timeout)
            }
            Phase::Waiting { first: false } => Some(self.since + config.idle_timeout),
            Phase::Body(_) => Some(self.since + config.body_timeout),
            Phase::Responding { .. } | Phase::Done => None,
        }
    }

    /// Acts on a deadline that has passed at `now`: writes `408` to `out` if
    /// a request was under way (RFC 9110 §15.5.9), and ends the session. The
    /// caller then closes the connection once `out` is written.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        config: &HttpConfig,
        out: &mut Vec<u8>,
    ) -> Option<HttpTimeout> {
        if self
            .poll_timeout(config)
            .is_none_or(|deadline| now < deadline)
        {
            return None;
        }
        let timeout = match self.phase {
            // RFC 9112 §9.5: nothing was asked; close without a word.
            Phase::Waiting { .. } => HttpTimeout::Idle,
            Phase::Head(_) => HttpTimeout::Head,
            Phase::Body(_) => HttpTimeout::Body,
            Phase::Responding { .. } | Phase::Done => return None,
        };
        if timeout != HttpTimeout::Idle {
            let text = match timeout {
                HttpTimeout::Body => "request body took too long",
                _ => "request head took too long",
            };
            Response::text(408, text).write(out, false);
        }
        self.phase = Phase::Done;
        Some(timeout)
    }
}

/// What a parsed request asks of its answer.
fn asked_by(request: &Request) -> Asked {
    Asked {
        keep_alive: request.keep_alive(),
        head_only: request.method() == "HEAD",
    }
}

/// The response itself asks to close the connection (RFC 9110 §7.6.1).
fn response_closes(response: &Response) -> bool {
    response.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("connection")
            && crate::http::syntax::list_elements(value.as_bytes())
                .any(|option| option.eq_ignore_ascii_case(b"close"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    const CONFIG: HttpConfig = HttpConfig {
        max_head_bytes: 1024,
        max_headers: 16,
        max_body_bytes: 64,
        head_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(120),
    };

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    /// What the session handed out, owned.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        /// Method, target, body.
        Request(String, String, Vec<u8>),
        Blocked,
        Error(HttpError),
    }

    /// A session, the input it has not consumed, and what it wrote.
    struct Conn {
        session: HttpSession,
        pending: Vec<u8>,
        out: Vec<u8>,
    }

    impl Conn {
        fn new() -> Conn {
            Conn {
                session: HttpSession::new(at(0)),
                pending: Vec::new(),
                out: Vec::new(),
            }
        }

        /// Appends `bytes` and steps until the session needs more or blocks.
        fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<Seen> {
            self.pending.extend_from_slice(bytes);
            let mut seen = Vec::new();
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let step =
                    self.session
                        .step(&self.pending, &mut headers, now, &CONFIG, &mut self.out);
                let used = match step {
                    Ok(HttpStep::Request {
                        request,
                        body,
                        used,
                        ..
                    }) => {
                        seen.push(Seen::Request(
                            request.method().into(),
                            request.target().into(),
                            body.to_vec(),
                        ));
                        used
                    }
                    Ok(HttpStep::Progress { used }) => used,
                    Ok(HttpStep::NeedMore) => break,
                    Ok(HttpStep::Blocked) => {
                        // Worth noting only when a request is waiting.
                        if !self.pending.is_empty() {
                            seen.push(Seen::Blocked);
                        }
                        break;
                    }
                    Err(error) => {
                        seen.push(Seen::Error(error));
                        break;
                    }
                };
                self.pending.drain(..used);
            }
            seen
        }

        /// Answers the request being served with a small text response.
        fn answer(&mut self, now: Instant) -> bool {
            let response = Response::text(200, "ok");
            self.session
                .write_response(&response, now, false, &mut self.out)
        }

        fn written(&mut self) -> String {
            String::from_utf8(core::mem::take(&mut self.out)).unwrap()
        }
    }

    fn get(target: &str) -> Seen {
        Seen::Request("GET".into(), target.into(), Vec::new())
    }

    // --- Requests and answers ---

    #[test]
    fn a_request_is_handed_out_then_answered_and_the_connection_stays() {
        let mut conn = Conn::new();
        let seen = conn.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", at(1));
        assert_eq!(seen, [get("/a")]);
        assert!(conn.session.is_responding());
        assert!(
            conn.answer(at(1)),
            "HTTP/1.1 keeps the connection by default"
        );
        assert!(conn.written().starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(conn.session.is_idle());
        assert_eq!(
            conn.feed(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", at(2)),
            [get("/b")]
        );
    }

    #[test]
    fn pipelined_requests_wait_for_the_answer_before_them() {
        let mut conn = Conn::new();
        let two = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
        // RFC 9112 §9.3.2: answers in the order of the requests.
        assert_eq!(conn.feed(two, at(1)), [get("/1"), Seen::Blocked]);
        assert_eq!(conn.pending.len(), 28, "the second request is not consumed");
        conn.answer(at(1));
        assert_eq!(conn.feed(b"", at(1)), [get("/2")]);
    }

    #[test]
    fn a_head_request_gets_the_head_only() {
        let mut conn = Conn::new();
        conn.feed(b"HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n", at(1));
        assert!(conn.answer(at(1)), "HEAD keeps the connection too");
        // RFC 9110 §9.3.2: the GET's fields, Content-Length included, no body.
        assert_eq!(
            conn.written(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn close_is_honoured_and_nothing_after_it_is_read() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            let mut conn = Conn::new();
            conn.feed(head, at(1));
            assert!(!conn.answer(at(1)));
            assert!(conn.written().contains("Connection: close\r\n"));
            // RFC 9112 §9.6: no further request is read.
            assert_eq!(
                conn.feed(b"GET /more HTTP/1.1\r\nHost: x\r\n\r\n", at(1)),
                []
            );
            assert!(conn.pending.is_empty(), "discarded");
        }
        let mut keep = Conn::new();
        keep.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", at(1));
        assert!(
            keep.answer(at(1)),
            "HTTP/1.0 may ask to keep the connection"
        );
    }

    #[test]
    fn the_server_may_close_after_any_answer() {
        let mut conn = Conn::new();
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", at(1));
        let framing = conn.session.answer(at(1), true);
        assert!(!framing.keep_alive);
        let mut closing = Conn::new();
        closing.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", at(1));
        let response = Response::text(200, "bye").header("Connection", "close");
        assert!(!closing
            .session
            .write_response(&response, at(1), false, &mut closing.out));
    }

    #[test]
    fn a_body_that_spans_reads_is_gathered() {
        let mut conn = Conn::new();
        assert_eq!(
            conn.feed(
                b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe",
                at(1)
            ),
            []
        );
        assert_eq!(
            conn.feed(b"llo", at(2)),
            [Seen::Request("POST".into(), "/p".into(), b"hello".to_vec())]
        );
        let mut chunked = Conn::new();
        let head = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(chunked.feed(head, at(1)), []);
        assert_eq!(
            chunked.feed(b"3\r\nabc\r\n0\r\n\r\n", at(1)),
            [Seen::Request("POST".into(), "/c".into(), b"abc".to_vec())]
        );
    }

    #[test]
    fn expect_100_continue_is_answered_only_while_the_client_waits() {
        let head =
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        let mut conn = Conn::new();
        conn.feed(head, at(1));
        // RFC 9110 §10.1.1: the client waits for this before sending the body.
        assert_eq!(conn.written(), "HTTP/1.1 100 Continue\r\n\r\n");
        let mut eager = Conn::new();
        let mut with_part = head.to_vec();
        with_part.push(b'a');
        eager.feed(&with_part, at(1));
        assert_eq!(eager.written(), "", "the body has started: no need");
    }

    #[test]
    fn a_websocket_upgrade_with_a_body_is_refused() {
        for head in [
            &b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: h2c, WebSocket\r\nConnection: Upgrade\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ] {
            let mut conn = Conn::new();
            assert_eq!(
                conn.feed(head, at(1)),
                [Seen::Error(HttpError::UpgradeWithBody)]
            );
        }
        assert_eq!(HttpError::UpgradeWithBody.status(), 400);
    }

    #[test]
    fn an_upgrade_the_server_never_makes_is_ignored_and_the_request_served() {
        // RFC 9110 §7.8: a server may ignore an Upgrade it will not honour;
        // `curl --http2 -d x` offers h2c on a POST with a body.
        let mut conn = Conn::new();
        let head = b"POST /publish HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            conn.feed(head, at(1)),
            [Seen::Request(
                "POST".into(),
                "/publish".into(),
                b"hello".to_vec()
            )]
        );
        assert!(conn.answer(at(1)), "and the connection stays HTTP/1.1");
    }

    #[test]
    fn after_an_error_the_session_reads_nothing_more() {
        let mut conn = Conn::new();
        let seen = conn.feed(b"GET / HTTP/1.1\r\n\r\n", at(1));
        assert_eq!(seen, [Seen::Error(HttpError::MissingHost)]);
        conn.pending.clear();
        assert_eq!(conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", at(1)), []);
        assert_eq!(conn.session.poll_timeout(&CONFIG), None);
    }

    #[test]
    fn limits_are_the_configured_ones() {
        let mut big_head = Conn::new();
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        head.extend(core::iter::repeat_n(b'a', 1024));
        assert_eq!(
            big_head.feed(&head, at(1)),
            [Seen::Error(HttpError::HeadTooLarge)]
        );
        let mut big_body = Conn::new();
        let seen = big_body.feed(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n",
            at(1),
        );
        assert_eq!(seen, [Seen::Error(HttpError::BodyTooLarge)]);
    }

    #[test]
    fn every_split_of_pipelined_input_gives_the_same_requests() {
        let input = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 0..=input.len() {
            let mut conn = Conn::new();
            let mut seen = conn.feed(&input[..split], at(1));
            seen.extend(conn.feed(&input[split..], at(1)));
            seen.retain(|s| *s != Seen::Blocked);
            conn.answer(at(1));
            seen.extend(conn.feed(b"", at(1)));
            assert_eq!(
                seen,
                [
                    Seen::Request("POST".into(), "/a".into(), b"abc".to_vec()),
                    get("/b")
                ],
                "split at {split}"
            );
        }
    }

    // --- Deadlines ---

    #[test]
    fn a_silent_new_connection_is_closed_without_a_word() {
        let mut conn = Conn::new();
        assert_eq!(conn.session.poll_timeout(&CONFIG), Some(at(10)));
        assert_eq!(
            conn.session.handle_timeout(at(9), &CONFIG, &mut conn.out),
            None
        );
        assert_eq!(
            conn.session.handle_timeout(at(10), &CONFIG, &mut conn.out),
            Some(HttpTimeout::Idle)
        );
        assert_eq!(conn.written(), "", "RFC 9112 §9.5: nothing was asked");
    }

    #[test]
    fn the_first_head_must_end_within_the_head_timeout_of_the_accept() {
        let mut conn = Conn::new();
        conn.feed(b"GET / HT", at(9));
        assert_eq!(
            conn.session.poll_timeout(&CONFIG),
            Some(at(10)),
            "from the accept"
        );
        assert_eq!(
            conn.session.handle_timeout(at(10), &CONFIG, &mut conn.out),
            Some(HttpTimeout::Head)
        );
        // RFC 9110 §15.5.9.
        assert!(conn
            .written()
            .starts_with("HTTP/1.1 408 Request Timeout\r\n"));
    }

    #[test]
    fn a_kept_connection_idles_then_a_started_head_has_its_own_deadline() {
        let mut conn = Conn::new();
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", at(1));
        assert_eq!(
            conn.session.poll_timeout(&CONFIG),
            None,
            "answering: no deadline"
        );
        conn.answer(at(2));
        assert_eq!(conn.session.poll_timeout(&CONFIG), Some(at(122)));
        conn.feed(b"G", at(100));
        assert_eq!(conn.session.poll_timeout(&CONFIG), Some(at(110)));
    }

    #[test]
    fn an_answer_still_being_written_moves_the_idle_deadline_but_not_a_heads() {
        let mut conn = Conn::new();
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", at(1));
        conn.answer(at(2));
        assert_eq!(conn.session.poll_timeout(&CONFIG), Some(at(122)));
        // A slow reader took part of the answer at 100 s: not idle.
        conn.session.on_write_progress(at(100));
        assert_eq!(conn.session.poll_timeout(&CONFIG), Some(at(220)));
        assert_eq!(
            conn.session.handle_timeout(at(122), &CONFIG, &mut conn.out),
            None
        );
        // A head that has started is bounded from its first byte, whatever is written.
        conn.feed(b"G", at(150));
        conn.session.on_write_progress(at(155));
        assert_eq!(conn.session.poll_timeout(&CONFIG), Some(at(160)));
        // So is the first request of a connection, from the accept.
        let mut fresh = Conn::new();
        fresh.session.on_write_progress(at(5));
        assert_eq!(fresh.session.poll_timeout(&CONFIG), Some(at(10)));
    }

    #[test]
    fn a_trickled_body_is_cut_at_the_body_deadline() {
        let mut conn = Conn::new();
        conn.feed(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n",
            at(1),
        );
        for second in 2..31 {
            // One byte a second resets nothing: the deadline is for the body.
            conn.feed(b"x", at(second));
        }
        assert_eq!(conn.session.poll_timeout(&CONFIG), Some(at(31)));
        assert_eq!(
            conn.session.handle_timeout(at(31), &CONFIG, &mut conn.out),
            Some(HttpTimeout::Body)
        );
        assert!(conn.written().starts_with("HTTP/1.1 408 "));
    }
}
