//! WebSocket, RFC 6455, as sans-IO pieces the server drives.
//!
//! Reading list: RFC 6455 §1.3 (opening handshake), §4.2 (server side of the
//! handshake), §5.2 (base framing), §5.3 (masking), §5.4 (fragmentation), §5.5
//! (control frames), §5.6 (data frames), §7 (closing), §7.4 (status codes),
//! §8.1 (UTF-8), §10.2 (Origin).
//!
//! The per-connection state lives in the server ([`crate::server`]): a
//! [`message::MessageDecoder`] for input and a [`close::CloseState`] for the
//! close handshake. Reading a frame off the wire goes:
//!
//! ```text
//! bytes ─→ frame::decode_header ─→ mask::apply_mask ─→ message::MessageDecoder
//!          (§5.2: FIN, RSV, opcode,  (§5.3: XOR with    (§5.4: fragments, §8.1:
//!           MASK, length)             the client key)    UTF-8, limits) ─→ Message
//! ```
pub mod close;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod handshake_client;
pub mod mask;
pub mod message;
pub mod session;
pub mod utf8;
