//! Large answers (a 4 MB embeddings body): the memory one call needs, the
//! fields read without a full parse, and the vectors as floats, over
//! loopback against the bundled test server.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use llmpool::{Code, Response};
use llmpool_testserver::{Fault, TestServer};
use serde_json::json;

mod support;
use support::loopback::client;

/// Counts the heap bytes allocated by the thread that turned counting on.
/// The client does all of a call's work on the calling thread; the test
/// server's threads (which hold and write the body) are not counted.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn add(n: isize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to the system allocator with the same
// arguments; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counting() {
            add(l.size() as isize);
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if counting() {
            add(l.size() as isize);
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if counting() {
            add(-(l.size() as isize));
        }
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if counting() {
            // Old and new blocks may both be live while the data moves.
            add(new as isize);
            add(-(l.size() as isize));
        }
        // SAFETY: forwarded contract.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap bytes the calling thread allocated while running `f`, above
/// what it held before; `f`'s result is kept alive until the peak is read.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    COUNTING.with(|c| c.set(true));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    COUNTING.with(|c| c.set(false));
    (out, peak.max(0) as usize)
}

const ROWS: usize = 256;
const DIM: usize = 1536;

fn value(r: usize, d: usize) -> f32 {
    // Exactly representable, so the JSON text round-trips bit for bit.
    ((r * 7 + d * 13) % 2001) as f32 / 1024.0 - 0.9765625
}

fn b64(v: &[f32]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut s = String::with_capacity(bytes.len() / 3 * 4 + 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            s.push(if k <= c.len() {
                A[(n >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    s
}

/// An embeddings answer of ROWS x DIM, rows listed in reverse `index` order.
fn answer(base64: bool) -> String {
    let mut s = String::from(r#"{"object":"list","data":["#);
    for r in (0..ROWS).rev() {
        let row: Vec<f32> = (0..DIM).map(|d| value(r, d)).collect();
        let emb = if base64 {
            format!("\"{}\"", b64(&row))
        } else {
            let t: Vec<String> = row.iter().map(|v| format!("{v:.10}")).collect();
            format!("[{}]", t.join(","))
        };
        if r + 1 < ROWS {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"object":"embedding","index":{r},"embedding":{emb}}}"#
        ));
    }
    s.push_str(r#"],"model":"emb-large","usage":{"prompt_tokens":2048,"total_tokens":2048}}"#);
    s
}

fn serve(s: &TestServer, body: String) {
    s.push_fault(Fault::Status {
        code: 200,
        body,
        headers: vec![],
    });
}

fn check_matrix(r: &Response) {
    let m = r.embeddings().expect("embeddings decode");
    assert_eq!((m.count, m.dim), (ROWS, DIM));
    for row in [0, 1, 77, ROWS - 1] {
        for d in [0, 1, 500, DIM - 1] {
            assert_eq!(m.data[row * DIM + d], value(row, d), "row {row} dim {d}");
        }
    }
}

#[test]
fn a_4mb_embeddings_call_needs_less_than_3x_its_body_and_reads_usage() {
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"prices": {"emb-large": {"input": 0.02, "output": 0}}}),
    );
    // Open the pooled connection first: its buffers are not per-call.
    assert_eq!(
        c.embeddings(r#"{"model":"m","input":"warm"}"#).code,
        Code::Ok
    );
    for base64 in [false, true] {
        let body = answer(base64);
        serve(&s, body.clone());
        let (r, peak) = peak_during(|| c.embeddings(r#"{"model":"emb-large","input":"x"}"#));
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        assert_eq!(r.body.len(), body.len());
        assert!(r.body == body.as_bytes());
        println!(
            "base64={base64}: body {} bytes, peak heap during the call {} bytes ({:.2}x)",
            body.len(),
            peak,
            peak as f64 / body.len() as f64
        );
        assert!(
            peak < 3 * body.len(),
            "peak {peak} bytes for a {} byte body",
            body.len()
        );
        // Room for the NUL the C API appends, so handing the body to C
        // does not reallocate (copy) it.
        assert!(r.body.capacity() > r.body.len());
        assert_eq!(r.info_json()["model"], "emb-large");
        assert_eq!(r.info_json()["usage"]["prompt_tokens"], 2048);
        let cost = r.info_json()["cost_usd"].as_f64().expect("priced");
        assert!((cost - 2048.0 * 0.02 / 1e6).abs() < 1e-12, "{cost}");
        check_matrix(&r);
    }
}

#[test]
fn a_broken_large_answer_is_a_protocol_error() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retries": 0}));
    let mut body = answer(false);
    body.truncate(body.len() - 40);
    serve(&s, body);
    let r = c.embeddings(r#"{"model":"m","input":"x"}"#);
    assert_eq!(r.code, Code::Protocol, "{}", r.error);
    assert!(r.error.contains("not valid JSON"), "{}", r.error);
    let e = r.embeddings().unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{}", e.message);
}

#[test]
fn the_test_servers_float_embeddings_decode_and_chat_is_not_embeddings() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let r = c.embeddings(r#"{"model":"m","input":["a","bb","ccc"]}"#);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let m = r.embeddings().unwrap();
    let v = r.json().unwrap();
    assert_eq!(m.count, 3);
    let want: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["embedding"].as_array().unwrap().clone())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(m.data, want);
    assert_eq!(m.dim * 3, want.len());
    let chat = c.chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(chat.code, Code::Ok);
    assert_eq!(chat.info_json()["finish_reason"], "stop");
    let e = chat.embeddings().unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(
        e.message.contains("not an embeddings answer"),
        "{}",
        e.message
    );
}
