//! # pushloop
//!
//! Push data from a server to browsers and devices in the four ways the web
//! knows — short polling, long polling, Server-Sent Events and WebSocket — on
//! one hand-rolled [`mio`] event loop, on one port. No framework, no async
//! runtime; four small dependencies (`httparse`, `sha1`, `base64`, `mio`).
//!
//! This page is a tour, bottom-up. Each layer can be read alone, and every
//! protocol rule in the code cites the section of the spec it comes from.
//!
//! ## The sandwich
//!
//! ```text
//!            bytes from a socket                 bytes to a socket
//!                    │                                   ▲
//!   ┌────────────────▼───────────────────────────────────┴────────────────┐
//!   │ server   the mio loop: accept, read, dispatch, write, timers, wake   │  I/O
//!   ├──────────────────────────────────────────────────────────────────────┤
//!   │ topic    a feed with bounded history; one publish → four transports  │
//!   ├──────────────────────────────────────────────────────────────────────┤
//!   │ http     request heads, bodies, response heads        RFC 9112/9110  │
//!   │ ws       handshake · frames · masking · messages ·    RFC 6455       │  sans-IO:
//!   │          UTF-8 · close codes                                         │  pure code over
//!   │ sse      the event-stream format                      WHATWG §9.2    │  byte slices
//!   └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Everything below `server` is *sans-IO*: it takes bytes (and, where time
//! matters, a time you pass in) and returns what to do. It never touches a
//! socket or a clock, so it is tested with the specs' own examples, byte by
//! byte, and fuzzed. The loop on top is thin: it moves bytes between sockets
//! and these state machines.
//!
//! ## 1. [`http`] — where every transport starts
//!
//! Every transport begins as an HTTP/1.1 request. [`http::HeadScanner`] finds
//! the blank line that ends a head by scanning only new bytes (a head that
//! trickles in byte by byte costs linear time), [`http::parse_request`] parses
//! it in place with `httparse` into a borrowed [`http::Request`], and
//! [`http::BodyDecoder`] reads a `Content-Length` or chunked body. Anything
//! malformed or too large is an [`http::HttpError`] that knows its status
//! (400, 413, 431, 501, 505). Request-smuggling shapes (both `Content-Length`
//! and `Transfer-Encoding`, differing lengths) are refused.
//!
//! ## 2. [`ws`] — WebSocket, RFC 6455
//!
//! - [`ws::handshake`] (§4.2): a GET with `Upgrade: websocket`, `Connection:
//!   Upgrade`, a 16-byte `Sec-WebSocket-Key` and version 13 gets `101
//!   Switching Protocols` with `Sec-WebSocket-Accept = base64(SHA-1(key ++
//!   GUID))`; everything else gets 400, 403 (Origin policy), 405 or 426.
//! - [`ws::frame`] (§5.2): the frame header — FIN, RSV1-3, opcode, MASK,
//!   7/16/64-bit payload length — decoded from a partial buffer without
//!   consuming anything until it is whole, and encoded into a 14-byte array.
//! - [`ws::mask`] (§5.3): the XOR mask, word at a time, checked against the
//!   byte-at-a-time definition.
//! - [`ws::message`] (§5.4-5.6): fragments → messages, control frames in
//!   between, size limits decided from declared lengths before any buffer
//!   grows; [`ws::utf8`] (§8.1) fails fast in the very fragment that breaks UTF-8.
//! - [`ws::close`] (§5.5.1, §7.4): close codes, which of them may travel on the
//!   wire, the close payload, and the close handshake's states.
//!
//! ## 3. [`sse`] — Server-Sent Events, WHATWG HTML §9.2
//!
//! An [`sse::Event`] becomes `id:`, `event:` and `data:` lines (a line break
//! in the data becomes another `data:` line; one in an id or event name is
//! refused, so no field can inject another), comments keep proxies from
//! timing out, and `Last-Event-ID` tells where a reconnecting browser stopped.
//! [`sse::StreamParser`] is the browser's side of the same format.
//!
//! ## 4. [`topic`] — one feed, four transports
//!
//! A [`topic::Topic`] is a bounded history of events with increasing ids.
//! Each publish is encoded once per transport (SSE bytes, a WebSocket frame, a
//! JSON object) and the bytes are shared by every recipient. A cursor that
//! fell out of history, or comes from before a restart, gets a `resync` event
//! instead of silent loss.
//!
//! ## 5. [`server`] and [`app`] — the loop and the API
//!
//! [`server::Server`] is one `mio::Poll` loop: it reads every socket into one
//! loop-wide buffer and parses in place, so an idle connection owns no buffer;
//! it writes answers at the end of each batch of events and asks for WRITABLE
//! only while bytes wait; one timer heap drives every timeout. Published events
//! and broadcasts go out through a *fan-out line* written a slice at a time, so
//! events published meanwhile share one `writev` per subscriber. You implement
//! [`app::App`] — HTTP routes, WebSocket upgrade / open / message / close,
//! timers — and act through [`app::Context`]: send, broadcast, publish,
//! close, set timers. Other threads use a [`server::Handle`]. Every limit has
//! a name and a default in [`limits`].
//!
//! ```no_run
//! use pushloop::app::{Accept, App, ConnId, Context, Message, Upgrading};
//! use pushloop::http::{Request, Response};
//! use pushloop::server::{Config, Server};
//! use pushloop::ws::handshake::Upgrade;
//!
//! struct Echo;
//!
//! impl App for Echo {
//!     fn upgrade(&mut self, _: &mut Context, _: ConnId, req: &Request, _: &Upgrade) -> Upgrading {
//!         if req.path() == "/echo" {
//!             Upgrading::Accept(Accept::new())
//!         } else {
//!             Upgrading::Reject(Response::text(404, "not found"))
//!         }
//!     }
//!     fn message(&mut self, ctx: &mut Context, id: ConnId, message: Message) {
//!         let _ = ctx.send(id, message);
//!     }
//! }
//!
//! Server::bind("127.0.0.1:6788", Config::default())?.run(Echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Never panics on input
//!
//! Every parser is fuzzed (`fuzz/`, replayed by `cargo test`), every limit
//! has a test that crosses it, and a panic inside your callback closes only
//! the connection it concerned. The crate denies `unsafe` code except in two
//! small, documented places of the server: the signal mask
//! (`server::signal`) and the last write of a closing socket sent with
//! `MSG_MORE`, so its bytes and the FIN leave in one packet.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod limits;

pub use pushloop_proto::{http, json, resp, sse, time, ws};

pub mod ids;

pub mod storage;

pub mod feeds;

pub mod engine;

pub mod app;

pub mod server;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "client")]
pub mod client;

/// The README's code is compiled as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
