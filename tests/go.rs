//! Runs the Go binding's checks (`examples/go`): `go vet ./...` and
//! `go test -race -count=1 ./...` against the cdylib cargo built for this
//! test run and the loopback test server (`llmpool-testserver`).
//!
//! The Go package links with `-lllmpool`; this test puts the directory of
//! the freshly built `libllmpool.so` first on the link line (`CGO_LDFLAGS`)
//! and on the loader path (`LD_LIBRARY_PATH`), so neither a stale
//! `target/release` build nor the package's rpath is used. The server binary
//! reaches the Go tests through `LLMPOOL_TESTSERVER`.
//!
//! Without `go` (or a C compiler for cgo) the test prints `SKIPPED: ...`
//! and passes, unless `LLMPOOL_REQUIRE_ALL=1` is set, in which case the
//! skip is a failure.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one `go` command may run (the first `-race` build compiles the
/// race-instrumented standard library, which takes a while on small hosts).
const GO_TIMEOUT: Duration = Duration::from_secs(900);

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
        "LLMPOOL_REQUIRE_ALL=1 but the Go binding tests would be skipped: {why}"
    );
    println!("SKIPPED: Go binding tests: {why}");
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

/// Runs `cmd` under [`GO_TIMEOUT`]; `Err` carries its output.
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
    let deadline = Instant::now() + GO_TIMEOUT;
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
            GO_TIMEOUT.as_secs()
        )),
    }
}

/// Whether `go test -race` works on this GOOS/GOARCH.
fn race_supported(go: &str) -> bool {
    let Some(platform) = output_of(Command::new(go).args(["env", "GOOS", "GOARCH"])) else {
        return false;
    };
    let platform = platform.split_whitespace().collect::<Vec<_>>().join("/");
    matches!(
        platform.as_str(),
        "linux/amd64"
            | "linux/arm64"
            | "linux/ppc64le"
            | "linux/s390x"
            | "darwin/amd64"
            | "darwin/arm64"
            | "freebsd/amd64"
            | "netbsd/amd64"
            | "windows/amd64"
    )
}

#[test]
fn go_binding_vet_and_race_tests_pass() {
    if !cfg!(target_os = "linux") {
        skip("the Go binding test is wired for Linux (LD_LIBRARY_PATH, rpath)");
        return;
    }
    let go = std::env::var("GO")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "go".to_string());
    let Some(version) = output_of(Command::new(&go).arg("version")) else {
        skip("`go version` failed: install Go (Debian: apt-get install golang-go)");
        return;
    };
    // cgo needs a C compiler.
    let cc = output_of(Command::new(&go).args(["env", "CC"])).unwrap_or_else(|| "cc".into());
    if output_of(Command::new(&cc).arg("--version")).is_none() {
        skip(&format!(
            "cgo needs a C compiler and `{cc} --version` failed"
        ));
        return;
    }
    println!("using {version}");

    let dir = profile_dir();
    let lib = cdylib(&dir);
    let lib_dir = lib.parent().expect("lib dir").to_path_buf();
    println!("Go tests link to {}", lib.display());
    let server = server_binary(&dir);

    let go_dir = root().join("examples/go");
    let lib_path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib_dir.display()),
        _ => lib_dir.display().to_string(),
    };
    let cgo_ldflags = match std::env::var("CGO_LDFLAGS") {
        Ok(old) if !old.trim().is_empty() => format!("-L{} {old}", lib_dir.display()),
        _ => format!("-L{}", lib_dir.display()),
    };
    let go_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&go);
        cmd.args(args)
            .current_dir(&go_dir)
            .env("CGO_ENABLED", "1")
            .env("CGO_LDFLAGS", &cgo_ldflags)
            .env("LD_LIBRARY_PATH", &lib_path)
            .env("LLMPOOL_TESTSERVER", &server)
            .env("LLMPOOL_LIB", &lib)
            // The module has no dependencies: never touch the network,
            // never switch toolchains, ignore any go.work above.
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOWORK", "off")
            // The tests pass every option explicitly; the caller's gateway
            // settings must not leak in.
            .env_remove("LLMPOOL_BASE_URL")
            .env_remove("LLMPOOL_API_KEY")
            .env_remove("HOLYSHEEP_API_KEY")
            .env_remove("LLMPOOL_CA_FILE");
        // Go needs a build cache; without HOME (some CI sandboxes) keep it
        // under target/.
        let unset = |k: &str| std::env::var_os(k).map_or(true, |v| v.is_empty());
        if unset("GOCACHE") && unset("XDG_CACHE_HOME") && unset("HOME") {
            cmd.env("GOCACHE", dir.join("go-cache"));
        }
        if unset("GOPATH") && unset("HOME") {
            cmd.env("GOPATH", dir.join("go-path"));
        }
        cmd
    };

    let vet = run("go vet ./...", &mut go_cmd(&["vet", "./..."]));
    if let Err(e) = vet {
        panic!("{e}");
    }
    let mut args = vec!["test", "-count=1", "-v", "-timeout", "600s"];
    if race_supported(&go) {
        args.insert(1, "-race");
    } else {
        println!("note: -race is not supported on this platform; running without it");
    }
    args.push("./...");
    match run(&format!("go {}", args.join(" ")), &mut go_cmd(&args)) {
        Ok(out) => print!("{out}"),
        Err(e) => panic!("{e}"),
    }
}
