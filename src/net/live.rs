//! The sockets an agent's connections hold, idle or in use, so that a
//! cancel of every call (`llmpool_cancel`) can shut them all down at once.
//!
//! ureq can track them itself (`register_shutdown`), but it keeps a list
//! that it scans whole on every connection checkout and return: with
//! 5,000 streams in flight that scan was 3% of the CPU. Here a socket
//! takes a numbered slot and gives it back when its connection drops,
//! both in constant time.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, Weak};

use crate::sync::lock;

#[derive(Debug, Default)]
pub struct LiveSockets {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    socks: Vec<Option<Weak<TcpStream>>>,
    free: Vec<usize>,
    /// Set by [`LiveSockets::shutdown_all`]: no socket is added after it.
    closed: bool,
}

/// A socket's place in [`LiveSockets`]; dropping it gives the place back.
#[derive(Debug)]
pub struct LiveSlot {
    set: Arc<LiveSockets>,
    at: usize,
}

impl LiveSockets {
    /// Adds `sock`. Refused once [`shutdown_all`](Self::shutdown_all) ran
    /// (under the same lock), so no connection made meanwhile escapes it.
    pub fn add(set: &Arc<LiveSockets>, sock: &Arc<TcpStream>) -> io::Result<LiveSlot> {
        let mut s = lock(&set.slots);
        if s.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the client's connections were shut down (cancel)",
            ));
        }
        let weak = Some(Arc::downgrade(sock));
        let at = match s.free.pop() {
            Some(at) => {
                s.socks[at] = weak;
                at
            }
            None => {
                s.socks.push(weak);
                s.socks.len() - 1
            }
        };
        Ok(LiveSlot {
            set: set.clone(),
            at,
        })
    }

    /// Shuts down every socket still open (their blocked reads and writes
    /// return at once) and refuses new ones.
    pub fn shutdown_all(&self) {
        let socks: Vec<Arc<TcpStream>> = {
            let mut s = lock(&self.slots);
            s.closed = true;
            s.socks.iter().flatten().filter_map(Weak::upgrade).collect()
        };
        for sock in socks {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }

    /// Sockets held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let s = lock(&self.slots);
        s.socks.len() - s.free.len()
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut s = lock(&self.set.slots);
        s.socks[self.at] = None;
        s.free.push(self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> (Arc<TcpStream>, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (Arc::new(c), s)
    }

    #[test]
    fn slots_are_reused_and_shutdown_reaches_open_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let set = Arc::new(LiveSockets::default());
        let (a, _sa) = pair(&l);
        let (b, _sb) = pair(&l);
        let slot_a = LiveSockets::add(&set, &a).unwrap();
        let slot_b = LiveSockets::add(&set, &b).unwrap();
        assert_eq!(set.len(), 2);
        let at_a = slot_a.at;
        drop(slot_a);
        assert_eq!(set.len(), 1);
        let (c, _sc) = pair(&l);
        let slot_c = LiveSockets::add(&set, &c).unwrap();
        assert_eq!(slot_c.at, at_a, "a freed place is taken again");

        set.shutdown_all();
        // A shut-down socket reads end of stream at once.
        let mut buf = [0u8; 1];
        assert_eq!((&*b).read(&mut buf).unwrap(), 0);
        assert_eq!((&*c).read(&mut buf).unwrap(), 0);
        // `a` had left the set: untouched (its peer sees nothing).
        a.set_nonblocking(true).unwrap();
        let err = (&*a).read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        let (d, _sd) = pair(&l);
        let err = LiveSockets::add(&set, &d).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        drop((slot_b, slot_c));
        assert_eq!(set.len(), 0);
    }
}
