//! WebSocket, RFC 6455, as sans-IO pieces the server drives.
//!
//! Reading list: RFC 6455 §1.3 (opening handshake), §4.2 (server side of the
//! handshake), §5.2 (base framing), §5.3 (masking), §5.4 (fragmentation), §5.5
//! (control frames), §5.6 (data frames), §7 (closing), §7.4 (status codes),
//! §8.1 (UTF-8), §10.2 (Origin).
//!
//! The modules, bottom-up:
//! - [`close`] (§5.5.1, §7.4): close codes and the Close payload;
//! - [`utf8`] (§8.1): text checked as it arrives, failing in the fragment
//!   that breaks it;
//! - [`frame`]: the wire — frame headers (§5.2), masking (§5.3), frames →
//!   messages (§5.4-§5.6);
//! - [`session`] (§5.5, §7): one endpoint, either role — pongs, the closing
//!   handshake, failing the connection, heartbeats;
//! - [`handshake`] (§4.2) and [`handshake_client`] (§4.1): the opening
//!   handshake, each side;
//! - `deflate` (RFC 7692, feature `deflate`): permessage-deflate.
//!
//! Reading a frame off the wire goes:
//!
//! ```text
//! bytes ─→ frame::decode_header ─→ frame::apply_mask ─→ frame::MessageDecoder ─→ session::Session
//!          (§5.2: FIN, RSV, opcode,  (§5.3: XOR with      (§5.4: fragments,       (§5.5, §7: pong,
//!           MASK, length)             the client key)      §8.1: UTF-8, limits)    close, fail) ─→ Event
//! ```
pub mod close;
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod handshake_client;
pub mod session;
pub mod utf8;
