//! # pushloop-proto
//!
//! The protocol layers of [pushloop](https://docs.rs/pushloop), alone: HTTP/1.1
//! requests, WebSocket (RFC 6455) and Server-Sent Events, as *sans-IO* code.
//! `#![no_std]` with `alloc`: no sockets, no clocks, no threads. Everything
//! here takes bytes (and, where time matters, a [`time::Instant`] you pass in)
//! and returns what to do: events, bytes to write, the next deadline.
//!
//! ```text
//!        your I/O: sockets, TLS, a clock        (pushloop's mio loop, or yours)
//!            │ bytes, now                  ▲ bytes to write, next deadline
//!   ┌────────▼─────────────────────────────┴──────────────────────────────┐
//!   │ http::session   one HTTP/1.1 connection: heads, bodies,             │
//!   │                 100-continue, keep-alive, the order of answers      │
//!   │ ws::session     one WebSocket endpoint, either role: ping/pong,     │
//!   │                 the close handshake, heartbeats, failing (§7.1.7)   │
//!   ├─────────────────────────────────────────────────────────────────────┤
//!   │ http     heads (httparse), bodies, responses        RFC 9112 / 9110 │
//!   │ ws       handshake §4 · frame §5.2 · mask §5.3 · message §5.4-5.6 · │
//!   │          utf8 §8.1 · close §5.5.1 / §7.4                            │
//!   │ sse      the event-stream encoder; the browser's parser  WHATWG §9.2│
//!   └─────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! ## The contract every state machine here keeps
//!
//! - **Input** is bytes (`step(&mut input, now)`) and time
//!   (`handle_timeout(now)`). Nothing reads a socket or a clock.
//! - **"Not enough bytes yet"** consumes nothing and is not an error: keep the
//!   unconsumed bytes, append the next read, call again.
//! - **Output** is events (returned by `step`, borrowing your buffer where they
//!   can), bytes to write (`poll_transmit(&mut out)`), and the next deadline
//!   (`poll_timeout()`). After every input, drain `poll_transmit` and look at
//!   `poll_timeout` again.
//! - **Every error knows its wire answer**: an HTTP status
//!   ([`http::HttpError::status`]), a WebSocket close code
//!   ([`ws::frame::MessageError::close_code`]).
//! - **Nothing panics on input**: every parser is fuzzed.
//!
//! ## The layers, bottom-up
//!
//! 1. [`http`] — every transport starts as an HTTP/1.1 request.
//!    [`http::HeadScanner`] finds the end of a head by scanning only new bytes,
//!    [`http::parse_request`] parses it in place with `httparse`, and
//!    [`http::BodyDecoder`] reads a `Content-Length` or chunked body. Anything
//!    malformed or too large is an [`http::HttpError`] that knows its status.
//!    [`http::session::HttpSession`] puts them together for one connection.
//! 2. [`ws`] — WebSocket: the opening handshake ([`ws::handshake`], §4.2),
//!    frame headers ([`ws::frame`], §5.2), masking ([`ws::frame`], §5.3),
//!    fragments → messages ([`ws::frame`], §5.4-5.6), UTF-8 ([`ws::utf8`],
//!    §8.1), close codes ([`ws::close`], §7.4), and the whole endpoint —
//!    pongs, the close handshake, heartbeats — in [`ws::session::Session`].
//! 3. [`sse`] — an event becomes `id:`, `event:` and `data:` lines, a comment
//!    keeps proxies awake, `Last-Event-ID` says where a browser stopped;
//!    [`sse::parser::StreamParser`] is the browser's side of the same format.
//! 4. [`json`] — the one JSON writer the feeds need (a string, escaped).
//! 5. [`resp`] — the Redis wire protocol for the storage backend: commands
//!    encoded into your buffer, replies parsed incrementally and within named
//!    limits ([`resp::ReplyParser`]), and [`resp::stream`] reading `XRANGE` /
//!    `XREAD` entries as pushloop events.
//!
//! ## Without std
//!
//! The crate is `#![no_std]` and needs only an allocator. The repository's
//! `.ci/nostd-check` builds a `#![no_std] #![no_main]` binary with its own
//! `#[panic_handler]` that uses it: if std leaked in (through this crate or a
//! dependency), that binary would fail to link with a duplicate `panic_impl`.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod time;

pub mod http;
pub mod sse;
pub mod ws;

pub mod json;

pub mod resp;
