//! Many processes, one budget ledger file: spend adds up, the limit holds
//! across processes, and a killed process's hold does not block the budget.
//!
//! The "processes" are this test binary run again as children (the ignored
//! test `spend_child`), each with its own `Client` on the same ledger.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmpool::{Client, Code};
use llmpool_testserver::{Fault, TestServer};
use serde_json::{json, Value};

mod support;
use support::loopback::options;
use support::spend_child::{self, chat};

/// One worker process (see `support::spend_child`).
#[test]
#[ignore = "the child process of the multi-process budget tests"]
fn spend_child() {
    spend_child::child_main();
}

fn ledger_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llmpool-ledger-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read_ledger(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn budget_opts(s: &TestServer, ledger: &Path, limit: f64) -> String {
    options(
        s,
        json!({"budget": {"limit_usd": limit, "period": "total",
            "ledger_file": ledger.to_str().unwrap(), "ledger_create": true}}),
    )
}

#[test]
fn eight_processes_add_up_on_one_ledger() {
    let s = TestServer::plain();
    let dir = ledger_dir("sum");
    let ledger = dir.join("spend.json");
    let opts = budget_opts(&s, &ledger, 100.0);
    let t = spend_child::run(8, &opts, 100, 50);
    assert_eq!((t.ok, t.refused, t.warnings), (800, 0, 0));
    let doc = read_ledger(&ledger);
    let recorded = doc["spent_usd"].as_f64().unwrap();
    eprintln!(
        "8 x 100 calls: ledger {recorded:.6} USD, calls {:.6} USD",
        t.cost
    );
    assert!(
        (recorded - t.cost).abs() < 1e-9 * t.cost.max(1.0),
        "the ledger holds {recorded} USD, the calls cost {} USD",
        t.cost
    );
    assert_eq!(doc["holds"], json!({}), "no hold outlives its call");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eight_processes_never_spend_more_than_a_shared_limit() {
    let s = TestServer::plain();
    let dir = ledger_dir("limit");
    let ledger = dir.join("spend.json");
    // Each call reserves at most ~0.0008 USD (100 output tokens) and costs
    // far less: 0.01 USD lasts about 150 calls.
    let limit = 0.01;
    let t = spend_child::run_until_reached(8, &budget_opts(&s, &ledger, limit), 1000, 100);
    let recorded = read_ledger(&ledger)["spent_usd"].as_f64().unwrap();
    eprintln!(
        "8 processes calling until {limit} USD: {} ok, {} refused, spent {:.6} USD (ledger {recorded:.6})",
        t.ok, t.refused, t.cost
    );
    assert!(
        t.refused > 0 && t.ok > 0,
        "{} ok, {} refused",
        t.ok,
        t.refused
    );
    assert!(t.cost <= limit + 1e-12, "spent {} of {limit}", t.cost);
    assert!(
        (recorded - t.cost).abs() < 1e-12,
        "{recorded} vs {}",
        t.cost
    );
    // Reached: what is left is less than one call's worst case.
    let c = Client::from_json(Some(&budget_opts(&s, &ledger, limit))).unwrap();
    let remaining = c.metrics()["cost"]["budget"]["remaining_usd"]
        .as_f64()
        .unwrap();
    let worst = 100.0 * 8.0 / 1e6 + 64.0 * 2.0 / 1e6;
    assert!(remaining < worst, "{remaining} USD left unused");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_process_does_not_hold_the_budget() {
    let s = TestServer::plain();
    let dir = ledger_dir("kill");
    let ledger = dir.join("spend.json");
    // One call with 100,000 output tokens reserves 0.8 USD of 1.
    let opts = budget_opts(&s, &ledger, 1.0);
    let c = Client::from_json(Some(&opts)).unwrap();
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_secs(8)));
    let mut child = spend_child::spawn(&opts, 1, 100_000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_ledger(&ledger)["holds"]
        .as_object()
        .is_none_or(|h| h.is_empty())
    {
        assert!(Instant::now() < deadline, "the child never reserved");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = c.chat(&chat(100_000));
    assert_eq!(
        r.code,
        Code::BudgetExceeded,
        "the live hold counts: {}",
        r.error
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let r = c.chat(&chat(100_000));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let doc = read_ledger(&ledger);
    assert_eq!(doc["holds"], json!({}));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_answered_call_keeps_its_code_when_its_spend_cannot_be_written() {
    let s = TestServer::plain();
    let dir = ledger_dir("unwritable");
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let ledger = sub.join("spend.json");
    let c = Client::from_json(Some(&budget_opts(&s, &ledger, 1.0))).unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    c.set_log_sink(
        2,
        Some(Arc::new(move |_, l: &str| {
            sink.lock().unwrap().push(l.to_string())
        })),
    );
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(500)));
    let (r, saved) = std::thread::scope(|scope| {
        let call = scope.spawn(|| c.chat(&chat(50)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while read_ledger(&ledger)["holds"]
            .as_object()
            .is_none_or(|h| h.is_empty())
        {
            assert!(Instant::now() < deadline, "the call never reserved");
            std::thread::sleep(Duration::from_millis(5));
        }
        let saved = std::fs::read(&ledger).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        (call.join().unwrap(), saved)
    });
    assert_eq!(
        r.code,
        Code::Ok,
        "bookkeeping never fails a paid call: {}",
        r.error
    );
    let warning = r.info_json()["warnings"][0].as_str().unwrap().to_string();
    assert!(
        warning.contains("spend.json") && warning.contains("kept"),
        "{warning}"
    );
    let m = c.metrics();
    assert!(
        m["warnings"].as_array().unwrap().contains(&json!(warning)),
        "{m}"
    );
    assert!(m["cost"]["budget"]["ledger_error"].is_string());
    let logged = lines.lock().unwrap().join("\n");
    assert!(logged.contains(&warning), "{logged}");
    // The file comes back: the kept spend lands with the next call's.
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(&ledger, saved).unwrap();
    let next = c.chat(&chat(50));
    assert_eq!(next.code, Code::Ok, "{}", next.error);
    let want = r.info_json()["cost_usd"].as_f64().unwrap()
        + next.info_json()["cost_usd"].as_f64().unwrap();
    let doc = read_ledger(&ledger);
    assert!(
        (doc["spent_usd"].as_f64().unwrap() - want).abs() < 1e-12,
        "{doc}"
    );
    assert_eq!(doc["holds"], json!({}));
    std::fs::remove_dir_all(&dir).unwrap();
}
