//! Payload masking, RFC 6455 §5.3.
//!
//! Reading list:
//! - RFC 6455 §5.3 "Client-to-Server Masking": the transform
//!   `transformed-octet-i = original-octet-i XOR masking-key-octet-j`, `j = i MOD 4`.
//!   Masking and unmasking are the same operation.
//! - RFC 6455 §10.3 for why clients mask at all (cache poisoning of intermediaries).
//!
//! Two versions live here: [`apply_mask_bytewise`] is the transform exactly as the
//! RFC writes it, and [`apply_mask`] is the one the server uses. The fast one XORs
//! eight bytes at a time with the key repeated twice in a `u64`; the compiler turns
//! that loop into SIMD. The tests check the two against each other over lengths,
//! buffer alignments and key offsets.

/// XORs `buf` in place with `key`, where `buf[0]` is payload byte number `offset`
/// (so unmasking can resume in the middle of a payload that arrives in pieces).
///
/// Word-at-a-time: the same result as [`apply_mask_bytewise`] for every input,
/// without `unsafe`. Never panics.
///
/// ```
/// use pushloop_proto::ws::mask::apply_mask;
/// // RFC 6455 §5.7: "Hello" masked with the key 37 fa 21 3d.
/// let mut payload = *b"Hello";
/// apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// // Unmasking resumes mid-payload: the second half starts at payload byte 2.
/// let (first, second) = payload.split_at_mut(2);
/// apply_mask(first, [0x37, 0xfa, 0x21, 0x3d], 0);
/// apply_mask(second, [0x37, 0xfa, 0x21, 0x3d], 2);
/// assert_eq!(&payload, b"Hello");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // RFC 6455 §5.3: byte i uses key octet (i MOD 4). Rotating the key by the
    // offset makes buf[0] line up with key octet 0 of the rotated key.
    let key = rotated(key, offset);
    let [k0, k1, k2, k3] = key;
    let key_word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ key_word).to_ne_bytes());
    }
    // Each word is 8 bytes, a multiple of 4, so the tail starts at key octet 0 again.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The reference: RFC 6455 §5.3 one byte at a time, `buf[i] ^= key[(offset + i) % 4]`.
/// [`apply_mask`] must agree with it on every input.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (byte, k) in buf.iter_mut().zip(key.iter().cycle().skip(offset % 4)) {
        *byte ^= k;
    }
}

/// The key as seen from payload byte `offset`: `rotated(key, 1) == [k1, k2, k3, k0]`.
fn rotated(mut key: [u8; 4], offset: usize) -> [u8; 4] {
    key.rotate_left(offset % 4);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn bytewise_reference_follows_rfc_formula() {
        let mut payload = [0u8; 9];
        apply_mask_bytewise(&mut payload, KEY, 3);
        for (i, byte) in payload.iter().enumerate() {
            assert_eq!(*byte, KEY[(3 + i) % 4]);
        }
    }

    #[test]
    fn fast_mask_matches_bytewise_over_lengths_alignments_and_offsets() {
        // A backing store large enough for every (alignment, length) pair; the
        // slice start moves through all 8 alignments of a u64.
        let source: Vec<u8> = (0..100u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in 0..=70 {
            for align in 0..8 {
                for offset in 0..4 {
                    for key in [KEY, [0xff, 0x00, 0xa5, 0x5a], [1, 2, 3, 4]] {
                        let mut fast = source.clone();
                        let mut slow = source.clone();
                        apply_mask(&mut fast[align..align + len], key, offset);
                        apply_mask_bytewise(&mut slow[align..align + len], key, offset);
                        assert_eq!(fast, slow, "len {len} align {align} offset {offset}");
                    }
                }
            }
        }
    }

    #[test]
    fn mask_resumes_at_any_split_point() {
        let original: Vec<u8> = (0..=255u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, KEY, 0);
        for split in 0..=original.len() {
            let mut pieces = original.clone();
            let (first, second) = pieces.split_at_mut(split);
            apply_mask(first, KEY, 0);
            apply_mask(second, KEY, split);
            assert_eq!(pieces, whole, "split at {split}");
        }
    }

    #[test]
    fn offsets_beyond_four_wrap() {
        let mut a = *b"abcdefghijk";
        let mut b = a;
        apply_mask(&mut a, KEY, 1);
        apply_mask(&mut b, KEY, 4 * 1000 + 1);
        assert_eq!(a, b);
        apply_mask(&mut a, KEY, usize::MAX);
        apply_mask_bytewise(&mut b, KEY, usize::MAX);
        assert_eq!(a, b);
    }
}
