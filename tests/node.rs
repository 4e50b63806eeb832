//! Runs the Node binding's test suite (`examples/node`: `node --test test/`)
//! against the cdylib cargo built for this test run (`LLMPOOL_LIB`) and the
//! loopback test server (`LLMPOOL_TESTSERVER`).
//!
//! Without Node.js (18 or newer) or without koffi installed in
//! `examples/node/node_modules` (`npm ci` there) the test prints
//! `SKIPPED: ...` and passes, unless `LLMPOOL_REQUIRE_ALL=1` is set, in
//! which case the skip is a failure. `NODE` picks the node binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the Node suite may run.
const NODE_TIMEOUT: Duration = Duration::from_secs(300);

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
        "LLMPOOL_REQUIRE_ALL=1 but the Node binding tests would be skipped: {why}"
    );
    println!("SKIPPED: Node binding tests: {why}");
}

/// Runs `cmd` to completion (output captured) and returns its stdout.
fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The cdylib cargo built for this run. `cargo test` leaves it in
/// `target/<profile>/deps/` (only `cargo build` copies it up), so take the
/// newer of the two; build it with `cargo build --lib` if neither exists.
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
/// `cargo build -p llmpool-testserver`.
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

/// Runs `cmd` under [`NODE_TIMEOUT`]; `Err` carries its output.
fn run(what: &str, cmd: &mut Command) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let deadline = Instant::now() + NODE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => {
                // Kills exactly this PID (go test's own children end with it).
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
            NODE_TIMEOUT.as_secs()
        )),
    }
}

#[test]
fn node_binding_tests_pass() {
    let node = std::env::var("NODE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "node".to_string());
    let Some(version) = output_of(Command::new(&node).arg("--version")) else {
        skip("`node --version` failed: install Node.js 18 or newer (Debian: apt-get install nodejs npm)");
        return;
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        skip(&format!("Node.js {version} is too old (need 18 or newer)"));
        return;
    }
    let node_dir = root().join("examples/node");
    let koffi = output_of(
        Command::new(&node)
            .args([
                "-e",
                "process.stdout.write(String(require('koffi').version))",
            ])
            .current_dir(&node_dir),
    );
    let Some(koffi) = koffi else {
        skip("koffi is not installed: run `npm ci` in examples/node");
        return;
    };
    println!("using Node.js {version}, koffi {koffi}");

    let dir = profile_dir();
    let lib = cdylib(&dir);
    println!("Node tests load {}", lib.display());
    let server = server_binary(&dir);

    let mut cmd = Command::new(&node);
    cmd.args(["--test", "test/"])
        .current_dir(&node_dir)
        .env("LLMPOOL_LIB", &lib)
        .env("LLMPOOL_TESTSERVER", &server)
        // The tests pass every option explicitly; the caller's gateway
        // settings must not leak in.
        .env_remove("LLMPOOL_BASE_URL")
        .env_remove("LLMPOOL_API_KEY")
        .env_remove("HOLYSHEEP_API_KEY")
        .env_remove("LLMPOOL_CA_FILE")
        .env_remove("NODE_OPTIONS");
    match run("node --test test/", &mut cmd) {
        Ok(out) => print!("{out}"),
        Err(e) => panic!("{e}"),
    }
}
