//! HTTP/1.1 messages as bytes: the request head, the request body and the
//! response head.
//!
//! Reading list:
//! - RFC 9112 (HTTP/1.1 message syntax): §2.2 message parsing, §3 request line,
//!   §3.2 Host, §5 field lines, §6 message body and its length (the
//!   request-smuggling rules), §7.1 chunked transfer coding, §9.3 persistence.
//! - RFC 9110 (HTTP semantics): §5.5 field values, §5.6 list syntax, §7.8
//!   Upgrade, §8.6 Content-Length, §15 status codes.
//! - RFC 6585 §5 (431 Request Header Fields Too Large).
//!
//! What this layer owns:
//! - finding where a request head ends, incrementally and in linear time
//!   ([`HeadScanner`]), and parsing it in place with `httparse`
//!   ([`parse_request`] gives a [`Request`] that borrows the bytes);
//! - deciding how the body is delimited ([`Request::body_framing`]) and
//!   decoding it ([`BodyDecoder`]), refusing every framing an intermediary could
//!   read differently;
//! - writing response heads ([`write_head`]) and whole responses ([`Response`]);
//! - knowing the wire answer to every violation ([`HttpError::status`],
//!   [`HttpError::write_response`]).
//!
//! The modules, bottom-up (each imports only the ones above it):
//! [`syntax`] (tokens, OWS, lists) → [`response`] (status lines, heads) →
//! [`error`] (every refusal and its status) → [`body`] (length and chunked
//! bodies) → [`request`] (heads).
//!
//! What it never does: touch a socket, read a clock, or pick limits. It is a set
//! of pure functions and state machines over byte slices; the caller hands in
//! the bytes it read and the limits it enforces, and writes out what comes back.

pub mod syntax;

pub mod uri;

pub mod response;

pub mod error;

pub mod body;

pub mod request;

pub mod session;

pub mod response_head;

pub use body::{BodyDecoder, BodyFraming, BodyProgress};
pub use error::HttpError;
pub use request::{parse_request, HeadScanner, Request};
pub use response::{reason_phrase, write_answer, write_head, Framing, Response};
pub use session::{HttpConfig, HttpSession, HttpStep};

/// The parser this layer is built on. Its [`httparse::Header`] type appears in
/// [`parse_request`]'s signature (the caller owns the header array, e.g.
/// `[httparse::EMPTY_HEADER; 64]`), so it is re-exported for callers that do not
/// depend on `httparse` themselves.
#[doc(no_inline)]
pub use httparse;
