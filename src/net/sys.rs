//! The one place llmpool talks to the OS below `std`: TCP keep-alive tuning
//! and a one-syscall liveness probe for pooled connections.
//!
//! `std::net::TcpStream` cannot turn on TCP keep-alive or set its idle time, and
//! long generations behind a NAT need both (a silent NAT drop otherwise leaves a
//! call blocked until its timeout). Its only non-blocking peek needs three
//! system calls (set non-blocking, peek, set blocking) on every reuse.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

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
