//! Out of file descriptors (EMFILE): the loop pauses accepting instead of
//! spinning on a listener that stays readable, and recovers when descriptors
//! free up. Runs the demo binary under `ulimit -n` so the limit is the process's own.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Kills the server on every exit path.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a process, in clock ticks (proc(5): fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn running_out_of_descriptors_pauses_accepting_without_spinning() {
    let binary = env!("CARGO_BIN_EXE_pushloop");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 32 && exec {binary} --addr 127.0.0.1:0 --no-tick"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the demo binary");
    let mut server = Server(child);
    let mut first_line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut first_line)
        .expect("banner");
    let addr: SocketAddr = first_line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first_line:?}"));

    // Far more connections than descriptors: the rest wait in the backlog.
    let held: Vec<TcpStream> = (0..80).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(server.0.id());
    std::thread::sleep(Duration::from_millis(1000));
    let spent = cpu_ticks(server.0.id()) - before;
    // A loop spinning on EMFILE would burn ~100 ticks in that second.
    assert!(
        spent < 30,
        "the loop spent {spent} ticks of 100 while out of descriptors"
    );

    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || {
            std::panic::catch_unwind(|| get(addr, "/stats").status)
                .is_ok_and(|status| status == 200)
        }),
        "the server serves again once descriptors are free"
    );
}
