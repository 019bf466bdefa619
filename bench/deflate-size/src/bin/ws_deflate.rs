//! pushloop-proto's `ws::deflate`: an offer (first argument) accepted, then the codec both ways.
use pushloop_proto::ws::deflate::{accept_offer, Deflater, Inflater, ServerConfig};
use pushloop_proto::ws::frame::Role;
use std::io::{Read, Write};
fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    let offer = std::env::args().nth(1).unwrap_or_default();
    let mut response = Vec::new();
    let agreed = accept_offer([offer.as_bytes()], ServerConfig::default(), &mut response).unwrap();
    let mut z = Vec::new();
    Deflater::new(agreed.sending(Role::Server)).compress_message(&input, &mut z);
    let mut out = Vec::new();
    Inflater::new(agreed.receiving(Role::Server))
        .inflate_message(&z, 1 << 24, &mut out)
        .unwrap();
    std::io::stdout().write_all(&out).unwrap();
    std::io::stdout().write_all(&z).unwrap();
    std::io::stdout().write_all(&response).unwrap();
}
