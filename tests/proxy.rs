//! Forward proxies against a real tinyproxy on 127.0.0.1: the `proxy`
//! option, curl's environment rules (given as a lookup, so tests never race
//! on the process environment; `proxy_env.rs` uses the real one), pooled
//! CONNECT tunnels counted from tinyproxy's own log, Basic authentication,
//! and clear errors that never show credentials.

use llmpool::{Client, Code, Options};
use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::{client, closed_port, options};
use support::tinyproxy::Tinyproxy;
use support::Skip;

const SKIP: Skip = Skip::new("the proxy tests", "proxy tests: ");
const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

/// A client of `s` built with `env` as its environment.
fn client_env(
    s: &TestServer,
    extra: Value,
    env: &[(&str, String)],
) -> Result<Client, llmpool::Error> {
    let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    Client::new(Options::from_json(Some(&options(s, extra)), &lookup)?)
}

#[test]
fn https_calls_share_one_pooled_connect_tunnel() {
    let Some(p) = Tinyproxy::start(&SKIP, None) else {
        return;
    };
    let s = TestServer::tls();
    let c = client(&s, json!({"proxy": p.url(None)}));
    for i in 0..100 {
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "call {i}: {}", r.error);
        assert_eq!(r.text, "Echo: hi");
        assert_eq!(r.info_json()["proxy"], json!(p.label()));
    }
    assert_eq!(p.requests("CONNECT "), 1, "tinyproxy log:\n{}", p.log());
    assert_eq!(p.requests(&format!("CONNECT 127.0.0.1:{} ", s.port())), 1);
    assert_eq!(p.connections(), 1);
    // The gateway saw the proxy's one connection, not ours.
    assert_eq!(s.connections_accepted(), 1);
    assert_eq!(c.metrics()["connections_opened"], 1);
}

#[test]
fn plain_http_goes_in_absolute_form() {
    let Some(p) = Tinyproxy::start(&SKIP, None) else {
        return;
    };
    let s = TestServer::plain();
    let c = client(&s, json!({"proxy": p.url(None)}));
    for _ in 0..3 {
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        assert_eq!(r.text, "Echo: hi");
        assert_eq!(r.info_json()["proxy"], json!(p.label()));
    }
    let m = c.request("GET", "/models", None);
    assert_eq!(m.code, Code::Ok, "{}", m.error);
    let url = format!("http://127.0.0.1:{}/v1/chat/completions ", s.port());
    assert_eq!(p.requests(&format!("POST {url}")), 3, "log:\n{}", p.log());
    assert_eq!(p.requests("GET http://127.0.0.1:"), 1);
    assert_eq!(p.requests("CONNECT "), 0);
    assert_eq!(s.requests_to("/chat/completions"), 3);
}

#[test]
fn basic_auth_good_and_wrong_credentials() {
    let auth = ("alice", "s3cr-t.pw");
    let Some(p) = Tinyproxy::start(&SKIP, Some(auth)) else {
        return;
    };
    // Percent-encoding in the URL is decoded.
    let good = p.url(Some(("alice", "s3cr-t%2Epw")));
    let bad = p.url(Some(("alice", "wrong-pw")));
    let tls = TestServer::tls();
    let plain = TestServer::plain();
    for s in [&tls, &plain] {
        let c = client(s, json!({"proxy": good}));
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "{}: {}", s.base_url(), r.error);
        assert_eq!(r.info_json()["proxy"], json!(p.label()));

        let c = client(s, json!({"proxy": bad, "max_retries": 3}));
        let r = c.chat(CHAT);
        assert_ne!(r.code, Code::Ok);
        assert!(r.error.contains(&p.label()), "{}", r.error);
        // 407, or 401 as tinyproxy answers.
        assert!(r.error.contains("HTTP 40"), "{}", r.error);
        for secret in ["wrong-pw", auth.1, "alice:", "YWxpY2"] {
            assert!(!r.error.contains(secret), "{secret} in {}", r.error);
            assert!(
                !r.info_json().to_string().contains(secret),
                "{secret} in {}",
                r.info_json()
            );
            assert!(!c.metrics().to_string().contains(secret));
            assert!(!format!("{c:?} {:?}", c.options()).contains(secret));
        }
        assert_eq!(r.info_json()["proxy"], json!(p.label()));
    }
    // A refused CONNECT is not retried: the proxy would refuse again.
    let c = client(&tls, json!({"proxy": bad, "max_retries": 3}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Connect, "{}", r.error);
    assert!(r.error.contains("refused CONNECT"), "{}", r.error);
    assert!(r.error.contains("refused the credentials"), "{}", r.error);
    assert_eq!(r.info_json()["attempts"], 1);
    // Without credentials the error says the proxy wants some.
    let c = client(&tls, json!({"proxy": p.url(None)}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Connect);
    assert!(
        r.error.contains("HTTP 40") && r.error.contains("wants credentials"),
        "{}",
        r.error
    );
}

#[test]
fn proxy_down_names_the_proxy_and_hides_credentials() {
    let s = TestServer::tls();
    let port = closed_port();
    let c = client(
        &s,
        json!({"proxy": format!("http://bob:hunter2@127.0.0.1:{port}"), "max_retries": 1}),
    );
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Connect, "{}", r.error);
    assert!(
        r.error.contains(&format!("proxy 127.0.0.1:{port}")),
        "{}",
        r.error
    );
    assert!(
        !r.error.contains("hunter2") && !r.error.contains("bob"),
        "{}",
        r.error
    );
    assert_eq!(r.info_json()["proxy"], json!(format!("127.0.0.1:{port}")));
    assert_eq!(s.connections_accepted(), 0);
}

#[test]
fn environment_proxies_follow_curl_rules() {
    let Some(p) = Tinyproxy::start(&SKIP, None) else {
        return;
    };
    let s = TestServer::tls();
    let dead = format!("http://127.0.0.1:{}", closed_port());

    // HTTPS_PROXY carries https calls.
    let c = client_env(&s, json!({}), &[("HTTPS_PROXY", p.url(None))]).unwrap();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["proxy"], json!(p.label()));
    assert_eq!(p.requests("CONNECT "), 1);

    // A dead HTTPS_PROXY with NO_PROXY covering the gateway: direct, and works.
    for no_proxy in [
        "127.0.0.1",
        "localhost, 127.0.0.0/8",
        "*",
        &format!("127.0.0.1:{}", s.port()),
    ] {
        let env = [
            ("HTTPS_PROXY", dead.clone()),
            ("NO_PROXY", no_proxy.to_string()),
        ];
        let c = client_env(&s, json!({}), &env).unwrap();
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "NO_PROXY={no_proxy}: {}", r.error);
        assert_eq!(r.info_json()["proxy"], Value::Null);
    }
    // NO_PROXY for another port does not cover the gateway.
    let env = [
        ("https_proxy", dead.clone()),
        ("no_proxy", "127.0.0.1:1".to_string()),
    ];
    let c = client_env(&s, json!({"max_retries": 0}), &env).unwrap();
    assert_eq!(c.chat(CHAT).code, Code::Connect);

    // http_proxy is not used for https, all_proxy is.
    let c = client_env(&s, json!({}), &[("http_proxy", dead.clone())]).unwrap();
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let c = client_env(&s, json!({}), &[("ALL_PROXY", p.url(None))]).unwrap();
    assert_eq!(c.chat(CHAT).info_json()["proxy"], json!(p.label()));

    // "proxy": "" ignores the environment; the option wins over it.
    let c = client_env(&s, json!({"proxy": ""}), &[("HTTPS_PROXY", dead.clone())]).unwrap();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["proxy"], Value::Null);
    let c = client_env(
        &s,
        json!({"proxy": p.url(None)}),
        &[("HTTPS_PROXY", dead.clone())],
    )
    .unwrap();
    assert_eq!(c.chat(CHAT).code, Code::Ok);

    // A bad proxy URL is refused when the client is built, naming its source.
    let e = client_env(&s, json!({}), &[("HTTPS_PROXY", "socks9://u:pw@h".into())]).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(
        e.message.contains("HTTPS_PROXY") && !e.message.contains("pw"),
        "{}",
        e.message
    );
    let e = client_env(&s, json!({"proxy": 5}), &[]).unwrap_err();
    assert!(e.message.contains("\"proxy\""), "{}", e.message);
}
