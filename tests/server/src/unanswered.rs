//! A gateway that never answers the SYN, for tests of connects that hang.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A loopback listener whose accept queue is full: Linux drops further
/// SYNs, so a connect to `addr` hangs until its timeout. Keep it alive
/// while the test needs the hang.
pub struct Unanswered {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fill: Vec<TcpStream>,
}

impl Unanswered {
    pub fn new() -> Unanswered {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        // SAFETY: `l` owns an open listening socket; listen() again only
        // shrinks its backlog (to one pending connection on Linux).
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let addr = l.local_addr().expect("local addr");
        let mut fill = Vec::new();
        // Fill the queue until a connect no longer completes.
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fill.push(s),
                Err(_) => {
                    return Unanswered {
                        addr,
                        _listener: l,
                        _fill: fill,
                    }
                }
            }
        }
        panic!("the listener's backlog never filled");
    }
}

impl Default for Unanswered {
    fn default() -> Self {
        Unanswered::new()
    }
}
