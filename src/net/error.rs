//! ureq's errors as llmpool's codes, with a message that names the phase.

use crate::error::{Code, Error};

/// Maps a ureq error to our code and a message that names the phase.
pub fn from_ureq(e: &ureq::Error) -> Error {
    use ureq::Error as U;
    use ureq::Timeout as T;
    let (code, msg) = match e {
        U::Timeout(t) => {
            let phase = match t {
                T::Resolve => "resolving the host name",
                T::Connect => "connecting",
                T::SendRequest | T::SendBody | T::Await100 | T::PerWrite => "sending the request",
                T::RecvResponse => "waiting for the response headers",
                T::RecvBody => "reading the response body",
                T::Global | T::PerCall => "the whole call (timeout_ms)",
                T::PerRead => "reading (per-read timeout)",
                _ => "during the call",
            };
            (Code::Timeout, format!("timed out {phase}"))
        }
        U::HostNotFound => (Code::Connect, "host not found".to_string()),
        U::ConnectionFailed => (Code::Connect, "connection failed".to_string()),
        // Already names the proxy (host:port only) and its answer.
        U::ConnectProxyFailed(m) => (Code::Connect, m.clone()),
        // rustls reports handshake failures through the transport's io::Error.
        U::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            (Code::Tls, format!("TLS error: {io}"))
        }
        U::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                (Code::Connect, format!("connection refused: {io}"))
            }
            std::io::ErrorKind::NotConnected => (Code::Cancelled, "call cancelled".to_string()),
            _ => (Code::Io, format!("i/o error: {io}")),
        },
        U::Tls(m) => (Code::Tls, format!("TLS error: {m}")),
        U::Rustls(r) => (Code::Tls, format!("TLS error: {r}")),
        U::Pem(p) => (Code::Tls, format!("bad PEM certificate: {p}")),
        // ureq writes a request head into the transport's output window line
        // by line (ureq pins its version, so its message is stable).
        U::Protocol(p) if p.to_string().starts_with("output too small") => (
            Code::InvalidArgument,
            format!(
                "a request header line is longer than {} bytes",
                super::buffers::OUTPUT_WINDOW
            ),
        ),
        U::Protocol(p) => (Code::Protocol, format!("HTTP protocol error: {p}")),
        U::BadUri(u) => (Code::InvalidArgument, format!("bad URL: {u}")),
        U::Http(h) => (Code::InvalidArgument, format!("bad request: {h}")),
        U::LargeResponseHeader(a, b) => (
            Code::Protocol,
            format!("response header too large ({a} > {b} bytes)"),
        ),
        U::BodyExceedsLimit(n) => (
            Code::Protocol,
            format!("response body exceeds the limit of {n} bytes"),
        ),
        U::BodyStalled => (Code::Timeout, "response body stalled".to_string()),
        other => (Code::Io, other.to_string()),
    };
    Error::new(code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_name_their_phase() {
        let e = from_ureq(&ureq::Error::Timeout(ureq::Timeout::Connect));
        assert_eq!(e.code, Code::Timeout);
        assert!(e.message.contains("connecting"), "{}", e.message);
        let e = from_ureq(&ureq::Error::Timeout(ureq::Timeout::RecvResponse));
        assert!(e.message.contains("response headers"), "{}", e.message);
    }
}
