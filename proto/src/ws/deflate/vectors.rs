//! RFC 7692 §7.2.3's examples and the two ways a peer may compress, for the
//! unit tests of the codec, the decoder, the session and their state (one
//! copy for all of them).

use super::Direction;

/// A peer that starts every message from an empty window.
pub(crate) const NO_CONTEXT: Direction = Direction {
    window_bits: 15,
    context_takeover: false,
};
/// A peer that keeps its window from one message to the next (§7.1.1).
pub(crate) const CONTEXT: Direction = Direction {
    window_bits: 15,
    context_takeover: true,
};

/// RFC 7692 §7.2.3.1: "Hello" in one fixed-Huffman block.
pub(crate) const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// RFC 7692 §7.2.3.2: the second "Hello", referring to the first.
pub(crate) const HELLO_AGAIN: [u8; 5] = [0xf2, 0x00, 0x11, 0x00, 0x00];
/// RFC 7692 §7.2.3.3: "Hello" in a stored block.
pub(crate) const HELLO_STORED: [u8; 11] = [
    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
];
/// RFC 7692 §7.2.3.4: "Hello" in a block with BFINAL set, then the byte
/// starting an empty stored block.
pub(crate) const HELLO_FINAL: [u8; 8] = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
/// RFC 7692 §7.2.3.5: "He" and "llo" in two blocks of one message.
pub(crate) const HELLO_TWO_BLOCKS: [u8; 13] = [
    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
];
/// RFC 7692 §7.2.3.6: an empty message.
pub(crate) const EMPTY: [u8; 1] = [0x00];
