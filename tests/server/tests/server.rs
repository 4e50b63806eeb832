mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, CHAT};
use llmpool_testserver::{Fault, Options, TestServer};
use serde_json::{json, Value};

fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn keepalive(srv: TestServer) {
    let mut c = Client::connect(&srv);
    let a = c.request("POST", "/v1/chat/completions", CHAT).unwrap();
    let b = c.request("GET", "/v1/models", "").unwrap();
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.header("connection"), Some("keep-alive"));
    assert_eq!(a.header("x-request-id"), Some("req-1"));
    assert_eq!(b.header("x-request-id"), Some("req-2"));
    assert_eq!(srv.connections_accepted(), 1);
    assert_eq!(srv.open_connections(), 1);
    assert_eq!(srv.requests(), 2);
    assert_eq!(srv.requests_to("/chat/completions"), 1);
    assert_eq!(srv.requests_to("/models"), 1);
    let rec = srv.recorded();
    assert_eq!(rec.len(), 2);
    assert_eq!(rec[0].connection_id, rec[1].connection_id);
    assert_eq!(rec[0].header("content-type"), Some("application/json"));
    assert_eq!(rec[0].json().unwrap()["model"], "m1");
    drop(c);
    assert!(wait_until(|| srv.open_connections() == 0));
}

#[test]
fn keepalive_plain() {
    let srv = TestServer::plain();
    assert!(srv.base_url().starts_with("http://127.0.0.1:"));
    assert!(srv.ca_pem().is_none());
    keepalive(srv);
}

#[test]
fn keepalive_tls() {
    let srv = TestServer::tls();
    assert_eq!(
        srv.base_url(),
        format!("https://127.0.0.1:{}/v1", srv.port())
    );
    assert!(srv.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
    keepalive(srv);
}

#[test]
fn tls_localhost_name() {
    let srv = TestServer::tls();
    let mut c = Client::connect_name(&srv, "localhost");
    assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
}

#[test]
fn chat_completion() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    let r = c.request("POST", "/v1/chat/completions", CHAT).unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "m1");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Echo: hello there world"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "hello there world" = 17 bytes -> 5; "Echo: hello there world" = 23 -> 6
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens":5,"completion_tokens":6,"total_tokens":11})
    );

    let body = json!({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]});
    let v = c
        .request("POST", "/v1/chat/completions", &body.to_string())
        .unwrap()
        .json();
    assert_eq!(v["model"], "test-model");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: ab");
}

fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data line").to_string())
        .collect()
}

#[test]
fn streaming() {
    for srv in [TestServer::plain(), TestServer::tls()] {
        let mut c = Client::connect(&srv);
        let body = json!({"messages":[{"role":"user","content":"one two three"}],"stream":true,"stream_options":{"include_usage":true}});
        let r = c
            .request("POST", "/v1/chat/completions", &body.to_string())
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        let text = r.text();
        assert!(text.ends_with("data: [DONE]\n\n"));
        let data = sse_data(&text);
        assert_eq!(data.len(), r.chunks.len(), "one chunk per event");
        let events: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(
            events[0]["choices"][0]["delta"],
            json!({"role":"assistant","content":""})
        );
        let content: String = events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "Echo: one two three");
        let n = events.len();
        assert_eq!(events[n - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[n - 1]["choices"], json!([]));
        assert_eq!(events[n - 1]["usage"]["completion_tokens"], 5);
        assert!(events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk"));
        // Connection still usable after the stream.
        assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
        assert_eq!(srv.connections_accepted(), 1);
    }
}

#[test]
fn streaming_without_usage_and_with_delay() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    let body = json!({"messages":[{"role":"user","content":"x y"}],"stream":true,"x_test_stream_delay_ms":20});
    let t = Instant::now();
    let r = c
        .request("POST", "/v1/chat/completions", &body.to_string())
        .unwrap();
    let data = sse_data(&r.text());
    // role, "Echo: ", "x ", "y", stop, [DONE]
    assert_eq!(data.len(), 6);
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(!r.text().contains("usage"));
}

#[test]
fn streaming_error_event() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    let body = json!({"messages":[{"role":"user","content":"a b c d"}],"stream":true,"x_test_sse_error":"boom"});
    let r = c
        .request("POST", "/v1/chat/completions", &body.to_string())
        .unwrap();
    let data = sse_data(&r.text());
    assert_eq!(data.len(), 4);
    let last: Value = serde_json::from_str(&data[3]).unwrap();
    assert_eq!(last["error"]["message"], "boom");
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!r.text().contains("[DONE]"));
}

#[test]
fn streaming_comments() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    let body = json!({"messages":[{"role":"user","content":"hi"}],"stream":true,"x_test_sse_comments":true});
    let r = c
        .request("POST", "/v1/chat/completions", &body.to_string())
        .unwrap();
    let text = r.text();
    assert!(text.contains(": keep-alive\r\n\r\n"));
    assert!(text.contains("event: message\r\n"));
    assert!(text.contains("id: 0\r\n"));
    assert!(text.ends_with("data: [DONE]\r\n\r\n"));
    let content: String = text
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(content, "Echo: hi");
}

#[test]
fn embeddings_models_errors() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    let v = c
        .request(
            "POST",
            "/v1/embeddings",
            r#"{"model":"e","input":["abc","defgh"]}"#,
        )
        .unwrap()
        .json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let v2 = c
        .request("POST", "/v1/embeddings", r#"{"input":"abc"}"#)
        .unwrap()
        .json();
    assert_eq!(v2["data"][0]["embedding"], v["data"][0]["embedding"]);

    let m = c.request("GET", "/v1/models", "").unwrap().json();
    assert_eq!(m["data"][0]["id"], "test-model");

    let r = c.request("GET", "/v1/nope", "").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["code"].is_null());

    let r = c.request("POST", "/v1/chat/completions", "{bad").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(srv.connections_accepted(), 1);
}

#[test]
fn chunked_request_body() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    let body = CHAT.as_bytes();
    let (a, b) = body.split_at(10);
    let mut req =
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    req.extend(format!("{:x}\r\n", a.len()).bytes());
    req.extend(a);
    req.extend(format!("\r\n{:x}\r\n", b.len()).bytes());
    req.extend(b);
    req.extend(b"\r\n0\r\n\r\n");
    c.send_raw(&req).unwrap();
    let r = c.read().unwrap();
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Echo: hello there world"
    );
    assert_eq!(srv.recorded()[0].body, CHAT);
    assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
    assert_eq!(srv.connections_accepted(), 1);
}

#[test]
fn client_connection_close() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    c.send("GET", "/v1/models", &[("connection", "close")], "")
        .unwrap();
    let r = c.read().unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn required_key() {
    let srv = TestServer::start(Options {
        required_key: Some("sk-1".into()),
        ..Options::default()
    })
    .unwrap();
    let mut c = Client::connect(&srv);
    let r = c.request("GET", "/v1/models", "").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    c.send("GET", "/v1/models", &[("authorization", "Bearer nope")], "")
        .unwrap();
    assert_eq!(c.read().unwrap().status, 401);
    c.send("GET", "/v1/models", &[("authorization", "Bearer sk-1")], "")
        .unwrap();
    assert_eq!(c.read().unwrap().status, 200);
    // Control routes need no key.
    assert_eq!(c.request("GET", "/v1/_test/stats", "").unwrap().status, 200);
    srv.set_required_key(None);
    assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
    assert_eq!(srv.connections_accepted(), 1);
}

#[test]
fn keepalive_max() {
    for srv in [
        TestServer::start(Options {
            keepalive_max: Some(2),
            ..Options::default()
        })
        .unwrap(),
        TestServer::start(Options {
            keepalive_max: Some(2),
            tls: true,
            ..Options::default()
        })
        .unwrap(),
    ] {
        let mut c = Client::connect(&srv);
        let a = c.request("GET", "/v1/models", "").unwrap();
        assert_eq!(a.header("keep-alive"), Some("timeout=60, max=1"));
        let b = c.request("GET", "/v1/models", "").unwrap();
        assert_eq!(b.header("connection"), Some("close"));
        assert!(c.is_closed());
        let mut c = Client::connect(&srv);
        assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
        assert_eq!(srv.connections_accepted(), 2);
    }
}

#[test]
fn close_idle_connections() {
    for srv in [TestServer::plain(), TestServer::tls()] {
        let mut a = Client::connect(&srv);
        let mut b = Client::connect(&srv);
        a.request("GET", "/v1/models", "").unwrap();
        b.request("GET", "/v1/models", "").unwrap();
        assert_eq!(srv.open_connections(), 2);
        srv.close_idle_connections();
        assert_eq!(srv.open_connections(), 0);
        assert!(a.is_closed());
        assert!(b.is_closed());
        let mut c = Client::connect(&srv);
        let r = c.request("POST", "/v1/_test/close_idle", "").unwrap();
        // The requesting connection is busy, so it survives.
        assert_eq!(r.json()["closed"], 0);
        assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
    }
}

#[test]
fn fault_status() {
    let srv = TestServer::plain();
    srv.push_fault(Fault::Status {
        code: 429,
        body: String::new(),
        headers: vec![("retry-after-ms".into(), "50".into())],
    });
    srv.push_fault(Fault::Status {
        code: 503,
        body: "{\"error\":{\"message\":\"x\"}}".into(),
        headers: vec![("x-should-retry".into(), "false".into())],
    });
    let mut c = Client::connect(&srv);
    let r = c.request("POST", "/v1/chat/completions", CHAT).unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after-ms"), Some("50"));
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let r = c.request("POST", "/v1/chat/completions", CHAT).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert_eq!(r.json()["error"]["message"], "x");
    assert_eq!(
        c.request("POST", "/v1/chat/completions", CHAT)
            .unwrap()
            .status,
        200
    );
    assert_eq!(srv.requests(), 3);
    assert_eq!(srv.connections_accepted(), 1);
}

#[test]
fn fault_delay_and_stall() {
    let srv = TestServer::plain();
    srv.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(150)));
    srv.push_fault(Fault::StallMidBody(Duration::from_millis(150)));
    let mut c = Client::connect(&srv);
    let t = Instant::now();
    assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    c.send("GET", "/v1/models", &[], "").unwrap();
    let t = Instant::now();
    let mut line = String::new();
    c.r.read_line(&mut line).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "headers come early"
    );
    assert!(line.starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    // read the headers + body in full
    loop {
        let mut l = String::new();
        c.r.read_line(&mut l).unwrap();
        if l == "\r\n" {
            break;
        }
        rest.push(l);
    }
    let len: usize = rest
        .iter()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    std::io::Read::read_exact(&mut c.r, &mut body).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));
    serde_json::from_slice::<Value>(&body).unwrap();
    // Stall on a stream.
    srv.push_fault(Fault::StallMidBody(Duration::from_millis(100)));
    let t = Instant::now();
    let body = json!({"messages":[{"role":"user","content":"a b"}],"stream":true});
    let r = c
        .request("POST", "/v1/chat/completions", &body.to_string())
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(r.text().ends_with("data: [DONE]\n\n"));
}

#[test]
fn fault_connection_killers() {
    for srv in [TestServer::plain(), TestServer::tls()] {
        for f in [
            Fault::ResetMidHeaders,
            Fault::ResetMidBody,
            Fault::CloseWithoutResponse,
            Fault::MalformedStatusLine,
            Fault::TruncatedChunked,
        ] {
            srv.push_fault(f.clone());
            let mut c = Client::connect(&srv);
            let r = c.request("POST", "/v1/chat/completions", CHAT);
            match (&f, &r) {
                (Fault::MalformedStatusLine, Err(e)) => {
                    assert!(e.to_string().contains("abc nonsense"), "{e}")
                }
                (_, Err(_)) => {}
                (_, Ok(r)) => panic!("{f:?} gave a response {r:?}"),
            }
            assert!(c.is_closed(), "{f:?}");
        }
        assert!(wait_until(|| srv.open_connections() == 0));
        assert_eq!(srv.requests(), 5);
        assert_eq!(srv.connections_accepted(), 5);
    }
}

#[test]
fn fault_partial_bytes() {
    let srv = TestServer::plain();
    let read_all = |c: &mut Client| {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c.r, &mut v);
        String::from_utf8_lossy(&v).into_owned()
    };
    srv.push_fault(Fault::ResetMidHeaders);
    let mut c = Client::connect(&srv);
    c.send("GET", "/v1/models", &[], "").unwrap();
    let got = read_all(&mut c);
    assert!(!got.contains("\r\n\r\n"), "{got:?}");

    srv.push_fault(Fault::ResetMidBody);
    let mut c = Client::connect(&srv);
    c.send("GET", "/v1/models", &[], "").unwrap();
    let got = read_all(&mut c);
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len / 2);

    srv.push_fault(Fault::TruncatedChunked);
    let mut c = Client::connect(&srv);
    c.send("GET", "/v1/models", &[], "").unwrap();
    let got = read_all(&mut c);
    assert!(got.contains("transfer-encoding: chunked"));
    assert!(!got.ends_with("0\r\n\r\n"));

    srv.push_fault(Fault::MalformedStatusLine);
    let mut c = Client::connect(&srv);
    c.send("GET", "/v1/models", &[], "").unwrap();
    assert_eq!(read_all(&mut c), "HTTP/1.1 abc nonsense\r\n\r\n");
}

#[test]
fn fault_invalid_json_and_close_after() {
    let srv = TestServer::plain();
    srv.push_fault(Fault::InvalidJson);
    srv.push_fault(Fault::CloseAfterResponse);
    let mut c = Client::connect(&srv);
    let r = c.request("POST", "/v1/chat/completions", CHAT).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "{not json"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = c.request("POST", "/v1/chat/completions", CHAT).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn control_endpoints() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    let faults = json!([
        {"type":"status","code":503,"times":2},
        {"type":"delay_before_headers","ms":10},
        {"type":"status","code":429,"headers":{"retry-after":"1"}}
    ]);
    let r = c
        .request("POST", "/v1/_test/faults", &faults.to_string())
        .unwrap();
    assert_eq!(r.json()["queued"], 4);
    let codes: Vec<u16> = (0..5)
        .map(|_| c.request("GET", "/v1/models", "").unwrap().status)
        .collect();
    assert_eq!(codes, [503, 503, 200, 429, 200]);
    let s = c.request("GET", "/v1/_test/stats", "").unwrap().json();
    assert_eq!(s["requests"], 5);
    assert_eq!(s["connections_accepted"], 1);
    assert_eq!(s["open_connections"], 1);
    assert_eq!(s["requests_by_path"]["/v1/models"], 5);
    let r = c
        .request("POST", "/v1/_test/faults", r#"[{"type":"bogus"}]"#)
        .unwrap();
    assert_eq!(r.status, 400);
    c.request(
        "POST",
        "/v1/_test/faults",
        r#"{"type":"status","code":500}"#,
    )
    .unwrap();
    c.request("POST", "/v1/_test/reset", "").unwrap();
    assert_eq!(srv.requests(), 0);
    assert_eq!(srv.connections_accepted(), 0);
    assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
    assert_eq!(srv.recorded().len(), 1);
}

#[test]
fn binary_prints_listening_and_serves_tls() {
    let dir = std::env::temp_dir().join(format!("llmpool-testserver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmpool-testserver"))
        .args([
            "--tls",
            "--keepalive-max",
            "5",
            "--require-key",
            "k",
            "--ca-out",
        ])
        .arg(&ca)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().strip_prefix("LISTENING ").unwrap().to_string();
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with("/v1"),
        "{url}"
    );
    let port: u16 = url["https://127.0.0.1:".len()..url.len() - 3]
        .parse()
        .unwrap();
    let pem = std::fs::read_to_string(&ca).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let conn = rustls::ClientConnection::new(
        common::tls_config(&pem),
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let s: Box<dyn common::Rw> = Box::new(rustls::StreamOwned::new(conn, tcp));
    let mut c = Client {
        r: BufReader::new(s),
    };
    c.send("GET", "/v1/models", &[("authorization", "Bearer k")], "")
        .unwrap();
    let r = c.read().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("keep-alive"), Some("timeout=60, max=4"));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_keepalive_clients() {
    for srv in [TestServer::plain(), TestServer::tls()] {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let mut c = Client::connect(&srv);
                    for _ in 0..25 {
                        let r = c.request("POST", "/v1/chat/completions", CHAT).unwrap();
                        assert_eq!(r.status, 200);
                    }
                });
            }
        });
        assert_eq!(srv.connections_accepted(), 8);
        assert_eq!(srv.requests(), 200);
        assert_eq!(srv.requests_to("/v1/chat/completions"), 200);
        let ids: std::collections::HashSet<usize> =
            srv.recorded().iter().map(|r| r.connection_id).collect();
        assert_eq!(ids.len(), 8);
        assert!(wait_until(|| srv.open_connections() == 0));
    }
}

#[test]
fn drop_closes_connections() {
    let srv = TestServer::plain();
    let mut c = Client::connect(&srv);
    assert_eq!(c.request("GET", "/v1/models", "").unwrap().status, 200);
    let port = srv.port();
    drop(srv);
    assert!(c.is_closed());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
