//! Runs the Node binding's test suite (`bindings/node`: `node --test test/`)
//! against the cdylib cargo built for this test run (`LLMPOOL_LIB`) and the
//! loopback test server (`LLMPOOL_TESTSERVER`).
//!
//! Without Node.js (18 or newer) or without koffi installed in
//! `bindings/node/node_modules` (`npm ci` there) the test prints
//! `SKIPPED: ...` and passes, unless `LLMPOOL_REQUIRE_ALL=1` is set, in
//! which case the skip is a failure. `NODE` picks the node binary.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{output_of, root, run_with_timeout, tool, without_gateway_settings, Built, Skip};

const SKIP: Skip = Skip::new("the Node binding tests", "Node binding tests: ");

/// Longest the Node suite may run.
const NODE_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn node_binding_tests_pass() {
    let node = tool("NODE", "node");
    let Some(version) = output_of(Command::new(&node).arg("--version")) else {
        SKIP.skip("`node --version` failed: install Node.js 18 or newer (Debian: apt-get install nodejs npm)");
        return;
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        SKIP.skip(&format!("Node.js {version} is too old (need 18 or newer)"));
        return;
    }
    let node_dir = root().join("bindings/node");
    let koffi = output_of(
        Command::new(&node)
            .args([
                "-e",
                "process.stdout.write(String(require('koffi').version))",
            ])
            .current_dir(&node_dir),
    );
    let Some(koffi) = koffi else {
        SKIP.skip("koffi is not installed: run `npm ci` in bindings/node");
        return;
    };
    println!("using Node.js {version}, koffi {koffi}");

    let Built { lib, server, .. } = Built::get("Node tests load");

    let mut cmd = Command::new(&node);
    cmd.args(["--test", "test/"])
        .current_dir(&node_dir)
        .env("LLMPOOL_LIB", &lib)
        .env("LLMPOOL_TESTSERVER", &server)
        .env_remove("NODE_OPTIONS");
    // The tests pass every option explicitly; the caller's gateway settings
    // must not leak in.
    without_gateway_settings(&mut cmd);
    match run_with_timeout("node --test test/", &mut cmd, NODE_TIMEOUT) {
        Ok(out) => print!("{out}"),
        Err(e) => panic!("{e}"),
    }
}
