//! Drives the C tests in `tests/c/` against the real C ABI.
//!
//! Each `tests/c/test_*.c` is compiled with
//! `cc -std=c11 -Wall -Wextra -Werror -fsanitize=address,undefined` against
//! `include/llmpool.h`, linked to the cdylib `libllmpool.so` that cargo built
//! for this test run, and run under AddressSanitizer/LeakSanitizer with the
//! URLs of loopback test servers (`llmpool-testserver`: plain, TLS and
//! API-key) in its environment. Every C test must exit 0.
//!
//! Without a C compiler the test prints `SKIPPED: ...` and passes, unless
//! `LLMPOOL_REQUIRE_ALL=1` is set, in which case the skip is a failure.
//! `CC` picks the compiler (default `cc`).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    c_compiler, compile_sanitized, refused_url, root, run_with_timeout, sanitized, Built, Server,
    Skip,
};

const SKIP: Skip = Skip::new("the C API tests", "C API tests: ");

/// The API key the `--require-key` server wants.
const TEST_KEY: &str = "sk-test-SECRET-4242";

/// The C tests, run in this order (they share the servers, so never in parallel).
const C_TESTS: &[&str] = &[
    "test_args",
    "test_server",
    "test_auth",
    "test_tls",
    "test_threads",
    "stream_test",
    "test_cost",
    "test_async",
    "test_log",
    "test_embeddings",
    "test_raw",
    "test_agents",
    "test_queue_streams",
];

/// Longest a single C test may run.
const C_TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Compiles `tests/c/<name>.c` into `out_dir/<name>`.
fn compile(cc: &str, name: &str, lib_dir: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let root = root();
    let src = root.join("tests/c").join(format!("{name}.c"));
    let exe = out_dir.join(name);
    let include_dirs = [root.join("include"), root.join("tests/c")];
    compile_sanitized(name, cc, "c11", &src, &include_dirs, lib_dir, &exe)?;
    Ok(exe)
}

/// Runs one C test with `env`, under a timeout; `Err` carries its output.
fn run(name: &str, exe: &Path, env: &[(&str, String)]) -> Result<String, String> {
    let mut cmd = sanitized(exe);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_timeout(name, &mut cmd, C_TEST_TIMEOUT)
}

#[test]
fn c_tests_pass_under_sanitizers() {
    if !cfg!(unix) {
        SKIP.skip("the C tests need a Unix-like system (pthreads, rpath)");
        return;
    }
    let Some(cc) = c_compiler() else {
        SKIP.skip("no C compiler (`cc --version` failed; set CC to use another)");
        return;
    };
    let Built {
        dir,
        lib_dir,
        server,
        ..
    } = Built::get("C tests link to");

    let out_dir = dir.join("c-api-tests");
    std::fs::create_dir_all(&out_dir).expect("create the C test output dir");
    let mut exes = Vec::new();
    for name in C_TESTS {
        match compile(&cc, name, &lib_dir, &out_dir) {
            Ok(exe) => exes.push((*name, exe)),
            Err(e) => panic!("{e}"),
        }
    }

    let ca_file = out_dir.join("test-ca.pem");
    let _ = std::fs::remove_file(&ca_file);
    let plain = Server::start(&server, &["--port", "0"]);
    let tls = Server::start(
        &server,
        &[
            "--tls",
            "--port",
            "0",
            "--ca-out",
            ca_file.to_str().expect("UTF-8 path"),
        ],
    );
    let keyed = Server::start(&server, &["--port", "0", "--require-key", TEST_KEY]);
    assert!(
        ca_file.exists(),
        "the TLS server wrote no CA to {}",
        ca_file.display()
    );

    let env = [
        ("LLMPOOL_TEST_PLAIN_URL", plain.base_url.clone()),
        ("LLMPOOL_TEST_TLS_URL", tls.base_url.clone()),
        ("LLMPOOL_TEST_CA_FILE", ca_file.display().to_string()),
        ("LLMPOOL_TEST_KEY_URL", keyed.base_url.clone()),
        ("LLMPOOL_TEST_KEY", TEST_KEY.to_string()),
        ("LLMPOOL_TEST_REFUSED_URL", refused_url()),
        (
            "LLMPOOL_TEST_VERSION",
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    // The single-threaded event-loop example, run against the plain server.
    let example = root().join("examples/c/event_loop.c");
    let event_loop = out_dir.join("event_loop");
    let include_dirs = [root().join("include")];
    compile_sanitized(
        "event_loop",
        &cc,
        "c11",
        &example,
        &include_dirs,
        &lib_dir,
        &event_loop,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let mut cmd = sanitized(&event_loop);
    cmd.arg("100").env("LLMPOOL_BASE_URL", &plain.base_url);
    match run_with_timeout("event_loop", &mut cmd, C_TEST_TIMEOUT) {
        Ok(out) if out.contains("100 calls completed on one thread, 0 failed") => print!("{out}"),
        Ok(out) => failures.push(format!("event_loop: unexpected output:\n{out}")),
        Err(e) => failures.push(e),
    }
    for (name, exe) in &exes {
        // A test that failed half-way may leave faults queued: each starts
        // on clean servers, so one failure does not cascade into the next.
        reset(&plain.base_url);
        reset(&keyed.base_url);
        match run(name, exe, &env) {
            Ok(out) => print!("{out}"),
            Err(e) => failures.push(e),
        }
    }
    drop((plain, tls, keyed));
    assert!(
        failures.is_empty(),
        "{} of {} C tests failed:\n\n{}",
        failures.len(),
        exes.len(),
        failures.join("\n\n")
    );
}

/// Every function declared in `include/llmpool.h` must be exercised with
/// NULL/bad input in `tests/c/test_args.c`.
#[test]
fn every_exported_function_has_bad_input_tests() {
    let header = std::fs::read_to_string(root().join("include/llmpool.h")).expect("read header");
    let tests = std::fs::read_to_string(root().join("tests/c/test_args.c")).expect("read test");
    let mut missing = Vec::new();
    let mut seen = 0;
    for line in header.lines() {
        // Declarations start at column 0 with the return type, e.g.
        // `enum llmpool_code llmpool_chat(struct llmpool_client *client,`.
        if line.starts_with(' ') || line.starts_with("//") || line.starts_with("typedef") {
            continue;
        }
        let Some(open) = line.find('(') else { continue };
        let Some(name) = line[..open].split([' ', '*']).next_back() else {
            continue;
        };
        if !name.starts_with("llmpool_") {
            continue;
        }
        seen += 1;
        if !tests.contains(&format!("{name}(")) {
            missing.push(name.to_string());
        }
    }
    assert!(
        seen >= 20,
        "found only {seen} functions in include/llmpool.h"
    );
    assert!(
        missing.is_empty(),
        "tests/c/test_args.c has no NULL/bad-input test for: {}",
        missing.join(", ")
    );
}

/// `POST /v1/_test/reset` on a plain test server (drops queued faults).
fn reset(base_url: &str) {
    use std::io::{Read, Write};
    let rest = base_url.strip_prefix("http://").expect("a plain server");
    let (host, path) = rest.split_once('/').expect("a base path");
    let mut s = std::net::TcpStream::connect(host).expect("connect to the test server");
    write!(
        s,
        "POST /{path}/_test/reset HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .expect("send the reset");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "reset: {answer}");
}
