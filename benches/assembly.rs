//! What assembling a stream costs per chunk, next to plain streaming.
//!
//! A 2,000-chunk tool-call stream (each chunk one argument fragment, as
//! gateways send long tool calls) is run through what every stream does
//! anyway (the SSE parser and one JSON parse per event) and through the
//! same plus `assemble::Assembler` (the tool call joined, typed deltas
//! made, the completion built at the end), in interleaved rounds. Prints
//! ns per chunk for each and the ratio (target: at most 1.10).
//!
//!   cargo bench --bench assembly
//!
//! For instruction counts (quiet on a busy machine), run the binary under
//!   valgrind --tool=callgrind --toggle-collect=assembly::plain_pass
//! and again with assembly::assembled_pass.

use std::time::Instant;

use llmpool::assemble::{Api, Assembler};
use llmpool::sse::SseParser;
use serde_json::{json, Value};

const CHUNKS: usize = 2000;
const ROUNDS: usize = 15;

fn body() -> Vec<u8> {
    let mut out = String::new();
    let mut push = |v: Value| out.push_str(&format!("data: {v}\n\n"));
    let head = |choices: Value| {
        json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
               "model": "bench-model", "system_fingerprint": "fp_bench", "choices": choices})
    };
    push(head(
        json!([{"index": 0, "delta": {"role": "assistant", "content": null,
        "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "write_file", "arguments": ""}}]}, "finish_reason": null}]),
    ));
    for i in 0..CHUNKS {
        push(head(
            json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": format!("w{i} ")}}]}, "finish_reason": null}]),
        ));
    }
    push(head(
        json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
    ));
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// Feeds `body` in 16 KiB reads, as the stream reader does.
fn events(body: &[u8], mut each: impl FnMut(&Value)) {
    let mut p = SseParser::new();
    for piece in body.chunks(16 * 1024) {
        for ev in p.feed(piece).expect("valid SSE") {
            if ev.data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(&ev.data).expect("JSON");
            each(&v);
        }
    }
}

/// Parse only, reading choice 0's content as plain streaming does.
#[inline(never)]
fn plain_pass(body: &[u8]) -> usize {
    let mut n = 0;
    events(body, |v| {
        n += llmpool::assemble::chat::chunk_content(v).len() + 1;
    });
    n
}

/// Parse, assemble, emit typed deltas, build the completion.
#[inline(never)]
fn assembled_pass(body: &[u8]) -> usize {
    let mut a = Assembler::new(Api::Chat);
    let mut n = 0;
    events(body, |v| {
        a.feed(None, v, &mut |d| n += d.text.len());
    });
    let done = a.finish();
    n + done.completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .map_or(0, str::len)
}

fn main() {
    let body = body();
    // Warm up, and check the assembly is right.
    assert!(plain_pass(&body) > CHUNKS);
    assert!(assembled_pass(&body) > CHUNKS * 4);
    let (mut plain, mut assembled) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        std::hint::black_box(plain_pass(std::hint::black_box(&body)));
        plain.push(t.elapsed().as_secs_f64() * 1e9 / CHUNKS as f64);
        let t = Instant::now();
        std::hint::black_box(assembled_pass(std::hint::black_box(&body)));
        assembled.push(t.elapsed().as_secs_f64() * 1e9 / CHUNKS as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (p, a) = (median(&mut plain), median(&mut assembled));
    let ratio = a / p;
    println!(
        "assembly: a {CHUNKS}-chunk tool-call stream ({} bytes), {ROUNDS} interleaved rounds",
        body.len()
    );
    println!("  plain streaming (SSE + one JSON parse per event)  {p:8.0} ns/chunk");
    println!("  with assembly (+ tool call, deltas, completion)   {a:8.0} ns/chunk");
    println!(
        "  ratio assembled/plain {ratio:.3}  (+{:.0} ns/chunk; target <= 1.10: {})",
        a - p,
        if ratio <= 1.10 { "met" } else { "NOT met" }
    );
}
