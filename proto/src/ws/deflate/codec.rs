//! The message transform of permessage-deflate: one message in, one message out.
//!
//! Reading list:
//! - RFC 7692 §6 (the RSV1 bit marks a compressed message; a message is
//!   compressed whole, then fragmented), §7.2.1 (compressing: flush to a byte
//!   boundary, drop the trailing `00 00 ff ff`), §7.2.2 (decompressing: put the
//!   four bytes back), §7.2.3.1-§7.2.3.6 (the worked examples these tests
//!   replay first), §7.1.1 (context takeover), §7.1.2 (the LZ77 window).
//! - RFC 1951 §3.2.3 (block header: BFINAL, BTYPE), §3.2.4 (a stored block is
//!   `LEN`, `NLEN`: the empty one is `00 00 ff ff`), §3.2.5 (distances up to
//!   32768).
//! - RFC 6455 §7.4.1 (close codes 1007 and 1009), §10.4 (limits on what a
//!   peer may make us hold).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressionStrategy, CompressorOxide,
    TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
};
use miniz_oxide::inflate::core::{decompress, decompress_with_limit, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::ws::close::CloseCode;

/// What a sync flush ends with and a compressed message leaves out: the
/// `LEN`/`NLEN` of an empty stored block (RFC 7692 §7.2.1, RFC 1951 §3.2.4).
pub const EMPTY_STORED_BLOCK_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest LZ77 window a window-bits parameter may name, log2: 256
/// bytes (RFC 7692 §7.1.2.1).
pub const MIN_WINDOW_BITS: u8 = 8;

/// The largest LZ77 window, log2: 32768 bytes (RFC 1951 §3.2.5), also what an
/// absent window-bits parameter means (RFC 7692 §7.1.2.1-§7.1.2.2).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window an [`Inflater`] keeps, log2. zlib before 1.2.9 turned a
/// requested window of 8 into 9 without saying so, and such peers are still
/// about; 512 bytes instead of 256 costs nothing worth saving.
const SMALLEST_KEPT_WINDOW_BITS: u8 = 9;

/// miniz_oxide's level (0-10). Levels 2 and up go through its "normal"
/// compressor, the only one that honours the RLE strategy a small window needs
/// (see [`Deflater::new`]); 2 is the fastest of them. zlib's default, 6, made
/// output 3% smaller on 1 KiB JSON messages and 20% on 128 KiB ones, for 4× the
/// time with context takeover and 3× on large text (Autobahn's 12.3.10, 12.3.18
/// and 13.3.10: 16.6 s of server CPU at 6, 5.3 s at 2), and a push server
/// spends its CPU per message.
const COMPRESSION_LEVEL: i32 = 2;

/// How one direction of a connection compresses: the LZ77 window and whether
/// it lasts from one message to the next (RFC 7692 §7.1.1, §7.1.2). Negotiation
/// gives one per direction ([`super::AgreedParams::sending`],
/// [`super::AgreedParams::receiving`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direction {
    /// log2 of the largest back-reference distance, 8..=15 (§7.1.2).
    pub window_bits: u8,
    /// Does a message's compression use the messages before it (§7.1.1)?
    pub context_takeover: bool,
}

impl Direction {
    fn bounded_window_bits(self) -> u8 {
        bounded_window_bits(self.window_bits)
    }
}

/// Window bits within 8..=15, the range permessage-deflate names; others are
/// taken as the nearer end.
pub(super) fn bounded_window_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// Compresses messages for one direction (RFC 7692 §7.2.1).
///
/// In a direction without context takeover a message never refers to one
/// before it, so one `Deflater` can compress for many connections, and a
/// message it compressed can be sent to all of them: that is pushloop's
/// shared mode. A message compressed for window `w` is valid for every peer
/// whose agreed window is `w` or more; one made with a window below 15 (which
/// only refers one byte back, see [`Deflater::new`]) is valid for every peer.
pub struct Deflater {
    compressor: CompressorOxide,
    direction: Direction,
}

impl Deflater {
    /// A compressor for `direction`.
    ///
    /// With the full window (15) it finds matches up to 32768 bytes back. With
    /// a smaller window it only looks for runs of the previous byte (the RLE
    /// strategy): every back-reference is then 1 byte back, inside any window,
    /// because miniz_oxide's match finder knows no window but its own 32 KiB.
    /// Window bits outside 8..=15 are taken as the nearest of the two.
    pub fn new(direction: Direction) -> Self {
        let strategy = if direction.bounded_window_bits() < MAX_WINDOW_BITS {
            // RFC 7692 §7.1.2.1: "MUST NOT use an LZ77 sliding window ... greater
            // than" the agreed size. A run only ever refers to the byte before it.
            CompressionStrategy::RLE
        } else {
            CompressionStrategy::Default
        };
        // A negative window asks for raw DEFLATE: no zlib header, no Adler-32 (§7.2.1).
        let flags = create_comp_flags_from_zip_params(
            COMPRESSION_LEVEL,
            -i32::from(MAX_WINDOW_BITS),
            strategy as i32,
        );
        Self {
            compressor: CompressorOxide::new(flags),
            direction,
        }
    }

    /// [`Deflater::new`] on the heap, where every holder of one keeps it.
    ///
    /// Out of line on purpose: the compressor is 64 KiB (miniz_oxide keeps its
    /// LZ code buffer inline) and is built on the stack before it is boxed.
    /// Inlined into a caller (`Session::send` was one), it gave that caller a
    /// 64 KiB stack frame, probed page by page on every call whether a
    /// compressor was made or not: ~65 instructions and 16 stack pages
    /// touched per message sent, ~10 % of the server's CPU on a 20 B echo.
    #[inline(never)]
    pub fn boxed(direction: Direction) -> Box<Self> {
        Box::new(Self::new(direction))
    }

    /// The direction this compressor was made for.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Appends `payload` compressed to `out`: the payload of the first frame of
    /// a message with RSV1 set (§6.1). Never fails, never panics; an empty
    /// payload compresses to the single byte `00` (§7.2.3.6).
    ///
    /// ```
    /// use pushloop_proto::ws::deflate::{Deflater, Direction};
    /// let mut deflater = Deflater::new(Direction { window_bits: 15, context_takeover: false });
    /// let mut out = Vec::new();
    /// deflater.compress_message(b"Hello", &mut out);
    /// assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]); // RFC 7692 §7.2.3.1
    /// ```
    pub fn compress_message(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        // §7.2.1: end on a byte boundary with an empty stored block. Without
        // context takeover (§7.1.1) the full flush also forgets every earlier
        // byte, so the next message starts from an empty window.
        let flush = if self.direction.context_takeover {
            TDEFLFlush::Sync
        } else {
            TDEFLFlush::Full
        };
        let (status, consumed) =
            compress_to_output(&mut self.compressor, payload, flush, |bytes| {
                out.extend_from_slice(bytes);
                true
            });
        // Only a refused output callback or use after `Finish` fails; we do neither.
        debug_assert_eq!(status, TDEFLStatus::Okay);
        debug_assert_eq!(consumed, payload.len());
        // §7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail end."
        debug_assert!(out[start..].ends_with(&EMPTY_STORED_BLOCK_TAIL));
        if out[start..].ends_with(&EMPTY_STORED_BLOCK_TAIL) {
            out.truncate(out.len() - EMPTY_STORED_BLOCK_TAIL.len());
        }
    }
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// Inflates messages for one direction (RFC 7692 §7.2.2), never past a limit.
///
/// Takes a message whole: the session gathers the frames of a compressed
/// message (bounded by its own message limit) and hands them over at once.
/// That is what lets one `Inflater` serve every connection of a loop when the
/// peers keep no context: between two calls it holds no message of anyone's.
/// The output is bounded by the `max_message_bytes` of each call.
pub struct Inflater {
    decompressor: Box<DecompressorOxide>,
    /// The LZ77 window carried from one message to the next (§7.1.1), a ring
    /// of `2^window_bits` bytes, when the peer keeps context.
    window: Option<Window>,
    direction: Direction,
}

/// The last `bytes.len()` inflated bytes, as a ring.
struct Window {
    bytes: Box<[u8]>,
    /// Where the next inflated byte goes.
    position: usize,
}

/// Where an inflated message goes.
enum Target<'a> {
    /// Straight into the caller's buffer: no window, and a back-reference
    /// before the message's first byte is an error.
    Message,
    /// Into the ring, then copied out: references may reach earlier messages.
    Window(&'a mut Window),
}

impl Inflater {
    /// An inflater for `direction`. With context takeover it keeps a window of
    /// `2^window_bits` bytes (at least 512); without, it keeps none and
    /// inflates straight into the caller's buffer.
    pub fn new(direction: Direction) -> Self {
        let window = direction.context_takeover.then(|| Window {
            bytes: vec![
                0;
                1 << direction
                    .bounded_window_bits()
                    .max(SMALLEST_KEPT_WINDOW_BITS)
            ]
            .into_boxed_slice(),
            position: 0,
        });
        Self {
            decompressor: Box::default(),
            window,
            direction,
        }
    }

    /// The direction this inflater was made for.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Appends the inflated form of `compressed`, a whole message's payload
    /// (every frame's, concatenated, RSV1 set on the first), to `out`.
    ///
    /// Stops as soon as the message passes `max_message_bytes` and returns
    /// [`InflateError::TooBig`]: `out` never grows by more than
    /// `max_message_bytes + 1`. On an error `out` is as it was; without context
    /// takeover the inflater is ready for the next message (of any connection),
    /// with it the connection is failing anyway. Never panics.
    ///
    /// ```
    /// use pushloop_proto::ws::deflate::{Direction, Inflater};
    /// let mut inflater = Inflater::new(Direction { window_bits: 15, context_takeover: false });
    /// let mut out = Vec::new();
    /// inflater.inflate_message(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 1024, &mut out)?;
    /// assert_eq!(out, b"Hello"); // RFC 7692 §7.2.3.1
    /// # Ok::<(), pushloop_proto::ws::deflate::InflateError>(())
    /// ```
    pub fn inflate_message(
        &mut self,
        compressed: &[u8],
        max_message_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let start = out.len();
        let target = match &mut self.window {
            Some(window) => Target::Window(window),
            // §7.1.1: the peer starts every message from an empty window.
            None => {
                self.decompressor.init();
                Target::Message
            }
        };
        let result = inflate(
            &mut self.decompressor,
            target,
            compressed,
            max_message_bytes,
            out,
        );
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// The inflate loop: feed the message then the tail, stop past the limit.
fn inflate(
    decompressor: &mut DecompressorOxide,
    mut target: Target<'_>,
    compressed: &[u8],
    max_message_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    let start = out.len();
    // Writing one byte past the limit is how we know the message passes it.
    let most = max_message_bytes.saturating_add(1);
    let mut produced: usize = 0;
    // The message's own bytes, then the four §7.2.2 puts back.
    let mut input = compressed;
    let mut tail_fed = false;
    // The whole message is here, but not the whole DEFLATE stream: it goes on in
    // the next message, so running out of input is the normal way to stop.
    let flags = TINFL_FLAG_HAS_MORE_INPUT;
    loop {
        let (status, consumed, written) = match &mut target {
            Target::Message => {
                // Grow the message's room by doubling, never past `most`.
                let room = produced
                    .saturating_mul(2)
                    .max(compressed.len())
                    .max(1024)
                    .min(most);
                out.resize(start + room, 0);
                let result = decompress(
                    decompressor,
                    input,
                    &mut out[start..],
                    produced,
                    flags | TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
                );
                out.truncate(start + produced + result.2);
                result
            }
            Target::Window(window) => {
                let result = decompress_with_limit(
                    decompressor,
                    input,
                    &mut window.bytes,
                    window.position,
                    most - produced,
                    flags,
                );
                let written = &window.bytes[window.position..window.position + result.2];
                out.extend_from_slice(written);
                window.position = (window.position + result.2) % window.bytes.len();
                result
            }
        };
        produced += written;
        input = input.get(consumed..).unwrap_or_default();
        // RFC 6455 §10.4, §7.4.1: past the limit is 1009, and we stop here.
        if produced > max_message_bytes {
            return Err(InflateError::TooBig);
        }
        match status {
            // The room (or the ring's end) is full: make more and go on.
            TINFLStatus::HasMoreOutput => {}
            // Every byte given is used: give the tail, or the message is done.
            TINFLStatus::NeedsMoreInput => {
                if tail_fed {
                    return Ok(());
                }
                // §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end".
                input = &EMPTY_STORED_BLOCK_TAIL;
                tail_fed = true;
            }
            // A block with BFINAL set ended the stream (§7.2.3.4). What follows
            // in the message starts a new stream over the same window; the
            // tail alone is not needed after a final block.
            TINFLStatus::Done => {
                decompressor.init();
                if input.is_empty() || tail_fed {
                    return Ok(());
                }
            }
            // RFC 1951: an invalid block type, code lengths, or a distance
            // before the window; miniz's other statuses do not occur here.
            _ => return Err(InflateError::Corrupt),
        }
    }
}

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The peer sent a message that inflates past our message limit.
    TooBig,
    /// The peer sent a compressed payload that is not valid DEFLATE data, or
    /// refers back past its window.
    Corrupt,
}

impl InflateError {
    /// RFC 6455 §7.4.1: 1009 for a message too big to process; 1007 for data
    /// "not consistent with the type of the message": the frames were well
    /// formed (§5.2), but RSV1 declared a compressed payload and this one is
    /// not, the same kind of fault as text that is not UTF-8 (§8.1).
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::TooBig => CloseCode::MESSAGE_TOO_BIG,
            Self::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooBig => "the peer sent a compressed message that inflates past the limit",
            Self::Corrupt => "the peer sent a compressed message that is not valid DEFLATE",
        })
    }
}

impl core::error::Error for InflateError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use crate::ws::deflate::vectors::*;

    fn inflate_one(direction: Direction, compressed: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        Inflater::new(direction).inflate_message(compressed, 1 << 20, &mut out)?;
        Ok(out)
    }

    fn compress_one(direction: Direction, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Deflater::new(direction).compress_message(payload, &mut out);
        out
    }

    // --- RFC 7692 §7.2.3 vectors, inflated ---

    #[test]
    fn inflates_rfc_hello_in_either_mode() {
        for direction in [NO_CONTEXT, CONTEXT] {
            assert_eq!(inflate_one(direction, &HELLO).unwrap(), b"Hello");
        }
    }

    #[test]
    fn inflates_rfc_second_hello_from_the_shared_window() {
        let mut inflater = Inflater::new(CONTEXT);
        let mut out = Vec::new();
        inflater.inflate_message(&HELLO, 100, &mut out).unwrap();
        inflater
            .inflate_message(&HELLO_AGAIN, 100, &mut out)
            .unwrap();
        assert_eq!(out, b"HelloHello");
    }

    #[test]
    fn rejects_rfc_second_hello_without_context_takeover() {
        // The back-reference points before the message: with no context it is
        // corrupt, whatever an earlier message (of any connection) left behind.
        let mut inflater = Inflater::new(NO_CONTEXT);
        let mut out = Vec::new();
        inflater.inflate_message(&HELLO, 100, &mut out).unwrap();
        let error = inflater.inflate_message(&HELLO_AGAIN, 100, &mut out);
        assert_eq!(error, Err(InflateError::Corrupt));
        assert_eq!(out, b"Hello", "out is left as it was");
    }

    #[test]
    fn inflates_rfc_stored_block() {
        assert_eq!(inflate_one(NO_CONTEXT, &HELLO_STORED).unwrap(), b"Hello");
    }

    #[test]
    fn inflates_rfc_bfinal_block_with_and_without_the_trailing_byte() {
        for direction in [NO_CONTEXT, CONTEXT] {
            assert_eq!(inflate_one(direction, &HELLO_FINAL).unwrap(), b"Hello");
            assert_eq!(inflate_one(direction, &HELLO_FINAL[..7]).unwrap(), b"Hello");
        }
    }

    #[test]
    fn keeps_the_window_across_a_bfinal_block_with_context_takeover() {
        let mut inflater = Inflater::new(CONTEXT);
        let mut out = Vec::new();
        inflater
            .inflate_message(&HELLO_FINAL, 100, &mut out)
            .unwrap();
        inflater
            .inflate_message(&HELLO_AGAIN, 100, &mut out)
            .unwrap();
        inflater.inflate_message(&HELLO, 100, &mut out).unwrap();
        assert_eq!(out, b"HelloHelloHello");
    }

    #[test]
    fn inflates_rfc_two_blocks_in_one_message() {
        assert_eq!(
            inflate_one(NO_CONTEXT, &HELLO_TWO_BLOCKS).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn inflates_rfc_empty_message() {
        for direction in [NO_CONTEXT, CONTEXT] {
            assert_eq!(inflate_one(direction, &EMPTY).unwrap(), b"");
        }
    }

    // --- RFC 7692 §7.2.3 vectors, compressed ---

    #[test]
    fn compresses_rfc_hello() {
        for direction in [NO_CONTEXT, CONTEXT] {
            assert_eq!(compress_one(direction, b"Hello"), HELLO);
        }
    }

    #[test]
    fn compresses_rfc_second_hello_from_the_shared_window() {
        let mut deflater = Deflater::new(CONTEXT);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        deflater.compress_message(b"Hello", &mut first);
        deflater.compress_message(b"Hello", &mut second);
        assert_eq!(
            (first.as_slice(), second.as_slice()),
            (&HELLO[..], &HELLO_AGAIN[..])
        );
    }

    #[test]
    fn compresses_each_message_alone_without_context_takeover() {
        let mut deflater = Deflater::new(NO_CONTEXT);
        for _ in 0..3 {
            let mut out = Vec::new();
            deflater.compress_message(b"Hello", &mut out);
            assert_eq!(out, HELLO);
        }
    }

    #[test]
    fn compresses_rfc_empty_message_to_one_zero_byte() {
        for direction in [NO_CONTEXT, CONTEXT] {
            let mut deflater = Deflater::new(direction);
            for _ in 0..2 {
                let mut out = Vec::new();
                deflater.compress_message(b"", &mut out);
                assert_eq!(out, EMPTY);
            }
        }
    }

    #[test]
    fn compress_appends_after_what_out_holds() {
        let mut out = b"head".to_vec();
        Deflater::new(NO_CONTEXT).compress_message(b"Hello", &mut out);
        assert_eq!(out[..4], *b"head");
        assert_eq!(out[4..], HELLO);
    }

    // --- round trips ---

    /// Text with words repeated near and far (up to ~40 KiB back), so a
    /// compressor with a 32 KiB window finds matches past any smaller one.
    fn sample(len: usize, seed: u32) -> Vec<u8> {
        const WORDS: [&str; 12] = [
            "event",
            "topic",
            "subscriber",
            "payload",
            "websocket",
            "long-poll",
            "{\"id\":",
            "\"data\":",
            "compression",
            "window",
            "deflate",
            "pushloop",
        ];
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) as usize
        };
        let mut text = Vec::with_capacity(len + 16);
        while text.len() < len {
            let r = next();
            if r % 7 == 0 && text.len() > 64 {
                // Repeat an earlier stretch, from anywhere before.
                let from = next() % (text.len() - 32);
                let stretch: Vec<u8> = text[from..from + 32].to_vec();
                text.extend_from_slice(&stretch);
            } else {
                text.extend_from_slice(WORDS[r % WORDS.len()].as_bytes());
                text.extend_from_slice(&(next() % 1000).to_le_bytes()[..1]);
                text.push(b' ');
            }
        }
        text.truncate(len);
        text
    }

    /// Messages of many sizes: empty, tiny, around a small window, past 64 KiB.
    fn messages() -> Vec<Vec<u8>> {
        [0, 1, 5, 200, 511, 512, 513, 3000, 40_000, 70_000, 100]
            .iter()
            .enumerate()
            .map(|(i, &len)| sample(len, i as u32))
            .collect()
    }

    fn every_direction() -> impl Iterator<Item = Direction> {
        (8..=15).flat_map(|window_bits| {
            [false, true].map(|context_takeover| Direction {
                window_bits,
                context_takeover,
            })
        })
    }

    #[test]
    fn round_trips_every_window_and_mode_over_many_messages() {
        for direction in every_direction() {
            let mut deflater = Deflater::new(direction);
            let mut inflater = Inflater::new(direction);
            for message in messages() {
                let mut compressed = Vec::new();
                deflater.compress_message(&message, &mut compressed);
                let mut out = Vec::new();
                inflater
                    .inflate_message(&compressed, message.len(), &mut out)
                    .unwrap_or_else(|e| panic!("{direction:?}, {} bytes: {e}", message.len()));
                assert!(out == message, "{direction:?}, {} bytes", message.len());
            }
        }
    }

    #[test]
    fn compresses_text_to_less_than_half_with_the_full_window() {
        let text = sample(40_000, 7);
        let compressed = compress_one(NO_CONTEXT, &text);
        assert!(
            compressed.len() < text.len() / 2,
            "{} bytes",
            compressed.len()
        );
    }

    /// Inflates `messages` with miniz_oxide's core decompressor over a ring of
    /// exactly `2^window_bits` bytes, which fails on any distance past it.
    fn inflate_in_ring(
        window_bits: u8,
        context_takeover: bool,
        messages: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, TINFLStatus> {
        let mut ring = vec![0u8; 1 << window_bits];
        let mut position = 0;
        let mut decompressor = DecompressorOxide::new();
        let mut inflated = Vec::new();
        for message in messages {
            if !context_takeover {
                decompressor.init();
                ring.fill(0);
            }
            let mut input: Vec<u8> = message.clone();
            input.extend_from_slice(&EMPTY_STORED_BLOCK_TAIL);
            let mut rest = &input[..];
            let mut out = Vec::new();
            loop {
                let (status, consumed, written) = decompress(
                    &mut decompressor,
                    rest,
                    &mut ring,
                    position,
                    TINFL_FLAG_HAS_MORE_INPUT,
                );
                out.extend_from_slice(&ring[position..position + written]);
                position = (position + written) % ring.len();
                rest = &rest[consumed..];
                match status {
                    TINFLStatus::HasMoreOutput => {}
                    TINFLStatus::NeedsMoreInput => break,
                    other => return Err(other),
                }
            }
            inflated.push(out);
        }
        Ok(inflated)
    }

    #[test]
    fn stays_inside_every_window_by_a_ring_of_that_size() {
        let messages = messages();
        for direction in every_direction() {
            let mut deflater = Deflater::new(direction);
            let compressed: Vec<Vec<u8>> = messages
                .iter()
                .map(|message| {
                    let mut out = Vec::new();
                    deflater.compress_message(message, &mut out);
                    out
                })
                .collect();
            let inflated = inflate_in_ring(
                direction.window_bits,
                direction.context_takeover,
                &compressed,
            );
            assert!(inflated == Ok(messages.clone()), "{direction:?}");
        }
    }

    #[test]
    fn the_ring_check_catches_a_full_window_stream() {
        // The check above can fail: the full window's output does not fit 512 bytes.
        let text = sample(40_000, 3);
        let compressed = compress_one(NO_CONTEXT, &text);
        let inflated = inflate_in_ring(9, false, &[compressed]);
        assert_eq!(inflated, Err(TINFLStatus::Failed));
    }

    // --- an independent inflater: zlib, through python3 ---

    /// Runs `script` with python3, `input` on stdin; `None` with a note when
    /// python3 is not installed, unless `PUSHLOOP_REQUIRE_ZLIB_CHECK` is set
    /// (CI sets it: there the cross-check must run). Panics when the script
    /// fails.
    fn python(script: &str, input: &str) -> Option<String> {
        let child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            assert!(
                std::env::var_os("PUSHLOOP_REQUIRE_ZLIB_CHECK").is_none(),
                "python3 not found, and PUSHLOOP_REQUIRE_ZLIB_CHECK asks for the zlib cross-check"
            );
            std::println!("note: python3 not found; skipping the zlib cross-check");
            return None;
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write to python3");
        let output = child.wait_with_output().expect("python3 runs");
        assert!(
            output.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(String::from_utf8(output.stdout).expect("ASCII"))
    }

    fn to_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| std::format!("{b:02x}")).collect()
    }

    fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
            .collect()
    }

    /// zlib inflates each line (hex, one message) with `wbits` = -window. One
    /// output byte per call: zlib checks a distance against its window plus
    /// what the current call has written, so a call that writes the whole
    /// message would accept any distance inside it. With context takeover one
    /// stream carries on; without, each message has its own.
    const ZLIB_INFLATE: &str = r#"
import sys, zlib
window, takeover = int(sys.argv[1]), sys.argv[2] == "1"
def inflate(d, data):
    out = bytearray()
    chunk = d.decompress(data, 1)
    while chunk or d.unconsumed_tail:
        out += chunk
        chunk = d.decompress(d.unconsumed_tail, 1)
    return bytes(out)
d = zlib.decompressobj(-window)
for line in sys.stdin.read().split():
    if not takeover:
        d = zlib.decompressobj(-window)
    print(inflate(d, bytes.fromhex(line) + b"\x00\x00\xff\xff").hex())
"#;

    /// Runs [`ZLIB_INFLATE`] over `compressed` messages; `None` without python3.
    fn zlib_inflate(direction: Direction, compressed: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
        let input: String = compressed.iter().map(|m| to_hex(m) + "\n").collect();
        let script = std::format!(
            "import sys; sys.argv = ['', '{}', '{}']\n{ZLIB_INFLATE}",
            direction.window_bits,
            u8::from(direction.context_takeover)
        );
        let output = python(&script, &input)?;
        Some(output.lines().map(from_hex).collect())
    }

    /// Messages a little over 40 KiB in all: zlib is fed one byte at a time.
    fn zlib_messages() -> Vec<Vec<u8>> {
        messages()
            .into_iter()
            .filter(|m| m.len() <= 40_000)
            .collect()
    }

    #[test]
    fn zlib_inflates_every_window_we_compress_for() {
        let messages = zlib_messages();
        for direction in every_direction() {
            let mut deflater = Deflater::new(direction);
            let compressed: Vec<Vec<u8>> = messages
                .iter()
                .map(|message| {
                    let mut out = Vec::new();
                    deflater.compress_message(message, &mut out);
                    out
                })
                .collect();
            let Some(inflated) = zlib_inflate(direction, &compressed) else {
                return;
            };
            assert!(inflated == messages, "{direction:?}");
        }
    }

    #[test]
    fn the_zlib_check_catches_miniz_own_small_window_settings() {
        // Why the Deflater chooses its settings itself: miniz_oxide's own for
        // window 12 (level 1's fast path) reach 32 KiB back. zlib must say so.
        let text = sample(40_000, 5);
        let mut compressor = CompressorOxide::with_params(
            miniz_oxide::DataFormat::Raw,
            6,
            CompressionStrategy::Default,
            12,
        );
        let mut compressed = Vec::new();
        compress_to_output(&mut compressor, &text, TDEFLFlush::Sync, |bytes| {
            compressed.extend_from_slice(bytes);
            true
        });
        compressed.truncate(compressed.len() - EMPTY_STORED_BLOCK_TAIL.len());
        let direction = Direction {
            window_bits: 12,
            context_takeover: false,
        };
        let script = std::format!("import sys; sys.argv = ['', '12', '0']\n{ZLIB_INFLATE}");
        let child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            std::println!("note: python3 not found; skipping the zlib cross-check");
            return;
        };
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(to_hex(&compressed).as_bytes())
            .expect("write to python3");
        drop(stdin);
        let output = child.wait_with_output().expect("python3 runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("invalid distance too far back"),
            "{direction:?}: {stderr}"
        );
        // And the ring check agrees.
        assert_eq!(
            inflate_in_ring(12, false, &[compressed]),
            Err(TINFLStatus::Failed)
        );
    }

    /// zlib compresses each line (hex) with `wbits` = -window and a sync flush,
    /// dropping the final four bytes (§7.2.1), as a peer's compressor would.
    const ZLIB_DEFLATE: &str = r#"
import sys, zlib
window, takeover = int(sys.argv[1]), sys.argv[2] == "1"
c = zlib.compressobj(6, zlib.DEFLATED, -window)
for line in sys.stdin.read().split():
    if not takeover:
        c = zlib.compressobj(6, zlib.DEFLATED, -window)
    out = c.compress(bytes.fromhex(line)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    print(out[:-4].hex())
"#;

    #[test]
    fn inflates_what_zlib_compresses_with_every_window() {
        let messages: Vec<Vec<u8>> = messages().into_iter().filter(|m| !m.is_empty()).collect();
        let input: String = messages.iter().map(|m| to_hex(m) + "\n").collect();
        // zlib compresses raw DEFLATE with windows 9-15 (it refuses 8).
        for window_bits in 9..=15 {
            for context_takeover in [false, true] {
                let script = std::format!(
                    "import sys; sys.argv = ['', '{window_bits}', '{}']\n{ZLIB_DEFLATE}",
                    u8::from(context_takeover)
                );
                let Some(output) = python(&script, &input) else {
                    return;
                };
                let mut inflater = Inflater::new(Direction {
                    window_bits,
                    context_takeover,
                });
                for (line, message) in output.lines().zip(&messages) {
                    let mut out = Vec::new();
                    inflater
                        .inflate_message(&from_hex(line), message.len(), &mut out)
                        .unwrap_or_else(|e| panic!("window {window_bits}: {e}"));
                    assert!(out == *message, "window {window_bits}, {context_takeover}");
                }
            }
        }
    }

    // --- limits ---

    #[test]
    fn inflates_a_message_of_exactly_the_limit() {
        let text = sample(5000, 1);
        let compressed = compress_one(NO_CONTEXT, &text);
        for direction in [NO_CONTEXT, CONTEXT] {
            let mut out = Vec::new();
            let mut inflater = Inflater::new(direction);
            inflater
                .inflate_message(&compressed, 5000, &mut out)
                .unwrap();
            assert_eq!(out, text);
            out.clear();
            let error = inflater.inflate_message(&compressed, 4999, &mut out);
            assert_eq!(error, Err(InflateError::TooBig));
            assert!(out.is_empty());
        }
    }

    /// A compressed message of `copies` × the sync-flushed form of 1 MiB of
    /// zeros: every copy is literal 0 then runs at distance 1, valid after any
    /// zero, so it inflates to `copies` MiB from ~1 KiB per copy.
    fn zero_bomb(copies: usize) -> (Vec<u8>, usize) {
        let mib = vec![0u8; 1 << 20];
        let mut one = Vec::new();
        Deflater::new(NO_CONTEXT).compress_message(&mib, &mut one);
        one.extend_from_slice(&EMPTY_STORED_BLOCK_TAIL);
        let mut bomb = one.repeat(copies);
        bomb.truncate(bomb.len() - EMPTY_STORED_BLOCK_TAIL.len());
        (bomb, copies << 20)
    }

    #[test]
    fn a_kib_that_inflates_to_a_mib_stops_at_the_limit() {
        let (bomb, inflated) = zero_bomb(1);
        assert!(bomb.len() <= 1100, "{} bytes", bomb.len());
        for direction in [NO_CONTEXT, CONTEXT] {
            let mut out = Vec::new();
            Inflater::new(direction)
                .inflate_message(&bomb, inflated, &mut out)
                .unwrap();
            assert_eq!(out.len(), inflated);
            let mut out = Vec::new();
            let error = Inflater::new(direction).inflate_message(&bomb, 64 * 1024, &mut out);
            assert_eq!(error, Err(InflateError::TooBig));
            assert_eq!(error.unwrap_err().close_code(), CloseCode::MESSAGE_TOO_BIG);
            assert!(out.capacity() <= 2 * 64 * 1024 + 1, "{}", out.capacity());
        }
    }

    #[test]
    fn a_gib_bomb_stops_at_the_limit_quickly_in_bounded_memory() {
        // DEFLATE expands at most ~1032:1, so 1 GiB needs ~1 MiB of input.
        let (bomb, inflated) = zero_bomb(1024);
        assert_eq!(inflated, 1 << 30);
        for direction in [NO_CONTEXT, CONTEXT] {
            let started = std::time::Instant::now();
            let mut out = Vec::new();
            let error = Inflater::new(direction).inflate_message(&bomb, 1 << 20, &mut out);
            assert_eq!(error, Err(InflateError::TooBig));
            assert!(out.capacity() <= 2 << 20, "{}", out.capacity());
            // Inflating 1 GiB takes seconds; stopping at 1 MiB takes a few ms.
            assert!(
                started.elapsed().as_millis() < 500,
                "{:?}",
                started.elapsed()
            );
        }
    }

    // --- corrupt input ---

    #[test]
    fn rejects_a_reserved_block_type_with_1007() {
        // BFINAL 0, BTYPE 11 (reserved, RFC 1951 §3.2.3).
        for direction in [NO_CONTEXT, CONTEXT] {
            let error = inflate_one(direction, &[0x06]).unwrap_err();
            assert_eq!(error, InflateError::Corrupt);
            assert_eq!(error.close_code(), CloseCode::INVALID_PAYLOAD);
        }
    }

    #[test]
    fn rejects_a_stored_block_whose_length_check_fails() {
        // LEN 5, NLEN not its complement (RFC 1951 §3.2.4).
        let bad = [
            0x00, 0x05, 0x00, 0xfa, 0xfe, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_one(NO_CONTEXT, &bad), Err(InflateError::Corrupt));
    }

    #[test]
    fn a_shared_inflater_serves_the_next_message_after_an_error() {
        let mut inflater = Inflater::new(NO_CONTEXT);
        let mut out = Vec::new();
        assert!(inflater.inflate_message(&[0x06], 100, &mut out).is_err());
        let (bomb, _) = zero_bomb(1);
        assert!(inflater.inflate_message(&bomb, 100, &mut out).is_err());
        inflater.inflate_message(&HELLO, 100, &mut out).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn a_truncated_message_is_not_an_error_by_itself() {
        // Cut mid-block, the message simply yields what it holds; the stream
        // is broken from there on, which the next message (or UTF-8) shows.
        assert!(inflate_one(NO_CONTEXT, &HELLO[..3]).is_ok());
    }

    #[test]
    fn never_panics_on_any_two_byte_message() {
        for direction in [NO_CONTEXT, CONTEXT] {
            let mut inflater = Inflater::new(direction);
            for a in 0..=255u8 {
                for b in 0..=255u8 {
                    let mut out = Vec::new();
                    if let Err(error) = inflater.inflate_message(&[a, b], 300, &mut out) {
                        assert!(matches!(error.close_code().0, 1007 | 1009));
                    }
                    assert!(out.len() <= 300);
                }
            }
        }
    }
}
