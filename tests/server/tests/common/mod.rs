//! A tiny raw HTTP/1.1 client (plain TcpStream or rustls) for the tests.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use llmpool_testserver::TestServer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

pub struct Client {
    pub r: BufReader<Box<dyn Rw>>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// For chunked responses: the chunks, in order.
    pub chunks: Vec<Vec<u8>>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

pub fn tls_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl Client {
    pub fn connect(srv: &TestServer) -> Client {
        Self::connect_name(srv, "127.0.0.1")
    }

    pub fn connect_name(srv: &TestServer, name: &str) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let s: Box<dyn Rw> = match srv.ca_pem() {
            None => Box::new(tcp),
            Some(pem) => {
                let conn = rustls::ClientConnection::new(
                    tls_config(&pem),
                    ServerName::try_from(name.to_string()).unwrap(),
                )
                .unwrap();
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        Client {
            r: BufReader::new(s),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.r.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            req.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.send_raw(req.as_bytes())
    }

    fn line(&mut self) -> io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(l.trim_end_matches(['\r', '\n']).to_string())
    }

    /// Read one response; errors on EOF/truncation.
    pub fn read(&mut self) -> io::Result<Resp> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
        let mut headers = Vec::new();
        loop {
            let l = self.line()?;
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            status_line,
            headers,
            body: Vec::new(),
            chunks: Vec::new(),
        };
        if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line()?, 16)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if size == 0 {
                    assert_eq!(self.line()?, "");
                    break;
                }
                let mut c = vec![0; size];
                self.r.read_exact(&mut c)?;
                assert_eq!(self.line()?, "");
                resp.body.extend_from_slice(&c);
                resp.chunks.push(c);
            }
        } else {
            let n: usize = resp.header("content-length").unwrap().parse().unwrap();
            let mut b = vec![0; n];
            self.r.read_exact(&mut b)?;
            resp.body = b;
        }
        Ok(resp)
    }

    pub fn request(&mut self, method: &str, path: &str, body: &str) -> io::Result<Resp> {
        self.send(method, path, &[("content-type", "application/json")], body)?;
        self.read()
    }

    /// True when the server has closed the connection (EOF or error on read
    /// after discarding any leftover bytes).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 4096];
        for _ in 0..1000 {
            match self.r.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return e.kind() != io::ErrorKind::WouldBlock
                        && e.kind() != io::ErrorKind::TimedOut
                }
            }
        }
        false
    }
}

pub const CHAT: &str =
    r#"{"model":"m1","messages":[{"role":"user","content":"hello there world"}]}"#;
