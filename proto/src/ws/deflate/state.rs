//! Where compression state lives, and a compressed message as a frame.
//!
//! Reading list: RFC 7692 §6 (RSV1, the "Per-Message Compressed" bit, on the
//! first frame of a compressed message and on nothing else), §6.1 (compress the
//! whole message, then frame it), §7.1.1 (context takeover: whether one
//! direction's window lasts from one message to the next), §7.2.1 (the
//! transform; a message may also go uncompressed, RSV1 clear).
//!
//! A direction without context takeover refers to nothing before the message,
//! so its compressor and its inflater carry nothing from one message to the
//! next and can serve every connection of a loop: that is [`Shared`], one per
//! caller, lent to every session call through [`crate::ws::session::Env`]. A
//! direction with context takeover needs its own, which a session makes on its
//! first compressed message and keeps, boxed, until it closes.
//!
//! | state | where | heap (x86-64, miniz_oxide 0.9.1) |
//! |---|---|---|
//! | [`Shared`] | one per loop | a [`Deflater`] per window class once used (319,334 B each), an [`Inflater`] once used (10,544 B) |
//! | a session, any mode, nothing compressed yet | per connection | nothing: a 16-byte tag in the session and in its decoder |
//! | a session with context takeover, after its first compressed message | per connection | a [`Deflater`] (sending) and an [`Inflater`] with its window (receiving, 11-43 KB) |
//!
//! So a connection in the shared mode costs what an uncompressed one costs,
//! however much it sends; `pushloop`'s README has the measured figures.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::codec::{Deflater, Direction, Inflater, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::ws::frame::{apply_mask, encode_header, OpCode, MAX_HEADER_LEN, RSV1};

/// Messages shorter than this go uncompressed, by default: 1 KiB, Node `ws`'s
/// `threshold`. Below it a DEFLATE block's header and Huffman tables eat most
/// of the gain, and compressing still costs ~8 µs (the full flush that forgets
/// the last message clears 128 KiB of hash chains; `ws::deflate`'s module doc).
pub const DEFAULT_THRESHOLD: usize = 1024;

/// What went through the compressors and inflaters of one [`Shared`] (and of
/// the sessions lent it), for a caller's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages sent compressed; a message fanned out counts once per
    /// connection it is queued for.
    pub messages_sent: u64,
    /// Their payload bytes before compression.
    pub sent_bytes_before: u64,
    /// Their payload bytes as sent (RFC 7692 §7.2.1, tail removed).
    pub sent_bytes_after: u64,
    /// Times a compressor ran: a message fanned out to many connections that
    /// share one compressor runs it once.
    pub compressions: u64,
    /// Compressed messages received and inflated.
    pub messages_received: u64,
    /// Their payload bytes as received.
    pub received_bytes_before: u64,
    /// Their payload bytes once inflated.
    pub received_bytes_after: u64,
}

impl Counters {
    /// Counts one compressed message queued for one connection.
    pub fn count_sent(&mut self, before: usize, after: usize) {
        self.messages_sent += 1;
        self.sent_bytes_before += before as u64;
        self.sent_bytes_after += after as u64;
    }

    fn count_received(&mut self, before: usize, after: usize) {
        self.messages_received += 1;
        self.received_bytes_before += before as u64;
        self.received_bytes_after += after as u64;
    }

    /// Adds another caller's counters (several loops' totals).
    pub fn add(&mut self, other: &Counters) {
        self.messages_sent += other.messages_sent;
        self.sent_bytes_before += other.sent_bytes_before;
        self.sent_bytes_after += other.sent_bytes_after;
        self.compressions += other.compressions;
        self.messages_received += other.messages_received;
        self.received_bytes_before += other.received_bytes_before;
        self.received_bytes_after += other.received_bytes_after;
    }
}

/// The compression state every session of one caller (a loop) shares: the
/// compressors and the inflater of the directions without context takeover,
/// each made on first use, and the threshold below which nothing is
/// compressed.
///
/// Two compressors at most: one for peers whose agreed window is the full
/// 32 KiB, one for every smaller window. The second only encodes runs, whose
/// references are 1 byte long, so what it makes is valid for any window
/// ([`Deflater::new`]).
#[derive(Debug)]
pub struct Shared {
    threshold: usize,
    /// `[full window, any smaller window]`; boxed, as a `Deflater` is 64 KiB
    /// by value (its buffer of LZ77 codes).
    deflaters: [Option<Box<Deflater>>; 2],
    inflater: Option<Inflater>,
    /// What went through.
    pub counters: Counters,
}

impl Shared {
    /// Nothing made yet; messages of at least `threshold` bytes are compressed
    /// (see [`DEFAULT_THRESHOLD`]).
    pub fn new(threshold: usize) -> Self {
        Self {
            threshold,
            deflaters: [None, None],
            inflater: None,
            counters: Counters::default(),
        }
    }

    /// Messages shorter than this go uncompressed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Compresses `payload` once into a whole frame with RSV1 (RFC 7692 §6.1),
    /// valid for every session whose [`SendMode`] is
    /// `Shared { full_window }`: the bytes to queue for all of them. `None`
    /// when the payload is under the threshold or does not shrink: send the
    /// uncompressed frame then (§7.2.1 leaves the choice to the sender). Counts
    /// the compression, not the deliveries ([`Counters::count_sent`]).
    pub fn compress_frame(
        &mut self,
        full_window: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        if payload.len() < self.threshold {
            return None;
        }
        self.counters.compressions += 1;
        let mut frame = Vec::new();
        let deflater = self.deflater(full_window);
        write_compressed(deflater, opcode, None, payload, &mut frame, false)?;
        Some(frame)
    }

    /// The compressor for peers with the full window or a smaller one, made
    /// on first use.
    pub(crate) fn deflater(&mut self, full_window: bool) -> &mut Deflater {
        let (slot, window_bits) = match full_window {
            true => (&mut self.deflaters[0], MAX_WINDOW_BITS),
            // Any window below 15 gives the runs-only compressor.
            false => (&mut self.deflaters[1], MIN_WINDOW_BITS),
        };
        slot.get_or_insert_with(|| {
            Deflater::boxed(Direction {
                window_bits,
                context_takeover: false,
            })
        })
    }
}

/// A direction without context takeover: what one shared inflater serves (it
/// keeps no window, so every peer's window fits it).
const NO_CONTEXT_FULL_WINDOW: Direction = Direction {
    window_bits: MAX_WINDOW_BITS,
    context_takeover: false,
};

/// How a session compresses what it sends, as a caller fanning a message out
/// needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendMode {
    /// permessage-deflate was not negotiated: every message goes as it is.
    Off,
    /// No context takeover: the caller's [`Shared`] compressor for this window
    /// class; a frame from [`Shared::compress_frame`] with the same
    /// `full_window` is valid for it.
    Shared {
        /// The agreed window is the full 32 KiB (`server_max_window_bits` 15).
        full_window: bool,
    },
    /// Context takeover: the session's own compressor, whose window every
    /// message it compresses extends, so only [`crate::ws::session::Session::send`]
    /// may compress for it, in the order the messages go out.
    Own,
}

/// The sending half of a negotiated session (RFC 7692 §7.1.1).
#[derive(Debug)]
pub(crate) enum Sending {
    /// No context takeover: the lent [`Shared`] compressor of this class.
    Shared { full_window: bool },
    /// Context takeover: this session's own compressor, made on first use.
    Own {
        direction: Direction,
        deflater: Option<Box<Deflater>>,
    },
}

impl Sending {
    pub(crate) fn new(direction: Direction) -> Self {
        if direction.context_takeover {
            Self::Own {
                direction,
                deflater: None,
            }
        } else {
            Self::Shared {
                full_window: direction.window_bits >= MAX_WINDOW_BITS,
            }
        }
    }

    pub(crate) fn mode(&self) -> SendMode {
        match self {
            Self::Shared { full_window } => SendMode::Shared {
                full_window: *full_window,
            },
            Self::Own { .. } => SendMode::Own,
        }
    }

    /// Appends `payload` as one compressed frame if it is at least the
    /// threshold long (and, without context takeover, if it shrinks); true if
    /// it did. False: nothing was written; send it uncompressed.
    pub(crate) fn send(
        &mut self,
        shared: &mut Shared,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        if payload.len() < shared.threshold {
            return false;
        }
        shared.counters.compressions += 1;
        let written = match self {
            Self::Shared { full_window } => {
                let deflater = shared.deflater(*full_window);
                write_compressed(deflater, opcode, mask, payload, out, false)
            }
            Self::Own {
                direction,
                deflater,
            } => {
                let deflater = deflater.get_or_insert_with(|| Deflater::boxed(*direction));
                // §7.1.1: the message is in our window now, so the peer must
                // have it in its own: it goes compressed whatever its size.
                write_compressed(deflater, opcode, mask, payload, out, true)
            }
        };
        match written {
            Some(compressed) => {
                shared.counters.count_sent(payload.len(), compressed);
                true
            }
            None => false,
        }
    }
}

/// The receiving half of a negotiated session (RFC 7692 §7.1.1).
#[derive(Debug)]
pub(crate) enum Receiving {
    /// No context takeover: the lent [`Shared`] inflater.
    Shared,
    /// Context takeover, or a decoder used alone: its own inflater, made on
    /// the first compressed message.
    Own {
        direction: Direction,
        inflater: Option<Box<Inflater>>,
    },
}

impl Receiving {
    /// Appends the inflated form of `compressed` to `out`, at most `limit`
    /// bytes (RFC 7692 §7.2.2). A shared-state decoder called without a
    /// [`Shared`] (a caller's slip) makes a temporary inflater: slower, not
    /// wrong.
    pub(crate) fn inflate(
        &mut self,
        shared: Option<&mut Shared>,
        compressed: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), super::InflateError> {
        let start = out.len();
        let mut temporary;
        let (inflater, counters) = match (self, shared) {
            (
                Self::Own {
                    direction,
                    inflater,
                },
                shared,
            ) => (
                &mut **inflater.get_or_insert_with(|| Box::new(Inflater::new(*direction))),
                shared.map(|shared| &mut shared.counters),
            ),
            (Self::Shared, Some(shared)) => {
                let Shared {
                    inflater, counters, ..
                } = shared;
                let inflater =
                    inflater.get_or_insert_with(|| Inflater::new(NO_CONTEXT_FULL_WINDOW));
                (inflater, Some(counters))
            }
            (Self::Shared, None) => {
                temporary = Inflater::new(NO_CONTEXT_FULL_WINDOW);
                (&mut temporary, None)
            }
        };
        inflater.inflate_message(compressed, limit, out)?;
        if let Some(counters) = counters {
            counters.count_received(compressed.len(), out.len() - start);
        }
        Ok(())
    }
}

/// Appends `payload` compressed by `deflater` as one final frame with RSV1
/// set (RFC 7692 §6.1), masked with `mask` when given (RFC 6455 §5.3), and
/// returns the compressed payload's length. Unless `always`, a payload that
/// does not shrink is not written (`None`), so the caller sends it as it is.
pub(crate) fn write_compressed(
    deflater: &mut Deflater,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
    out: &mut Vec<u8>,
    always: bool,
) -> Option<usize> {
    let start = out.len();
    // Room for the longest header, then the compressed payload after it; the
    // header's real length is known once the payload's is.
    out.resize(start + MAX_HEADER_LEN, 0);
    deflater.compress_message(payload, out);
    let compressed = out.len() - start - MAX_HEADER_LEN;
    if !always && compressed >= payload.len() {
        out.truncate(start);
        return None;
    }
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, true, opcode, mask, compressed);
    // RFC 7692 §6.1: "Set the "Per-Message Compressed" bit of the first frame".
    header[0] |= RSV1;
    out.copy_within(start + MAX_HEADER_LEN.., start + header_len);
    out.truncate(start + header_len + compressed);
    out[start..start + header_len].copy_from_slice(&header[..header_len]);
    if let Some(key) = mask {
        apply_mask(&mut out[start + header_len..], key, 0);
    }
    Some(compressed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::vectors::HELLO;
    use crate::ws::frame::{decode_header, Role};

    /// A JSON-like text that compresses well.
    fn json(len: usize) -> Vec<u8> {
        let mut text = Vec::new();
        let mut n = 0;
        while text.len() < len {
            text.extend_from_slice(
                alloc::format!("{{\"id\":{n},\"topic\":\"news\",\"data\":\"hello\"}},").as_bytes(),
            );
            n += 1;
        }
        text.truncate(len);
        text
    }

    /// (header, payload) of one frame.
    fn split(frame: &[u8]) -> (crate::ws::frame::FrameHeader, &[u8]) {
        let (header, header_len) = decode_header(frame, Role::Client, 1 << 20, true)
            .unwrap()
            .unwrap();
        assert_eq!(header_len as u64 + header.payload_len, frame.len() as u64);
        (header, &frame[header_len..])
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_as_a_frame_with_rsv1() {
        let mut shared = Shared::new(0);
        let frame = shared
            .compress_frame(true, OpCode::Text, b"Hello Hello Hello Hello")
            .unwrap();
        let (header, payload) = split(&frame);
        assert!(header.rsv1 && header.fin && header.opcode == OpCode::Text);
        let mut out = Vec::new();
        Inflater::new(NO_CONTEXT_FULL_WINDOW)
            .inflate_message(payload, 64, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello Hello Hello Hello");
    }

    #[test]
    fn the_threshold_is_the_first_length_compressed() {
        let mut shared = Shared::new(DEFAULT_THRESHOLD);
        let below = json(DEFAULT_THRESHOLD - 1);
        let at = json(DEFAULT_THRESHOLD);
        assert_eq!(shared.compress_frame(true, OpCode::Text, &below), None);
        let frame = shared.compress_frame(true, OpCode::Text, &at).unwrap();
        assert!(frame.len() < at.len() / 2, "{} bytes", frame.len());
        assert_eq!(shared.counters.compressions, 1);
    }

    #[test]
    fn a_payload_that_does_not_shrink_is_not_compressed_without_context() {
        // Bytes from a xorshift: nothing to find.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut shared = Shared::new(0);
        assert_eq!(shared.compress_frame(true, OpCode::Binary, &noise), None);
        let mut out = b"kept".to_vec();
        let mut sending = Sending::new(Direction {
            window_bits: 15,
            context_takeover: false,
        });
        assert!(!sending.send(&mut shared, OpCode::Binary, None, &noise, &mut out));
        assert_eq!(out, b"kept", "nothing written");
        // With context takeover the message is in our window: it must go.
        let mut own = Sending::new(Direction {
            window_bits: 15,
            context_takeover: true,
        });
        assert!(own.send(&mut shared, OpCode::Binary, None, &noise, &mut out));
        assert!(split(&out[4..]).0.rsv1);
    }

    #[test]
    fn a_masked_compressed_frame_unmasks_to_the_deflate_payload() {
        let mut shared = Shared::new(0);
        let mut sending = Sending::new(Direction {
            window_bits: 15,
            context_takeover: false,
        });
        let message = json(3000);
        let mut out = Vec::new();
        let key = [0x37, 0xfa, 0x21, 0x3d];
        assert!(sending.send(&mut shared, OpCode::Text, Some(key), &message, &mut out));
        let (header, header_len) = decode_header(&out, Role::Server, 1 << 20, true)
            .unwrap()
            .unwrap();
        assert_eq!(header.mask, Some(key));
        let mut payload = out[header_len..].to_vec();
        apply_mask(&mut payload, key, 0);
        let mut inflated = Vec::new();
        Inflater::new(NO_CONTEXT_FULL_WINDOW)
            .inflate_message(&payload, 1 << 20, &mut inflated)
            .unwrap();
        assert_eq!(inflated, message);
        assert_eq!(shared.counters.messages_sent, 1);
        assert_eq!(shared.counters.sent_bytes_before, 3000);
        assert_eq!(shared.counters.sent_bytes_after, payload.len() as u64);
    }

    #[test]
    fn every_header_length_is_written_in_place() {
        // 7-bit, 16-bit and 64-bit lengths of the compressed payload.
        let mut state = 1u32;
        for len in [100usize, 2_000, 200_000] {
            let mut shared = Shared::new(0);
            let message: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    // Two letters compress ~8:1; all 256 values do not at all.
                    match len {
                        200_000 => (state >> 16) as u8,
                        _ => b"ab"[(state >> 16) as usize % 2],
                    }
                })
                .collect();
            let mut out = b"before".to_vec();
            let mut own = Sending::new(Direction {
                window_bits: 15,
                context_takeover: true,
            });
            assert!(own.send(&mut shared, OpCode::Binary, None, &message, &mut out));
            let (header, payload) = split(&out[6..]);
            assert!(header.rsv1);
            let mut inflater = Inflater::new(Direction {
                window_bits: 15,
                context_takeover: true,
            });
            let mut inflated = Vec::new();
            inflater
                .inflate_message(payload, len, &mut inflated)
                .unwrap();
            assert_eq!(inflated, message, "{len}");
        }
    }

    #[test]
    fn a_smaller_window_gets_the_runs_only_compressor() {
        let mut shared = Shared::new(0);
        let message = json(8000);
        let frame = shared
            .compress_frame(false, OpCode::Text, &message)
            .unwrap();
        // Every reference is 1 byte back: a 256-byte window inflates it.
        let mut inflater = Inflater::new(Direction {
            window_bits: 8,
            context_takeover: true,
        });
        let mut out = Vec::new();
        inflater
            .inflate_message(split(&frame).1, 1 << 20, &mut out)
            .unwrap();
        assert_eq!(out, message);
        assert!(
            shared.deflaters[0].is_none(),
            "the full-window one is never made"
        );
    }

    #[test]
    fn nothing_is_made_before_it_is_needed() {
        let mut shared = Shared::new(DEFAULT_THRESHOLD);
        assert!(shared.deflaters.iter().all(Option::is_none) && shared.inflater.is_none());
        let sending = Sending::new(Direction {
            window_bits: 15,
            context_takeover: true,
        });
        assert!(matches!(sending, Sending::Own { deflater: None, .. }));
        assert_eq!(sending.mode(), SendMode::Own);
        let mut out = Vec::new();
        let mut small = Sending::new(Direction {
            window_bits: 15,
            context_takeover: false,
        });
        assert!(!small.send(&mut shared, OpCode::Text, None, b"short", &mut out));
        assert!(
            shared.deflaters.iter().all(Option::is_none),
            "under the threshold"
        );
    }

    #[test]
    fn a_shared_receiver_without_a_lent_inflater_still_inflates() {
        let mut receiving = Receiving::Shared;
        let mut out = Vec::new();
        // RFC 7692 §7.2.3.1.
        receiving.inflate(None, &HELLO, 5, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        let mut shared = Shared::new(0);
        receiving
            .inflate(Some(&mut shared), &HELLO, 5, &mut out)
            .unwrap();
        assert_eq!(shared.counters.messages_received, 1);
        assert_eq!(shared.counters.received_bytes_after, 5);
    }
}
