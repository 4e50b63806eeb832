//! Runs the Go binding's checks (`bindings/go`, module
//! `github.com/llmpool/llmpool-go`): `go vet ./...` and
//! `go test -race -count=1 ./...` against the cdylib cargo built for this
//! test run and the loopback test server (`llmpool-testserver`), and
//! `go vet` of `examples/go` (which requires the module through a
//! `replace`).
//!
//! The Go package finds the library through `#cgo pkg-config: llmpool`;
//! this test writes a `llmpool.pc` for the build tree (the header in
//! `include/`, the freshly built `libllmpool.so`) and points
//! `PKG_CONFIG_PATH` at it, and puts that directory on the loader path
//! (`LD_LIBRARY_PATH`). The server binary reaches the Go tests through
//! `LLMPOOL_TESTSERVER`.
//!
//! `go_program_outside_the_repository_builds_against_an_installed_prefix`
//! installs the library with `scripts/install.sh` into a temporary prefix
//! and builds a program in a temporary directory that requires the module
//! with a `replace` directive (`GOFLAGS=-mod=mod`, `GOPROXY=off`), then
//! runs it against the test server.
//!
//! Without `go` (or a C compiler for cgo) the test prints `SKIPPED: ...`
//! and passes, unless `LLMPOOL_REQUIRE_ALL=1` is set, in which case the
//! skip is a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    output_of, root, run_with_timeout, tool, without_gateway_settings, Built, Server, Skip,
};

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

/// Writes `<profile>/go-pkgconfig/llmpool.pc` for the build tree (the
/// header in `include/`, the library in `lib_dir`) and returns its directory.
fn dev_tree_pc(profile: &Path, lib_dir: &Path) -> PathBuf {
    let pc_dir = profile.join("go-pkgconfig");
    std::fs::create_dir_all(&pc_dir).expect("create the pkg-config dir");
    let pc = format!(
        "# llmpool in the build tree, for cargo test --test go\n\
         Name: llmpool\n\
         Description: llmpool (build tree)\n\
         Version: {}\n\
         Libs: -L{} -lllmpool\n\
         Cflags: -I{}\n",
        env!("CARGO_PKG_VERSION"),
        lib_dir.display(),
        root().join("include").display()
    );
    std::fs::write(pc_dir.join("llmpool.pc"), pc).expect("write llmpool.pc");
    pc_dir
}

/// What both tests need: `go` with a C compiler for cgo, on Linux.
fn go_tool() -> Option<String> {
    if !cfg!(target_os = "linux") {
        SKIP.skip("the Go binding test is wired for Linux (LD_LIBRARY_PATH, pkg-config)");
        return None;
    }
    let go = tool("GO", "go");
    let Some(version) = output_of(Command::new(&go).arg("version")) else {
        SKIP.skip("`go version` failed: install Go (Debian: apt-get install golang-go)");
        return None;
    };
    let cc = output_of(Command::new(&go).args(["env", "CC"])).unwrap_or_else(|| "cc".into());
    if output_of(Command::new(&cc).arg("--version")).is_none() {
        SKIP.skip(&format!(
            "cgo needs a C compiler and `{cc} --version` failed"
        ));
        return None;
    }
    if output_of(Command::new("pkg-config").arg("--version")).is_none() {
        SKIP.skip("cgo's `#cgo pkg-config: llmpool` needs pkg-config (apt-get install pkg-config)");
        return None;
    }
    println!("using {version}");
    Some(go)
}

/// Sets GOCACHE/GOPATH under `dir` when there is no HOME (some CI sandboxes).
fn go_caches(cmd: &mut Command, dir: &Path) {
    let unset = |k: &str| std::env::var_os(k).is_none_or(|v| v.is_empty());
    if unset("GOCACHE") && unset("XDG_CACHE_HOME") && unset("HOME") {
        cmd.env("GOCACHE", dir.join("go-cache"));
    }
    if unset("GOPATH") && unset("HOME") {
        cmd.env("GOPATH", dir.join("go-path"));
    }
}

#[test]
fn go_program_outside_the_repository_builds_against_an_installed_prefix() {
    let Some(go) = go_tool() else {
        return;
    };
    let Built {
        dir, lib, server, ..
    } = Built::get("Go program links to");
    let work = support::fresh_dir("go-outside");
    // scripts/install.sh wants libllmpool.a beside the .so: stage both.
    let from = work.join("from");
    std::fs::create_dir_all(&from).expect("mkdir");
    std::fs::copy(&lib, from.join("libllmpool.so")).expect("copy the .so");
    let archive = lib.with_file_name("libllmpool.a");
    assert!(archive.exists(), "{} was not built", archive.display());
    std::fs::copy(&archive, from.join("libllmpool.a")).expect("copy the .a");
    // A prefix at a path that stays the same between runs, and a build
    // cache of this test's own: go's cache keeps the package's cgo link
    // flags (-L<prefix>/lib from pkg-config) without hashing pkg-config's
    // answer, so another prefix (a fresh temporary one, or the build tree's
    // .pc of the other test) would be linked against from the cache.
    let prefix = dir.join("go-installed-prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let out = support::output_of(
        Command::new("sh")
            .arg(root().join("scripts/install.sh"))
            .arg("--from")
            .arg(&from)
            .arg(&prefix)
            .env_remove("DESTDIR"),
    );
    assert!(out.is_some(), "scripts/install.sh failed");

    let app = work.join("app");
    std::fs::create_dir_all(&app).expect("mkdir app");
    std::fs::write(
        app.join("go.mod"),
        format!(
            "module example.com/hello\n\ngo 1.19\n\n\
             require github.com/llmpool/llmpool-go v{}\n\n\
             replace github.com/llmpool/llmpool-go => {}\n",
            env!("CARGO_PKG_VERSION"),
            root().join("bindings/go").display()
        ),
    )
    .expect("write go.mod");
    std::fs::write(
        app.join("main.go"),
        r#"package main

import (
	"context"
	"fmt"
	"os"

	llmpool "github.com/llmpool/llmpool-go"
)

func main() {
	c, err := llmpool.NewClient(`{"max_retries": 1}`)
	if err != nil {
		fmt.Println("client:", err)
		os.Exit(1)
	}
	defer c.Close()
	r, err := c.Chat(context.Background(), `{"model":"test-model","messages":[{"role":"user","content":"hello from go"}]}`)
	if err != nil {
		fmt.Println("chat:", err)
		os.Exit(1)
	}
	fmt.Println("chat:", r.Text)
	fmt.Println("version:", llmpool.Version())
}
"#,
    )
    .expect("write main.go");
    let mut cmd = Command::new(&go);
    cmd.args(["build", "-o", "hello", "."])
        .current_dir(&app)
        .env("CGO_ENABLED", "1")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .env_remove("CGO_LDFLAGS")
        .env_remove("CGO_CFLAGS");
    go_caches(&mut cmd, &dir);
    cmd.env("GOCACHE", dir.join("go-installed-prefix-cache"));
    if let Err(e) = run_with_timeout("go build (outside the repository)", &mut cmd, GO_TIMEOUT) {
        panic!("{e}");
    }
    let s = Server::start(&server, &["--port", "0"]);
    let mut run = Command::new(app.join("hello"));
    without_gateway_settings(&mut run)
        .env("LLMPOOL_BASE_URL", &s.base_url)
        .env("LD_LIBRARY_PATH", prefix.join("lib"));
    let out = run_with_timeout("hello (Go)", &mut run, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    print!("{out}");
    assert!(out.contains("chat: Echo: hello from go"), "{out}");
    assert!(
        out.contains(&format!("version: {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn go_binding_vet_and_race_tests_pass() {
    let Some(go) = go_tool() else {
        return;
    };

    let Built {
        dir,
        lib,
        lib_dir,
        server,
    } = Built::get("Go tests link to");

    let go_dir = root().join("bindings/go");
    let lib_path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib_dir.display()),
        _ => lib_dir.display().to_string(),
    };
    let pc_dir = dev_tree_pc(&dir, &lib_dir);
    let go_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&go);
        cmd.args(args)
            .current_dir(&go_dir)
            .env("CGO_ENABLED", "1")
            .env("PKG_CONFIG_PATH", &pc_dir)
            .env_remove("CGO_LDFLAGS")
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
        go_caches(&mut cmd, &dir);
        cmd
    };

    let vet = run_with_timeout("go vet ./...", &mut go_cmd(&["vet", "./..."]), GO_TIMEOUT);
    if let Err(e) = vet {
        panic!("{e}");
    }
    let mut example = go_cmd(&["vet", "./..."]);
    example
        .current_dir(root().join("examples/go"))
        .env("GOFLAGS", "-mod=mod");
    if let Err(e) = run_with_timeout("go vet ./... in examples/go", &mut example, GO_TIMEOUT) {
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
