//! `llmpool-testserver`: a loopback HTTP/1.1 server (plain or TLS) that
//! imitates an OpenAI-compatible gateway for tests, demos and benchmarks.
//!
//! It counts connections and requests, records requests, supports
//! keep-alive (with an optional per-connection request limit), and injects
//! faults from a FIFO queue ([`TestServer::push_fault`] or
//! `POST /v1/_test/faults`).
//!
//! Routes: `POST /v1/chat/completions` (JSON or SSE with `"stream": true`),
//! `POST /v1/embeddings`, `GET /v1/models`, and for raw bodies `POST /v1/echo`,
//! `POST /v1/audio/speech`, `POST /v1/audio/transcriptions` (see `media`). Control routes (not counted, never
//! faulted, no API key needed): `POST /v1/_test/faults` (a fault object or an
//! array of them, see [`fault_from_json`]; `times` repeats one),
//! `GET /v1/_test/stats`, `POST /v1/_test/reset`, `POST /v1/_test/close_idle`.
//!
//! `POST /v1/responses` and `POST /v1/messages` answer in the Responses and
//! Messages APIs' shapes, streamed or not (see `fixtures`).
//!
//! Test-only request fields for chat streams: `x_test_sse_error` (string),
//! `x_test_sse_comments` (bool), `x_test_stream_delay_ms` (integer),
//! `x_test_fixture` (a named stream as some gateway sends it: see
//! `fixtures`), `x_test_split_multibyte` (bool).

mod conn;
mod faults;
mod fixtures;
mod http;
mod media;
mod routes;
mod tls;
mod unanswered;

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use faults::{fault_from_json, faults_from_json, Fault};
pub use media::{fnv1a, speech_audio};
pub use unanswered::Unanswered;

/// Most recent requests kept by [`TestServer::recorded`] (older ones are dropped).
pub const MAX_RECORDED: usize = 100_000;

/// Server options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve HTTPS with a freshly generated CA + leaf certificate.
    pub tls: bool,
    /// Port on 127.0.0.1; 0 picks an ephemeral port.
    pub port: u16,
    /// Close a connection after this many requests (like nginx
    /// `keepalive_requests`); `None` keeps connections open.
    pub keepalive_max: Option<usize>,
    /// If set, API requests need `Authorization: Bearer <key>` (else 401).
    pub required_key: Option<String>,
}

/// A recorded (non-control) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent (including any query string).
    pub path: String,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8; chunked bodies are de-chunked).
    pub body: String,
    /// Id of the connection it came on (1 for the first accepted connection).
    pub connection_id: usize,
}

impl Recorded {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

pub(crate) struct ConnEntry {
    pub tcp: TcpStream,
    /// True while the connection waits between requests. The connection
    /// thread holds this lock while writing a response and sets it before
    /// releasing, so a client that has seen a full response always finds its
    /// connection idle.
    pub idle: Arc<Mutex<bool>>,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub requests: usize,
    pub by_path: HashMap<String, usize>,
    pub recorded: VecDeque<Recorded>,
}

/// State shared by the accept thread, connection threads and the handle.
pub(crate) struct Shared {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub keepalive_max: Option<usize>,
    pub stop: AtomicBool,
    pub accepted: AtomicUsize,
    pub next_conn_id: AtomicUsize,
    pub response_counter: AtomicU64,
    pub completion_counter: AtomicU64,
    pub stats: Mutex<Stats>,
    pub faults: Mutex<VecDeque<Fault>>,
    pub required_key: Mutex<Option<String>>,
    pub conns: Mutex<HashMap<usize, ConnEntry>>,
}

impl Shared {
    pub fn next_request_id(&self) -> String {
        format!(
            "req-{}",
            self.response_counter.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    pub fn next_completion_id(&self) -> u64 {
        self.completion_counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn record(&self, req: &http::Request, connection_id: usize) {
        let mut st = self.stats.lock().unwrap();
        st.requests += 1;
        *st.by_path.entry(req.path().to_string()).or_insert(0) += 1;
        if st.recorded.len() >= MAX_RECORDED {
            st.recorded.pop_front();
        }
        st.recorded.push_back(Recorded {
            method: req.method.clone(),
            path: req.target.clone(),
            headers: req.headers.clone(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            connection_id,
        });
    }

    pub fn pop_fault(&self) -> Option<Fault> {
        self.faults.lock().unwrap().pop_front()
    }

    pub fn reset(&self) {
        self.faults.lock().unwrap().clear();
        *self.stats.lock().unwrap() = Stats::default();
        self.accepted.store(0, Ordering::SeqCst);
    }

    pub fn stats_json(&self) -> Value {
        let st = self.stats.lock().unwrap();
        let by_path: serde_json::Map<String, Value> = st
            .by_path
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "connections_accepted": self.accepted.load(Ordering::SeqCst),
            "open_connections": self.conns.lock().unwrap().len(),
            "requests": st.requests,
            "requests_by_path": by_path,
            "pending_faults": self.faults.lock().unwrap().len(),
        })
    }

    /// Shut down every idle keep-alive connection and wait (up to 2 s) for
    /// their threads to finish. Returns how many were closed.
    pub fn close_idle(&self) -> usize {
        let candidates: Vec<(usize, Arc<Mutex<bool>>)> = self
            .conns
            .lock()
            .unwrap()
            .iter()
            .map(|(id, e)| (*id, e.idle.clone()))
            .collect();
        // Wait briefly for connections that are finishing a response.
        let lock_deadline = Instant::now() + Duration::from_millis(200);
        let mut closed = Vec::new();
        for (id, idle) in candidates {
            let guard = loop {
                match idle.try_lock() {
                    Ok(g) => break Some(g),
                    Err(_) if Instant::now() < lock_deadline => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(_) => break None,
                }
            };
            if let Some(g) = guard {
                if *g {
                    if let Some(e) = self.conns.lock().unwrap().get(&id) {
                        let _ = e.tcp.shutdown(Shutdown::Both);
                        closed.push(id);
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let conns = self.conns.lock().unwrap();
            if closed.iter().all(|id| !conns.contains_key(id)) {
                break;
            }
            drop(conns);
            std::thread::sleep(Duration::from_millis(2));
        }
        closed.len()
    }
}

/// A running server; stops on drop.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Option<String>,
    accept_thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Bind 127.0.0.1 and start serving on a background thread.
    pub fn start(opts: Options) -> std::io::Result<TestServer> {
        let (tls, ca_pem) = if opts.tls {
            let m = tls::material()?;
            (Some(m.config.clone()), Some(m.ca_pem.clone()))
        } else {
            (None, None)
        };
        let listener = TcpListener::bind(("127.0.0.1", opts.port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            tls,
            keepalive_max: opts.keepalive_max,
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            next_conn_id: AtomicUsize::new(0),
            response_counter: AtomicU64::new(0),
            completion_counter: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(VecDeque::new()),
            required_key: Mutex::new(opts.required_key),
            conns: Mutex::new(HashMap::new()),
        });
        let sh = shared.clone();
        let accept_thread = std::thread::Builder::new()
            .name(format!("testserver-accept-{}", addr.port()))
            .spawn(move || accept_loop(sh, listener))?;
        Ok(TestServer {
            shared,
            addr,
            ca_pem,
            accept_thread: Some(accept_thread),
        })
    }

    /// A plain-HTTP server on an ephemeral port.
    pub fn plain() -> TestServer {
        TestServer::start(Options::default()).expect("start plain test server")
    }

    /// A TLS server on an ephemeral port.
    pub fn tls() -> TestServer {
        TestServer::start(Options {
            tls: true,
            ..Options::default()
        })
        .expect("start TLS test server")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/v1` or `https://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/v1", self.port())
    }

    /// PEM of the CA that signed the server certificate (TLS only).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// TCP connections accepted (since start or the last reset).
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    /// Requests parsed, faulted ones included, control requests excluded.
    pub fn requests(&self) -> usize {
        self.shared.stats.lock().unwrap().requests
    }

    /// Requests whose path (without query) ends with `path_suffix`.
    pub fn requests_to(&self, path_suffix: &str) -> usize {
        let st = self.shared.stats.lock().unwrap();
        st.by_path
            .iter()
            .filter(|(p, _)| p.ends_with(path_suffix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Recorded requests, oldest first (at most [`MAX_RECORDED`]).
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared
            .stats
            .lock()
            .unwrap()
            .recorded
            .iter()
            .cloned()
            .collect()
    }

    /// Queue a fault; each non-control request pops the next one.
    pub fn push_fault(&self, f: Fault) {
        self.shared.faults.lock().unwrap().push_back(f);
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults.lock().unwrap().len()
    }

    pub fn set_required_key(&self, key: Option<String>) {
        *self.shared.required_key.lock().unwrap() = key;
    }

    /// Silently close every keep-alive connection that is idle between
    /// requests (like a load balancer dropping idle connections). Returns once
    /// those connections are gone (or after 2 s).
    pub fn close_idle_connections(&self) {
        self.shared.close_idle();
    }

    /// Clear queued faults, counters and recorded requests.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        for e in self.shared.conns.lock().unwrap().values() {
            let _ = e.tcp.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match incoming {
            Ok(s) => s,
            Err(_) => {
                // e.g. EMFILE: back off a little.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let id = shared.next_conn_id.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = tcp.set_nodelay(true);
        let Ok(clone) = tcp.try_clone() else { continue };
        shared.conns.lock().unwrap().insert(
            id,
            ConnEntry {
                tcp: clone,
                idle: Arc::new(Mutex::new(true)),
            },
        );
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("testserver-conn-{id}"))
            .spawn(move || conn::serve(sh, tcp, id));
        if spawned.is_err() {
            if let Some(e) = shared.conns.lock().unwrap().remove(&id) {
                let _ = e.tcp.shutdown(Shutdown::Both);
            }
        }
    }
}
