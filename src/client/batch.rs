//! Batches: many calls on one client, a bounded number in flight at once.
//!
//! [`chat_batch`] submits the requests as async calls on the client's
//! executor (the same pipeline, threads and parking as `llmpool_chat_async`;
//! no threads of its own), at most `max_concurrency` at a time, and waits on
//! the calling thread for their responses. The calling thread stores each in
//! its slot (results come back in request order) and calls `progress` — so
//! **`progress` always runs on the thread that called the batch**, never on
//! a library thread, and needs to be neither `Send` nor thread-safe.
//!
//! One failing item never fails the others: every item gets its own
//! [`Response`] with its own code, status and error. A panic while running
//! one item becomes an `LLMPOOL_PANIC` response for that item only.
//!
//! [`run_batch`] runs a caller's own blocking closure per item instead, on
//! scoped threads: a closure that blocks cannot be parked on the executor.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::client::Client;
use crate::error::{panic_message, Code, Error};
use crate::response::Response;

/// Calls in flight when neither the batch nor the client sets a limit
/// (`max_concurrency` 0 and the client option `max_concurrency` 0).
pub const DEFAULT_BATCH_CONCURRENCY: usize = 16;

/// The number of worker threads a batch of `n` items uses: `max_concurrency`,
/// or when that is 0 the client's `max_concurrency` option, or when that is
/// 0 too [`DEFAULT_BATCH_CONCURRENCY`]; never more than `n`, never less than
/// 1 (0 when `n` is 0).
pub fn effective_concurrency(client: &Client, max_concurrency: usize, n: usize) -> usize {
    let limit = match (max_concurrency, client.options().max_concurrency) {
        (0, 0) => DEFAULT_BATCH_CONCURRENCY,
        (0, c) => c,
        (m, _) => m,
    };
    limit.max(1).min(n)
}

/// Sends every request to `POST {base_url}/chat/completions` with at most
/// `max_concurrency` calls in flight (0: see [`effective_concurrency`]) and
/// returns the responses in request order.
///
/// `progress(done, total)` is called on the calling thread once per finished
/// item (in completion order, `done` counting up from 1), the last call
/// being `(total, total)`; it is not called for an empty batch. The client's
/// own `max_concurrency` limit (if set) still applies on top of this one.
pub fn chat_batch(
    client: &Client,
    requests: &[&str],
    max_concurrency: usize,
    progress: impl FnMut(usize, usize),
) -> Vec<Response> {
    let items: Vec<Result<&str, Error>> = requests.iter().map(|r| Ok(*r)).collect();
    chat_items(client, &items, max_concurrency, progress)
}

/// [`chat_batch`] for items that may already have failed (a bad argument
/// from C): those get their error as their response, unsent.
pub fn chat_items(
    client: &Client,
    items: &[Result<&str, Error>],
    max_concurrency: usize,
    mut progress: impl FnMut(usize, usize),
) -> Vec<Response> {
    let total = items.len();
    let window = effective_concurrency(client, max_concurrency, total);
    let mut slots: Vec<Option<Response>> = (0..total).map(|_| None).collect();
    let (tx, rx) = mpsc::channel::<(usize, Response)>();
    let submit = |i: usize| {
        let started = Instant::now();
        let sent = items[i].as_ref().map_err(Error::clone).and_then(|req| {
            let tx = tx.clone();
            client.chat_async(req, Box::new(move |r| drop(tx.send((i, r)))))
        });
        if let Err(e) = sent {
            drop(tx.send((i, Response::failed(e, started))));
        }
    };
    let (mut next, mut in_flight, mut done) = (0, 0, 0);
    loop {
        while in_flight < window && next < total {
            submit(next);
            next += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        // Every submitted item sends exactly once (its `done` runs exactly
        // once), and `tx` is alive here: `recv` cannot fail.
        let Ok((i, r)) = rx.recv() else { break };
        in_flight -= 1;
        slots[i] = Some(r);
        done += 1;
        progress(done, total);
    }
    unwrap_slots(slots)
}

/// The engine behind [`chat_batch`]: runs `call(client, &items[i])` for
/// every item, at most `max_concurrency` at once (0: see
/// [`effective_concurrency`]), and returns the results in item order.
/// `progress` runs on the calling thread as for [`chat_batch`].
pub fn run_batch<T: Sync>(
    client: &Client,
    items: &[T],
    max_concurrency: usize,
    call: impl Fn(&Client, &T) -> Response + Sync,
    mut progress: impl FnMut(usize, usize),
) -> Vec<Response> {
    let total = items.len();
    let workers = effective_concurrency(client, max_concurrency, total);
    let mut slots: Vec<Option<Response>> = (0..total).map(|_| None).collect();
    if total == 0 {
        return Vec::new();
    }
    let next = AtomicUsize::new(0);
    // Set when the calling thread unwinds (a panicking `progress`), so that
    // workers stop taking new items instead of finishing the whole batch.
    let stop = AtomicBool::new(false);
    let run_one = |i: usize| -> Response {
        let started = Instant::now();
        catch_unwind(AssertUnwindSafe(|| call(client, &items[i]))).unwrap_or_else(|payload| {
            Response::failed(Error::new(Code::Panic, panic_message(&*payload)), started)
        })
    };

    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(usize, Response)>();
        let mut spawned = 0;
        for w in 0..workers {
            let tx = tx.clone();
            let (next, stop, run_one) = (&next, &stop, &run_one);
            let worker = move || loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if tx.send((i, run_one(i))).is_err() {
                    break;
                }
            };
            let builder = std::thread::Builder::new().name(format!("llmpool-batch-{w}"));
            if builder.spawn_scoped(s, worker).is_ok() {
                spawned += 1;
            }
        }
        drop(tx);
        let _stop_on_unwind = StopOnUnwind(&stop);
        let mut done = 0;
        let mut receive = |i: usize, r: Response| {
            slots[i] = Some(r);
            done += 1;
            progress(done, total);
        };
        if spawned == 0 {
            // No thread could be started: run the batch on this thread.
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                receive(i, run_one(i));
            }
        } else {
            // Ends when every worker has finished and dropped its sender.
            for (i, r) in rx {
                receive(i, r);
            }
        }
    });

    unwrap_slots(slots)
}

fn unwrap_slots(slots: Vec<Option<Response>>) -> Vec<Response> {
    slots
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Response::failed(
                    Error::new(
                        Code::Panic,
                        "internal error (please report): batch item was never run",
                    ),
                    Instant::now(),
                )
            })
        })
        .collect()
}

/// The code a whole batch reports: `Ok` when every item succeeded, else the
/// code of the first failed item in request order.
pub fn batch_code(responses: &[Response]) -> Code {
    responses
        .iter()
        .map(|r| r.code)
        .find(|c| *c != Code::Ok)
        .unwrap_or(Code::Ok)
}

struct StopOnUnwind<'a>(&'a AtomicBool);

impl Drop for StopOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}
