//! Compatibility suite against real OpenAI-compatible servers that nobody
//! here wrote:
//!
//! * llama.cpp's `llama-server` with SmolLM2-135M-Instruct (Q4_1): chat,
//!   streaming with usage, embeddings (second instance with
//!   `--embeddings --pooling mean`), a 401 on a wrong `--api-key`, and its
//!   `Keep-Alive: max=100` closing a pooled connection after 100 requests
//!   (this llama-server also closes the connection right after every
//!   streamed answer: the call after a stream must reconnect for free);
//! * the LiteLLM proxy with `mock_response` models: chat, its own SSE
//!   chunking and header style, and connection reuse.
//!
//! The servers are set up by `tests/compat/setup-llama.sh` and
//! `tests/compat/setup-litellm.sh` (both run by `.ci/compat-setup.sh`) under
//! `target/compat/`. When one is missing its test prints `SKIPPED: <reason>`
//! and passes, unless `LLMPOOL_REQUIRE_ALL=1`, where a skip fails the test.
//!
//! Every server binds 127.0.0.1 on a free port, and is stopped by PID (its
//! process group) when its guard drops, also when a check panics. The tests
//! take one lock so that only one server works at a time on a small machine.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use llmpool::{Client, Code, Response};
use serde_json::{json, Value};

/// Like `println!`, but visible without `--nocapture` (see `say`).
macro_rules! report {
    ($($arg:tt)*) => { say(format!($($arg)*)) };
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// One server at a time: the suite runs on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `target/compat` (or `LLMPOOL_COMPAT_DIR`), where the setup scripts cache.
fn compat_dir() -> PathBuf {
    match std::env::var_os("LLMPOOL_COMPAT_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/compat"),
    }
}

fn require_all() -> bool {
    std::env::var("LLMPOOL_REQUIRE_ALL")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Writes one line straight to the process's stderr: libtest captures
/// `println!`/`eprintln!` of passing tests, and what each check saw (and any
/// skip) should show in a plain `cargo test` run too.
fn say(line: impl AsRef<str>) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{}", line.as_ref());
}

/// Prints the skip reason and returns, or fails under `LLMPOOL_REQUIRE_ALL=1`.
fn skip(test: &str, reason: &str) {
    let line =
        format!("SKIPPED: {test}: {reason} (run tests/compat/setup-*.sh or .ci/compat-setup.sh)");
    if require_all() {
        panic!("{line}; LLMPOOL_REQUIRE_ALL=1 forbids skips");
    }
    say(&line);
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A started server process, killed (with its process group) on drop.
struct Server {
    name: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Spawns `cmd` in its own process group, output to `target/compat/logs/<name>.log`.
    fn spawn(name: &str, mut cmd: Command, port: u16) -> Server {
        use std::os::unix::process::CommandExt;
        let logs = compat_dir().join("logs");
        std::fs::create_dir_all(&logs).expect("create log dir");
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        report!(
            "[{name}] started pid {} on 127.0.0.1:{port} (log {})",
            child.id(),
            log.display()
        );
        Server {
            name: name.to_string(),
            child,
            port,
            log,
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The last `n` lines of the server's log, for failure messages.
    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `GET path` until it answers 200, the process exits, or `limit` passes.
    fn wait_healthy(&mut self, path: &str, limit: Duration) {
        let started = Instant::now();
        let mut last;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "[{}] exited with {status} before it was healthy; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            match http_get_status(self.port, path) {
                Ok(200) => {
                    report!(
                        "[{}] healthy on GET {path} after {:.1}s",
                        self.name,
                        started.elapsed().as_secs_f64()
                    );
                    return;
                }
                Ok(s) => last = format!("status {s}"),
                Err(e) => last = e,
            }
            if started.elapsed() > limit {
                panic!(
                    "[{}] not healthy on GET {path} after {:?} (last: {last}); log tail:\n{}",
                    self.name,
                    limit,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // The child leads its own process group: signal the group by the
        // child's PID so helper processes (uvicorn workers) go too.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                report!("[{}] stopped pid {pid}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        report!("[{}] killed pid {pid}", self.name);
    }
}

/// A raw `GET` over a fresh TCP connection: the status code, or why not.
fn http_get_status(port: u16, path: &str) -> Result<u16, String> {
    let addr = format!("127.0.0.1:{port}");
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 12 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&got);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))
}

fn client(base_url: &str, key: &str, extra: Value) -> Client {
    let mut o = json!({
        "base_url": base_url,
        "api_key": key,
        "timeout_ms": 180_000,
        "stream_idle_timeout_ms": 120_000,
        "backoff_factor": 0.05,
    });
    for (k, v) in extra.as_object().unwrap() {
        o[k] = v.clone();
    }
    Client::from_json(Some(&o.to_string())).expect("client options")
}

fn chat_request(model: &str, content: &str, max_tokens: u32) -> String {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
    .to_string()
}

fn body_text(r: &Response) -> String {
    let s = String::from_utf8_lossy(&r.body);
    if s.len() > 600 {
        format!("{}… ({} bytes)", &s[..600], s.len())
    } else {
        s.into_owned()
    }
}

fn assert_ok(what: &str, r: &Response) {
    assert_eq!(
        r.code,
        Code::Ok,
        "{what}: code {} status {} error {:?} body {}",
        r.code,
        r.status,
        r.error,
        body_text(r)
    );
    assert_eq!(r.status, 200, "{what}: status");
}

/// `usage` from the call details, else from the JSON body.
fn usage_of(r: &Response) -> Value {
    match &r.info_json()["usage"] {
        Value::Null => r.json().map(|v| v["usage"].clone()).unwrap_or(Value::Null),
        u => u.clone(),
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn metric(c: &Client, key: &str) -> u64 {
    c.metrics()[key].as_u64().unwrap_or(0)
}

/// Streams `req`, collecting every (delta, event JSON) pair.
fn stream(c: &Client, req: &str) -> (Response, Vec<(String, String)>) {
    let mut seen = Vec::new();
    let r = c.chat_stream(req, &mut |d, e| {
        seen.push((d.to_string(), e.to_string()));
        true
    });
    (r, seen)
}

// ---------------------------------------------------------------------------
// llama.cpp llama-server
// ---------------------------------------------------------------------------

struct LlamaSetup {
    bin: PathBuf,
    model: PathBuf,
}

fn llama_setup(test: &str) -> Option<LlamaSetup> {
    let c = compat_dir();
    let bin = c.join("bin/llama-server");
    if !bin.is_file() {
        skip(
            test,
            &format!("llama-server not built ({} missing)", bin.display()),
        );
        return None;
    }
    let model = std::fs::read_dir(c.join("models")).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().map(|x| x == "gguf").unwrap_or(false))
    });
    let Some(model) = model else {
        skip(
            test,
            &format!("no .gguf model in {}", c.join("models").display()),
        );
        return None;
    };
    Some(LlamaSetup { bin, model })
}

const LLAMA_KEY: &str = "right-key";

/// Starts `llama-server` with a small context and one slot, plus `extra` args.
/// One thread: with `-t 2` on a busy 2-core machine ggml's spinning worker
/// threads made 150 four-token calls take about 60 s instead of about 4 s.
fn start_llama(name: &str, s: &LlamaSetup, extra: &[&str]) -> Server {
    let port = free_port();
    let mut cmd = Command::new(&s.bin);
    cmd.arg("-m")
        .arg(&s.model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-c", "512", "-np", "1", "-t", "1", "-tb", "1", "--no-webui"])
        .args(extra);
    let mut srv = Server::spawn(name, cmd, port);
    srv.wait_healthy("/health", Duration::from_secs(180));
    srv
}

/// Chat, streaming (with usage, abort, and pooling after `[DONE]`), a 401 on
/// a wrong key, and 150 sequential calls across the server's keep-alive limit.
#[test]
fn llama_server_chat_stream_auth_keepalive() {
    let test = "llama_server_chat_stream_auth_keepalive";
    let _lock = serial();
    let Some(setup) = llama_setup(test) else {
        return;
    };
    let srv = start_llama("llama-server", &setup, &["--api-key", LLAMA_KEY]);
    let base = srv.base_url();

    // --- chat ---------------------------------------------------------------
    let c = client(&base, LLAMA_KEY, json!({}));
    let r = c.chat(&chat_request(
        "smollm2",
        "Say hello in one short sentence.",
        24,
    ));
    report!(
        "[llama chat] code {} status {} text {:?} usage {} model {}",
        r.code,
        r.status,
        r.text,
        usage_of(&r),
        r.info_json()["model"]
    );
    assert_ok("llama chat", &r);
    assert!(
        !r.text.trim().is_empty(),
        "llama chat: empty text; body {}",
        body_text(&r)
    );
    let u = usage_of(&r);
    assert!(
        u["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "llama chat: usage {u}"
    );
    assert!(
        u["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "llama chat: usage {u}"
    );
    assert!(
        u["total_tokens"].as_u64().unwrap_or(0) > 0,
        "llama chat: usage {u}"
    );

    // --- streaming ----------------------------------------------------------
    let opened_before = metric(&c, "connections_opened");
    let (r, seen) = stream(&c, &chat_request("smollm2", "Count from one to five.", 24));
    let deltas: String = seen.iter().map(|(d, _)| d.as_str()).collect();
    report!(
        "[llama stream] code {} status {} events {} text {:?} usage {} finish {} ttft_ms {} content-type {:?}",
        r.code,
        r.status,
        seen.len(),
        r.text,
        r.info_json()["usage"],
        r.info_json()["finish_reason"],
        r.info_json()["ttft_ms"],
        header(&r, "content-type")
    );
    assert_ok("llama stream", &r);
    assert!(seen.len() >= 2, "llama stream: only {} events", seen.len());
    assert!(!r.text.trim().is_empty(), "llama stream: empty text");
    assert_eq!(deltas, r.text, "llama stream: deltas vs text");
    for (_, e) in &seen {
        let v: Value =
            serde_json::from_str(e).unwrap_or_else(|err| panic!("event not JSON ({err}): {e}"));
        assert_eq!(
            v["object"], "chat.completion.chunk",
            "llama stream event: {e}"
        );
    }
    assert!(
        header(&r, "content-type")
            .unwrap_or("")
            .starts_with("text/event-stream"),
        "llama stream content-type {:?}",
        header(&r, "content-type")
    );
    let u = &r.info_json()["usage"];
    assert!(
        u["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "llama stream usage: {u}"
    );
    assert!(
        u["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "llama stream usage: {u}"
    );
    assert!(
        r.info_json()["finish_reason"].is_string(),
        "llama stream finish_reason: {}",
        r.info_json()["finish_reason"]
    );
    assert!(
        r.info_json()["chunks"].as_u64().unwrap_or(0) >= 2,
        "llama stream chunks: {}",
        r.info_json()["chunks"]
    );
    // After [DONE] llmpool drains the chunked terminator and pools the
    // connection, but this llama-server closes it right after a streamed
    // answer (although it sent `Keep-Alive: timeout=5, max=100`): the next
    // call finds the pooled connection dead and must reconnect on its own,
    // without a failed call and without spending a retry.
    let reconnects_before = metric(&c, "reconnects_after_idle_close");
    let r = c.chat(&chat_request("smollm2", "Hi", 4));
    let opened_after = metric(&c, "connections_opened");
    let reconnects_after = metric(&c, "reconnects_after_idle_close");
    report!(
        "[llama stream] plain call after the stream: code {} retries {} attempts {} connection_reused {}; \
         connections opened {opened_before} -> {opened_after}, reconnects_after_idle_close \
         {reconnects_before} -> {reconnects_after}",
        r.code,
        r.info_json()["retries"],
        r.info_json()["attempts"],
        r.info_json()["connection_reused"]
    );
    assert_ok("llama chat after stream", &r);
    assert_eq!(
        r.info_json()["retries"],
        0,
        "reconnect after a stream cost a retry: {}",
        r.info_json()
    );
    assert!(
        opened_after <= opened_before + 1,
        "more than one new connection after a stream ({opened_before} -> {opened_after})"
    );
    if opened_after > opened_before {
        report!("[llama stream] note: llama-server closed the connection after the stream; llmpool reconnected");
    }

    // A callback that says stop: Cancelled, and the client carries on.
    let mut n = 0;
    let r = c.chat_stream(
        &chat_request("smollm2", "Write a long story about a cat.", 64),
        &mut |d, _| {
            if !d.is_empty() {
                n += 1;
            }
            n < 2
        },
    );
    report!(
        "[llama stream abort] code {} text {:?} chunks {}",
        r.code,
        r.text,
        r.info_json()["chunks"]
    );
    assert_eq!(
        r.code,
        Code::Cancelled,
        "llama stream abort: {} {}",
        r.code,
        r.error
    );
    let r = c.chat(&chat_request("smollm2", "Hi", 4));
    assert_ok("llama chat after aborted stream", &r);

    // --- wrong key: 401 -----------------------------------------------------
    let bad = client(&base, "wrong-key", json!({}));
    let r = bad.chat(&chat_request("smollm2", "Hi", 4));
    report!(
        "[llama 401] code {} status {} error {:?} body {}",
        r.code,
        r.status,
        r.error,
        body_text(&r)
    );
    assert_eq!(r.code, Code::HttpStatus, "wrong key: {}", r.error);
    assert_eq!(r.status, 401, "wrong key: status");
    assert!(!r.body.is_empty(), "wrong key: body was not kept");
    let v = r.json().expect("401 body is JSON");
    assert!(v["error"].is_object(), "401 body has no error object: {v}");
    let m = bad.metrics();
    assert_eq!(m["retries"], 0, "a 401 is not retried: {m}");
    drop(bad);

    // --- Keep-Alive: max=100 ------------------------------------------------
    // cpp-httplib closes a connection after 100 requests; 150 sequential
    // calls on one client must all succeed over (at least) two connections.
    let ka = client(&base, LLAMA_KEY, json!({"max_retries": 2}));
    const CALLS: usize = 150;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut closes = Vec::new();
    let mut keep_alive_header = None;
    for i in 0..CALLS {
        let r = ka.chat(&chat_request("smollm2", "Hi", 4));
        if r.code != Code::Ok {
            failures.push(format!("call {i}: {} {} {}", r.code, r.status, r.error));
        }
        if header(&r, "connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
        {
            closes.push(i + 1);
        }
        if keep_alive_header.is_none() {
            keep_alive_header = header(&r, "keep-alive").map(str::to_string);
        }
    }
    let m = ka.metrics();
    report!(
        "[llama keep-alive] {CALLS} calls in {:.1}s; Keep-Alive header {:?}; 'Connection: close' on calls {:?}; \
         failed {}; metrics: requests {} errors {} retries {} connections_opened {} connections_reused {} \
         reconnects_after_idle_close {}",
        started.elapsed().as_secs_f64(),
        keep_alive_header,
        closes,
        failures.len(),
        m["requests"],
        m["errors"],
        m["retries"],
        m["connections_opened"],
        m["connections_reused"],
        m["reconnects_after_idle_close"],
    );
    assert!(
        failures.is_empty(),
        "failed calls across the keep-alive limit: {failures:?}"
    );
    assert_eq!(m["requests"], CALLS as u64, "{m}");
    assert_eq!(m["errors"], 0, "{m}");
    let opened = m["connections_opened"].as_u64().unwrap_or(0);
    assert!(
        opened >= 2,
        "150 calls on one connection: the server's max=100 close was not seen ({m})"
    );
    assert!(
        opened <= 4,
        "too many connections for 150 sequential calls: {m}"
    );
    let reused = m["connections_reused"].as_u64().unwrap_or(0);
    assert!(reused >= (CALLS as u64) - opened, "pooling broke: {m}");
    // cpp-httplib announces the limit and says `Connection: close` on the
    // 100th answer of a connection; each such close costs exactly one new
    // connection, never a failed call.
    assert!(
        !closes.is_empty(),
        "no 'Connection: close' in {CALLS} calls on one client: the max=100 limit was not reached"
    );
    assert_eq!(
        closes[0], 100,
        "first close at call {} (expected the 100th)",
        closes[0]
    );
    assert_eq!(
        opened,
        closes.len() as u64 + 1,
        "connections opened vs server closes {closes:?}: {m}"
    );
    if let Some(h) = &keep_alive_header {
        assert!(h.contains("max="), "Keep-Alive header without max: {h}");
    }
    drop(srv);
}

/// `/v1/embeddings` against a second instance with `--embeddings --pooling mean`.
#[test]
fn llama_server_embeddings() {
    let test = "llama_server_embeddings";
    let _lock = serial();
    let Some(setup) = llama_setup(test) else {
        return;
    };
    let srv = start_llama(
        "llama-server-embeddings",
        &setup,
        &["--embeddings", "--pooling", "mean"],
    );
    let c = client(&srv.base_url(), "", json!({}));

    let r = c.embeddings(&json!({"model": "smollm2", "input": "The quick brown fox"}).to_string());
    let v = r.json().unwrap_or(Value::Null);
    let emb = v["data"][0]["embedding"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    report!(
        "[llama embeddings] code {} status {} dims {} first {:?} usage {}",
        r.code,
        r.status,
        emb.len(),
        emb.iter().take(4).collect::<Vec<_>>(),
        usage_of(&r)
    );
    assert_ok("llama embeddings", &r);
    assert!(!emb.is_empty(), "empty embedding: {}", body_text(&r));
    assert!(
        emb.iter().all(|x| x.is_number()),
        "non-numeric embedding values"
    );
    assert!(
        emb.iter().any(|x| x.as_f64().unwrap_or(0.0) != 0.0),
        "all-zero embedding"
    );

    // Two inputs: two vectors of the same size.
    let r = c.embeddings(&json!({"model": "smollm2", "input": ["hello", "world"]}).to_string());
    assert_ok("llama embeddings x2", &r);
    let v = r.json().unwrap();
    let data = v["data"].as_array().cloned().unwrap_or_default();
    report!("[llama embeddings x2] {} vectors", data.len());
    assert_eq!(data.len(), 2, "two inputs: {}", body_text(&r));
    for d in &data {
        assert_eq!(d["embedding"].as_array().map(|a| a.len()), Some(emb.len()));
    }
    drop(srv);
}

// ---------------------------------------------------------------------------
// LiteLLM proxy
// ---------------------------------------------------------------------------

const LITELLM_KEY: &str = "sk-llmpool-compat-master";
const MOCK_TEXT: &str = "Hello from LiteLLM mock";

fn start_litellm(test: &str) -> Option<Server> {
    let venv = compat_dir().join("litellm-venv");
    let bin = venv.join("bin/litellm");
    if !bin.is_file() {
        skip(
            test,
            &format!("LiteLLM not installed ({} missing)", bin.display()),
        );
        return None;
    }
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/litellm.yaml");
    let port = free_port();
    let mut cmd = Command::new(&bin);
    cmd.arg("--config")
        .arg(&config)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            "1",
        ])
        .env("LITELLM_MASTER_KEY", LITELLM_KEY)
        // Offline: the bundled price map, no telemetry, no database.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .env("LITELLM_LOG", "ERROR")
        .env("DISABLE_SCHEMA_UPDATE", "True")
        .env_remove("DATABASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env("NO_PROXY", "*")
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let mut srv = Server::spawn("litellm", cmd, port);
    srv.wait_healthy("/health/liveliness", Duration::from_secs(240));
    Some(srv)
}

/// Chat and streaming through `mock_response`, and sequential calls that
/// reuse one connection.
#[test]
fn litellm_proxy_chat_stream_reuse() {
    let test = "litellm_proxy_chat_stream_reuse";
    let _lock = serial();
    let Some(srv) = start_litellm(test) else {
        return;
    };
    let c = client(&srv.base_url(), LITELLM_KEY, json!({}));

    // --- chat ---------------------------------------------------------------
    let r = c.chat(&chat_request("mock-gpt", "Hello?", 16));
    report!(
        "[litellm chat] code {} status {} text {:?} usage {} model {} headers {:?}",
        r.code,
        r.status,
        r.text,
        usage_of(&r),
        r.info_json()["model"],
        r.headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
    );
    assert_ok("litellm chat", &r);
    assert_eq!(r.text, MOCK_TEXT);
    let v = r.json().expect("chat body is JSON");
    assert_eq!(v["object"], "chat.completion", "{v}");

    // --- streaming ----------------------------------------------------------
    let (r, seen) = stream(&c, &chat_request("mock-gpt", "Hello?", 16));
    let deltas: String = seen.iter().map(|(d, _)| d.as_str()).collect();
    report!(
        "[litellm stream] code {} status {} events {} text {:?} usage {} finish {} content-type {:?} raw body {} bytes",
        r.code,
        r.status,
        seen.len(),
        r.text,
        r.info_json()["usage"],
        r.info_json()["finish_reason"],
        header(&r, "content-type"),
        r.body.len()
    );
    if let Some((_, e)) = seen.first() {
        report!("[litellm stream] first event: {e}");
    }
    assert_ok("litellm stream", &r);
    assert_eq!(r.text, MOCK_TEXT, "litellm stream text");
    assert_eq!(deltas, MOCK_TEXT, "litellm stream deltas");
    assert!(seen.len() >= 2, "litellm stream: {} events", seen.len());
    for (_, e) in &seen {
        let v: Value =
            serde_json::from_str(e).unwrap_or_else(|err| panic!("event not JSON ({err}): {e}"));
        assert_eq!(
            v["object"], "chat.completion.chunk",
            "litellm stream event: {e}"
        );
    }
    assert!(
        header(&r, "content-type")
            .unwrap_or("")
            .starts_with("text/event-stream"),
        "litellm stream content-type {:?}",
        header(&r, "content-type")
    );
    assert!(
        r.info_json()["finish_reason"].is_string(),
        "litellm finish_reason: {}",
        r.info_json()["finish_reason"]
    );

    let u = &r.info_json()["usage"];
    assert!(
        u["total_tokens"].as_u64().unwrap_or(0) > 0,
        "litellm stream usage (stream_options.include_usage): {u}"
    );

    // The second mock model, through the same pool.
    let r = c.chat(&chat_request("mock-gpt-mini", "Hi", 8));
    assert_ok("litellm chat mini", &r);
    assert_eq!(r.text, "Mini mock says hi");

    // --- sequential calls reuse one connection ------------------------------
    let seq = client(&srv.base_url(), LITELLM_KEY, json!({}));
    const CALLS: u64 = 10;
    for i in 0..CALLS {
        let r = seq.chat(&chat_request("mock-gpt", "Hi", 4));
        assert_ok(&format!("litellm sequential call {i}"), &r);
        assert_eq!(r.text, MOCK_TEXT);
    }
    // A stream then a plain call: after [DONE] llmpool drains the chunked
    // terminator, so the plain call reuses the same connection.
    let opened_before = metric(&seq, "connections_opened");
    let (r, _) = stream(&seq, &chat_request("mock-gpt", "Hi", 4));
    assert_ok("litellm stream in sequence", &r);
    let r = seq.chat(&chat_request("mock-gpt", "Hi", 4));
    assert_ok("litellm chat after stream", &r);
    let opened_after = metric(&seq, "connections_opened");
    report!(
        "[litellm reuse] stream + plain call: connections opened {opened_before} -> {opened_after}, \
         plain call connection_reused {}",
        r.info_json()["connection_reused"]
    );
    assert_eq!(
        opened_after, opened_before,
        "a stream followed by a plain call opened another connection"
    );
    let m = seq.metrics();
    report!(
        "[litellm reuse] {} calls: requests {} errors {} connections_opened {} connections_reused {} retries {}",
        CALLS + 2,
        m["requests"],
        m["errors"],
        m["connections_opened"],
        m["connections_reused"],
        m["retries"]
    );
    assert_eq!(m["errors"], 0, "{m}");
    assert!(
        m["connections_opened"].as_u64().unwrap_or(99) <= 2,
        "connections not reused: {m}"
    );
    assert!(
        m["connections_reused"].as_u64().unwrap_or(0) >= CALLS,
        "connections not reused: {m}"
    );
    drop(srv);
}

// ---------------------------------------------------------------------------
// Agents: assembled tool-call streams and the Messages and Responses APIs
// ---------------------------------------------------------------------------

/// A weather tool request that must call the tool (`tool_choice:
/// "required"`: llama-server's grammar makes even the small model emit a
/// JSON call).
fn tool_request(stream: bool) -> String {
    json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}],
        "tool_choice": "required",
        "temperature": 0,
        "seed": 1,
        "max_tokens": 64,
        "stream": stream,
    })
    .to_string()
}

/// (name, parsed arguments) of choice 0's tool calls in a completion.
fn tool_calls_of(v: &Value) -> Vec<(String, Value)> {
    v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let args = c["function"]["arguments"].as_str().unwrap_or("");
                    (
                        c["function"]["name"].as_str().unwrap_or("").to_string(),
                        serde_json::from_str(args)
                            .unwrap_or_else(|e| panic!("arguments {args:?} are not JSON: {e}")),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A streamed answer from llama-server, assembled, equals the same request
/// without `stream` (temperature 0, greedy): its tool calls when the server
/// makes them, else its content (this llama-server build answers SmolLM2's
/// tool requests with text, `--jinja` or not); and the Messages API
/// streamed.
#[test]
fn llama_server_tool_call_stream_and_messages() {
    let test = "llama_server_tool_call_stream_and_messages";
    let _lock = serial();
    let Some(setup) = llama_setup(test) else {
        return;
    };
    let srv = start_llama("llama-server", &setup, &["--jinja"]);
    let c = client(&srv.base_url(), "", json!({}));

    let plain = c.chat(&tool_request(false));
    assert_ok("llama tool request", &plain);
    let body = plain.json().expect("JSON body");
    let want = tool_calls_of(&body);
    let mut fragments = 0;
    let mut content = String::new();
    let streamed = c.stream_deltas(
        llmpool::assemble::Api::Chat,
        &tool_request(true),
        &mut |d| {
            match d.kind {
                llmpool::assemble::DeltaKind::ToolCall => fragments += 1,
                llmpool::assemble::DeltaKind::Content => content.push_str(d.text),
                _ => {}
            }
            true
        },
    );
    assert_ok("llama tool stream", &streamed);
    let done: Value = serde_json::from_str(&streamed.completion_json().expect("a completion"))
        .expect("completion JSON");
    let got = tool_calls_of(&done);
    report!(
        "[llama tool stream] code {} tool fragments {fragments} calls {got:?} (without stream: {want:?}) finish {} (without: {})",
        streamed.code,
        done["choices"][0]["finish_reason"],
        body["choices"][0]["finish_reason"]
    );
    assert_eq!(done["object"], "chat.completion");
    assert_eq!(
        got, want,
        "the assembled calls differ from the non-streamed ones"
    );
    assert_eq!(
        done["choices"][0]["message"]["content"], body["choices"][0]["message"]["content"],
        "the assembled content differs from the non-streamed one"
    );
    assert_eq!(
        done["choices"][0]["finish_reason"],
        body["choices"][0]["finish_reason"]
    );
    if want.is_empty() {
        assert_eq!(content, streamed.text);
        assert!(!content.is_empty());
    } else {
        assert!(fragments >= 1);
        assert!(streamed.info_json().get("invalid_tool_arguments").is_none());
    }

    let req = json!({"model": "smollm2", "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}]})
    .to_string();
    let mut text = String::new();
    let m = c.stream_events(llmpool::assemble::Api::Messages, &req, &mut |d, _| {
        text.push_str(d);
        true
    });
    report!(
        "[llama messages stream] code {} status {} text {:?} finish {} usage {}",
        m.code,
        m.status,
        m.text,
        m.info_json()["finish_reason"],
        m.info_json()["usage"]
    );
    assert_ok("llama messages stream", &m);
    assert!(!m.text.trim().is_empty(), "empty text: {}", body_text(&m));
    assert_eq!(text, m.text);
    let msg: Value = serde_json::from_str(&m.completion_json().unwrap()).unwrap();
    assert_eq!(msg["type"], "message", "{msg}");
    assert!(msg["stop_reason"].is_string(), "{msg}");
}

/// The Responses and Messages APIs through the LiteLLM proxy
/// (`mock_response`), streamed and not.
#[test]
fn litellm_proxy_responses_and_messages() {
    let test = "litellm_proxy_responses_and_messages";
    let _lock = serial();
    let Some(srv) = start_litellm(test) else {
        return;
    };
    let c = client(
        &srv.base_url(),
        LITELLM_KEY,
        json!({"anthropic_auth": "bearer"}),
    );
    use llmpool::assemble::Api;
    let responses =
        json!({"model": "mock-gpt", "input": "Hello?", "max_output_tokens": 16}).to_string();
    let messages = json!({"model": "mock-gpt", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hello?"}]})
    .to_string();
    for (name, api, req) in [
        ("responses", Api::Responses, &responses),
        ("messages", Api::Messages, &messages),
    ] {
        let r = match api {
            Api::Responses => c.responses(req),
            _ => c.messages(req),
        };
        report!(
            "[litellm {name}] code {} status {} text {:?} finish {} usage {}",
            r.code,
            r.status,
            r.text,
            r.info_json()["finish_reason"],
            r.info_json()["usage"]
        );
        assert_ok(&format!("litellm {name}"), &r);
        assert_eq!(r.text, MOCK_TEXT, "{name}: {}", body_text(&r));
        let mut deltas = String::new();
        let s = c.stream_deltas(api, req, &mut |d| {
            if d.kind == llmpool::assemble::DeltaKind::Content {
                deltas.push_str(d.text);
            }
            true
        });
        report!(
            "[litellm {name} stream] code {} status {} text {:?} finish {} usage {}",
            s.code,
            s.status,
            s.text,
            s.info_json()["finish_reason"],
            s.info_json()["usage"]
        );
        // LiteLLM cannot stream a /responses answer made from
        // `mock_response` ("Error processing stream start", HTTP 500):
        // said, not failed, while that is so.
        if api == Api::Responses
            && s.status == 500
            && body_text(&s).contains("Error processing stream start")
        {
            report!("[litellm {name} stream] not tested: LiteLLM answers HTTP 500 \"Error processing stream start\" for a mocked /responses stream");
            continue;
        }
        assert_ok(&format!("litellm {name} stream"), &s);
        assert_eq!(s.text, MOCK_TEXT, "{name} stream: {}", body_text(&s));
        assert_eq!(deltas, MOCK_TEXT);
        assert!(s.completion_json().is_some());
    }
}
