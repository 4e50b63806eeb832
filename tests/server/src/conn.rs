//! One thread per connection: read requests, apply faults, write responses.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConnection, StreamOwned};
use serde_json::Value;

use crate::http::{self, chunk, Framing, HttpError, Reader, LAST_CHUNK};
use crate::routes::{self, Body, Response, CONTROL_PREFIX};
use crate::{Fault, Shared};

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Removes the connection from the registry (shutting the socket down) when
/// the thread ends.
struct Guard {
    shared: Arc<Shared>,
    id: usize,
}

impl Guard {
    /// Drop the registry's clone of the socket without shutting it down.
    fn unregister(&self) {
        self.shared.conns.lock().unwrap().remove(&self.id);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(e) = self.shared.conns.lock().unwrap().remove(&self.id) {
            let _ = e.tcp.shutdown(Shutdown::Both);
        }
    }
}

/// How to end the connection after a response.
#[derive(PartialEq, Eq)]
enum After {
    KeepOpen,
    /// Close cleanly (TLS close_notify, then FIN).
    Close,
    /// Close without close_notify (FIN only).
    Abort,
    /// Close with RST (SO_LINGER 0).
    Reset,
}

/// How to write the body.
enum Mode {
    Normal,
    Stall(Duration),
    HalfThenClose,
    TruncatedChunked,
}

#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const SOL_SOCKET_SO_LINGER: (i32, i32) = (1, 13);
    #[cfg(target_vendor = "apple")]
    const SOL_SOCKET_SO_LINGER: (i32, i32) = (0xffff, 0x0080);
    let l = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `s`, pointer to a properly sized `struct linger`.
    unsafe {
        setsockopt(
            s.as_raw_fd(),
            SOL_SOCKET_SO_LINGER.0,
            SOL_SOCKET_SO_LINGER.1,
            &l,
            std::mem::size_of::<Linger>() as u32,
        );
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn set_linger_zero(_s: &TcpStream) {}

pub(crate) fn serve(shared: Arc<Shared>, tcp: TcpStream, id: usize) {
    let guard = Guard {
        shared: shared.clone(),
        id,
    };
    let idle = match shared.conns.lock().unwrap().get(&id) {
        Some(e) => e.idle.clone(),
        None => return,
    };
    let mut s = match &shared.tls {
        Some(cfg) => match ServerConnection::new(cfg.clone()) {
            Ok(c) => Stream::Tls(Box::new(StreamOwned::new(c, tcp))),
            Err(_) => return,
        },
        None => Stream::Plain(tcp),
    };
    let mut reader = Reader::default();
    let mut served = 0usize;
    loop {
        let req = match reader.read_request(&mut s, || *idle.lock().unwrap() = false) {
            Ok(Some(r)) => r,
            Ok(None) | Err(HttpError::Io) => break,
            Err(HttpError::Bad(msg)) => {
                let resp = Response::error(400, &msg, "invalid_request_error", Value::Null);
                let _ = write_response(&shared, &mut s, resp, true, None, Mode::Normal);
                finish(&mut s, &guard, After::Close);
                return;
            }
        };
        served += 1;
        let mut close = req.wants_close() || shared.keepalive_max.is_some_and(|m| served >= m);
        let remaining = shared.keepalive_max.map(|m| m.saturating_sub(served));

        let (resp, mode, after) = if req.path().starts_with(CONTROL_PREFIX) {
            (routes::control(&shared, &req), Mode::Normal, None)
        } else {
            shared.record(&req, id);
            match shared.pop_fault() {
                None => (routes::api(&shared, &req), Mode::Normal, None),
                Some(Fault::Status {
                    code,
                    body,
                    headers,
                }) => {
                    let body = if body.is_empty() {
                        routes::fault_status_body(code)
                    } else {
                        body
                    };
                    let mut r = Response::raw_json(code, body);
                    for (k, v) in headers {
                        let k = k.to_ascii_lowercase();
                        r.headers.retain(|(hk, _)| *hk != k);
                        r.headers.push((k, v));
                    }
                    (r, Mode::Normal, None)
                }
                Some(Fault::Headers(headers)) => {
                    let mut r = routes::api(&shared, &req);
                    for (k, v) in headers {
                        r.headers.retain(|(hk, _)| *hk != k);
                        r.headers.push((k, v));
                    }
                    (r, Mode::Normal, None)
                }
                Some(Fault::DelayBeforeHeaders(d)) => {
                    std::thread::sleep(d);
                    (routes::api(&shared, &req), Mode::Normal, None)
                }
                Some(Fault::StallMidBody(d)) => (routes::api(&shared, &req), Mode::Stall(d), None),
                Some(Fault::ResetMidHeaders) => {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: appl");
                    let _ = s.flush();
                    finish(&mut s, &guard, After::Reset);
                    return;
                }
                Some(Fault::ResetMidBody) => (
                    routes::api(&shared, &req),
                    Mode::HalfThenClose,
                    Some(After::Abort),
                ),
                Some(Fault::CloseWithoutResponse) => {
                    finish(&mut s, &guard, After::Abort);
                    return;
                }
                Some(Fault::MalformedStatusLine) => {
                    let _ = s.write_all(b"HTTP/1.1 abc nonsense\r\n\r\n");
                    let _ = s.flush();
                    finish(&mut s, &guard, After::Abort);
                    return;
                }
                Some(Fault::TruncatedChunked) => (
                    routes::api(&shared, &req),
                    Mode::TruncatedChunked,
                    Some(After::Abort),
                ),
                Some(Fault::InvalidJson) => (
                    Response::raw_json(200, "{not json".to_string()),
                    Mode::Normal,
                    None,
                ),
                Some(Fault::CloseAfterResponse) => {
                    close = true;
                    (routes::api(&shared, &req), Mode::Normal, None)
                }
            }
        };
        let after = after.unwrap_or(if close { After::Close } else { After::KeepOpen });
        let keep_alive_hint = if close { None } else { remaining };
        let mut idle_now = idle.lock().unwrap();
        if write_response(&shared, &mut s, resp, close, keep_alive_hint, mode).is_err() {
            return;
        }
        *idle_now = after == After::KeepOpen && !reader.has_buffered();
        drop(idle_now);
        if after != After::KeepOpen {
            finish(&mut s, &guard, after);
            return;
        }
    }
}

fn finish(s: &mut Stream, guard: &Guard, after: After) {
    match after {
        After::KeepOpen => {}
        After::Close => {
            if let Stream::Tls(t) = s {
                t.conn.send_close_notify();
                let _ = t.flush();
            }
            let _ = s.tcp().shutdown(Shutdown::Write);
            // Give the peer a moment to read before the socket is fully closed,
            // so unread request bytes do not turn the FIN into a RST.
            let _ = s.tcp().set_read_timeout(Some(Duration::from_millis(200)));
            let mut sink = [0u8; 4096];
            while matches!(s.tcp().read(&mut sink), Ok(n) if n > 0) {}
        }
        After::Abort => {
            let _ = s.flush();
            let _ = s.tcp().shutdown(Shutdown::Both);
        }
        After::Reset => {
            set_linger_zero(s.tcp());
            // Drop the registry's duplicate fd so closing ours sends the RST.
            guard.unregister();
        }
    }
}

fn write_response(
    shared: &Shared,
    s: &mut Stream,
    resp: Response,
    close: bool,
    keep_alive_max: Option<usize>,
    mode: Mode,
) -> io::Result<()> {
    let mut headers = resp.headers;
    headers.push(("x-request-id".into(), shared.next_request_id()));
    if let Some(m) = keep_alive_max {
        headers.push(("keep-alive".into(), format!("timeout=60, max={m}")));
    }
    match resp.body {
        Body::Bytes(body) => {
            let half = body.len() / 2;
            match mode {
                Mode::Normal => {
                    let mut out =
                        http::head(resp.status, &headers, Framing::Length(body.len()), close);
                    out.extend_from_slice(&body);
                    s.write_all(&out)?;
                }
                Mode::Stall(d) => {
                    let mut out =
                        http::head(resp.status, &headers, Framing::Length(body.len()), close);
                    out.extend_from_slice(&body[..half]);
                    s.write_all(&out)?;
                    s.flush()?;
                    std::thread::sleep(d);
                    s.write_all(&body[half..])?;
                }
                Mode::HalfThenClose => {
                    let mut out =
                        http::head(resp.status, &headers, Framing::Length(body.len()), close);
                    out.extend_from_slice(&body[..half]);
                    s.write_all(&out)?;
                }
                Mode::TruncatedChunked => {
                    let mut out = http::head(resp.status, &headers, Framing::Chunked, close);
                    let first = half.max(1).min(body.len());
                    if first > 0 {
                        out.extend(chunk(&body[..first]));
                    }
                    s.write_all(&out)?;
                }
            }
            s.flush()
        }
        Body::Sse { events, delay } => {
            s.write_all(&http::head(resp.status, &headers, Framing::Chunked, close))?;
            s.flush()?;
            let half = events.len() / 2;
            let (limit, stall) = match mode {
                Mode::Normal => (events.len(), None),
                Mode::Stall(d) => (events.len(), Some(d)),
                Mode::HalfThenClose => (half, None),
                Mode::TruncatedChunked => (1.min(events.len()), None),
            };
            for (i, ev) in events.iter().take(limit).enumerate() {
                if i > 0 && !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                if i == half {
                    if let Some(d) = stall {
                        std::thread::sleep(d);
                    }
                }
                s.write_all(&chunk(ev))?;
                s.flush()?;
            }
            if limit == events.len() {
                s.write_all(LAST_CHUNK)?;
            }
            s.flush()
        }
    }
}
