//! Harness shared by the tests that drive the C ABI from other languages
//! (`c_api`, `cpp`, `python`, `legacy`, `go`, `node`): locating the profile
//! directory, the cdylib and the `llmpool-testserver` binary (building them
//! when needed), starting test servers, skipping when a toolchain is missing,
//! and running child processes under a timeout.
//!
//! Each test crate compiles this module on its own (`mod support;`), and not
//! every crate uses every helper.
#![allow(dead_code)]

pub mod loopback;
pub mod nginx;
pub mod redis;
pub mod redis_ha;
pub mod spend_child;
pub mod tinyproxy;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: this test binary lives in `target/<profile>/deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a directory");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// A `cargo` command for the workspace, without the variables cargo set
/// for this test process: build scripts (ring's, via `rerun-if-env-changed`)
/// watch `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ..., so inheriting them
/// would rebuild those crates here and again in the next plain `cargo build`.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cargo_env_removed(&mut cmd);
    cmd
}

/// Removes from `cmd`'s environment the variables cargo set for this test
/// process (see [`cargo`]), for a child that runs cargo itself.
pub fn cargo_env_removed(cmd: &mut Command) -> &mut Command {
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
pub fn require_all() -> bool {
    std::env::var("LLMPOOL_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Prints `SKIPPED: <what>` where a person running `cargo test` sees it:
/// on the captured stdout (shown with `--nocapture` and on failure) and,
/// uncaptured, straight to the terminal (`/dev/tty` when it opens, else
/// the process's stderr: the harness captures `print!`/`eprint!`, not
/// writes to the stderr handle itself).
pub fn skipped(what: &str) {
    use std::io::Write;
    let line = format!("SKIPPED: {what}\n");
    print!("{line}");
    let tty = std::fs::OpenOptions::new().write(true).open("/dev/tty");
    let written = match tty {
        Ok(mut t) => t.write_all(line.as_bytes()).is_ok(),
        Err(_) => false,
    };
    if !written {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// How one test file reports a skip: prints `SKIPPED: <label><why>` and
/// passes, unless `LLMPOOL_REQUIRE_ALL=1`, in which case it fails with
/// `LLMPOOL_REQUIRE_ALL=1 but <subject> would be skipped: <why>`.
pub struct Skip {
    /// What would be skipped, as in "... but the C API tests would be skipped".
    pub subject: &'static str,
    /// Printed between `SKIPPED: ` and the reason (may be empty).
    pub label: &'static str,
}

impl Skip {
    pub const fn new(subject: &'static str, label: &'static str) -> Skip {
        Skip { subject, label }
    }

    pub fn skip(&self, why: &str) {
        assert!(
            !require_all(),
            "LLMPOOL_REQUIRE_ALL=1 but {} would be skipped: {why}",
            self.subject
        );
        skipped(&format!("{}{why}", self.label));
    }

    /// The program named by `$var` (default `default`) when `--version`
    /// runs; otherwise skips with "no <what> (`<prog> --version` failed;
    /// set <var> to use another)" and returns `None`.
    pub fn tool(&self, var: &str, default: &str, what: &str) -> Option<String> {
        self.tool_probed(var, default, what, "--version")
    }

    /// Like [`Skip::tool`], probing with `flag` (nginx and tinyproxy know
    /// `-v`, not `--version`).
    pub fn tool_probed(&self, var: &str, default: &str, what: &str, flag: &str) -> Option<String> {
        let prog = tool(var, default);
        if runs_with(&prog, flag) {
            return Some(prog);
        }
        self.skip(&format!(
            "no {what} (`{prog} {flag}` failed; set {var} to use another)"
        ));
        None
    }
}

/// The program named by the environment variable `var` (when set and not
/// blank), else `default`.
pub fn tool(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Whether `prog --version` runs.
pub fn runs(prog: &str) -> bool {
    runs_with(prog, "--version")
}

/// Whether `prog flag` runs.
pub fn runs_with(prog: &str, flag: &str) -> bool {
    Command::new(prog)
        .arg(flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A new, empty directory `<tmp>/llmpool-<what>-<pid>-<n>`.
pub fn fresh_dir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("llmpool-{what}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a test directory");
    dir
}

/// The C compiler (`$CC`, default `cc`), or `None` when it cannot be run.
pub fn c_compiler() -> Option<String> {
    let cc = tool("CC", "cc");
    runs(&cc).then_some(cc)
}

/// Runs `cmd` to completion (output captured) and returns its trimmed
/// stdout when it exits 0.
pub fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The cdylib cargo built for this run. `cargo test` leaves it in
/// `target/<profile>/deps/` (it only copies it up to `target/<profile>/`
/// for `cargo build`), so take the newer of the two; build it with
/// `cargo build --lib` if neither exists.
pub fn cdylib(dir: &Path) -> PathBuf {
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
        soname_link(&lib);
        return lib;
    }
    let status = cargo()
        .args(["build", "--lib", "-p", "llmpool"])
        .status()
        .expect("run cargo build --lib");
    assert!(status.success(), "cargo build --lib failed");
    let lib = newest().unwrap_or_else(|| panic!("{name} was not built in {}", dir.display()));
    soname_link(&lib);
    lib
}

/// Makes sure `libllmpool.so.0` (the SONAME, see build.rs) sits beside the
/// cdylib, as build.rs leaves it, so programs linked against it run.
fn soname_link(lib: &Path) {
    #[cfg(target_os = "linux")]
    {
        let major = env!("CARGO_PKG_VERSION_MAJOR");
        let link = lib.with_file_name(format!("libllmpool.so.{major}"));
        if std::fs::metadata(&link).is_err() {
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink("libllmpool.so", &link);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = lib;
}

/// The test server binary, built (or found up to date) with
/// `cargo build -p llmpool-testserver --bin llmpool-testserver`: cargo
/// builds only the server's library for this test run, not its binary.
pub fn server_binary(dir: &Path) -> PathBuf {
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

/// What the binding tests run against: this profile's directory, the
/// cdylib cargo built for this run (and its directory) and the test server
/// binary.
pub struct Built {
    pub dir: PathBuf,
    pub lib: PathBuf,
    pub lib_dir: PathBuf,
    pub server: PathBuf,
}

impl Built {
    /// Finds (or builds) the cdylib, prints `<announce> <its path>`, then
    /// builds (or finds) the server binary.
    pub fn get(announce: &str) -> Built {
        let dir = profile_dir();
        let lib = cdylib(&dir);
        let lib_dir = lib.parent().expect("lib dir").to_path_buf();
        println!("{announce} {}", lib.display());
        let server = server_binary(&dir);
        Built {
            dir,
            lib,
            lib_dir,
            server,
        }
    }
}

/// A running `llmpool-testserver`, killed (by PID) and reaped on drop, so
/// a failing test never leaves a server behind.
pub struct Server {
    child: Child,
    pub base_url: String,
}

impl Server {
    /// Starts `bin args` and waits (up to 30 s) for its `LISTENING <url>` line.
    pub fn start(bin: &Path, args: &[&str]) -> Server {
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
pub fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local_addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

/// Removes the caller's gateway settings from `cmd`'s environment: the
/// tests pass every option explicitly, and no real key may be sent anywhere.
pub fn without_gateway_settings(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("LLMPOOL_BASE_URL")
        .env_remove("LLMPOOL_API_KEY")
        .env_remove("HOLYSHEEP_API_KEY")
        .env_remove("LLMPOOL_CA_FILE")
}

/// A command for a binary built with `-fsanitize=address,undefined`, run in
/// the repository root with no gateway settings inherited, leak detection
/// on and `tests/c/lsan.supp` (when present) as LeakSanitizer suppressions.
pub fn sanitized(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.current_dir(root());
    without_gateway_settings(&mut cmd)
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

/// Compiles `src` with `compiler -std=<std>` (warnings as errors, ASan and
/// UBSan), the `include_dirs` on the include path, into `exe`, linked to
/// `libllmpool` in `lib_dir` (with an rpath to it). `what` names the source
/// in errors; `Err` carries the compiler's output.
pub fn compile_sanitized(
    what: &str,
    compiler: &str,
    std: &str,
    src: &Path,
    include_dirs: &[PathBuf],
    lib_dir: &Path,
    exe: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new(compiler);
    cmd.arg(format!("-std={std}")).args([
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fsanitize=address,undefined",
        "-fno-omit-frame-pointer",
        "-g",
    ]);
    for dir in include_dirs {
        cmd.arg("-I").arg(dir);
    }
    let out = cmd
        .arg(src)
        .arg("-o")
        .arg(exe)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lllmpool")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lpthread")
        .output()
        .map_err(|e| format!("{what}: cannot run {compiler}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: compile failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Runs `cmd` (stdin from /dev/null, stdout and stderr captured) under
/// `timeout`, killing exactly its PID when the time is up; `Ok` is its
/// output when it exits 0, `Err` names `what` and carries the output.
pub fn run_with_timeout(
    what: &str,
    cmd: &mut Command,
    timeout: Duration,
) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    // Drain both pipes on threads so a chatty child cannot block.
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
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                // Kills exactly this PID (e.g. go test's own children end with it).
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
            timeout.as_secs()
        )),
    }
}
