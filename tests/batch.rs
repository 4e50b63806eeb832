//! Batches over loopback: order, per-item failures, the concurrency bound,
//! progress on the calling thread, and the C entry points.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use llmpool::batch::{
    batch_code, chat_batch, effective_concurrency, run_batch, DEFAULT_BATCH_CONCURRENCY,
};
use llmpool::ffi::{
    llmpool_chat_batch, llmpool_client, llmpool_client_free, llmpool_client_new, llmpool_code,
    llmpool_response, llmpool_response_code, llmpool_response_status, llmpool_response_text,
    llmpool_responses_free,
};
use llmpool::{Client, Code, Response};
use llmpool_testserver::{Fault, TestServer};

fn client(server: &TestServer, extra: &str) -> Client {
    let sep = if extra.is_empty() { "" } else { ", " };
    Client::from_json(Some(&format!(
        r#"{{"base_url": "{}", "max_retries": 0{sep}{extra}}}"#,
        server.base_url()
    )))
    .unwrap()
}

fn req(text: &str) -> String {
    format!(r#"{{"model": "m", "messages": [{{"role": "user", "content": "{text}"}}]}}"#)
}

#[test]
fn results_come_back_in_request_order_and_progress_runs_on_the_caller() {
    let server = TestServer::plain();
    let c = client(&server, "");
    let owned: Vec<String> = (0..40).map(|i| req(&format!("item-{i}"))).collect();
    let requests: Vec<&str> = owned.iter().map(String::as_str).collect();
    let me = std::thread::current().id();
    let mut calls = Vec::new();
    let out = chat_batch(&c, &requests, 6, |done, total| {
        assert_eq!(
            std::thread::current().id(),
            me,
            "progress must run on the calling thread"
        );
        calls.push((done, total));
    });
    assert_eq!(out.len(), 40);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.code, Code::Ok, "item {i}: {}", r.error);
        assert_eq!(r.text, format!("Echo: item-{i}"));
    }
    let expected: Vec<(usize, usize)> = (1..=40).map(|d| (d, 40)).collect();
    assert_eq!(calls, expected);
    assert_eq!(batch_code(&out), Code::Ok);
    assert_eq!(server.requests(), 40);
    assert!(
        server.connections_accepted() <= 6,
        "{} connections",
        server.connections_accepted()
    );
}

#[test]
fn one_failing_item_never_fails_the_others() {
    let server = TestServer::plain();
    let c = client(&server, "");
    // Faults are FIFO across concurrent requests: which items get the three
    // 400s depends on timing, so only their number is checked.
    for _ in 0..3 {
        server.push_fault(Fault::Status {
            code: 400,
            body: String::new(),
            headers: Vec::new(),
        });
    }
    let mut owned: Vec<String> = (0..20).map(|i| req(&format!("item-{i}"))).collect();
    owned[7] = "not json".to_string();
    let requests: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut progress_calls = 0;
    let out = chat_batch(&c, &requests, 4, |_, _| progress_calls += 1);
    assert_eq!(progress_calls, 20);
    assert_eq!(out[7].code, Code::InvalidArgument);
    assert_eq!(out[7].status, 0);
    let failed_400: Vec<usize> = (0..20)
        .filter(|&i| out[i].code == Code::HttpStatus && out[i].status == 400)
        .collect();
    assert_eq!(failed_400.len(), 3, "{failed_400:?}");
    for (i, r) in out.iter().enumerate() {
        if i == 7 || failed_400.contains(&i) {
            assert!(!r.error.is_empty());
        } else {
            assert_eq!(r.code, Code::Ok, "item {i}: {}", r.error);
            assert_eq!(r.text, format!("Echo: item-{i}"));
        }
    }
    // The batch code is the first failure in request order.
    let first = (0..20).find(|i| *i == 7 || failed_400.contains(i)).unwrap();
    assert_eq!(batch_code(&out), out[first].code);
    // The invalid item never reached the server.
    assert_eq!(server.requests(), 19);
}

#[test]
fn at_most_max_concurrency_calls_are_in_flight() {
    let server = TestServer::plain();
    let c = client(&server, "");
    for _ in 0..12 {
        server.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(40)));
    }
    let owned: Vec<String> = (0..12).map(|i| req(&format!("slow-{i}"))).collect();
    let items: Vec<&str> = owned.iter().map(String::as_str).collect();
    let in_flight = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let out = run_batch(
        &c,
        &items,
        3,
        |client, r| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let resp = client.chat(r);
            in_flight.fetch_sub(1, Ordering::SeqCst);
            resp
        },
        |_, _| {},
    );
    assert!(out.iter().all(Response::is_ok));
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 3, "peak {peak}");
    assert!(peak >= 2, "the batch should run concurrently (peak {peak})");
    // Server side: three workers on a keep-alive pool never need more than
    // three connections.
    assert!(
        server.connections_accepted() <= 3,
        "{}",
        server.connections_accepted()
    );
    assert_eq!(
        c.metrics()["connections_opened"].as_u64().unwrap(),
        server.connections_accepted() as u64
    );
}

#[test]
fn zero_concurrency_uses_the_client_option_then_the_default() {
    let server = TestServer::plain();
    let limited = client(&server, r#""max_concurrency": 2"#);
    let unlimited = client(&server, "");
    assert_eq!(effective_concurrency(&limited, 0, 100), 2);
    assert_eq!(effective_concurrency(&limited, 5, 100), 5);
    assert_eq!(
        effective_concurrency(&unlimited, 0, 100),
        DEFAULT_BATCH_CONCURRENCY
    );
    assert_eq!(effective_concurrency(&unlimited, 0, 3), 3);
    assert_eq!(effective_concurrency(&unlimited, 0, 0), 0);

    let items: Vec<usize> = (0..10).collect();
    let in_flight = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let out = run_batch(
        &limited,
        &items,
        0,
        |client, i| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            let resp = client.chat(&req(&i.to_string()));
            in_flight.fetch_sub(1, Ordering::SeqCst);
            resp
        },
        |_, _| {},
    );
    assert!(out.iter().all(Response::is_ok));
    assert!(peak.load(Ordering::SeqCst) <= 2);
}

#[test]
fn an_empty_batch_does_nothing_and_a_panicking_item_fails_alone() {
    let server = TestServer::plain();
    let c = client(&server, "");
    let mut called = false;
    assert!(chat_batch(&c, &[], 4, |_, _| called = true).is_empty());
    assert!(!called);

    let items: Vec<usize> = (0..6).collect();
    let out = run_batch(
        &c,
        &items,
        3,
        |client, i| {
            if *i == 2 {
                panic!("item two explodes");
            }
            client.chat(&req("ok"))
        },
        |_, _| {},
    );
    assert_eq!(out[2].code, Code::Panic);
    assert!(out[2].error.contains("item two explodes"));
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 5);
}

// ---- the C entry points ----

fn c_client(server: &TestServer) -> *mut llmpool_client {
    let opts = CString::new(format!(
        r#"{{"base_url": "{}", "max_retries": 0}}"#,
        server.base_url()
    ))
    .unwrap();
    let mut c = std::ptr::null_mut();
    // SAFETY: valid pointers.
    let code = unsafe { llmpool_client_new(opts.as_ptr(), &mut c, std::ptr::null_mut(), 0) };
    assert_eq!(code, llmpool_code::LLMPOOL_OK);
    c
}

struct Progress {
    calls: Vec<(usize, usize)>,
    thread: std::thread::ThreadId,
    other_thread: bool,
}

unsafe extern "C" fn on_progress(userdata: *mut c_void, done: usize, total: usize) {
    // SAFETY: the test passes a live `Progress`.
    let p = unsafe { &mut *(userdata as *mut Progress) };
    p.other_thread |= std::thread::current().id() != p.thread;
    p.calls.push((done, total));
}

fn text(r: *mut llmpool_response) -> String {
    // SAFETY: a live response.
    unsafe { CStr::from_ptr(llmpool_response_text(r)) }
        .to_str()
        .unwrap()
        .to_string()
}

// The accessors may or may not be `unsafe fn`: these wrappers work either way.
#[allow(unused_unsafe)]
fn code_of(r: *mut llmpool_response) -> llmpool_code {
    // SAFETY: NULL or a live response.
    unsafe { llmpool_response_code(r) }
}

#[allow(unused_unsafe)]
fn status_of(r: *mut llmpool_response) -> u16 {
    // SAFETY: NULL or a live response.
    unsafe { llmpool_response_status(r) }
}

#[test]
fn c_batch_fills_every_slot_in_order_and_reports_the_first_failure() {
    let server = TestServer::plain();
    let c = c_client(&server);
    let owned: Vec<CString> = (0..8)
        .map(|i| CString::new(req(&format!("c-{i}"))).unwrap())
        .collect();
    let mut ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
    ptrs[3] = std::ptr::null();
    let mut out = vec![std::ptr::null_mut::<llmpool_response>(); 8];
    let mut p = Progress {
        calls: Vec::new(),
        thread: std::thread::current().id(),
        other_thread: false,
    };
    // SAFETY: arrays of 8, a live client, a matching callback and userdata.
    let code = unsafe {
        llmpool_chat_batch(
            c,
            ptrs.as_ptr(),
            8,
            3,
            Some(on_progress),
            &mut p as *mut Progress as *mut c_void,
            out.as_mut_ptr(),
        )
    };
    assert_eq!(code, llmpool_code::LLMPOOL_INVALID_ARGUMENT);
    assert!(!p.other_thread);
    assert_eq!(p.calls.len(), 8);
    assert_eq!(p.calls.last(), Some(&(8, 8)));
    for (i, r) in out.iter().enumerate() {
        assert!(!r.is_null());
        if i == 3 {
            assert_eq!(code_of(*r), llmpool_code::LLMPOOL_INVALID_ARGUMENT);
        } else {
            assert_eq!(code_of(*r), llmpool_code::LLMPOOL_OK);
            assert_eq!(status_of(*r), 200);
            assert_eq!(text(*r), format!("Echo: c-{i}"));
        }
    }
    // SAFETY: the array of 8 responses filled above.
    unsafe { llmpool_responses_free(out.as_mut_ptr(), 8) };
    assert!(out.iter().all(|r| r.is_null()));

    // All good: LLMPOOL_OK, no progress callback.
    let ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
    // SAFETY: as above.
    let code = unsafe {
        llmpool_chat_batch(
            c,
            ptrs.as_ptr(),
            8,
            0,
            None,
            std::ptr::null_mut(),
            out.as_mut_ptr(),
        )
    };
    assert_eq!(code, llmpool_code::LLMPOOL_OK);
    // SAFETY: as above.
    unsafe { llmpool_responses_free(out.as_mut_ptr(), 8) };
    // SAFETY: a live client.
    unsafe { llmpool_client_free(c) };
}

#[test]
fn c_batch_argument_checks() {
    let server = TestServer::plain();
    let c = c_client(&server);
    let one = CString::new(req("x")).unwrap();
    let ptrs = [one.as_ptr()];
    let mut out = [std::ptr::null_mut::<llmpool_response>(); 2];
    // SAFETY: every pointer is NULL or valid for the sizes passed.
    unsafe {
        // n == 0: OK, nothing touched.
        assert_eq!(
            llmpool_chat_batch(
                c,
                std::ptr::null(),
                0,
                0,
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            llmpool_code::LLMPOOL_OK
        );
        // NULL out with n > 0.
        assert_eq!(
            llmpool_chat_batch(
                c,
                ptrs.as_ptr(),
                1,
                0,
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            llmpool_code::LLMPOOL_INVALID_ARGUMENT
        );
        // NULL requests array: every item gets INVALID_ARGUMENT.
        assert_eq!(
            llmpool_chat_batch(
                c,
                std::ptr::null(),
                2,
                0,
                None,
                std::ptr::null_mut(),
                out.as_mut_ptr()
            ),
            llmpool_code::LLMPOOL_INVALID_ARGUMENT
        );
        assert!(out
            .iter()
            .all(|r| code_of(*r) == llmpool_code::LLMPOOL_INVALID_ARGUMENT));
        llmpool_responses_free(out.as_mut_ptr(), 2);
        // NULL client.
        assert_eq!(
            llmpool_chat_batch(
                std::ptr::null_mut(),
                ptrs.as_ptr(),
                1,
                0,
                None,
                std::ptr::null_mut(),
                out.as_mut_ptr()
            ),
            llmpool_code::LLMPOOL_INVALID_ARGUMENT
        );
        assert_eq!(code_of(out[0]), llmpool_code::LLMPOOL_INVALID_ARGUMENT);
        llmpool_responses_free(out.as_mut_ptr(), 1);
        // Freeing NULL is a no-op.
        llmpool_responses_free(std::ptr::null_mut(), 5);
        llmpool_client_free(c);
    }
    assert_eq!(server.requests(), 0);
}
