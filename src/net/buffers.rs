//! The I/O buffers of one TCP connection: memory only while a call moves
//! bytes, none while the connection waits in the pool.
//!
//! ureq's `LazyBuffers` allocate `input_buffer_size` + `output_buffer_size`
//! (128 KiB each by default) on first use and keep them for the connection's
//! life, so a pool of thousands of idle connections held hundreds of MB
//! doing nothing (docs/benchmark.md). These buffers instead:
//! - output: keep the request until the next read (see
//!   `CountedTcp::transmit_output`), then give the memory back;
//! - input: start at [`INPUT_START`] and double (up to [`INPUT_MAX`]) while
//!   reads fill them, a large body arriving faster than it is consumed;
//! - give everything back in [`ConnBuffers::release_idle`], which the
//!   transport calls from `is_open`: ureq asks that when it returns a
//!   connection to the pool, after the whole response was read.
//!
//! Allocating and zeroing buffers for every call cost 2-3% of a small
//! loopback call, so a freed buffer of up to [`SPARE_MAX`] bytes is kept as
//! its thread's spare and taken by the next buffer that thread needs: a
//! thread making sequential calls allocates nothing after its first. Each
//! thread keeps at most one spare (freed when the thread exits); spares
//! belong to no connection and are not in `buffer_bytes_held`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ureq::unversioned::transport::Buffers;

/// Size of the output window handed to ureq (after any pending output).
/// ureq writes a request head line by line, so this bounds the longest
/// header line (nginx's default limit is 8 KiB too). The output buffer is
/// given back once the request is written, so a call waiting for its
/// answer holds only its input buffer.
pub const OUTPUT_WINDOW: usize = 8 * 1024;

/// Size of a fresh input buffer: a chat answer (head and body) fits; a
/// larger one doubles it.
pub const INPUT_START: usize = 4 * 1024;

/// The largest response head accepted (ureq's default is 64 KiB). LLM
/// gateways send one to three KiB; nginx, in front of most, refuses an
/// upstream head above 4 or 8 KiB by default (`proxy_buffer_size`).
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// ureq's TLS layer reads plaintext into a fixed buffer of this size, which
/// it keeps for the connection's life (rustls holds the rest of a 16 KiB
/// record until the next read). Above [`MAX_RESPONSE_HEAD`], so a larger
/// head is refused as too large rather than stalling a full buffer.
pub const TLS_INPUT: usize = MAX_RESPONSE_HEAD + 1024;

/// A freed buffer up to this capacity becomes its thread's spare.
pub const SPARE_MAX: usize = 16 * 1024;

/// Scratch space ureq asks for next to the output window (see
/// `tmp_and_output`).
const TMP: usize = 1024;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer of at least `len` initialized bytes: this thread's spare if it
/// has one no more than twice that size, else a new one. A larger spare
/// stays for a larger need: a stream's fresh 4 KiB input buffer that took
/// the request's 9 KiB output buffer would hold 9 KiB for the stream's
/// whole life (measured: 9.2 KiB of the 30 KiB of heap per stream).
fn take(len: usize) -> Vec<u8> {
    let spare = SPARE
        .try_with(|s| {
            let v = s.take();
            if v.capacity() > 2 * len.max(1) {
                s.set(v);
                return Vec::new();
            }
            v
        })
        .unwrap_or_default();
    let mut v = spare;
    if v.len() < len {
        v.resize(len, 0);
    }
    v
}

/// Frees `v`, or keeps it as this thread's spare (replacing any other).
fn give(v: Vec<u8>) {
    if v.capacity() > 0 && v.capacity() <= SPARE_MAX {
        let _ = SPARE.try_with(|s| s.set(v));
    }
}

/// The input buffer grows up to this while a large body streams in (ureq's
/// former default, so large bodies need no more reads than before).
pub const INPUT_MAX: usize = 128 * 1024;

/// Input and pending output of one connection; the bytes allocated are
/// added to (and, when freed, taken from) a shared counter.
#[derive(Debug)]
pub struct ConnBuffers {
    input: Vec<u8>,
    filled: usize,
    consumed: usize,
    /// The last `input_consume` consumed something (ureq's "can use the
    /// input without reading more" needs it, as in `LazyBuffers`).
    progress: bool,
    /// `out[..pending]` is output waiting to be written; the rest is the
    /// window ureq writes into next.
    out: Vec<u8>,
    pending: usize,
    held: Arc<AtomicU64>,
    counted: usize,
}

impl ConnBuffers {
    pub fn new(held: Arc<AtomicU64>) -> ConnBuffers {
        ConnBuffers {
            input: Vec::new(),
            filled: 0,
            consumed: 0,
            progress: false,
            out: Vec::new(),
            pending: 0,
            held,
            counted: 0,
        }
    }

    /// Bytes allocated right now.
    pub fn allocated(&self) -> usize {
        self.input.capacity() + self.out.capacity()
    }

    fn account(&mut self) {
        let now = self.allocated();
        if now > self.counted {
            self.held
                .fetch_add((now - self.counted) as u64, Ordering::Relaxed);
        } else if now < self.counted {
            self.held
                .fetch_sub((self.counted - now) as u64, Ordering::Relaxed);
        }
        self.counted = now;
    }

    /// Output handed to `transmit_output` and not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.out[..self.pending]
    }

    /// Marks `amount` bytes of the window returned by `output()` as pending.
    pub fn push_output(&mut self, amount: usize) {
        self.pending += amount;
        assert!(self.pending <= self.out.len());
    }

    /// All pending output was written. With `release`, the buffer is freed
    /// (the request is complete); otherwise it is kept for more of a large
    /// body.
    pub fn output_written(&mut self, release: bool) {
        self.pending = 0;
        if release && self.out.capacity() > 0 {
            give(std::mem::take(&mut self.out));
            self.account();
        }
    }

    /// Space to read into; call `input_read` after reading.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.input_append_buf()
    }

    /// `n` bytes were read into `read_buf()`, which offered `offered`. A
    /// read that filled it means more is probably waiting: grow.
    pub fn input_read(&mut self, n: usize, offered: usize) {
        self.input_appended(n);
        if n > 0 && n == offered && self.input.len() < INPUT_MAX {
            let grown = (self.input.len() * 2).min(INPUT_MAX);
            self.input.resize(grown, 0);
            self.account();
        }
    }

    /// Gives the input buffer back while it holds nothing unread, before
    /// waiting for the socket: a stream between two events holds no input
    /// buffer, however long it waits (the next read takes one, this
    /// thread's spare when it has one). Measured with nginx trickling
    /// 8 KB bursts: a stream held 18.7 KiB of input buffer, grown by its
    /// bursts, between them.
    pub fn release_empty_input(&mut self) {
        if self.consumed == self.filled && self.input.capacity() > 0 {
            give(std::mem::take(&mut self.input));
            self.filled = 0;
            self.consumed = 0;
            self.account();
        }
    }

    /// Gives all memory back unless unread input or unwritten output is
    /// still in it. Call when the connection goes idle.
    pub fn release_idle(&mut self) {
        if self.consumed == self.filled && self.pending == 0 {
            give(std::mem::take(&mut self.input));
            give(std::mem::take(&mut self.out));
            self.filled = 0;
            self.consumed = 0;
            self.account();
        }
    }
}

impl ConnBuffers {
    /// A window after the pending output, then [`TMP`]: a whole
    /// [`OUTPUT_WINDOW`] for a request head (written when nothing is
    /// pending), at least a quarter of one for more of a body.
    fn reserve_output(&mut self) {
        let min = if self.pending == 0 {
            OUTPUT_WINDOW
        } else {
            OUTPUT_WINDOW / 4
        };
        if self.out.capacity() == 0 {
            self.out = take(self.pending + OUTPUT_WINDOW + TMP);
            self.account();
        } else if self.out.len() < self.pending + min + TMP {
            self.out.resize(self.pending + OUTPUT_WINDOW + TMP, 0);
            self.account();
        }
    }
}

impl Drop for ConnBuffers {
    fn drop(&mut self) {
        self.input = Vec::new();
        self.out = Vec::new();
        self.account();
    }
}

impl Buffers for ConnBuffers {
    fn output(&mut self) -> &mut [u8] {
        self.reserve_output();
        &mut self.out[self.pending..]
    }

    fn input(&self) -> &[u8] {
        &self.input[self.consumed..self.filled]
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        if self.consumed == self.filled {
            self.consumed = 0;
            self.filled = 0;
        } else if self.consumed > 0 && self.filled > self.input.len() / 2 {
            self.input.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        if self.input.is_empty() {
            self.input = take(INPUT_START);
            self.account();
        } else if self.filled == self.input.len() && self.input.len() < INPUT_MAX {
            // Full of unconsumed bytes (a response head not complete yet).
            let grown = (self.input.len() * 2).min(INPUT_MAX);
            self.input.resize(grown, 0);
            self.account();
        }
        &mut self.input[self.filled..]
    }

    fn input_appended(&mut self, amount: usize) {
        self.filled += amount;
        assert!(self.filled <= self.input.len());
    }

    fn input_consume(&mut self, amount: usize) {
        self.progress = amount > 0;
        self.consumed += amount;
        assert!(self.consumed <= self.filled);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        // ureq reads a request body into `tmp` only when it sends it
        // chunked (llmpool's bodies have a length). `LazyBuffers` lends the
        // free input space, growing the input to 10 KiB, which a call would
        // then hold while it waits for its answer; the output buffer's
        // tail serves instead.
        self.reserve_output();
        let window = self.out.len() - self.pending - TMP;
        let (output, tmp) = self.out[self.pending..].split_at_mut(window);
        (tmp, output)
    }

    fn can_use_input(&self) -> bool {
        self.consumed < self.filled && self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (ConnBuffers, Arc<AtomicU64>) {
        let held = Arc::new(AtomicU64::new(0));
        (ConnBuffers::new(held.clone()), held)
    }

    /// Reads `data` as a socket would, `buf.len()` bytes at most per read.
    fn read_from(b: &mut ConnBuffers, data: &mut &[u8]) -> usize {
        let buf = b.read_buf();
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        let offered = buf.len();
        *data = &data[n..];
        b.input_read(n, offered);
        n
    }

    #[test]
    fn a_small_exchange_leaves_nothing_allocated() {
        let (mut b, held) = fresh();
        let head = b"POST / HTTP/1.1\r\n\r\n";
        b.output()[..head.len()].copy_from_slice(head);
        b.push_output(head.len());
        assert_eq!(b.pending(), head);
        assert!(held.load(Ordering::Relaxed) >= OUTPUT_WINDOW as u64);
        b.output_written(true);
        let mut answer: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let n = read_from(&mut b, &mut answer);
        assert_eq!(
            b.input(),
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..n]
        );
        b.input_consume(n - 2);
        assert!(b.can_use_input());
        assert_eq!(b.input(), b"ok");
        b.input_consume(2);
        assert!(b.allocated() > 0, "kept until the connection goes idle");
        b.release_idle();
        assert_eq!(b.allocated(), 0);
        assert_eq!(held.load(Ordering::Relaxed), 0);
        assert!(b.input().is_empty());
    }

    #[test]
    fn input_grows_while_a_large_body_streams_and_is_freed_at_its_end() {
        let (mut b, held) = fresh();
        let body = vec![7u8; 1_000_000];
        let mut data = &body[..];
        let mut most = 0;
        let mut got = Vec::new();
        while !data.is_empty() {
            read_from(&mut b, &mut data);
            most = most.max(b.allocated());
            assert_eq!(held.load(Ordering::Relaxed), b.allocated() as u64);
            let n = b.input().len();
            got.extend_from_slice(b.input());
            b.input_consume(n);
        }
        assert_eq!(got, body);
        assert_eq!(most, INPUT_MAX);
        assert_eq!(b.allocated(), INPUT_MAX, "kept while the body moves");
        b.release_idle();
        assert_eq!(b.allocated(), 0);
        assert_eq!(held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_empty_input_buffer_is_given_back_before_a_wait() {
        let (mut b, held) = fresh();
        let burst = vec![1u8; 3 * INPUT_START];
        let mut data = &burst[..];
        read_from(&mut b, &mut data);
        // Unread input stays.
        b.release_empty_input();
        assert!(b.allocated() > 0);
        while !data.is_empty() {
            let n = b.input().len();
            b.input_consume(n);
            read_from(&mut b, &mut data);
        }
        let n = b.input().len();
        b.input_consume(n);
        b.release_empty_input();
        assert_eq!((b.allocated(), held.load(Ordering::Relaxed)), (0, 0));
        // The next read takes a buffer again.
        let mut event: &[u8] = b"data: {}\n\n";
        read_from(&mut b, &mut event);
        assert_eq!(b.input(), b"data: {}\n\n");
    }

    #[test]
    fn a_head_larger_than_the_buffer_makes_it_grow() {
        let (mut b, _held) = fresh();
        let head = vec![b'h'; 3 * INPUT_START];
        let mut data = &head[..];
        for _ in 0..3 {
            read_from(&mut b, &mut data);
            // not parsable yet: nothing consumed
            b.input_consume(0);
            assert!(!b.can_use_input());
        }
        assert!(data.is_empty());
        assert_eq!(b.input().len(), head.len());
    }

    #[test]
    fn large_output_is_kept_until_the_request_is_complete() {
        let (mut b, held) = fresh();
        for _ in 0..10 {
            let w = b.output();
            assert!(w.len() >= OUTPUT_WINDOW);
            w[..OUTPUT_WINDOW].fill(1);
            b.push_output(OUTPUT_WINDOW);
        }
        assert_eq!(b.pending().len(), 10 * OUTPUT_WINDOW);
        b.output_written(false);
        assert!(b.pending().is_empty());
        assert!(b.allocated() > 0);
        b.output_written(true);
        assert_eq!(b.allocated(), 0);
        assert_eq!(held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_thread_reuses_its_freed_buffer() {
        let (mut b, held) = fresh();
        let first = b.output().as_ptr();
        b.push_output(10);
        b.output_written(true);
        assert_eq!(held.load(Ordering::Relaxed), 0);
        // An input buffer (4 KiB) does not take it (9 KiB): it would keep
        // the larger size for as long as its stream runs.
        let (mut other, _) = fresh();
        assert_ne!(other.read_buf().as_ptr(), first);
        assert_eq!(other.allocated(), INPUT_START);
        let mut answer: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        read_from(&mut other, &mut answer);
        let n = other.input().len();
        other.input_consume(n);
        // The next output buffer this thread needs, on any connection, is
        // that one.
        let (mut third, _) = fresh();
        assert_eq!(third.output().as_ptr(), first);
        third.output_written(true);
        other.release_idle();
        // a large one is freed, not kept
        let big = vec![0u8; SPARE_MAX * 2];
        b.output()[..OUTPUT_WINDOW].copy_from_slice(&big[..OUTPUT_WINDOW]);
        for _ in 0..4 {
            let w = b.output().len().min(OUTPUT_WINDOW);
            b.push_output(w);
        }
        assert!(b.allocated() > SPARE_MAX);
        b.output_written(true);
        assert_eq!(SPARE.with(|s| s.take()).capacity(), 0);
    }

    #[test]
    fn unread_input_or_unwritten_output_is_not_released() {
        let (mut b, held) = fresh();
        let mut data: &[u8] = b"HTTP/1.1 200 OK\r\n";
        read_from(&mut b, &mut data);
        b.release_idle();
        assert_eq!(b.input(), b"HTTP/1.1 200 OK\r\n");
        let n = b.input().len();
        b.input_consume(n);
        b.output();
        b.push_output(3);
        b.release_idle();
        assert_eq!(b.pending().len(), 3);
        assert!(held.load(Ordering::Relaxed) > 0);
        b.output_written(true);
        b.release_idle();
        assert_eq!(held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dropping_takes_the_bytes_off_the_counter() {
        let (mut b, held) = fresh();
        b.output();
        b.read_buf();
        assert!(held.load(Ordering::Relaxed) > 0);
        drop(b);
        assert_eq!(held.load(Ordering::Relaxed), 0);
    }
}
