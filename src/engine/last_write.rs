//! The last write of a closing connection, sent with its FIN in one segment.
//!
//! When the peer has said its last word (its WebSocket Close frame), the loop
//! writes our last bytes (the Close frame echoed) and closes the socket at once
//! (see [`crate::server::connection::ClosingStage`]). Written plainly, the bytes
//! leave in one TCP segment (`TCP_NODELAY`) and `close` sends the FIN in a
//! second. Written with `MSG_MORE` ("more is coming", Linux `send(2)`), the
//! kernel holds the last partial segment, and `close` sets FIN on it and sends
//! both as one: a packet fewer for both ends, each of which costs a send, a
//! receive and a wake-up. Neither `std` nor `mio` offers send flags, so this
//! calls `sendmsg(2)` itself. Apart from `signal.rs`, this is the only `unsafe`
//! in pushloop. On other systems it is a plain vectored write.

#![allow(unsafe_code)]

use std::io::{self, IoSlice, Write};

use mio::net::TcpStream;

/// A writer for a connection's last bytes; the caller closes the socket next.
pub struct LastWrite<'a>(pub &'a mut TcpStream);

impl Write for LastWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    #[cfg(target_os = "linux")]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `msghdr` is plain data; all-zero is a valid empty header
        // (no name, no control data), and only the iovec fields are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // `IoSlice` is ABI-compatible with `iovec` on Unix (std's guarantee),
        // and the kernel only reads through this pointer.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: the fd is the stream's own open socket; `msg` points to
        // `bufs`, which outlives the call and which the kernel only reads.
        let sent = unsafe {
            libc::sendmsg(
                self.0.as_raw_fd(),
                &msg,
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn the_bytes_arrive_whole_when_the_socket_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut server = TcpStream::from_std(server);
        let parts = [IoSlice::new(b"last "), IoSlice::new(b"words")];
        let mut sent = 0;
        while sent < 10 {
            sent += LastWrite(&mut server).write_vectored(&parts).unwrap();
        }
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
    }
}
