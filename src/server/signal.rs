//! Graceful shutdown on `SIGINT` and `SIGTERM`; a reload on `SIGHUP`.
//!
//! The signals are blocked in the calling thread (and so in every thread it
//! starts afterwards), and one small thread waits for them with `sigwait(3)`
//! and calls [`Handle::shutdown`]: no code runs inside a signal handler, so
//! nothing here has to be async-signal-safe. A second signal exits at once
//! (status 130), for when a shutdown hangs on a peer that will not read.
//! `SIGHUP`, the usual "read your configuration again", runs a function of
//! yours on that thread, off the loop, where it may read files (the demo
//! reloads its TLS certificate that way, see [`Handle`]'s `reload_tls`).
//!
//! This is one of the two places pushloop uses `unsafe` (the other is
//! `last_write.rs`): the C calls that manage the signal mask. `libc` is
//! already in the tree as a dependency of `mio`.

#![allow(unsafe_code)]

use std::io;

use crate::server::Handle;

/// What `SIGHUP` does: called on the signal thread, once per signal.
type OnHangup = Box<dyn FnMut() + Send>;

/// Blocks `SIGINT`/`SIGTERM` and starts the thread that turns them into
/// [`Handle::shutdown`]. Call it first thing in `main`, before other threads start.
pub fn shutdown_on_signals(handle: Handle) -> io::Result<()> {
    wait_for_signals(handle, None)
}

/// [`shutdown_on_signals`], and `SIGHUP` calls `on_hangup` on the signal
/// thread (blocking work is fine there; the loop keeps serving). Without
/// this, `SIGHUP` keeps its default action and ends the process.
pub fn shutdown_on_signals_reload_on_hangup(
    handle: Handle,
    on_hangup: impl FnMut() + Send + 'static,
) -> io::Result<()> {
    wait_for_signals(handle, Some(Box::new(on_hangup)))
}

fn wait_for_signals(handle: Handle, mut on_hangup: Option<OnHangup>) -> io::Result<()> {
    let hangup = on_hangup.is_some();
    // SAFETY: `sigset_t` is plain data that `sigemptyset` fully initialises;
    // the pointers passed are to live locals.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if hangup {
            libc::sigaddset(&mut set, libc::SIGHUP);
        }
        set
    };
    // SAFETY: `set` is initialised above; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new()
        .name("pushloop-signals".into())
        .spawn(move || {
            let mut first = true;
            loop {
                let mut signal = 0;
                // SAFETY: `set` is initialised and blocked in this thread (inherited
                // mask); `signal` is a live local the call writes to.
                let rc = unsafe { libc::sigwait(&set, &mut signal) };
                if rc != 0 {
                    continue;
                }
                if signal == libc::SIGHUP {
                    if let Some(on_hangup) = on_hangup.as_mut() {
                        on_hangup();
                    }
                    continue;
                }
                if !first {
                    std::process::exit(130);
                }
                first = false;
                handle.shutdown();
            }
        })?;
    Ok(())
}
