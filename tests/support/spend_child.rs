//! Worker processes for the multi-process budget tests (`ledger`,
//! `budget_redis`): the test binary runs itself again as children, each the
//! ignored test `spend_child` calling [`child_main`] with its own `Client`.

use std::process::{Child, Command, Stdio};

use llmpool::{Client, Code};
use serde_json::json;

const OPTS: &str = "LLMPOOL_SPEND_CHILD_OPTS";
const CALLS: &str = "LLMPOOL_SPEND_CHILD_CALLS";

/// A priced chat request asking for at most `max_tokens` output tokens.
pub fn chat(max_tokens: u64) -> String {
    json!({"model": "gpt-4.1", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "how much is this call?"}]})
    .to_string()
}

/// The child's work: the calls, then one `RESULT ok refused cost warnings`
/// line. Every call must succeed or be refused by the budget. With
/// `until_reached`, `calls` is a cap: the child stops at the first refusal
/// made while no call of any process held money, i.e. once the budget is
/// used up for calls of this size.
pub fn child_main() {
    let (Ok(opts), Ok(calls)) = (std::env::var(OPTS), std::env::var(CALLS)) else {
        eprintln!("spend_child only runs as a child of the multi-process budget tests");
        return;
    };
    let mut spec = calls.split(':');
    let (calls, max_tokens, until_reached) = (
        spec.next().unwrap(),
        spec.next().unwrap(),
        spec.next() == Some("until"),
    );
    let c = Client::from_json(Some(&opts)).expect("child options");
    let (mut ok, mut refused, mut cost, mut warnings) = (0u64, 0u64, 0.0f64, 0u64);
    for _ in 0..calls.parse::<u64>().unwrap() {
        let r = c.chat(&chat(max_tokens.parse().unwrap()));
        match r.code {
            Code::Ok => {
                ok += 1;
                cost += r.info_json()["cost_usd"]
                    .as_f64()
                    .expect("a priced call has a cost");
            }
            Code::BudgetExceeded => {
                refused += 1;
                let held = c.metrics()["cost"]["budget"]["in_flight_usd"].as_f64();
                if until_reached && held == Some(0.0) {
                    break;
                }
            }
            other => panic!("unexpected {other:?}: {}", r.error),
        }
        warnings += r.info_json()["warnings"]
            .as_array()
            .map_or(0, |w| w.len() as u64);
    }
    println!("RESULT {ok} {refused} {cost:e} {warnings}");
}

/// What the children did, added up.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub refused: u64,
    pub cost: f64,
    pub warnings: u64,
}

/// One child making `calls` calls with `opts`.
pub fn spawn(opts: &str, calls: u64, max_tokens: u64) -> Child {
    spawn_with(opts, &format!("{calls}:{max_tokens}"))
}

fn spawn_with(opts: &str, spec: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "spend_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OPTS, opts)
        .env(CALLS, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child test process")
}

/// `n` children at once, `calls` calls each; waits for all and adds up
/// their results.
pub fn run(n: usize, opts: &str, calls: u64, max_tokens: u64) -> Tally {
    collect((0..n).map(|_| spawn(opts, calls, max_tokens)).collect())
}

/// `n` children at once, each calling until the budget is used up (at most
/// `cap` calls); their results added up.
pub fn run_until_reached(n: usize, opts: &str, cap: u64, max_tokens: u64) -> Tally {
    let spec = format!("{cap}:{max_tokens}:until");
    collect((0..n).map(|_| spawn_with(opts, &spec)).collect())
}

fn collect(children: Vec<Child>) -> Tally {
    let mut t = Tally::default();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {text}");
        // libtest prints "test spend_child ... " before the test's output.
        let line = text
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no RESULT line in {text}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        t.ok += f[0].parse::<u64>().unwrap();
        t.refused += f[1].parse::<u64>().unwrap();
        t.cost += f[2].parse::<f64>().unwrap();
        t.warnings += f[3].parse::<u64>().unwrap();
    }
    t
}
