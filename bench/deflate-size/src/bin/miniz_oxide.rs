//! miniz_oxide alone: raw DEFLATE with a sync flush, inflated into a buffer and into a 32 KiB ring.
use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
};
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use std::io::{Read, Write};
fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    let level = std::hint::black_box(6);
    let strategy = std::hint::black_box(0);
    let mut c = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
        level, -15, strategy,
    )));
    let mut z = Vec::new();
    compress_to_output(&mut c, &input, TDEFLFlush::Sync, |b| {
        z.extend_from_slice(b);
        true
    });
    let mut d = Box::new(DecompressorOxide::new());
    let mut out = vec![0u8; input.len() + 16];
    let (_s, _i, n) = decompress(
        &mut d,
        &z,
        &mut out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
            | inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
    );
    let mut ring = vec![0u8; 1 << 15];
    let mut d2 = Box::new(DecompressorOxide::new());
    let (_s, _i, m) = decompress(
        &mut d2,
        &z,
        &mut ring,
        0,
        inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
    );
    std::io::stdout().write_all(&out[..n]).unwrap();
    std::io::stdout().write_all(&z).unwrap();
    std::io::stdout().write_all(&ring[..m]).unwrap();
}
