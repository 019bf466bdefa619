//! The floor of a pushloop binary: what any Rust server on mio carries before it
//! does anything of its own. std (with the panic machinery `catch_unwind` needs
//! and the backtrace printer its default panic hook links), formatted output,
//! one `mio::Poll` and one listening socket. `bench/size.sh` builds it with the
//! release profile pushloop uses and subtracts its stripped size from the others.

use std::process::ExitCode;

fn main() -> ExitCode {
    // pushloop catches a panic in an App callback and closes only that
    // connection; the floor keeps the same machinery linked.
    let caught = std::panic::catch_unwind(|| std::env::args().count());
    let listening = mio::Poll::new().and_then(|poll| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = mio::net::TcpListener::bind(addr)?;
        Ok((poll, listener.local_addr()?))
    });
    match (caught, listening) {
        (Ok(args), Ok((_poll, addr))) => {
            println!("{args} argument(s); would listen on {addr}");
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}
