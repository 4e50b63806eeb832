//! The one place llmpool talks to the OS below `std`: TCP keep-alive tuning.
//!
//! `std::net::TcpStream` cannot turn on TCP keep-alive or set its idle time, and
//! long generations behind a NAT need both (a silent NAT drop otherwise leaves a
//! call blocked until its timeout).

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
    use std::net::TcpListener;

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
