//! Raw request bodies and response headers over loopback: any bytes in
//! (a 5 MB binary upload, a multipart transcription request), any bytes out
//! (an `audio/mpeg` answer), header lookup, and retries re-sending the same
//! bytes.

use llmpool::Code;
use llmpool_testserver::{fnv1a, speech_audio, TestServer};
use serde_json::json;

mod support;
use support::loopback::{client, status};

/// `n` bytes covering every byte value, NULs and invalid UTF-8 included.
fn binary(n: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 7 == 0 {
                0
            } else {
                (x >> 16) as u8
            }
        })
        .collect()
}

#[test]
fn five_megabyte_binary_upload_arrives_byte_exact() {
    for s in [TestServer::plain(), TestServer::tls()] {
        let c = client(&s, json!({}));
        let body = binary(5 * 1024 * 1024);
        let r = c.request_raw(
            "POST",
            "/echo",
            Some("application/octet-stream"),
            Some(&body),
        );
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        // The server hashed what arrived; the echo comes back byte for byte.
        assert_eq!(
            r.header("x-body-bytes"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(r.header("x-body-fnv1a"), Some(fnv1a(&body).as_str()));
        assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
        assert!(r.body == body, "echoed body differs");
        let rec = s.recorded().pop().unwrap();
        assert_eq!(rec.header("content-type"), Some("application/octet-stream"));
        assert_eq!(rec.header("accept"), Some("*/*"));
        assert_eq!(rec.header("content-length"), Some("5242880"));
    }
}

#[test]
fn multipart_transcription_request() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let audio = binary(200_000);
    let boundary = "llmpool-test-boundary-7d3f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"talk.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n").as_bytes());
    body.extend_from_slice(&audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = c.request_raw("POST", "/audio/transcriptions", Some(&ct), Some(&body));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let v = r.json().unwrap();
    assert_eq!(v["file_bytes"], audio.len());
    assert_eq!(v["file_fnv1a"], fnv1a(&audio));
    assert_eq!(v["filename"], "talk.mp3");
    assert_eq!(v["model"], "whisper-1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Without the multipart content type the server refuses it.
    let r = c.request_raw("POST", "/audio/transcriptions", None, Some(&body));
    assert_eq!(r.code, Code::HttpStatus);
    assert_eq!(r.status, 400);
    assert!(s
        .recorded()
        .last()
        .unwrap()
        .header("content-type")
        .is_none());
}

#[test]
fn binary_audio_answer_is_read_back_byte_exact() {
    let s = TestServer::tls();
    let c = client(&s, json!({}));
    let req = br#"{"model":"tts-1","input":"Hello from llmpool, with bytes.","voice":"alloy"}"#;
    let r = c.request_raw("POST", "/audio/speech", Some("application/json"), Some(req));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let want = speech_audio("Hello from llmpool, with bytes.");
    assert_eq!(r.body.len(), want.len());
    assert!(r.body == want, "audio differs");
    assert!(r.body.contains(&0) && std::str::from_utf8(&r.body).is_err());
    assert_eq!(r.header("content-type"), Some("audio/mpeg"));
    assert_eq!(r.header("CONTENT-TYPE"), Some("audio/mpeg"));
    assert!(r.header("x-request-id").unwrap().starts_with("req-"));
    assert_eq!(r.header("x-no-such-header"), None);
    assert_eq!(r.text, "");
}

#[test]
fn retries_resend_the_same_bytes() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    s.push_fault(status(503, &[]));
    s.push_fault(status(502, &[]));
    let body = binary(300_000);
    let r = c.request_raw("PUT", "/echo", Some("application/x-test"), Some(&body));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["retries"], 2);
    assert!(r.body == body);
    let rec = s.recorded();
    assert_eq!(rec.len(), 3);
    for q in &rec {
        assert_eq!(q.header("content-length"), Some("300000"));
        assert_eq!(q.method, "PUT");
    }
}

#[test]
fn bad_raw_arguments_are_refused_before_any_traffic() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let r = c.request_raw("POST", "echo", None, None);
    assert_eq!(r.code, Code::InvalidArgument);
    assert!(r.error.contains("path"), "{}", r.error);
    let r = c.request_raw("FETCH", "/echo", None, None);
    assert!(r.error.contains("method"), "{}", r.error);
    let r = c.request_raw("POST", "/echo", Some("text/plain\r\nX-Evil: 1"), Some(b"x"));
    assert_eq!(r.code, Code::InvalidArgument);
    assert!(r.error.contains("content_type"), "{}", r.error);
    assert_eq!(s.requests(), 0);
    // No body at all is fine.
    let r = c.request_raw("POST", "/echo", None, None);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(r.body.is_empty());
}
