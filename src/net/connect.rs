//! Opening a TCP connection that a cancelled async call stops waiting for.
//!
//! A call's cancel shuts down the sockets it registered (see `exec::token`),
//! but a socket still connecting is not usable yet, and `std`'s connect
//! blocks until the peer answers or the timeout passes (an unreachable or
//! overloaded gateway: `connect_timeout_ms`, or minutes without one). An
//! async call therefore connects without blocking and waits in short
//! slices, looking at its token between them. Blocking calls have no token
//! and connect as `std` does.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::sys;
use crate::exec::fiber;
use crate::exec::reactor::Registration;
use crate::exec::token::CallToken;

/// How long a wait lasts before the token is looked at again: a cancel
/// ends a connect within about this long.
pub const SLICE: Duration = Duration::from_millis(20);

/// Connects to `addr` within `timeout` (`None`: the system's own limit).
/// With a `token`, gives up within [`SLICE`] once it is cancelled, with an
/// error [`is_cancel`] recognises. A timeout is `ErrorKind::TimedOut`.
pub fn connect(
    addr: &SocketAddr,
    timeout: Option<Duration>,
    token: Option<&CallToken>,
) -> io::Result<TcpStream> {
    let Some(token) = token else {
        return match timeout {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        };
    };
    if token.is_cancelled() {
        return Err(cancelled());
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let stream = sys::nonblocking_socket(addr)?;
    if !sys::start_connect(&stream, addr)? {
        // On a fiber the wait suspends it (the reactor wakes it when the
        // connect ends); dropped before the connection registers itself.
        let reg = if fiber::on_fiber() {
            Registration::new(stream.as_raw_fd())
        } else {
            None
        };
        loop {
            if token.is_cancelled() {
                return Err(cancelled());
            }
            let slice = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connection timed out",
                        ));
                    }
                    left.min(SLICE)
                }
                None => SLICE,
            };
            match &reg {
                Some(reg) => {
                    let seen = reg.generation();
                    if sys::is_writable(&stream)? {
                        break;
                    }
                    // No slices here: a cancel wakes the fiber itself.
                    let Some(w) = fiber::current() else { break };
                    if token.watch(w) {
                        reg.wait(seen, deadline);
                    }
                    token.unwatch();
                }
                None => {
                    if sys::wait_writable(&stream, slice)? {
                        break;
                    }
                }
            }
        }
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        // Writable with no error pending should mean connected; a peer
        // address proves it (a hang-up without an error would not have one).
        stream.peer_addr()?;
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// The cause inside the error a cancelled connect returns.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connect cancelled")
    }
}

impl std::error::Error for Cancelled {}

fn cancelled() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, Cancelled)
}

/// Whether `e` is the error [`connect`] returns for a cancelled call.
pub fn is_cancel(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|c| c.is::<Cancelled>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    fn token() -> Arc<CallToken> {
        Arc::new(CallToken::new(1))
    }

    #[test]
    fn connects_and_the_stream_blocks_again() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tok = token();
        let mut s = connect(
            &l.local_addr().unwrap(),
            Some(Duration::from_secs(5)),
            Some(&tok),
        )
        .unwrap();
        let (mut peer, _) = l.accept().unwrap();
        s.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        // Blocking again: a read waits for its timeout, not WouldBlock at once.
        s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let t = Instant::now();
        assert!(s.read(&mut buf).is_err());
        assert!(t.elapsed() >= Duration::from_millis(20));
        // IPv6 when the machine has it.
        if let Ok(l6) = TcpListener::bind("[::1]:0") {
            connect(&l6.local_addr().unwrap(), None, Some(&tok)).unwrap();
        }
    }

    #[test]
    fn a_refused_connect_fails_at_once() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let t = Instant::now();
        let e = connect(&addr, Some(Duration::from_secs(5)), Some(&token())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        assert!(t.elapsed() < Duration::from_secs(1));
        let e = connect(&addr, None, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn a_hanging_connect_times_out_or_ends_on_cancel() {
        let hang = llmpool_testserver::Unanswered::new();
        let addr = hang.addr;
        let t = Instant::now();
        let e = connect(&addr, Some(Duration::from_millis(150)), Some(&token())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(!is_cancel(&e));
        assert!(t.elapsed() >= Duration::from_millis(150));

        let tok = token();
        let t2 = tok.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let at = Instant::now();
            t2.cancel();
            at
        });
        let e = connect(&addr, Some(Duration::from_secs(10)), Some(&tok)).unwrap_err();
        let ended = Instant::now();
        let cancelled_at = canceller.join().unwrap();
        assert!(is_cancel(&e), "{e}");
        // One slice plus scheduling; generous for a busy machine.
        assert!(
            ended - cancelled_at < Duration::from_millis(500),
            "{:?}",
            ended - cancelled_at
        );
        // Already cancelled: no socket is even opened.
        assert!(is_cancel(&connect(&addr, None, Some(&tok)).unwrap_err()));
    }
}
