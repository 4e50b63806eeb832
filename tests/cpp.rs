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

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The API key the `--require-key` server wants.
const TEST_KEY: &str = "sk-test-CPP-4242";

/// Longest the test or the example may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: this test binary lives in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a directory");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// A `cargo` command for the workspace, without the variables cargo set for
/// this test process (build scripts watch some of them, so inheriting them
/// would rebuild those crates here and again in the next plain build).
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
        "LLMPOOL_REQUIRE_ALL=1 but the C++ tests would be skipped: {why}"
    );
    println!("SKIPPED: C++ wrapper tests: {why}");
}

/// Whether `prog --version` runs.
fn runs(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cdylib cargo built for this run (the newer of `target/<profile>/`
/// and `target/<profile>/deps/`), built with `cargo build --lib` if absent.
fn cdylib(dir: &Path) -> PathBuf {
    let name = format!(
        "{}llmpool{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let newest = || {
        [dir.join("deps").join(&name), dir.join(&name)]
            .into_iter()
            .filter_map(|p| Some((p.metadata().and_then(|m| m.modified()).ok()?, p)))
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
/// `cargo build -p llmpool-testserver --bin llmpool-testserver`.
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
        _ if bin.exists() => println!(
            "warning: `cargo build -p llmpool-testserver` failed; using {}",
            bin.display()
        ),
        other => panic!("cargo build -p llmpool-testserver failed: {other:?}"),
    }
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// A running `llmpool-testserver`, killed (by PID) and reaped on drop.
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
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback URL on which nothing listens.
fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local_addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

/// Runs `cmd` under a timeout; `Ok` is its output when it exits 0.
fn run_with_timeout(what: &str, mut cmd: Command) -> Result<String, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
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
    let deadline = Instant::now() + RUN_TIMEOUT;
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
        Some(s) => Err(format!("{what}: {s}\n{output}")),
        None => Err(format!(
            "{what}: timed out after {} s\n{output}",
            RUN_TIMEOUT.as_secs()
        )),
    }
}

/// Compiles `examples/cpp/<name>.cpp` into `out_dir/<name>`.
fn compile(cxx: &str, name: &str, lib_dir: &Path, out_dir: &Path) -> PathBuf {
    let root = root();
    let exe = out_dir.join(name);
    let out = Command::new(cxx)
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-g",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("examples/cpp").join(format!("{name}.cpp")))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lllmpool")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lpthread")
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot run {cxx}: {e}"));
    assert!(
        out.status.success(),
        "{name}.cpp: compile failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// A command for a sanitized binary with no gateway settings inherited.
fn sanitized(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.current_dir(root())
        .env_remove("LLMPOOL_BASE_URL")
        .env_remove("LLMPOOL_API_KEY")
        .env_remove("HOLYSHEEP_API_KEY")
        .env_remove("LLMPOOL_CA_FILE")
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1",
        )
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
    let suppressions = root().join("tests/c/lsan.supp");
    if suppressions.exists() {
        cmd.env(
            "LSAN_OPTIONS",
            format!(
                "suppressions={}:print_suppressions=0",
                suppressions.display()
            ),
        );
    }
    cmd
}

#[test]
fn cpp_wrapper_test_and_example_pass_under_sanitizers() {
    if !cfg!(unix) {
        skip("the C++ tests need a Unix-like system (pthreads, rpath)");
        return;
    }
    let cxx = std::env::var("CXX")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "g++".to_string());
    if !runs(&cxx) {
        skip(&format!(
            "no C++ compiler (`{cxx} --version` failed; set CXX to use another)"
        ));
        return;
    }
    let dir = profile_dir();
    let lib = cdylib(&dir);
    let lib_dir = lib.parent().expect("lib dir").to_path_buf();
    println!("C++ tests link to {}", lib.display());
    let server_bin = server_binary(&dir);

    let out_dir = dir.join("cpp-tests");
    std::fs::create_dir_all(&out_dir).expect("create the C++ test output dir");
    let test_exe = compile(&cxx, "test", &lib_dir, &out_dir);
    let example_exe = compile(&cxx, "example", &lib_dir, &out_dir);

    let plain = Server::start(&server_bin, &["--port", "0"]);
    let keyed = Server::start(&server_bin, &["--port", "0", "--require-key", TEST_KEY]);

    let mut cmd = sanitized(&test_exe);
    cmd.env("LLMPOOL_TEST_PLAIN_URL", &plain.base_url)
        .env("LLMPOOL_TEST_KEY_URL", &keyed.base_url)
        .env("LLMPOOL_TEST_KEY", TEST_KEY)
        .env("LLMPOOL_TEST_REFUSED_URL", refused_url());
    let out = run_with_timeout("examples/cpp/test.cpp", cmd).unwrap_or_else(|e| panic!("{e}"));
    print!("{out}");
    assert!(out.contains("checks passed"), "unexpected output:\n{out}");

    let mut cmd = sanitized(&example_exe);
    cmd.env("LLMPOOL_BASE_URL", &plain.base_url)
        .env("LLMPOOL_MODEL", "test-model");
    let out = run_with_timeout("examples/cpp/example.cpp", cmd).unwrap_or_else(|e| panic!("{e}"));
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
