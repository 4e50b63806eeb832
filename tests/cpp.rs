//! Drives the C++ wrapper's test (`examples/cpp/test.cpp`) and example
//! (`examples/cpp/example.cpp`) against loopback test servers.
//!
//! Both are compiled with
//! `g++ -std=c++17 -Wall -Wextra -Werror -fsanitize=address,undefined`
//! against `include/llmpool.hpp`, linked to the cdylib `libllmpool.so` that
//! cargo built for this test run, and run under AddressSanitizer,
//! LeakSanitizer and UBSan with the URLs of `llmpool-testserver` instances
//! (plain and API-key) in their environment.
//!
//! Without a C++ compiler the test prints `SKIPPED: ...` and passes, unless
//! `LLMPOOL_REQUIRE_ALL=1` is set, in which case the skip is a failure.
//! `CXX` picks the compiler (default `g++`).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    compile_sanitized, refused_url, root, run_with_timeout, sanitized, Built, Server, Skip,
};

const SKIP: Skip = Skip::new("the C++ tests", "C++ wrapper tests: ");

/// The API key the `--require-key` server wants.
const TEST_KEY: &str = "sk-test-CPP-4242";

/// Longest the test or the example may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Compiles `examples/cpp/<name>.cpp` into `out_dir/<name>`.
fn compile(cxx: &str, name: &str, lib_dir: &Path, out_dir: &Path) -> PathBuf {
    let root = root();
    let src = root.join("examples/cpp").join(format!("{name}.cpp"));
    let exe = out_dir.join(name);
    let include_dirs = [root.join("include")];
    compile_sanitized(
        &format!("{name}.cpp"),
        cxx,
        "c++17",
        &src,
        &include_dirs,
        lib_dir,
        &exe,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    exe
}

#[test]
fn cpp_wrapper_test_and_example_pass_under_sanitizers() {
    if !cfg!(unix) {
        SKIP.skip("the C++ tests need a Unix-like system (pthreads, rpath)");
        return;
    }
    let Some(cxx) = SKIP.tool("CXX", "g++", "C++ compiler") else {
        return;
    };
    let Built {
        dir,
        lib_dir,
        server,
        ..
    } = Built::get("C++ tests link to");

    let out_dir = dir.join("cpp-tests");
    std::fs::create_dir_all(&out_dir).expect("create the C++ test output dir");
    let test_exe = compile(&cxx, "test", &lib_dir, &out_dir);
    let example_exe = compile(&cxx, "example", &lib_dir, &out_dir);

    let plain = Server::start(&server, &["--port", "0"]);
    let keyed = Server::start(&server, &["--port", "0", "--require-key", TEST_KEY]);

    let mut cmd = sanitized(&test_exe);
    cmd.env("LLMPOOL_TEST_PLAIN_URL", &plain.base_url)
        .env("LLMPOOL_TEST_KEY_URL", &keyed.base_url)
        .env("LLMPOOL_TEST_KEY", TEST_KEY)
        .env("LLMPOOL_TEST_REFUSED_URL", refused_url());
    let out = run_with_timeout("examples/cpp/test.cpp", &mut cmd, RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    print!("{out}");
    assert!(out.contains("checks passed"), "unexpected output:\n{out}");

    let mut cmd = sanitized(&example_exe);
    cmd.env("LLMPOOL_BASE_URL", &plain.base_url)
        .env("LLMPOOL_MODEL", "test-model");
    let out = run_with_timeout("examples/cpp/example.cpp", &mut cmd, RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    print!("{out}");
    for want in [
        "chat: Echo: Say hello in five words.",
        "stream: Echo: Count to five.",
        "batch: Echo: Three.",
        "embeddings: ",
        "metrics: {",
    ] {
        assert!(out.contains(want), "example output lacks {want:?}:\n{out}");
    }
}
