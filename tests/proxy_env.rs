//! Proxies from the real process environment, as a corporate machine or CI
//! runner sets it. One test in its own binary: it changes the environment,
//! which no other test may see.

use llmpool::{Client, Code};
use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::{closed_port, options};
use support::tinyproxy::Tinyproxy;
use support::Skip;

const SKIP: Skip = Skip::new("the proxy environment test", "proxy environment test: ");
const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

const VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn set_env(pairs: &[(&str, &str)]) {
    for v in VARS {
        std::env::remove_var(v);
    }
    for (k, v) in pairs {
        std::env::set_var(k, v);
    }
}

#[test]
fn process_environment_proxies() {
    let Some(p) = Tinyproxy::start(&SKIP, None) else {
        return;
    };
    let s = TestServer::tls();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let chat = |extra: Value| {
        Client::from_json(Some(&options(&s, extra)))
            .unwrap()
            .chat(CHAT)
    };

    // The corporate case: HTTPS_PROXY everywhere, the gateway in NO_PROXY.
    set_env(&[("HTTPS_PROXY", &dead), ("NO_PROXY", "localhost,127.0.0.1")]);
    let r = chat(json!({}));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["proxy"], Value::Null);

    // Without NO_PROXY the dead proxy is used, and named.
    set_env(&[("HTTPS_PROXY", &dead)]);
    let r = chat(json!({"max_retries": 0}));
    assert_eq!(r.code, Code::Connect);
    assert!(r.error.contains(&dead["http://".len()..]), "{}", r.error);

    // ... unless "proxy": "" says to ignore the environment.
    assert_eq!(chat(json!({"proxy": ""})).code, Code::Ok);

    // A live proxy from https_proxy carries the calls through one tunnel.
    set_env(&[("https_proxy", &p.url(None))]);
    let c = Client::from_json(Some(&options(&s, json!({})))).unwrap();
    for _ in 0..10 {
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        assert_eq!(r.info_json()["proxy"], json!(p.label()));
    }
    assert_eq!(p.requests("CONNECT "), 1, "log:\n{}", p.log());
    set_env(&[]);
}
