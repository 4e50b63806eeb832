//! The one place llmpool talks to the OS below `std`: TCP keep-alive tuning,
//! a one-syscall liveness probe for pooled connections, and the pieces of a
//! non-blocking connect.
//!
//! `std::net::TcpStream` cannot turn on TCP keep-alive or set its idle time, and
//! long generations behind a NAT need both (a silent NAT drop otherwise leaves a
//! call blocked until its timeout). Its only non-blocking peek needs three
//! system calls (set non-blocking, peek, set blocking) on every reuse. Its
//! `connect_timeout` blocks until the connection is up or the timeout passes,
//! so a cancelled call could not stop waiting (see `net::connect`).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// A new, unconnected TCP socket for `addr`'s family, non-blocking and
/// close-on-exec.
pub fn nonblocking_socket(addr: &SocketAddr) -> io::Result<TcpStream> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let ty = libc::SOCK_STREAM;
    // SAFETY: plain system call with integer arguments; it returns a new
    // descriptor or -1.
    let fd = unsafe { libc::socket(domain, ty, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the open socket just created and owned by nothing
    // else; the stream now owns it and closes it on every path.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // SAFETY: `fd` is open (owned by `stream`); F_SETFD takes an int.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        #[cfg(target_vendor = "apple")]
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_NOSIGPIPE, 1)?;
        stream.set_nonblocking(true)?;
    }
    Ok(stream)
}

/// Starts connecting a non-blocking socket: true when connected at once,
/// false while the connection is in progress (wait with
/// [`wait_writable`]).
pub fn start_connect(stream: &TcpStream, addr: &SocketAddr) -> io::Result<bool> {
    let rc = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: an all-zero `sockaddr_in` is valid (integers and byte
            // arrays only); the fields that matter are set below.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: the pointer refers to a live local of exactly the
            // length passed; connect does not retain it.
            unsafe {
                libc::connect(
                    stream.as_raw_fd(),
                    &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, all-zero is a valid `sockaddr_in6`.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: as above.
            unsafe {
                libc::connect(
                    stream.as_raw_fd(),
                    &sin6 as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // An interrupted non-blocking connect goes on in the background.
        Some(libc::EINPROGRESS) | Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

/// Waits up to `d` for a connecting socket to become writable, which it
/// does when the connect has finished, either way (see `take_error`).
pub fn wait_writable(stream: &TcpStream, d: Duration) -> io::Result<bool> {
    // Rounded up, so a short wait never turns into a busy loop.
    let ms = d.as_micros().div_ceil(1000).clamp(1, i32::MAX as u128) as libc::c_int;
    poll_writable(stream, ms)
}

/// Whether a connecting socket is writable right now (see [`wait_writable`]).
pub fn is_writable(stream: &TcpStream) -> io::Result<bool> {
    poll_writable(stream, 0)
}

fn poll_writable(stream: &TcpStream, ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid, live `pollfd`, and a count of 1 to match.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(e),
        };
    }
    Ok(rc > 0)
}

/// One `recv` that never blocks, whatever the socket's mode: the socket is
/// shared with blocking calls (the pool), so its mode is not changed.
/// `ErrorKind::WouldBlock` when nothing waits.
pub fn recv_nowait(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` writable bytes; the fd is live.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `send` that never blocks (nor raises SIGPIPE), as [`recv_nowait`].
pub fn send_nowait(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` readable bytes; the fd is live.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Turns on TCP keep-alive: the first probe after `idle`, then every `idle / 3`
/// (at least one second).
pub fn set_tcp_keepalive(stream: &TcpStream, idle: Duration) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let idle_s = idle.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    let interval_s = (idle_s / 3).max(1);
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle_s)?;
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, interval_s)?;
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3)?;
    }
    #[cfg(target_os = "macos")]
    {
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPALIVE, idle_s)?;
        let _ = interval_s;
    }
    Ok(())
}

/// Whether a pooled connection can carry another request: nothing to read
/// yet (reading would block). End of stream (the server closed it), stray
/// bytes (a desynchronised exchange) or an error all mean it cannot.
pub fn is_reusable(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket borrowed from a live `TcpStream`; the
    // buffer is a local byte, valid for the one byte passed as its length.
    // MSG_DONTWAIT makes only this call non-blocking; MSG_PEEK leaves any
    // data in the socket.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            &mut byte as *mut u8 as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let e = io::Error::last_os_error();
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        )
    }
}

fn setsockopt_int(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket borrowed from a live `TcpStream`; the value
    // pointer refers to a local `c_int` that outlives the call, and the length
    // passed is exactly its size. setsockopt does not retain the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn reusable_until_the_peer_writes_or_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert!(is_reusable(&client));
        assert!(is_reusable(&client), "peeking twice changes nothing");
        server.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!is_reusable(&client), "stray bytes");
        let client2 = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server2, _) = listener.accept().unwrap();
        drop(server2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!is_reusable(&client2), "closed by the peer");
        // The probe leaves the socket blocking: a read waits for its timeout.
        let client3 = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server3, _) = listener.accept().unwrap();
        assert!(is_reusable(&client3));
        client3
            .set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let t = std::time::Instant::now();
        assert!(std::io::Read::read(&mut &client3, &mut [0u8; 1]).is_err());
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn keepalive_is_visible_on_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        set_tcp_keepalive(&stream, Duration::from_secs(30)).unwrap();
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid fd, out-pointers to locals of the right size.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_KEEPALIVE,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(value, 1);
    }
}
