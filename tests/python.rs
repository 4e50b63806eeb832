//! Runs the Python ctypes bindings' unittest suite
//! (`examples/python/test_llmpool.py`, which also runs
//! `examples/python/example.py`) against loopback test servers, with
//! `LLMPOOL_LIB` pointing at the cdylib cargo built for this test run.
//!
//! Without `python3` (or `$PYTHON`) the test prints `SKIPPED: ...` and
//! passes, unless `LLMPOOL_REQUIRE_ALL=1` is set, in which case the skip is
//! a failure.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The API key the `--require-key` server wants.
const TEST_KEY: &str = "sk-test-PY-4242";

/// Longest the unittest suite may run.
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
        "LLMPOOL_REQUIRE_ALL=1 but the Python tests would be skipped: {why}"
    );
    println!("SKIPPED: Python binding tests: {why}");
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

#[test]
fn python_unittest_suite_passes() {
    if !cfg!(unix) {
        skip("the Python bindings load libllmpool.so (Unix-like systems only)");
        return;
    }
    let python = std::env::var("PYTHON")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "python3".to_string());
    if !runs(&python) {
        skip(&format!(
            "no Python 3 (`{python} --version` failed; set PYTHON to use another)"
        ));
        return;
    }
    let dir = profile_dir();
    let lib = cdylib(&dir);
    println!("Python tests load {}", lib.display());
    let server_bin = server_binary(&dir);
    let plain = Server::start(&server_bin, &["--port", "0"]);
    let keyed = Server::start(&server_bin, &["--port", "0", "--require-key", TEST_KEY]);

    let mut cmd = Command::new(&python);
    cmd.current_dir(root().join("examples/python"))
        .args(["-B", "-m", "unittest", "-v", "test_llmpool"])
        .env_remove("LLMPOOL_BASE_URL")
        .env_remove("LLMPOOL_API_KEY")
        .env_remove("HOLYSHEEP_API_KEY")
        .env_remove("LLMPOOL_CA_FILE")
        .env_remove("PYTHONPATH")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("LLMPOOL_LIB", &lib)
        .env("LLMPOOL_TEST_PLAIN_URL", &plain.base_url)
        .env("LLMPOOL_TEST_KEY_URL", &keyed.base_url)
        .env("LLMPOOL_TEST_KEY", TEST_KEY)
        .env("LLMPOOL_TEST_REFUSED_URL", refused_url());
    let out =
        run_with_timeout("python3 -m unittest test_llmpool", cmd).unwrap_or_else(|e| panic!("{e}"));
    print!("{out}");
    assert!(
        !out.contains("skipped"),
        "some Python tests were skipped:\n{out}"
    );
    assert!(out.contains("\nOK"), "unexpected unittest output:\n{out}");
}
