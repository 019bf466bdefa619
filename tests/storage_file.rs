//! The file log behind the demo binary (issue 17): `kill -9` in the middle
//! of a burst of publishes with `--fsync always`, then a restart on the same
//! directory, replays every publish that was answered `200`, in order, with
//! its id; a record torn by hand is cut off (and said, with its offset) and
//! nothing after it is invented; ids go on after the last one.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// Publishes in the burst; the server is killed long before the last.
const BURST: usize = 1000;
/// Acknowledged publishes after which the server is killed.
const ACKS_BEFORE_KILL: usize = 300;

/// A directory under the system's temporary one, removed when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let path = std::env::temp_dir().join(format!(
            "pushloop-storage-file-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TestDir(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo on an OS-assigned port over the log in `dir`: the process, its
/// address, and the lines it wrote on stderr before serving (what recovery
/// found).
fn start(dir: &Path) -> (Child, SocketAddr, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushloop"))
        .args(["--addr", "127.0.0.1:0", "--no-tick", "--fsync", "always"])
        .arg("--log-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // Recovery is reported before the loop serves; its last line says so.
    // Stderr is read to its end on a thread of its own: a closed pipe would
    // make the server's next log line fail.
    let stderr = child.stderr.take().expect("piped");
    let (lines, notes) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut said = Vec::new();
    while let Ok(line) = notes.recv_timeout(READ_TIMEOUT) {
        let done = line.contains("events read back");
        said.push(line);
        if done {
            break;
        }
    }
    (child, addr, said)
}

/// One publish on a connection of its own: the id answered with `200`, or
/// `None` when the server is gone (or answered anything else).
fn try_publish(addr: SocketAddr, body: &str) -> Option<u64> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    write!(
        stream,
        "POST /publish?topic=burst HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    if !answer.starts_with("HTTP/1.1 200") {
        return None;
    }
    answer
        .split("{\"id\":")
        .nth(1)?
        .split('}')
        .next()?
        .parse()
        .ok()
}

/// The `(id, data)` of each event of a poll answer, in order.
fn events_of(json: &str) -> Vec<(u64, String)> {
    json.split("{\"id\":")
        .skip(1)
        .map(|event| {
            let id = event[..event.find(',').expect("a comma")]
                .parse()
                .expect("an id");
            let data = event
                .split("\"data\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("text data");
            (id, data.to_owned())
        })
        .collect()
}

fn poll_all(addr: SocketAddr) -> Vec<(u64, String)> {
    let answer = get(addr, "/poll?topics=burst&after=0");
    assert_eq!(answer.status, 200);
    events_of(&answer.text())
}

fn kill_9(mut child: Child) {
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush.
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

/// The segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the log directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// Where each record of a segment starts (the format of
/// `pushloop::storage::file_log`: a u32 body length, the CRC, the body).
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        starts.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        at += 8 + len as usize;
    }
    starts
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_publish_and_ids_go_on() {
    let dir = TestDir::new("kill");
    let (server, addr, _) = start(&dir.0);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let publisher = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            for n in 0..BURST {
                let body = format!("event {n}");
                match try_publish(addr, &body) {
                    Some(id) => acked.lock().expect("lock").push((id, body)),
                    None => return,
                }
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(60), || acked
            .lock()
            .expect("lock")
            .len()
            >= ACKS_BEFORE_KILL),
        "the burst did not get going"
    );
    kill_9(server);
    publisher.join().expect("the publisher");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() < BURST, "the server died mid-burst");

    let (server, addr, notes) = start(&dir.0);
    let replayed = poll_all(addr);
    // Every acknowledged publish, in order, with its id; at most the one in
    // flight at the kill besides (written, but its answer never left).
    assert_eq!(replayed[..acked.len()], acked[..], "{notes:?}");
    assert!(replayed.len() <= acked.len() + 1);
    assert!(replayed.windows(2).all(|pair| pair[0].0 < pair[1].0));
    // Ids go on after the last one.
    let newest = replayed.last().expect("events").0;
    let next = try_publish(addr, "after the restart").expect("published");
    assert!(next > newest, "{next} after {newest}");
    kill_9(server);
}

#[test]
fn a_record_torn_by_hand_is_cut_off_and_nothing_after_it_is_invented() {
    let dir = TestDir::new("torn");
    let (server, addr, _) = start(&dir.0);
    let ids: Vec<u64> = (0..10)
        .map(|n| try_publish(addr, &format!("event {n}")).expect("published"))
        .collect();
    kill_9(server);

    // Flip a byte in the data of the 7th record (index 6).
    let segment = segments(&dir.0).pop().expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("the segment");
    let starts = record_starts(&bytes);
    assert_eq!(starts.len(), 10, "one record per publish");
    let torn_at = starts[6];
    let next_record = starts[7];
    bytes[next_record - 1] ^= 0x20;
    std::fs::write(&segment, &bytes).expect("torn by hand");

    let (server, addr, notes) = start(&dir.0);
    let said = notes
        .iter()
        .find(|line| line.contains("truncated at byte offset"))
        .unwrap_or_else(|| panic!("no truncation reported: {notes:?}"));
    assert!(said.contains(&format!("offset {torn_at} ")), "{said}");
    let replayed = poll_all(addr);
    let replayed_ids: Vec<u64> = replayed.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        replayed_ids,
        ids[..6],
        "the six before the torn one, no more"
    );
    assert_eq!(
        std::fs::metadata(&segment).expect("the segment").len(),
        torn_at as u64,
        "the file ends where the torn record began"
    );
    let next = try_publish(addr, "after the repair").expect("published");
    assert!(next > ids[9], "ids go on after every id ever given");
    kill_9(server);
}
