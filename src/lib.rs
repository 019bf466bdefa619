//! # pushloop
//!
//! Push data from a server to browsers and devices in the four ways the web
//! knows — short polling, long polling, Server-Sent Events and WebSocket — on
//! one hand-rolled [`mio`] event loop, on one port. No framework, no async
//! runtime; four small dependencies (`httparse`, `sha1`, `base64`, `mio`).
//!
//! This page is a tour, bottom-up. Each layer can be read alone, every
//! protocol rule in the code cites the section of the spec it comes from,
//! and imports only point down.
//!
//! ## The sandwich
//!
//! ```text
//!            bytes from a socket                 bytes to a socket
//!                    │                                   ▲
//!   ┌────────────────▼───────────────────────────────────┴────────────────┐
//!   │ server   the mio loop: accept, read, call the App, timers, write     │  I/O
//!   ├──────────────────────────────────────────────────────────────────────┤
//!   │ app      the trait you implement, the Context you act through        │
//!   ├──────────────────────────────────────────────────────────────────────┤
//!   │ engine   connections, the outbox, timers: the loop's state and verbs │
//!   │ feeds    topics (rooms), one id space, followers, replay             │
//!   ├──────────────────────────────────────────────────────────────────────┤
//!   │ pushloop-proto (no_std): sessions, HTTP, WebSocket, SSE              │  sans-IO:
//!   │   http::session · ws::session      one connection's every rule       │  bytes and
//!   │   http · ws::frame · sse           the formats        RFC 9112/6455  │  a `now` in
//!   └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Everything in the protocol crate ([`pushloop_proto`], re-exported here as
//! [`http`], [`ws`], [`sse`], [`json`], [`resp`] and [`time`]) is *sans-IO*:
//! it takes bytes and a time you pass in and returns events, bytes to write
//! and its next deadline. It never touches a socket or a clock, so it is
//! tested with the specs' own examples, byte by byte, and fuzzed. The loop on
//! top moves bytes between sockets and those sessions, and time into them.
//!
//! ## 1. The protocol crate — every rule of a connection
//!
//! [`http::HttpSession`] is one HTTP/1.1 connection: it finds the end of a
//! head, reads a body, answers `100-continue`, and keeps answers in the
//! order of the requests (a pipelined request waits while the one before it
//! is answered later). [`ws::session::Session`] is one WebSocket endpoint:
//! it answers pings, echoes a Close, fails the connection with the right
//! code (RFC 6455 §7.1.7), reports 1006 when TCP ends without a Close, and
//! decides when to ping a silent peer and when to give up on it. The formats
//! they use are below them: [`http`] (heads via `httparse`, bodies, status
//! answers), [`ws::frame`] (headers §5.2, masking §5.3, messages §5.4-§5.6),
//! [`ws::handshake`] (§4), [`sse`] (WHATWG HTML §9.2).
//!
//! ## 2. [`feeds`] — topics, one id space
//!
//! A topic (a room) keeps a bounded history. Each publish is encoded once per
//! transport — SSE lines, a WebSocket frame, a JSON object — and the bytes
//! are shared by every follower and by the history. Ids are unique across
//! every topic of a server, so one cursor resumes a connection that follows
//! several topics; a cursor that cannot be served exactly gets a `resync`
//! event, never a silent gap. The topics ([`feeds::topics`]) and who
//! follows them ([`feeds::members`]) are apart: with several loops the
//! topics are shared behind one lock ([`feeds::hub`]) and each loop keeps
//! its own followers.
//!
//! ## 3. [`engine`] — the loop's state, by job
//!
//! The outbox ([`engine::outbox`]) holds what each connection owes its peer:
//! one admission path, chunks that know their kind (a response head or a
//! control frame is never dropped), the slow-reader policy, and the fan-out
//! line that lets events published meanwhile share one `writev`. Streams
//! ([`engine::streams`]) are what a feed does on a connection: event
//! streams, polls, long-polls, subscriptions, replay that follows the
//! queue as it drains. Timers ([`engine::timers`]): one heap for every
//! deadline. Every limit has a name and a default in [`limits`]. The
//! trace ([`engine::trace`]) turns what happens into one record per head,
//! frame and event, for `--trace` and for the lab ([`engine::lab`]), which
//! streams a page the records of its own connections.
//!
//! ## 4. [`app`] and [`server`] — the API and the loop
//!
//! You implement [`app::App`] — HTTP routes, WebSocket upgrade / open /
//! message / close, timers — and act through [`app::Context`]: send,
//! broadcast, publish, subscribe, close, answer later, set timers. Other
//! threads use a [`server::Handle`]. [`server::Server`] is the loop: it reads
//! each socket into one loop-wide buffer (an idle connection owns no
//! buffer), at most one buffer-full per connection per turn, and stops
//! reading a connection whose queue is past its bound.
//! [`server::Server::run_threads`] runs one loop per core on the same port
//! (`SO_REUSEPORT`, [`server::reuseport`]), with one feed across them.
//!
//! **TLS** (feature `tls`, rustls on ring): `tls` is a byte transform
//! between a socket and its session (RFC 8446). A TLS listener beside the
//! plain one (`Server::bind_tls`, `Server::add_tls_listener`) gives its
//! connections a boxed `TlsStream`: ciphertext is read into the same
//! loop-wide buffer and decrypted in place, the outbox is encrypted on its
//! way out and only while the socket takes it, a close says `close_notify`,
//! and a TLS error answers with its alert. The sessions above never know.
//!
//! ## 5. `client` — the other end of the wire (feature `client`)
//!
//! Blocking WebSocket and SSE clients on the same sessions, in the client
//! role, with one reconnect policy (`client::backoff`). And WebSockets the
//! loop opens itself: `Context::connect` makes a link whose every attempt is
//! an ordinary connection of the loop (`engine::outbound`) — a non-blocking
//! connect and the opening handshake (RFC 6455 §4.1) as a connection kind of
//! their own, then a WebSocket in the client role that `App::open`,
//! `App::message` and `App::close` report like any other; failed attempts
//! reach `App::connect_failed`, and the link reconnects as the blocking
//! client would.
//!
//! ## One WebSocket message, from the socket to `App::message` and back
//!
//! Five files: `server/event_loop.rs` reads the socket into the loop's
//! buffer and hands it to the connection's session (`process_websocket`);
//! `ws/session.rs` (`Session::step`) runs `ws/frame.rs` (`MessageDecoder`:
//! header, unmasking, the message) and decides what the endpoint owes;
//! `app.rs` calls your `App::message`, whose `Context::send` goes back
//! through `ws/session.rs` (`Session::send`, framing in `ws/frame.rs`) into
//! `engine/outbox.rs`, which the loop writes with one `send` (one `writev`
//! when several buffers wait) at the end of the turn, or right after the
//! read once 32 KiB wait (`Core::flush`).
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
//! ## Never panics on input, never grows without bound
//!
//! Every parser is fuzzed (`fuzz/`, replayed by `cargo test`), every limit
//! has a test that crosses it, and a panic inside your callback closes only
//! the connection it concerned. The crate denies `unsafe` code except in
//! three small, documented places of the server: the signal mask
//! (`server::signal`), the last write of a closing socket sent with
//! `MSG_MORE`, so its bytes and the FIN leave in one packet, and the
//! listening sockets several loops share (`server::reuseport`).
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

pub mod prelude;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "tls")]
pub mod tls;

/// The README's code is compiled as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
