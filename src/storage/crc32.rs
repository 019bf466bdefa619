//! CRC-32 (IEEE 802.3; the CRC of zip, gzip and PNG), slice-by-8.
//!
//! Reading list: ISO/IEC 8802-3 (IEEE 802.3) §3.2.9, the frame check sequence:
//! polynomial 0x04C11DB7, here bit-reversed to 0xEDB88320 because the bits of
//! each byte are taken least significant first; the register starts at all
//! ones and is inverted at the end. The "check" value — the CRC of the ASCII
//! bytes `123456789` — is 0xCBF43926 (Williams, "A Painless Guide to CRC Error
//! Detection Algorithms", the CRC-32 model).
//!
//! Slice-by-8 (Kounavis and Berry, Intel, 2005) folds 8 bytes per step through
//! 8 tables of 256 entries, built at compile time; the bytewise definition is
//! kept beside it in the tests as the reference. Why written here rather than
//! taken from a crate: see [`crate::storage::file_log`], "Checksum".

/// The reflected IEEE polynomial.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// `TABLES[0][b]` is the CRC of byte `b` alone; `TABLES[k][b]` is that byte
/// followed by `k` zero bytes, so 8 bytes fold in one step.
static TABLES: [[u32; 256]; 8] = build_tables();

const fn build_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut byte = 0;
    while byte < 256 {
        let mut k = 1;
        while k < 8 {
            let previous = tables[k - 1][byte];
            tables[k][byte] = (previous >> 8) ^ tables[0][(previous & 0xFF) as usize];
            k += 1;
        }
        byte += 1;
    }
    tables
}

/// A CRC-32 being computed over bytes given in any number of pieces.
///
/// ```
/// use pushloop::storage::crc32::Crc32;
/// let crc = Crc32::new().update(b"1234").update(b"56789").finish();
/// assert_eq!(crc, 0xCBF4_3926);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Crc32 {
    /// The register, inverted (it starts at all ones).
    register: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub fn new() -> Crc32 {
        Crc32 { register: !0 }
    }

    /// Folds `bytes` in.
    #[must_use]
    pub fn update(mut self, bytes: &[u8]) -> Crc32 {
        let mut register = self.register;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let [a, b, c, d, e, f, g, h] = [
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ];
            let low = u32::from_le_bytes([a, b, c, d]) ^ register;
            let [l0, l1, l2, l3] = low.to_le_bytes();
            register = TABLES[7][usize::from(l0)]
                ^ TABLES[6][usize::from(l1)]
                ^ TABLES[5][usize::from(l2)]
                ^ TABLES[4][usize::from(l3)]
                ^ TABLES[3][usize::from(e)]
                ^ TABLES[2][usize::from(f)]
                ^ TABLES[1][usize::from(g)]
                ^ TABLES[0][usize::from(h)];
        }
        for &byte in words.remainder() {
            register = (register >> 8) ^ TABLES[0][usize::from((register as u8) ^ byte)];
        }
        self.register = register;
        self
    }

    /// The CRC of everything folded in.
    pub fn finish(self) -> u32 {
        !self.register
    }
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    Crc32::new().update(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, a bit at a time: the reference the fast path must match.
    fn bitwise(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLYNOMIAL
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn check_values() {
        // The CRC-32 model's check value, and two more known answers.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn slice_by_8_matches_the_definition_over_lengths_and_alignments() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for len in 0..=(data.len() - start).min(80) {
                let piece = &data[start..start + len];
                assert_eq!(crc32(piece), bitwise(piece), "start {start} len {len}");
            }
        }
        assert_eq!(crc32(&data), bitwise(&data));
    }

    #[test]
    fn pieces_give_the_crc_of_the_whole() {
        let data = b"pushloop stores every record with its CRC-32";
        for split in 0..=data.len() {
            let (a, b) = data.split_at(split);
            assert_eq!(Crc32::new().update(a).update(b).finish(), crc32(data));
        }
    }
}
