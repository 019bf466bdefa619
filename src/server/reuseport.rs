//! Listening sockets: one for a loop, or one per loop on the same port.
//!
//! **The backlog.** `mio` (like `std`) listens with a backlog of 128: under a
//! burst of opens the kernel's accept queue overflows and clients wait for a
//! SYN retransmission (1 s, then 3 s). The listener is bound by `mio`, then
//! `listen(2)` is called again with [`BACKLOG`], which Linux and the BSDs
//! allow on a listening socket to change its queue (the kernel still caps it
//! at `net.core.somaxconn`, 4096 on current Linux).
//!
//! **`TCP_NODELAY` once.** Small frames and events must not wait for
//! Nagle's algorithm (RFC 896), so every connection needs `TCP_NODELAY`.
//! Linux copies a listener's options to the sockets it accepts, so the
//! option is set once on each listener instead of once per connection: one
//! system call fewer per open (of about ten). Elsewhere the loop still sets
//! it on each accepted socket.
//!
//! **Several loops on one port.** With `SO_REUSEPORT` (Linux ≥ 3.9), several
//! sockets of the same user listen on one port and the kernel spreads new
//! connections over them by a hash of the peer's address and port: each loop
//! accepts on its own socket, with no lock and no hand-over. The option is
//! turned on on the first loop's listener only when a second loop starts
//! (Linux forms the group then, see [`more_listeners`]): a server with one
//! loop keeps an exclusive port, so a second copy started by mistake fails
//! with "address in use" instead of silently taking half the clients. With
//! several loops, another process of the *same user* could join the port;
//! no other user can.
//!
//! Other systems either lack the option or do not balance with it (macOS and
//! the BSDs give every connection to one socket; FreeBSD's balancing option
//! is `SO_REUSEPORT_LB`): there, [`more_listeners`] fails and the first loop
//! accepts for all and hands each connection to the next loop in turn,
//! through that loop's command queue and waker. `Config::share_port` chooses
//! that way on Linux too.
//!
//! Neither `std` nor `mio` can set a socket option before `bind(2)`, which
//! `SO_REUSEPORT` needs; the `socket2` crate can, but would be a runtime
//! dependency for five system calls. This file is the third and last place
//! pushloop uses `unsafe` (after `signal.rs` and `engine/last_write.rs`):
//! each call is a plain system call on a descriptor this file owns, with its
//! `SAFETY` note.

#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;

/// The accept queue asked of the kernel: a burst of a thousand opens waits in
/// it rather than in SYN retransmissions. (nginx and µWebSockets ask for 511
/// and 512; Go asks for `somaxconn`.)
pub const BACKLOG: i32 = 1024;

/// A listener on `addr` with [`BACKLOG`] (`SO_REUSEADDR` set by `mio`, so a
/// restarted server can bind while old connections linger in `TIME_WAIT`).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `listen(2)` on the listener's own open socket; it reads no
        // memory of ours.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        set_flag(listener.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY)?;
    }
    Ok(listener)
}

/// Whether accepted sockets come with `TCP_NODELAY` from their listener
/// (see the module doc); if not, the loop sets it on each.
pub const ACCEPTED_HAVE_NODELAY: bool = cfg!(target_os = "linux");

/// `count` more listeners on `first`'s address, in one `SO_REUSEPORT` group
/// with it (see the module doc). Fails where the kernel would not balance
/// them; the caller then hands connections out itself.
#[cfg(target_os = "linux")]
pub fn more_listeners(first: &TcpListener, count: usize) -> io::Result<Vec<TcpListener>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let addr = first.local_addr()?;
    // Linux puts a listening socket into a group when another socket with
    // the option binds beside it, even if the option came after its own
    // bind (`reuseport_add_sock`).
    set_flag(first.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
    let (storage, len) = socket_address(addr);
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        // SAFETY: `socket(2)` takes no pointer; a non-negative result is a new
        // descriptor that nothing else owns, so `OwnedFd` may close it.
        let fd = unsafe {
            libc::socket(
                domain,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by `socket(2)` and is owned by no one else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        set_flag(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
        set_flag(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
        set_flag(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY)?;
        // SAFETY: `storage` holds a valid `sockaddr_in`/`sockaddr_in6` of
        // `len` bytes for the socket's family, and outlives the call.
        let bound = unsafe {
            libc::bind(
                fd,
                std::ptr::from_ref(&storage).cast::<libc::sockaddr>(),
                len,
            )
        };
        // SAFETY: `listen(2)` on the socket just bound; no pointer.
        if bound != 0 || unsafe { libc::listen(fd, BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        listeners.push(TcpListener::from_std(std::net::TcpListener::from(owned)));
    }
    Ok(listeners)
}

/// See the module doc: other systems hand connections out instead.
#[cfg(not(target_os = "linux"))]
pub fn more_listeners(_first: &TcpListener, _count: usize) -> io::Result<Vec<TcpListener>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT does not balance connections on this system",
    ))
}

/// Sets a boolean socket option to 1.
#[cfg(target_os = "linux")]
fn set_flag(fd: std::os::fd::RawFd, level: libc::c_int, option: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live `c_int` and its size is passed with it; the
    // kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            std::ptr::from_ref(&on).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `addr` as the kernel takes it, and its length.
#[cfg(target_os = "linux")]
fn socket_address(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: `sockaddr_storage` is plain data; all-zero is a valid value
    // (unspecified family), and the fields of one family are set below.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: `sockaddr_storage` is large and aligned enough for any
            // address (its purpose); `storage` is not otherwise borrowed.
            let sin = unsafe { &mut *std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for the IPv6 address.
            let sin6 =
                unsafe { &mut *std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn listeners_in_a_group_share_the_port_and_the_connections() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let others = more_listeners(&first, 2).unwrap();
        assert!(others
            .iter()
            .all(|listener| listener.local_addr().unwrap() == addr));
        // Connections land on the three sockets (the kernel's hash of each
        // client port decides which); 90 clients miss none with near certainty.
        let clients: Vec<_> = (0..90)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut counts = Vec::new();
        for listener in std::iter::once(&first).chain(&others) {
            let mut accepted = 0;
            while listener.accept().is_ok() {
                accepted += 1;
            }
            counts.push(accepted);
        }
        assert_eq!(counts.iter().sum::<usize>(), clients.len());
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
    }

    #[test]
    fn accepted_sockets_have_nodelay() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(error) => panic!("{error}"),
            }
        };
        assert_eq!(accepted.nodelay().unwrap(), ACCEPTED_HAVE_NODELAY);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_single_listener_keeps_its_port_to_itself() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let stranger = std::net::TcpListener::bind(addr);
        assert!(stranger.is_err(), "no second server on the same port");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn ipv6_listeners_join_too() {
        let Ok(first) = bind("[::1]:0".parse().unwrap()) else {
            return; // No IPv6 loopback on this machine.
        };
        let others = more_listeners(&first, 1).unwrap();
        assert_eq!(others[0].local_addr().unwrap(), first.local_addr().unwrap());
    }
}
