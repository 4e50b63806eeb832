//! Runs the Python ctypes bindings' unittest suites
//! (`bindings/python/test_llmpool.py`, which also runs
//! `examples/python/example.py`, and `test_agents.py`) against loopback test servers, with
//! `LLMPOOL_LIB` pointing at the cdylib cargo built for this test run.
//!
//! Without `python3` (or `$PYTHON`) the test prints `SKIPPED: ...` and
//! passes, unless `LLMPOOL_REQUIRE_ALL=1` is set, in which case the skip is
//! a failure.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{refused_url, root, run_with_timeout, without_gateway_settings, Built, Server, Skip};

const SKIP: Skip = Skip::new("the Python tests", "Python binding tests: ");

/// The API key the `--require-key` server wants.
const TEST_KEY: &str = "sk-test-PY-4242";

/// Longest the unittest suite may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn python_unittest_suite_passes() {
    if !cfg!(unix) {
        SKIP.skip("the Python bindings load libllmpool.so (Unix-like systems only)");
        return;
    }
    let Some(python) = SKIP.tool("PYTHON", "python3", "Python 3") else {
        return;
    };
    let Built { lib, server, .. } = Built::get("Python tests load");
    let plain = Server::start(&server, &["--port", "0"]);
    let keyed = Server::start(&server, &["--port", "0", "--require-key", TEST_KEY]);

    let mut cmd = Command::new(&python);
    without_gateway_settings(&mut cmd)
        .current_dir(root().join("bindings/python"))
        .args(["-B", "-m", "unittest", "-v", "test_llmpool", "test_agents"])
        .env_remove("PYTHONPATH")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("LLMPOOL_LIB", &lib)
        .env("LLMPOOL_TEST_PLAIN_URL", &plain.base_url)
        .env("LLMPOOL_TEST_KEY_URL", &keyed.base_url)
        .env("LLMPOOL_TEST_KEY", TEST_KEY)
        .env("LLMPOOL_TEST_REFUSED_URL", refused_url());
    let out = run_with_timeout(
        "python3 -m unittest test_llmpool test_agents",
        &mut cmd,
        RUN_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    print!("{out}");
    assert!(
        !out.contains("skipped"),
        "some Python tests were skipped:\n{out}"
    );
    assert!(out.contains("\nOK"), "unexpected unittest output:\n{out}");
}
