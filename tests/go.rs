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

mod support;

use std::process::Command;
use std::time::Duration;

use support::{output_of, root, run_with_timeout, tool, without_gateway_settings, Built, Skip};

const SKIP: Skip = Skip::new("the Go binding tests", "Go binding tests: ");

/// Longest one `go` command may run (the first `-race` build compiles the
/// race-instrumented standard library, which takes a while on small hosts).
const GO_TIMEOUT: Duration = Duration::from_secs(900);

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
        SKIP.skip("the Go binding test is wired for Linux (LD_LIBRARY_PATH, rpath)");
        return;
    }
    let go = tool("GO", "go");
    let Some(version) = output_of(Command::new(&go).arg("version")) else {
        SKIP.skip("`go version` failed: install Go (Debian: apt-get install golang-go)");
        return;
    };
    // cgo needs a C compiler.
    let cc = output_of(Command::new(&go).args(["env", "CC"])).unwrap_or_else(|| "cc".into());
    if output_of(Command::new(&cc).arg("--version")).is_none() {
        SKIP.skip(&format!(
            "cgo needs a C compiler and `{cc} --version` failed"
        ));
        return;
    }
    println!("using {version}");

    let Built {
        dir,
        lib,
        lib_dir,
        server,
    } = Built::get("Go tests link to");

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
            .env("GOWORK", "off");
        // The tests pass every option explicitly; the caller's gateway
        // settings must not leak in.
        without_gateway_settings(&mut cmd);
        // Go needs a build cache; without HOME (some CI sandboxes) keep it
        // under target/.
        let unset = |k: &str| std::env::var_os(k).is_none_or(|v| v.is_empty());
        if unset("GOCACHE") && unset("XDG_CACHE_HOME") && unset("HOME") {
            cmd.env("GOCACHE", dir.join("go-cache"));
        }
        if unset("GOPATH") && unset("HOME") {
            cmd.env("GOPATH", dir.join("go-path"));
        }
        cmd
    };

    let vet = run_with_timeout("go vet ./...", &mut go_cmd(&["vet", "./..."]), GO_TIMEOUT);
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
    match run_with_timeout(
        &format!("go {}", args.join(" ")),
        &mut go_cmd(&args),
        GO_TIMEOUT,
    ) {
        Ok(out) => print!("{out}"),
        Err(e) => panic!("{e}"),
    }
}
