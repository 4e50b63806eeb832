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

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
];

/// Longest a single C test may run.
const C_TEST_TIMEOUT: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: this test binary lives in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a directory");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// A `cargo` command for the workspace, without the variables cargo set
/// for this test process: build scripts (ring's, via `rerun-if-env-changed`)
/// watch `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ..., so inheriting them
/// would rebuild those crates here and again in the next plain `cargo build`.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_by_cargo_for_tests = key == "OUT_DIR"
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_CFG_")
            || matches!(
                key,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if set_by_cargo_for_tests {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether a skip must count as a failure.
fn require_all() -> bool {
    std::env::var("LLMPOOL_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

fn skip(why: &str) {
    assert!(
        !require_all(),
        "LLMPOOL_REQUIRE_ALL=1 but the C API tests would be skipped: {why}"
    );
    println!("SKIPPED: C API tests: {why}");
}

/// The C compiler, or `None` when it cannot be run.
fn c_compiler() -> Option<String> {
    let cc = std::env::var("CC")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cc".to_string());
    let ok = Command::new(&cc)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(cc)
}

/// The cdylib cargo built for this run. `cargo test` leaves it in
/// `target/<profile>/deps/` (it only copies it up to `target/<profile>/`
/// for `cargo build`), so take the newer of the two; build it with
/// `cargo build --lib` if neither exists.
fn cdylib(dir: &Path) -> PathBuf {
    let name = format!(
        "{}llmpool{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let newest = || {
        [dir.join("deps").join(&name), dir.join(&name)]
            .into_iter()
            .filter_map(|p| {
                let modified = p.metadata().and_then(|m| m.modified()).ok()?;
                Some((modified, p))
            })
            .max()
            .map(|(_, p)| p)
    };
    if let Some(lib) = newest() {
        return lib;
    }
    let status = cargo()
        .args(["build", "--lib", "-p", "llmpool"])
        .status()
        .expect("run cargo build --lib");
    assert!(status.success(), "cargo build --lib failed");
    newest().unwrap_or_else(|| panic!("{name} was not built in {}", dir.display()))
}

/// The test server binary, built (or found up to date) with
/// `cargo build -p llmpool-testserver`: cargo builds only the server's
/// library for this test run, not its binary.
fn server_binary(dir: &Path) -> PathBuf {
    let bin = dir.join(format!(
        "llmpool-testserver{}",
        std::env::consts::EXE_SUFFIX
    ));
    let mut cmd = cargo();
    cmd.args([
        "build",
        "-p",
        "llmpool-testserver",
        "--bin",
        "llmpool-testserver",
    ]);
    if let Some(target_dir) = dir.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    match cmd.status() {
        Ok(s) if s.success() => {}
        // An existing binary is still good enough to test the library with.
        _ if bin.exists() => println!(
            "warning: `cargo build -p llmpool-testserver` failed; using {}",
            bin.display()
        ),
        other => panic!("cargo build -p llmpool-testserver failed: {other:?}"),
    }
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// A running `llmpool-testserver`, killed (by PID) and reaped on drop, so
/// a failing test never leaves a server behind.
struct Server {
    child: Child,
    base_url: String,
}

impl Server {
    fn start(bin: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        // Guard first, so the child is killed even if the line never comes.
        let mut server = Server {
            child,
            base_url: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("llmpool-testserver {args:?} printed nothing in 30 s"));
        server.base_url = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("llmpool-testserver {args:?}: unexpected line {line:?}"))
            .to_string();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback URL on which nothing listens: bind an ephemeral port, then
/// close it.
fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local_addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

/// Compiles `tests/c/<name>.c` into `out_dir/<name>`.
fn compile(cc: &str, name: &str, lib_dir: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let root = root();
    let src = root.join("tests/c").join(format!("{name}.c"));
    let exe = out_dir.join(name);
    let out = Command::new(cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-g",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg("-I")
        .arg(root.join("tests/c"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lllmpool")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lpthread")
        .output()
        .map_err(|e| format!("{name}: cannot run {cc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name}: compile failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

/// Runs one C test with `env`, under a timeout; `Err` carries its output.
fn run(name: &str, exe: &Path, env: &[(&str, String)]) -> Result<String, String> {
    let suppressions = root().join("tests/c/lsan.supp");
    let mut cmd = Command::new(exe);
    cmd.current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The tests pass every option explicitly; the caller's gateway
        // settings must not leak in (and no real key may be sent anywhere).
        .env_remove("LLMPOOL_BASE_URL")
        .env_remove("LLMPOOL_API_KEY")
        .env_remove("HOLYSHEEP_API_KEY")
        .env_remove("LLMPOOL_CA_FILE")
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1",
        )
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
    if suppressions.exists() {
        cmd.env(
            "LSAN_OPTIONS",
            format!(
                "suppressions={}:print_suppressions=0",
                suppressions.display()
            ),
        );
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{name}: cannot run: {e}"))?;
    // Drain both pipes on threads so a chatty test cannot block.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + C_TEST_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = format!(
        "{}{}",
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default()
    );
    match status {
        Some(s) if s.success() => Ok(output),
        Some(s) => Err(format!("{name}: {s}\n{output}")),
        None => Err(format!(
            "{name}: timed out after {} s\n{output}",
            C_TEST_TIMEOUT.as_secs()
        )),
    }
}

#[test]
fn c_tests_pass_under_sanitizers() {
    if !cfg!(unix) {
        skip("the C tests need a Unix-like system (pthreads, rpath)");
        return;
    }
    let Some(cc) = c_compiler() else {
        skip("no C compiler (`cc --version` failed; set CC to use another)");
        return;
    };
    let dir = profile_dir();
    let lib = cdylib(&dir);
    let lib_dir = lib.parent().expect("lib dir").to_path_buf();
    println!("C tests link to {}", lib.display());
    let server_bin = server_binary(&dir);

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
    let plain = Server::start(&server_bin, &["--port", "0"]);
    let tls = Server::start(
        &server_bin,
        &[
            "--tls",
            "--port",
            "0",
            "--ca-out",
            ca_file.to_str().expect("UTF-8 path"),
        ],
    );
    let keyed = Server::start(&server_bin, &["--port", "0", "--require-key", TEST_KEY]);
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
    let mut failures = Vec::new();
    for (name, exe) in &exes {
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
