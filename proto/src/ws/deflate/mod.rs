//! permessage-deflate (RFC 7692): negotiation in the opening handshake, and
//! the transform between a message and the payload of its frames. Behind the
//! `deflate` feature.
//!
//! Reading list: RFC 7692 §5 (negotiation), §6 (RSV1, compress then
//! fragment), §7.1 (the four parameters), §7.2 (the transform and its
//! examples), §8 (security); RFC 1951 (DEFLATE); RFC 6455 §9.1 (the
//! `Sec-WebSocket-Extensions` grammar). [`negotiate`] and [`codec`] each open
//! with their own list.
//!
//! ```text
//!  handshake   Sec-WebSocket-Extensions ─→ accept_offer ─→ AgreedParams ─→ response value
//!                                          (server)          │ sending(role) / receiving(role)
//!  messages    payload ─→ Deflater::compress_message ─→ frames, RSV1 on the first
//!              frames  ─→ Inflater::inflate_message(limit) ─→ payload   (1007 / 1009 on error)
//! ```
//!
//! # How a session uses it
//!
//! [`crate::ws::session::Session::with_deflate`] takes what was agreed. Each
//! direction then compresses with a [`Deflater`] for `agreed.sending(role)`
//! and inflates with an [`Inflater`] for `agreed.receiving(role)`: the
//! caller's [`Shared`] ones where the direction keeps no context, the
//! session's own otherwise ([`state`] says where each lives and what it
//! costs). To send, [`Session::send`](crate::ws::session::Session::send)
//! compresses a message of at least [`Shared::threshold`] bytes whole and
//! frames it with RSV1 set (§6.1). To receive,
//! [`MessageDecoder`](crate::ws::frame::MessageDecoder) gathers the payloads of
//! a message whose first frame had RSV1 set, within a bound a little above the
//! message limit ([`compressed_limit`](crate::ws::frame::compressed_limit)),
//! and inflates them at once, stopping as soon as the inflated message passes
//! the limit; an [`InflateError`] gives the close code. Control frames are
//! never compressed (§6).
//!
//! Whole messages, not frames, because that is what keeps memory bounded *and*
//! lets state be shared: an inflater that took frames one by one would hold a
//! half-inflated message between two reads, so it could not serve another
//! connection meanwhile. The compressed message is bounded by the session's
//! limit, the inflated one by the limit passed here, and nothing else grows.
//!
//! With [`ServerMode::Shared`] (the default) no message refers to an earlier
//! one in either direction, so a loop keeps one `Deflater` and one `Inflater`
//! for all its connections, and a message published to many is compressed
//! once. [`ServerMode::ContextTakeover`] gives each connection its own pair.
//!
//! # Why miniz_oxide, and how it keeps within a small window
//!
//! Measured on tiny programs (read stdin, compress it with a sync flush,
//! inflate it back, write both) built like pushloop's release binary
//! (`lto = true`, `codegen-units = 1`, `strip = true`), rustc 1.95, x86-64;
//! `bench/deflate-size/run.sh` rebuilds them and prints this table:
//!
//! | DEFLATE from | stripped binary | cost |
//! |---|---|---|
//! | nothing (std only) | 314,384 B | — |
//! | miniz_oxide 0.9.1 | 359,784 B | +45 KB |
//! | zlib-rs 0.6.8 (`Deflate`/`Inflate`) | 422,432 B | +108 KB |
//! | this module (negotiation + codec, on miniz_oxide) | 367,952 B | **+54 KB** |
//!
//! So the demo server (~586 KB) should stay near 640 KB once it uses
//! compression, under its 700 KB budget; with zlib-rs it would be ~700 KB.
//!
//! zlib-rs honours every window from 9 to 15 exactly, but costs more than
//! twice as much, and is `no_std` only with the C allocator (its Rust
//! allocator feature turns std on), which this crate cannot ask of its users.
//! miniz_oxide is `no_std` + alloc and `#![forbid(unsafe_code)]`.
//!
//! Its catch: its match finder always searches its full 32 KiB, and its own
//! small-window settings do not help — for windows 12-14 it switches to level 1,
//! whose fast path still finds matches up to 32 KiB back, and for windows below
//! 12 it asks for RLE at level 1, which the same fast path ignores. So the
//! [`Deflater`] picks its settings itself: with window 15, level 2 and every
//! match; with a smaller window, level 2 and the RLE strategy, which only
//! encodes runs of the previous byte (distance 1): inside any window. The price
//! is compression (Huffman coding plus runs, not LZ77) for the rare peer that
//! asks a server for a small window — browsers never do.
//!
//! The tests check every window 8-15, with and without context takeover, two
//! ways: zlib (through python3, when present) inflates with `wbits = -bits`,
//! fed one output byte per call — zlib checks a distance against its window
//! *plus what the current call wrote*, so inflating a message in one call
//! would accept any distance inside it; and miniz_oxide's own inflater runs
//! over a ring of exactly `2^bits` bytes, which fails on a longer distance.
//! Both catch miniz_oxide's own window-12 settings reaching 32 KiB back.
//!
//! # Memory
//!
//! Measured by `proto/tests/deflate_memory.rs` (an allocator that counts live
//! heap bytes, plus the struct itself; `cargo test -p pushloop-proto
//! --features deflate --test deflate_memory -- --nocapture`), x86-64,
//! miniz_oxide 0.9.1:
//!
//! | state | heap | when |
//! |---|---|---|
//! | [`Deflater`] | 319,334 B (312 KiB) | one per loop (shared) or per connection (takeover); any window |
//! | [`Inflater`], no context takeover | 10,544 B | one per loop (shared) or per connection |
//! | [`Inflater`], context takeover, window 15 | 43,312 B | per connection |
//! | [`Inflater`], context takeover, window 9 | 11,056 B | per connection |
//!
//! So the shared mode costs ~330 KB per loop, and context takeover ~363 KB
//! per connection (a compressor and a window-15 inflater each).
//!
//! The compressor's size is miniz_oxide's, whatever the window: its 32 KiB
//! dictionary with two 64 KiB hash chains, a 64 KiB buffer of LZ77 codes and
//! an 83 KiB output buffer; nothing more is allocated while compressing. An
//! inflater without context keeps no window (only its ~10 KB of Huffman
//! tables): it inflates straight into the caller's buffer.
//!
//! Time, for the record (`bench/micro.sh --filter deflate`: release build,
//! one core of the 2-core CI machine, JSON-like messages that differ): a
//! 124-byte event compresses in ~7.5 µs without context takeover, 1 KiB in
//! ~12 µs, and 1 KiB in ~7 µs with context takeover — most of the first two
//! is the full flush clearing 128 KiB of hash chains so the next message
//! cannot refer back, which a shared compressor pays once per published
//! message, not per recipient. 16 KiB: ~70 µs with window 15; with a smaller
//! window, RLE only, ~240 µs. Inflating 1 KiB: ~5 µs.

pub mod codec;
pub mod negotiate;
pub mod state;
#[cfg(test)]
pub(crate) mod vectors;

pub use codec::{Deflater, Direction, InflateError, Inflater, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
pub use negotiate::{
    accept_offer, accept_response, write_offer, AgreedParams, ClientConfig, NegotiationError,
    ServerConfig, ServerMode,
};
pub use state::{Counters, SendMode, Shared, DEFAULT_THRESHOLD};
