//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! Reading list:
//! - RFC 3629 §4 "Syntax of UTF-8 Byte Sequences": the grammar on [`Utf8Validator`].
//! - RFC 6455 §5.6: "The 'Payload data' is text data encoded as UTF-8".
//! - RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds
//!   that the byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST
//!   _Fail the WebSocket Connection_" — with close code 1007 (§7.4.1).
//!
//! A text message can arrive as many fragments (§5.4), and one frame can arrive in
//! many reads. [`Utf8Validator`] checks each piece as it comes and says "invalid" on
//! the first byte that cannot belong to valid UTF-8, so a bad message is refused
//! before the rest of it is even sent (Autobahn|Testsuite cases 6.4.x check this).

/// An incremental UTF-8 validator (RFC 3629 §4), for a text message that arrives
/// in pieces.
///
/// ```text
/// UTF8-octets = *( UTF8-char )
/// UTF8-char   = UTF8-1 / UTF8-2 / UTF8-3 / UTF8-4
/// UTF8-1      = %x00-7F
/// UTF8-2      = %xC2-DF UTF8-tail
/// UTF8-3      = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
///               %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
/// UTF8-4      = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
///               %xF4 %x80-8F 2( UTF8-tail )
/// UTF8-tail   = %x80-BF
/// ```
///
/// The grammar rules out overlong forms (`C0`, `C1`, `E0 80`–`E0 9F`, `F0 80`–`F0 8F`),
/// the surrogates U+D800–U+DFFF (`ED A0`–`ED BF`) and everything past U+10FFFF
/// (`F4 90` and up, `F5`–`FF`), each on the earliest byte that shows it: `F4 90`
/// fails on the `90`, without waiting for the rest of the code point.
///
/// Between calls it carries only where it is inside an unfinished code point (at
/// most 3 bytes of it): how many continuation bytes are still due and the range the
/// next one must fall in. It is `Copy` and never allocates. The bulk of each piece
/// goes through `core::str::from_utf8`, which is fast on ASCII.
///
/// ```
/// use pushloop_proto::ws::utf8::Utf8Validator;
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(b"caf\xc3").is_ok());   // "é" is split between two fragments
/// assert!(v.feed(b"\xa9!").is_ok());
/// assert!(v.finish().is_ok());
/// assert!(v.feed(b"\xf4\x90").is_err()); // above U+10FFFF, known from the second byte
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    /// Continuation bytes still due for the current code point (0 between code points).
    pending: u8,
    /// The smallest byte allowed next, while `pending > 0`.
    next_min: u8,
    /// The largest byte allowed next, while `pending > 0`.
    next_max: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece of the message. Fails on the first byte that no valid
    /// UTF-8 text could contain at that point. After an error the state is
    /// meaningless: [`reset`](Self::reset) before reusing the validator.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        // First finish the code point left open by the previous piece.
        let mut rest = bytes;
        while self.pending > 0 {
            let Some((&byte, tail)) = rest.split_first() else {
                return Ok(());
            };
            self.step(byte)?;
            rest = tail;
        }
        match core::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            // std found a byte that cannot be valid whatever follows.
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            // The piece ends inside a code point: remember where we are in it.
            Err(e) => rest
                .get(e.valid_up_to()..)
                .unwrap_or_default()
                .iter()
                .try_for_each(|&byte| self.step(byte)),
        }
    }

    /// Ends the message: a code point still incomplete is an error (RFC 6455 §8.1,
    /// a message may not end in the middle of a character). Either way the
    /// validator is reset, ready for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let truncated = self.pending > 0;
        self.reset();
        if truncated {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }

    /// Forgets any unfinished code point: the validator is at the start of a message.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The RFC 3629 §4 grammar, one byte at a time.
    fn step(&mut self, byte: u8) -> Result<(), Utf8Error> {
        if self.pending > 0 {
            if !(self.next_min..=self.next_max).contains(&byte) {
                return Err(Utf8Error);
            }
            self.pending -= 1;
            // UTF8-tail = %x80-BF: only the first byte after the lead is narrower.
            (self.next_min, self.next_max) = (0x80, 0xBF);
            return Ok(());
        }
        // (continuation bytes due, range of the first one) for each lead byte.
        let (pending, next_min, next_max) = match byte {
            0x00..=0x7F => (0, 0x80, 0xBF),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            // E0 A0-BF: below A0 would be an overlong 3-byte form.
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            // ED 80-9F: A0-BF would encode the surrogates U+D800-U+DFFF.
            0xED => (2, 0x80, 0x9F),
            // F0 90-BF: below 90 would be an overlong 4-byte form.
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            // F4 80-8F: 90 and up would be past U+10FFFF.
            0xF4 => (3, 0x80, 0x8F),
            // 80-BF: a continuation with no lead; C0, C1: overlong 2-byte forms;
            // F5-FF: past U+10FFFF or not UTF-8 at all.
            _ => return Err(Utf8Error),
        };
        *self = Self {
            pending,
            next_min,
            next_max,
        };
        Ok(())
    }
}

/// The text was not valid UTF-8 (RFC 3629 §4). The connection is failed with close
/// code 1007 "invalid frame payload data" (RFC 6455 §8.1, §7.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl core::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the peer sent text that is not valid UTF-8")
    }
}

impl core::error::Error for Utf8Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid text, including every boundary of the RFC 3629 §4 table.
    const VALID: &[&[u8]] = &[
        b"",
        b"Hello",
        b"\x00\x7f",
        "κόσμε".as_bytes(),                  // Autobahn 6.2.1
        b"\xc2\x80",                         // U+0080, smallest 2-byte
        b"\xdf\xbf",                         // U+07FF, largest 2-byte
        b"\xe0\xa0\x80",                     // U+0800, smallest 3-byte
        b"\xed\x9f\xbf",                     // U+D7FF, just below the surrogates
        b"\xee\x80\x80",                     // U+E000, just above the surrogates
        b"\xef\xbf\xbd",                     // U+FFFD
        b"\xef\xbf\xbf",                     // U+FFFF (a noncharacter, but valid UTF-8)
        b"\xf0\x90\x80\x80",                 // U+10000, smallest 4-byte
        b"\xf4\x8f\xbf\xbf",                 // U+10FFFF, the largest code point
        "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(), // Autobahn 6.5.x
    ];

    /// Invalid text, and the index of the byte where validation must fail.
    const INVALID: &[(&[u8], usize)] = &[
        (b"\x80", 0),                     // lone continuation
        (b"\xbf", 0),                     // lone continuation
        (b"a\x80b", 1),                   // continuation after ASCII
        (b"\xc0\xaf", 0),                 // overlong '/' (C0 never valid)
        (b"\xc1\xbf", 0),                 // overlong (C1 never valid)
        (b"\xe0\x80\xaf", 1),             // overlong 3-byte '/'
        (b"\xe0\x9f\xbf", 1),             // overlong U+07FF
        (b"\xf0\x80\x80\xaf", 1),         // overlong 4-byte '/'
        (b"\xf0\x8f\xbf\xbf", 1),         // overlong U+FFFF
        (b"\xed\xa0\x80", 1),             // U+D800, first surrogate
        (b"\xed\xbf\xbf", 1),             // U+DFFF, last surrogate
        (b"\xed\xa0\x80\xed\xb0\x80", 1), // surrogate pair U+10000 in CESU-8
        (b"\xf4\x90\x80\x80", 1),         // U+110000
        (b"\xf5\x80\x80\x80", 0),         // F5 never valid
        (b"\xf8\x88\x80\x80\x80", 0),     // 5-byte form
        (b"\xfc\x84\x80\x80\x80\x80", 0), // 6-byte form
        (b"\xfe", 0),                     // FE never valid
        (b"\xff", 0),                     // FF never valid
        (b"\xc2\x41", 1),                 // missing continuation
        (b"\xe1\x80\x41", 2),             // missing second continuation
        (b"\xf1\x80\x80\x41", 3),         // missing third continuation
        (
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            12,
        ), // Autobahn 6.4.x
    ];

    /// Valid prefixes that end inside a code point.
    const TRUNCATED: &[&[u8]] = &[
        b"\xc2",
        b"\xe0\xa0",
        b"\xe1",
        b"\xf0\x90\x80",
        b"\xf4\x8f",
        b"ok\xf4",
    ];

    /// Feeds `input` split at every index, byte by byte and whole; every way must
    /// agree with `core::str::from_utf8`, failing in the piece that holds `fail_at`.
    fn check_every_split(input: &[u8], fail_at: Option<usize>) {
        let mut splits: Vec<Vec<usize>> = (0..=input.len()).map(|i| vec![i]).collect();
        splits.push((0..=input.len()).collect());
        for cuts in splits {
            let mut v = Utf8Validator::new();
            let mut start = 0;
            let mut failed_in = None;
            for end in cuts.into_iter().chain([input.len()]) {
                if v.feed(&input[start..end]).is_err() {
                    failed_in = Some(start..end);
                    break;
                }
                start = end;
            }
            match fail_at {
                Some(i) => {
                    let piece = failed_in.expect("invalid input accepted");
                    assert!(
                        piece.contains(&i),
                        "{input:x?}: failed in {piece:?}, not at {i}"
                    );
                }
                None => {
                    assert_eq!(failed_in, None, "{input:x?}");
                    let complete = v.finish().is_ok();
                    assert_eq!(complete, core::str::from_utf8(input).is_ok(), "{input:x?}");
                }
            }
        }
    }

    #[test]
    fn accepts_valid_text_at_every_split() {
        for input in VALID {
            assert!(core::str::from_utf8(input).is_ok());
            check_every_split(input, None);
        }
    }

    #[test]
    fn rejects_invalid_text_on_the_first_impossible_byte() {
        for &(input, fail_at) in INVALID {
            check_every_split(input, Some(fail_at));
        }
    }

    #[test]
    fn rejects_truncated_code_point_at_finish() {
        for input in TRUNCATED {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(input), Ok(()), "{input:x?}");
            assert_eq!(v.finish(), Err(Utf8Error), "{input:x?}");
            check_every_split(input, None);
        }
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert!(v.finish().is_err());
        assert!(v.feed(b"\xac").is_err(), "the old code point is forgotten");
        v.reset();
        assert!(v.feed(b"\xe2\x82\xac").is_ok());
        assert!(v.finish().is_ok());
    }

    #[test]
    fn fails_on_same_byte_as_std_for_every_two_and_three_byte_prefix() {
        // Exhaustive over two bytes, and over three bytes for the interesting
        // leads: byte by byte, the validator must fail exactly when std first
        // says a prefix is invalid (not merely incomplete).
        let std_invalid = |b: &[u8]| {
            core::str::from_utf8(b)
                .err()
                .is_some_and(|e| e.error_len().is_some())
        };
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                inputs.push(vec![a, b]);
            }
        }
        for a in [0xE0, 0xED, 0xEF, 0xF0, 0xF1, 0xF4] {
            for b in 0x7Eu8..=0xC0 {
                for c in [0x00, 0x7F, 0x80, 0xBF, 0xC0] {
                    inputs.push(vec![a, b, c]);
                }
            }
        }
        for input in inputs {
            let mut v = Utf8Validator::new();
            for i in 0..input.len() {
                let ours = v.feed(&input[i..=i]).is_err();
                assert_eq!(ours, std_invalid(&input[..=i]), "{input:x?} at {i}");
                if ours {
                    break;
                }
            }
        }
    }

    #[test]
    fn agrees_with_std_on_pseudo_random_bytes() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 12) as usize;
            // Mostly bytes near the interesting boundaries.
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    [
                        0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4,
                    ][(r % 12) as usize]
                })
                .collect();
            let fail_at = match core::str::from_utf8(&input) {
                Err(e) if e.error_len().is_some() => (e.valid_up_to()..input.len()).find(|&i| {
                    core::str::from_utf8(&input[e.valid_up_to()..=i])
                        .err()
                        .is_some_and(|e| e.error_len().is_some())
                }),
                _ => None,
            };
            check_every_split(&input, fail_at);
        }
    }
}
