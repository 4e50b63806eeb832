//! Rust-side clients of the in-process loopback test server
//! (`llmpool_testserver::TestServer`), shared by the Rust tests.

use llmpool::Client;
use llmpool_testserver::{Fault, TestServer};
use serde_json::{json, Value};

/// `base` with every top-level member of `extra` set on it.
pub fn merged(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("extra is a JSON object") {
        base[k] = v.clone();
    }
    base
}

/// Options for a client of `url` with a tiny backoff (tests wait for
/// retries, never for real backoff), then `extra`.
pub fn options_for(url: &str, extra: Value) -> String {
    merged(json!({"base_url": url, "backoff_factor": 0.01}), extra).to_string()
}

/// Like [`options_for`], trusting the server's CA when it speaks TLS.
pub fn options(server: &TestServer, extra: Value) -> String {
    let mut base = json!({"base_url": server.base_url(), "backoff_factor": 0.01});
    if let Some(ca) = server.ca_pem() {
        base["ca_pem"] = json!(ca);
    }
    merged(base, extra).to_string()
}

/// A client of `server` (see [`options`]).
pub fn client(server: &TestServer, extra: Value) -> Client {
    Client::from_json(Some(&options(server, extra))).expect("valid test options")
}

/// A client of any URL (see [`options_for`]).
pub fn client_for(url: &str, extra: Value) -> Client {
    Client::from_json(Some(&options_for(url, extra))).expect("valid test options")
}

/// A status fault with the server's default error body.
pub fn status(code: u16, headers: &[(&str, &str)]) -> Fault {
    Fault::Status {
        code,
        body: String::new(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    super::free_port()
}
