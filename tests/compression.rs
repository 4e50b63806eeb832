//! Compressed answers: llmpool asks for gzip and decodes it transparently,
//! `"compression": false` turns that off, and `max_response_bytes` limits
//! the decoded size. Against a real nginx (`gzip on`, `gzip_static`) on
//! 127.0.0.1 and the bundled test server.

use std::io::Write;

use flate2::write::GzEncoder;
use llmpool::Code;
use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::{client, client_for};
use support::nginx::Nginx;
use support::Skip;

const SKIP: Skip = Skip::new("the compression tests", "compression tests: ");

/// An embeddings answer of `n` vectors of `dim` floats, as a gateway sends it.
fn embeddings_json(n: usize, dim: usize) -> String {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let v: Vec<f64> = (0..dim)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 2_000_000) as f64 / 1_000_000.0 - 1.0) * 0.1
                })
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    json!({"object": "list", "data": data, "model": "text-embedding-3-small",
           "usage": {"prompt_tokens": n, "total_tokens": n}})
    .to_string()
}

#[test]
fn gzip_is_asked_for_and_decoded_transparently() {
    let dir = Nginx::new_dir();
    let body = embeddings_json(256, 1536);
    std::fs::create_dir_all(dir.join("www/v1")).unwrap();
    std::fs::write(dir.join("www/v1/embeddings.json"), &body).unwrap();
    let gzip = "    gzip on;\n    gzip_types application/json;\n    gzip_min_length 256;";
    let Some(n) = Nginx::start(&SKIP, &dir, gzip) else {
        return;
    };
    let c = client_for(&n.base_url(), json!({}));
    let r = c.request("GET", "/embeddings.json", None);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(r.body == body.as_bytes(), "decoded body differs");
    assert_eq!(r.json().unwrap()["data"].as_array().unwrap().len(), 256);

    let off = client_for(&n.base_url(), json!({"compression": false}));
    let r = off.request("GET", "/embeddings.json", None);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(r.body == body.as_bytes(), "identity body differs");

    let log = n.access_log();
    assert_eq!(log.len(), 2, "{log:?}");
    let (gz, plain) = (&log[0], &log[1]);
    assert_eq!(gz.3, "gzip", "{log:?}");
    assert_eq!(plain.3, "-", "{log:?}");
    // What went over the wire: well under half with gzip, all of it without.
    assert!(
        gz.2 < body.len() as u64 / 2,
        "gzip sent {} of {}",
        gz.2,
        body.len()
    );
    assert!(
        plain.2 > body.len() as u64,
        "identity sent {} of {}",
        plain.2,
        body.len()
    );
}

#[test]
fn max_response_bytes_counts_decoded_bytes() {
    let dir = Nginx::new_dir();
    // 4 MB of JSON that gzips to a few KB.
    let big = format!("[{}0]", "0,".repeat(2 * 1024 * 1024));
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 100_000);
    std::fs::create_dir_all(dir.join("www/v1")).unwrap();
    std::fs::write(dir.join("www/v1/bomb.json.gz"), &gz).unwrap();
    let Some(n) = Nginx::start(&SKIP, &dir, "    gzip_static always;") else {
        return;
    };
    let c = client_for(&n.base_url(), json!({"max_response_bytes": 1_000_000}));
    let r = c.request("GET", "/bomb.json", None);
    assert_eq!(r.code, Code::Protocol, "{}", r.error);
    assert!(r.error.contains("1000000"), "{}", r.error);
    let c = client_for(&n.base_url(), json!({"max_response_bytes": 5_000_000}));
    let r = c.request("GET", "/bomb.json", None);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.body.len(), big.len());
    let log = n.access_log();
    assert!(log.iter().all(|l| l.2 < 100_000), "{log:?}");
}

#[test]
fn accept_encoding_follows_the_compression_option() {
    let s = TestServer::plain();
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(client(&s, json!({})).chat(chat).code, Code::Ok);
    assert_eq!(
        client(&s, json!({"compression": false})).chat(chat).code,
        Code::Ok
    );
    let rec = s.recorded();
    assert_eq!(rec[0].header("accept-encoding"), Some("gzip"));
    assert_eq!(rec[1].header("accept-encoding"), None);
    let e = llmpool::Client::from_json(Some(r#"{"compression": "yes"}"#)).unwrap_err();
    assert!(e.message.contains("compression"), "{}", e.message);
}
