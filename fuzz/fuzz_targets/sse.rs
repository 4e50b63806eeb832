//! Fuzzes `llmpool::sse`: arbitrary bytes, split at fuzzer-chosen points,
//! must yield exactly the events (and error) of a one-shot feed, and of a
//! byte-by-byte feed, without panicking; `interpret` runs on every event.
//!
//! Input layout: `[cfg, n, len_1 .. len_n, stream...]`.
//! * `cfg & 0x80` selects a tiny limit (`(cfg & 0x3f) + 1` bytes) so the
//!   oversize-line/event paths are exercised; otherwise the default limit.
//! * `len_i` are the chunk lengths (cycled; 0 means an empty feed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmpool::sse::{interpret, SseError, SseEvent, SseParser, StreamItem};

fn parser(cfg: u8) -> SseParser {
    if cfg & 0x80 != 0 {
        SseParser::with_limit(usize::from(cfg & 0x3f) + 1)
    } else {
        SseParser::new()
    }
}

/// Feeds `chunks`, then finishes; returns the events and the error, if any.
fn run<'a>(
    mut p: SseParser,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<SseEvent>, Option<SseError>) {
    let mut out = Vec::new();
    for c in chunks {
        match p.feed(c) {
            Ok(evs) => out.extend(evs),
            Err(e) => {
                // The parser stays poisoned with the same error.
                assert_eq!(p.feed(b"data: x\n\n").as_ref(), Err(&e));
                assert_eq!(p.finish().as_ref(), Err(&e));
                return (out, Some(e));
            }
        }
    }
    match p.finish() {
        Ok(ev) => out.extend(ev),
        Err(e) => return (out, Some(e)),
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(n % 32).min(rest.len());
    let (lens, stream) = rest.split_at(n);

    let mut chunks = Vec::new();
    let mut tail = stream;
    let mut i = 0;
    while !tail.is_empty() {
        let len = if lens.is_empty() {
            tail.len()
        } else {
            usize::from(lens[i % lens.len()]).min(tail.len())
        };
        let (c, t) = tail.split_at(len);
        chunks.push(c);
        tail = t;
        i += 1;
        if i > 4 * stream.len() + 8 {
            // All-zero lengths: feed the rest at once.
            chunks.push(tail);
            break;
        }
    }

    let whole = run(parser(cfg), [stream]);
    let split = run(parser(cfg), chunks.iter().copied());
    assert_eq!(whole, split, "split feeding differs from one shot");
    let bytewise = run(parser(cfg), stream.chunks(1));
    assert_eq!(
        whole, bytewise,
        "byte-by-byte feeding differs from one shot"
    );

    for ev in &whole.0 {
        assert!(!ev.data.contains('\r'));
        for s in ev.event.iter().chain(ev.id.iter()) {
            assert!(!s.contains(['\r', '\n']));
            assert!(!s.is_empty());
        }
        if let Some(id) = &ev.id {
            assert!(!id.contains('\0'));
        }
        if cfg & 0x80 != 0 {
            assert!(ev.data.len() < usize::from(cfg & 0x3f) + 1);
        }
        match interpret(ev) {
            Ok(StreamItem::Chunk(c)) => assert_eq!(c.raw, ev.data),
            Ok(StreamItem::Error { raw, .. }) => assert_eq!(raw, ev.data),
            Ok(StreamItem::Done) => assert_eq!(ev.data.trim(), "[DONE]"),
            Err(msg) => assert!(!msg.is_empty()),
        }
    }
});
