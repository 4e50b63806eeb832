//! llmpool's overhead over a bare `ureq::Agent` doing the same calls.
//!
//! Sequential `POST {base}/chat/completions` calls with the same body, one
//! connection kept alive, in interleaved rounds (bare ureq, then
//! `llmpool::Client::chat`, repeated) so that drift hits both equally.
//! Prints per-call times and the ratio llmpool / ureq (target: <= 1.05).
//!
//!   cargo bench --bench ureq_overhead [-- [BASE_URL] [CALLS]]
//!
//! The server is the argument containing "://" or `LLMPOOL_BENCH_URL` (e.g.
//! `http://127.0.0.1:8080/v1`; for https also set `LLMPOOL_BENCH_CA` to a
//! PEM CA file). Without one it starts a local nginx (plain HTTP, a fixed
//! chat JSON from `return 200`) in a temporary directory, stops it by PID at
//! the end, and falls back to the bundled test server if nginx is missing.
//! Calls per client: the numeric argument or `LLMPOOL_BENCH_CALLS` (default 5000).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"ping"}]}"#;
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
const ROUNDS: usize = 10;

enum Server {
    External,
    Nginx {
        child: Child,
        dir: PathBuf,
    },
    /// Kept alive until the end of the bench.
    Test {
        _server: Box<llmpool_testserver::TestServer>,
    },
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Nginx { child, dir } = self {
            // SAFETY: plain kill(2) on the nginx master this bench started.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn start_nginx() -> Option<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = std::env::temp_dir().join(format!("llmpool-ureq-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tmp")).ok()?;
    let d = dir.display();
    let user = if unsafe { libc::getuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let conf = format!(
        "{user}\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\ndaemon off;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;\n\
         fastcgi_temp_path {d}/tmp/fcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;\n\
         keepalive_requests 1000000; keepalive_timeout 300s;\n\
         server {{ listen 127.0.0.1:{port};\n\
         location = /v1/chat/completions {{ default_type application/json; return 200 '{ANSWER}'; }} }} }}\n"
    );
    std::fs::File::create(dir.join("nginx.conf"))
        .and_then(|mut f| f.write_all(conf.as_bytes()))
        .ok()?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .spawn()
        .ok()?;
    let server = Server::Nginx { child, dir };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((server, format!("http://127.0.0.1:{port}/v1")))
}

fn bare_agent(ca: Option<&str>, timeout: Option<Duration>) -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .no_delay(true)
        .timeout_global(timeout);
    if let Some(pem) = ca {
        let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).expect("CA PEM");
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
            .build();
        cfg = cfg.tls_config(tls);
    }
    cfg.build().into()
}

fn ureq_call(agent: &ureq::Agent, url: &str) -> bool {
    match agent
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .send(BODY)
    {
        Ok(mut r) => r.status() == 200 && r.body_mut().read_to_vec().is_ok(),
        Err(_) => false,
    }
}

// One function per contender, never inlined, so that an instruction count
// can be taken for each alone (quiet on a busy machine, unlike a clock):
//   valgrind --tool=callgrind --toggle-collect=ureq_overhead::bare_calls \
//     target/release/deps/ureq_overhead-* 1000
// and the same with ureq_overhead::pool_calls; divide "Collected" by the calls.
#[inline(never)]
fn bare_calls(agent: &ureq::Agent, url: &str, n: usize) {
    for _ in 0..n {
        assert!(ureq_call(agent, url));
    }
}

#[inline(never)]
fn timed_calls(agent: &ureq::Agent, url: &str, n: usize) {
    for _ in 0..n {
        assert!(ureq_call(agent, url));
    }
}

#[inline(never)]
fn pool_calls(client: &llmpool::Client, n: usize) {
    for _ in 0..n {
        assert!(client.chat(BODY).is_ok());
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let calls: usize = args
        .iter()
        .find(|a| a.parse::<usize>().is_ok())
        .cloned()
        .or_else(|| std::env::var("LLMPOOL_BENCH_CALLS").ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000)
        .max(ROUNDS);
    let ca = std::env::var("LLMPOOL_BENCH_CA")
        .ok()
        .map(|p| std::fs::read_to_string(p).expect("LLMPOOL_BENCH_CA: cannot read"));
    let (_server, base) = match args
        .iter()
        .find(|a| a.contains("://"))
        .cloned()
        .or_else(|| std::env::var("LLMPOOL_BENCH_URL").ok())
    {
        Some(u) => (Server::External, u.trim_end_matches('/').to_string()),
        None => match start_nginx() {
            Some(s) => s,
            None => {
                eprintln!("ureq_overhead: nginx unavailable, using the bundled test server");
                let t = llmpool_testserver::TestServer::plain();
                let url = t.base_url();
                (
                    Server::Test {
                        _server: Box::new(t),
                    },
                    url,
                )
            }
        },
    };
    let url = format!("{base}/chat/completions");

    let agent = bare_agent(ca.as_deref(), None);
    // The same agent with a global timeout, as llmpool configures its own:
    // ureq's DefaultResolver then resolves on a new thread for every call
    // (even for an IP literal and a pooled connection), to bound DNS time.
    let timed = bare_agent(ca.as_deref(), Some(Duration::from_secs(60)));
    let mut opts = serde_json::json!({"base_url": base, "max_retries": 0});
    if let Some(pem) = &ca {
        opts["ca_pem"] = pem.clone().into();
    }
    let client = llmpool::Client::from_json(Some(&opts.to_string())).expect("llmpool client");

    // Warm up both (connections, TLS sessions, allocator).
    for _ in 0..200 {
        assert!(
            ureq_call(&agent, &url),
            "bare ureq call failed against {url}"
        );
        let r = client.chat(BODY);
        assert!(r.is_ok(), "llmpool call failed: {}", r.error);
    }

    let per_round = calls / ROUNDS;
    let (mut t_ureq, mut t_timed, mut t_pool) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        bare_calls(&agent, &url, per_round);
        t_ureq.push(t0.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        let t0 = Instant::now();
        timed_calls(&timed, &url, per_round);
        t_timed.push(t0.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        let t0 = Instant::now();
        pool_calls(&client, per_round);
        t_pool.push(t0.elapsed().as_secs_f64() * 1e6 / per_round as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (u, ut, p) = (
        median(&mut t_ureq),
        median(&mut t_timed),
        median(&mut t_pool),
    );
    let ratio = p / u;
    println!(
        "ureq_overhead: {base}, {} sequential calls per client in {ROUNDS} rounds",
        per_round * ROUNDS
    );
    println!(
        "  bare ureq::Agent      {u:8.1} us/call  ({:8.0} req/s)",
        1e6 / u
    );
    println!(
        "  ureq + timeout_global {ut:8.1} us/call  ({:8.0} req/s)  (llmpool's agent config)",
        1e6 / ut
    );
    println!(
        "  llmpool::Client::chat {p:8.1} us/call  ({:8.0} req/s)",
        1e6 / p
    );
    println!(
        "  ratio llmpool/ureq    {ratio:8.3}  (overhead {:+.1}%, {:+.1} us/call; target <= 1.05: {})",
        (ratio - 1.0) * 100.0,
        p - u,
        if ratio <= 1.05 { "met" } else { "NOT met" }
    );
    println!(
        "  ratio llmpool/(ureq + timeout_global) {:.3}  (llmpool's own work beyond its ureq config)",
        p / ut
    );
}
