//! Clients: pushloop's protocols from the other end of the wire, for
//! programs, devices and tests. Behind the `client` feature.
//!
//! The protocol rules live in the sans-IO layers, as for the server:
//! [`crate::http::response_head`] reads response heads,
//! [`crate::ws::handshake_client`] writes and checks the WebSocket opening
//! handshake, [`crate::sse::StreamParser`] reads an event stream. This module
//! adds what only a client needs:
//!
//! - [`url`] — `ws://`, `wss://`, `http://`, `https://` URLs (RFC 6455 §3,
//!   RFC 3986);
//! - [`backoff`] — one reconnect policy for every client: exponential backoff
//!   with full jitter, give-up rules, a reset after a stable connection;
//! - [`random`] — the randomness it and the WebSocket client need, injected;
//! - [`transport`] — blocking byte streams behind a [`transport::Connect`],
//!   plain TCP with timeouts; `tls` (feature `tls`) is rustls' client side
//!   behind the same trait, for `wss://` and `https://`;
//! - [`sse`] — a blocking SSE client: `for item in client.events() { … }`,
//!   reconnecting with `Last-Event-ID` the way a browser's `EventSource` does;
//! - [`ws`] — a blocking WebSocket client on the same session as the server
//!   ([`crate::ws::session`]): one connection ([`ws::WebSocket`]), or one that
//!   reconnects and resumes a pushloop feed with `?after=ID`
//!   ([`ws::WsClient`]).

pub mod url;

pub mod random;

pub mod backoff;

pub mod transport;

#[cfg(feature = "tls")]
pub mod tls;

pub mod sse;

pub mod ws;
