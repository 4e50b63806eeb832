//! Thousands of async streams at once on a few library threads: a call
//! waiting for the network holds no thread (its fiber is suspended and the
//! reactor wakes it), so 2,000 streams in flight together need no more
//! threads than a few (issue #21). Asserts completion, content and thread
//! counts, never time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use llmpool::Code;
use llmpool_testserver::TestServer;
use serde_json::json;

mod support;
use support::loopback::client;

const STREAMS: usize = 2000;
const WORDS: usize = 8;

/// Library threads alive in this process right now, by name.
fn library_threads() -> HashMap<String, usize> {
    let mut by_name = HashMap::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm.starts_with("llmpool") {
            *by_name.entry(comm.to_string()).or_insert(0) += 1;
        }
    }
    by_name
}

#[test]
fn two_thousand_streams_in_flight_on_a_few_threads() {
    let s = TestServer::plain();
    // Each stream is 2 + WORDS chunks, 400 ms apart: about 4 s, so all of
    // them are open together even on a slow machine.
    let c = client(&s, json!({"stream_idle_timeout_ms": 60000}));
    let content: String = (0..WORDS)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let req = json!({
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "stream": true,
        "x_test_stream_delay_ms": 400,
    })
    .to_string();

    let open = Arc::new(AtomicUsize::new(0));
    let most_open = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for i in 0..STREAMS {
        let (open, most, tx) = (open.clone(), most_open.clone(), tx.clone());
        let mut got = String::new();
        let mut first = true;
        let counted = Arc::new(AtomicUsize::new(0));
        let counted2 = counted.clone();
        let open2 = open.clone();
        c.chat_stream_async(
            &req,
            Box::new(move |d, _e| {
                if first {
                    first = false;
                    counted2.store(1, Ordering::SeqCst);
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                }
                got.push_str(d);
                true
            }),
            Box::new(move |r| {
                if counted.load(Ordering::SeqCst) == 1 {
                    open2.fetch_sub(1, Ordering::SeqCst);
                }
                let _ = tx.send((i, r));
            }),
        )
        .expect("submitted");
    }
    drop(tx);

    let mut most_threads = 0;
    let mut done = 0;
    let mut failures = Vec::new();
    while done < STREAMS {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((i, r)) => {
                done += 1;
                if r.code != Code::Ok || r.text != format!("Echo: {content}") {
                    failures.push(format!("stream {i}: {:?} {} {:?}", r.code, r.error, r.text));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("{e}: {done} of {STREAMS} done"),
        }
        let n: usize = library_threads().values().sum();
        most_threads = most_threads.max(n);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let together = most_open.load(Ordering::SeqCst);
    assert!(
        together >= STREAMS / 2,
        "only {together} streams were open at once: the test did not test concurrency"
    );
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let m = c.metrics();
    let peak = m["async"]["peak_threads"].as_u64().unwrap() as usize;
    assert!(
        peak <= 2 * cores + 2,
        "{peak} call threads for {together} streams in flight: {m}"
    );
    // Call threads, the reactor, the timer and any name-lookup helper.
    assert!(
        most_threads <= 2 * cores + 4,
        "{most_threads} llmpool threads at most, for {together} streams in flight ({:?})",
        library_threads()
    );
    eprintln!(
        "{STREAMS} streams, {together} open at once, {peak} call threads, {most_threads} llmpool threads at most"
    );
}
