//! Example binaries as test subjects: `cargo test` builds the examples
//! before it runs integration tests, so the binaries sit next to the test's
//! own: `target/debug/deps/TEST-HASH` → `target/debug/examples/NAME`.

use std::io::BufRead;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::READ_TIMEOUT;

/// A running example; killed (and reaped) on drop, so no test leaks a process.
pub struct Example {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `examples/NAME.rs`'s binary with `args` and waits for its first
/// line, `listening on http://HOST:PORT`.
pub fn start(name: &str, args: &[&str]) -> Example {
    let test_exe = std::env::current_exe().expect("the test's own path");
    let path = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/PROFILE/deps")
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example binary {} not found: run these tests with `cargo test` (which \
         builds examples first) or run `cargo build --examples`",
        path.display()
    );
    let mut child = Command::new(&path)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut example = Example {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    // Read the first line on a thread, so the wait is bounded; the thread then
    // drains stdout until the child exits, so the child never blocks on a full pipe.
    let (first_line, line) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = first_line.send(line);
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    let line = line
        .recv_timeout(READ_TIMEOUT)
        .unwrap_or_else(|_| panic!("{name} printed no line within {READ_TIMEOUT:?}"));
    example.addr = line
        .trim_end()
        .strip_prefix("listening on http://")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| {
            panic!("{name}: first line is not `listening on http://HOST:PORT`: {line:?}")
        });
    example
}
