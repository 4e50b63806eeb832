//! Legacy embedding: `examples/legacy/legacy.c` (plain C, no Rust toolchain
//! at link time) linked against the release static library and, after
//! `scripts/install.sh` into a temporary PREFIX, through pkg-config;
//! plus the check that the cdylib exports only `llmpool_*` symbols.
//!
//! - `legacy_c_links_statically_and_via_pkg_config`: builds
//!   `target/release/libllmpool.a` with `cargo build --release --lib` when it
//!   is missing or older than `src/`, then links `legacy.c`
//!   1. directly: `cc legacy.c -Iinclude libllmpool.a <system libs>` with the
//!      system libraries documented in `install.sh`, and again with only
//!      `-lpthread -ldl -lm`;
//!   2. via `pkg-config --cflags --libs llmpool-static` (must run without
//!      the library on any search path: it is static);
//!   3. via `pkg-config --cflags --libs llmpool` (links `libllmpool.so`, run
//!      with `LD_LIBRARY_PATH`);
//!   4. via `pkg-config --static --cflags --libs llmpool` in a prefix
//!      installed with `--static-only`;
//!
//!   and runs every binary against a loopback `llmpool-testserver`.
//! - `staged_install_builds_with_cmake_find_package_and_pkg_config`:
//!   `DESTDIR=<stage> scripts/install.sh <prefix>` writes only under the
//!   stage (its `.pc` names the prefix), the tree is moved into place, the
//!   `.so` carries the SONAME `libllmpool.so.0` (`readelf -d`) behind the
//!   links `libllmpool.so -> .so.0 -> .so.0.1.0`, and a CMake project
//!   outside the tree (`find_package(llmpool 0.1)`, `llmpool::llmpool` and
//!   `llmpool::llmpool_static`) and a plain `cc $(pkg-config ...)` build run
//!   against the test server; `find_package(llmpool 1.0)` is refused.
//! - `shared_library_exports_only_llmpool_symbols`: `nm -D --defined-only`
//!   on `libllmpool.so` (this profile's, and the release one when present)
//!   lists only `llmpool_*` symbols, exactly the functions declared in
//!   `include/llmpool.h`.
//!
//! Without `cc` (or `$CC`), `sh`, `pkg-config`, `nm`, `readelf` or `cmake` the affected part
//! prints `SKIPPED: ...` and passes, unless `LLMPOOL_REQUIRE_ALL=1` is set,
//! in which case the skip is a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    c_compiler, cargo, cdylib, profile_dir, root, run_with_timeout, runs, server_binary,
    without_gateway_settings, Server, Skip,
};

const SKIP: Skip = Skip::new("a legacy-embedding test", "");

/// Longest one run of the legacy program may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The system libraries the static library needs, as documented (and
/// written into `llmpool.pc`) by `scripts/install.sh`.
fn documented_native_libs() -> Vec<String> {
    let script = std::fs::read_to_string(root().join("scripts/install.sh"))
        .expect("read scripts/install.sh");
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix("DEFAULT_NATIVE_LIBS="))
        .expect("install.sh sets DEFAULT_NATIVE_LIBS");
    line.trim_matches('"')
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The newest modification time of any file under `dir`.
fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// `target/release`, with `libllmpool.a` (and `.so`) built when missing or
/// older than the sources.
fn release_libs(profile: &Path) -> PathBuf {
    let release = profile.parent().expect("target dir").join("release");
    let archive = release.join("libllmpool.a");
    let built = archive.metadata().and_then(|m| m.modified()).ok();
    let sources = [root().join("src"), root().join("Cargo.toml")]
        .iter()
        .filter_map(|p| {
            if p.is_dir() {
                newest_mtime(p)
            } else {
                p.metadata().and_then(|m| m.modified()).ok()
            }
        })
        .max();
    let stale = match (built, sources) {
        (None, _) => true,
        (Some(b), Some(s)) => b < s,
        (Some(_), None) => false,
    };
    if stale || !release.join("libllmpool.so").exists() {
        println!("building the release libraries (cargo build --release --lib)");
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--lib", "-p", "llmpool"]);
        if let Some(target_dir) = profile.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let status = cmd.status().expect("run cargo build --release --lib");
        assert!(status.success(), "cargo build --release --lib failed");
    }
    assert!(archive.exists(), "{} was not built", archive.display());
    release
}

/// Runs a command to completion; panics with its output unless it exits 0.
fn check_output(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pkg-config ARGS` with `PKG_CONFIG_PATH=<prefix>/lib/pkgconfig`, split
/// into words as a shell would (the paths contain no whitespace).
fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = check_output(
        &format!("pkg-config {}", args.join(" ")),
        Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
    );
    out.split_whitespace().map(str::to_string).collect()
}

/// `sh scripts/install.sh [extra] --from <release> <prefix>`, into a fresh prefix.
fn install(release: &Path, prefix: &Path, extra: &[&str]) {
    let _ = std::fs::remove_dir_all(prefix);
    let mut cmd = Command::new("sh");
    cmd.arg(root().join("scripts/install.sh"))
        .args(extra)
        .arg("--from")
        .arg(release)
        .arg(prefix)
        .env_remove("DESTDIR")
        .env_remove("LLMPOOL_NATIVE_LIBS");
    print!("{}", check_output("scripts/install.sh", &mut cmd));
    for f in [
        "include/llmpool.h",
        "include/llmpool.hpp",
        "lib/libllmpool.a",
        "lib/pkgconfig/llmpool.pc",
        "lib/pkgconfig/llmpool-static.pc",
        "lib/cmake/llmpool/llmpoolConfig.cmake",
        "lib/cmake/llmpool/llmpoolConfigVersion.cmake",
    ] {
        assert!(prefix.join(f).exists(), "install.sh did not install {f}");
    }
    let shared = !extra.contains(&"--static-only");
    assert_eq!(
        prefix.join("lib/libllmpool.so").exists(),
        shared,
        "libllmpool.so installed iff not --static-only"
    );
    if shared {
        check_shared_names(&prefix.join("lib"));
    }
}

/// `lib/libllmpool.so -> libllmpool.so.<major> -> libllmpool.so.<version>`,
/// the last a regular file.
fn check_shared_names(lib: &Path) {
    let version = env!("CARGO_PKG_VERSION");
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let link = |name: &str| {
        std::fs::read_link(lib.join(name))
            .unwrap_or_else(|e| panic!("{name} is not a symlink: {e}"))
    };
    assert_eq!(
        link("libllmpool.so"),
        Path::new(&format!("libllmpool.so.{major}"))
    );
    assert_eq!(
        link(&format!("libllmpool.so.{major}")),
        Path::new(&format!("libllmpool.so.{version}"))
    );
    let real = lib.join(format!("libllmpool.so.{version}"));
    assert!(
        std::fs::symlink_metadata(&real).is_ok_and(|m| m.is_file()),
        "{} is not a file",
        real.display()
    );
}

/// Compiles `examples/legacy/legacy.c` with `args` (sources first) into `exe`.
fn compile(cc: &str, exe: &Path, args: &[String]) {
    let mut cmd = Command::new(cc);
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(root().join("examples/legacy/legacy.c"))
        .args(args)
        .arg("-o")
        .arg(exe);
    println!("{cmd:?}");
    check_output(&format!("compiling {}", exe.display()), &mut cmd);
}

/// Runs a legacy binary against `base_url` (with `LD_LIBRARY_PATH` =
/// `lib_path` when given) and checks its output.
fn run_legacy(exe: &Path, base_url: &str, lib_path: Option<&Path>) {
    let mut cmd = Command::new(exe);
    without_gateway_settings(&mut cmd)
        .env_remove("LD_LIBRARY_PATH")
        .env("LLMPOOL_BASE_URL", base_url)
        .env("LLMPOOL_MODEL", "test-model");
    if let Some(p) = lib_path {
        cmd.env("LD_LIBRARY_PATH", p);
    }
    let what = exe.display().to_string();
    let out = run_with_timeout(&what, &mut cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    for want in [
        "chat: Echo: Hello from a legacy C program\n",
        "stream: Echo: Hello from a legacy C program\n",
        "\"finish_reason\":\"stop\"",
        "metrics: {",
    ] {
        assert!(out.contains(want), "{what}: output lacks {want:?}:\n{out}");
    }
}

/// Whether the ELF file at `exe` names `libllmpool` among its needed
/// libraries (a plain byte search of the dynamic string table's contents).
fn mentions_libllmpool_so(exe: &Path) -> bool {
    let bytes = std::fs::read(exe).expect("read the binary");
    bytes.windows(13).any(|w| w == b"libllmpool.so")
}

#[test]
fn legacy_c_links_statically_and_via_pkg_config() {
    if !cfg!(target_os = "linux") {
        SKIP.skip(
            "legacy embedding test: written for Linux (glibc system libraries, LD_LIBRARY_PATH)",
        );
        return;
    }
    let Some(cc) = c_compiler() else {
        SKIP.skip(
            "legacy embedding test: no C compiler (`cc --version` failed; set CC to use another)",
        );
        return;
    };
    if !Command::new("sh")
        .args(["-c", "exit 0"])
        .status()
        .is_ok_and(|s| s.success())
    {
        SKIP.skip("legacy embedding test: no POSIX sh to run install.sh");
        return;
    }
    let profile = profile_dir();
    let release = release_libs(&profile);
    let server = Server::start(&server_binary(&profile), &["--port", "0"]);
    let out_dir = profile.join("legacy-tests");
    std::fs::create_dir_all(&out_dir).expect("create the legacy test output dir");
    let include = format!("-I{}", root().join("include").display());
    let archive = release.join("libllmpool.a").display().to_string();

    // 1. Straight from the build tree, with the documented system libraries.
    let libs = documented_native_libs();
    println!("documented system libraries: {}", libs.join(" "));
    let exe = out_dir.join("legacy-static");
    let mut args = vec![include.clone(), archive.clone()];
    args.extend(libs.iter().cloned());
    compile(&cc, &exe, &args);
    assert!(
        !mentions_libllmpool_so(&exe),
        "legacy-static needs libllmpool.so"
    );
    run_legacy(&exe, &server.base_url, None);

    // ... and with only the libraries the issue suggests.
    let exe = out_dir.join("legacy-static-min");
    let mut args = vec![include, archive];
    args.extend(["-lpthread", "-ldl", "-lm"].map(String::from));
    compile(&cc, &exe, &args);
    run_legacy(&exe, &server.base_url, None);

    if !runs("pkg-config") {
        SKIP.skip(
            "legacy embedding test, pkg-config part: no pkg-config (`pkg-config --version` failed)",
        );
        return;
    }

    // 2 and 3. A full install: static via llmpool-static, shared via llmpool.
    let prefix = out_dir.join("prefix");
    install(&release, &prefix, &[]);
    assert_eq!(
        pkg_config(&prefix, &["--modversion", "llmpool"]),
        [env!("CARGO_PKG_VERSION")]
    );
    let cflags = pkg_config(&prefix, &["--cflags", "llmpool"]);
    assert!(
        cflags.contains(&format!("-I{}", prefix.join("include").display())),
        "{cflags:?}"
    );
    let static_libs = pkg_config(&prefix, &["--static", "--libs", "llmpool"]);
    for lib in &libs {
        assert!(
            static_libs.contains(lib),
            "Libs.private lacks {lib}: {static_libs:?}"
        );
    }

    let exe = out_dir.join("legacy-pc-static");
    compile(
        &cc,
        &exe,
        &pkg_config(&prefix, &["--cflags", "--libs", "llmpool-static"]),
    );
    assert!(
        !mentions_libllmpool_so(&exe),
        "llmpool-static linked libllmpool.so"
    );
    run_legacy(&exe, &server.base_url, None);

    let exe = out_dir.join("legacy-pc-shared");
    compile(
        &cc,
        &exe,
        &pkg_config(&prefix, &["--cflags", "--libs", "llmpool"]),
    );
    assert!(
        mentions_libllmpool_so(&exe),
        "llmpool did not link libllmpool.so"
    );
    run_legacy(&exe, &server.base_url, Some(&prefix.join("lib")));

    // 4. A static-only install: `pkg-config --static llmpool` links the archive.
    let prefix = out_dir.join("prefix-static-only");
    install(&release, &prefix, &["--static-only"]);
    let exe = out_dir.join("legacy-pc-static-only");
    compile(
        &cc,
        &exe,
        &pkg_config(&prefix, &["--static", "--cflags", "--libs", "llmpool"]),
    );
    assert!(
        !mentions_libllmpool_so(&exe),
        "static-only build linked libllmpool.so"
    );
    run_legacy(&exe, &server.base_url, None);
}

/// The `DT_SONAME` of an ELF library, as `readelf -d` prints it.
fn soname(lib: &Path) -> Option<String> {
    let out = check_output(
        &format!("readelf -d {}", lib.display()),
        Command::new("readelf").arg("-d").arg(lib),
    );
    out.lines()
        .find(|l| l.contains("(SONAME)"))
        .and_then(|l| l.split('[').nth(1))
        .map(|s| s.trim_end_matches(']').to_string())
}

#[test]
fn staged_install_builds_with_cmake_find_package_and_pkg_config() {
    if !cfg!(target_os = "linux") {
        SKIP.skip("install test: written for Linux (ELF SONAME, LD_LIBRARY_PATH)");
        return;
    }
    let Some(cc) = c_compiler() else {
        SKIP.skip("install test: no C compiler (`cc --version` failed; set CC to use another)");
        return;
    };
    let Some(cmake) = SKIP.tool("CMAKE", "cmake", "cmake for the find_package test") else {
        return;
    };
    if !runs("pkg-config") || !runs("readelf") {
        SKIP.skip(
            "install test: needs pkg-config and readelf (apt-get install pkg-config binutils)",
        );
        return;
    }
    let profile = profile_dir();
    let release = release_libs(&profile);
    let server = Server::start(&server_binary(&profile), &["--port", "0"]);
    let work = support::fresh_dir("install");
    let prefix = work.join("opt/llmpool");
    let stage = work.join("stage");

    // DESTDIR staging: everything lands under stage/<prefix>, nothing at
    // <prefix>, and the installed files name <prefix>.
    let mut cmd = Command::new("sh");
    cmd.arg(root().join("scripts/install.sh"))
        .arg("--from")
        .arg(&release)
        .arg(&prefix)
        .env("DESTDIR", &stage)
        .env_remove("LLMPOOL_NATIVE_LIBS");
    print!(
        "{}",
        check_output("DESTDIR=... scripts/install.sh", &mut cmd)
    );
    assert!(!prefix.exists(), "install.sh wrote outside DESTDIR");
    let staged = stage.join(prefix.strip_prefix("/").expect("absolute prefix"));
    let pc = std::fs::read_to_string(staged.join("lib/pkgconfig/llmpool.pc")).expect("staged .pc");
    assert!(
        pc.contains(&format!("prefix={}\n", prefix.display())) && !pc.contains("stage"),
        "llmpool.pc must name PREFIX, not DESTDIR:\n{pc}"
    );
    check_shared_names(&staged.join("lib"));
    // What a package manager does with the staged tree.
    std::fs::create_dir_all(prefix.parent().expect("parent")).expect("mkdir");
    std::fs::rename(&staged, &prefix).expect("move the staged tree into place");

    let version = env!("CARGO_PKG_VERSION");
    let so = prefix.join(format!("lib/libllmpool.so.{version}"));
    assert_eq!(
        soname(&so).as_deref(),
        Some(format!("libllmpool.so.{}", env!("CARGO_PKG_VERSION_MAJOR")).as_str()),
        "SONAME of {}",
        so.display()
    );

    // A tiny CMake project outside the tree.
    let src = work.join("app");
    std::fs::create_dir_all(&src).expect("mkdir app");
    std::fs::copy(root().join("examples/legacy/legacy.c"), src.join("app.c")).expect("copy app.c");
    std::fs::write(
        src.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.10)\n\
         project(app C)\n\
         find_package(llmpool 0.1 REQUIRED)\n\
         add_executable(app app.c)\n\
         target_link_libraries(app PRIVATE llmpool::llmpool)\n\
         add_executable(app_static app.c)\n\
         target_link_libraries(app_static PRIVATE llmpool::llmpool_static)\n",
    )
    .expect("write CMakeLists.txt");
    let build = work.join("app-build");
    let cmake_cmd = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(&cmake);
        cmd.args(args)
            .env("CC", &cc)
            .env_remove("CMAKE_PREFIX_PATH");
        cmd
    };
    print!(
        "{}",
        check_output(
            "cmake configure",
            &mut cmake_cmd(&[
                "-S".as_ref(),
                src.as_os_str(),
                "-B".as_ref(),
                build.as_os_str(),
                format!("-DCMAKE_PREFIX_PATH={}", prefix.display()).as_ref(),
            ]),
        )
    );
    print!(
        "{}",
        check_output(
            "cmake --build",
            &mut cmake_cmd(&["--build".as_ref(), build.as_os_str()]),
        )
    );
    let app = build.join("app");
    assert!(
        mentions_libllmpool_so(&app),
        "app did not link libllmpool.so"
    );
    // CMake's build-tree rpath finds PREFIX/lib; no LD_LIBRARY_PATH.
    run_legacy(&app, &server.base_url, None);
    let app_static = build.join("app_static");
    assert!(
        !mentions_libllmpool_so(&app_static),
        "llmpool::llmpool_static linked libllmpool.so"
    );
    run_legacy(&app_static, &server.base_url, None);

    // A version the config must refuse.
    std::fs::write(
        src.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.10)\nproject(app C)\nfind_package(llmpool 1.0 REQUIRED)\n",
    )
    .expect("write CMakeLists.txt");
    let refused = cmake_cmd(&[
        "-S".as_ref(),
        src.as_os_str(),
        "-B".as_ref(),
        work.join("app-build-1.0").as_os_str(),
        format!("-DCMAKE_PREFIX_PATH={}", prefix.display()).as_ref(),
    ])
    .output()
    .expect("run cmake");
    assert!(
        !refused.status.success(),
        "find_package(llmpool 1.0) accepted {version}"
    );

    // Plain cc with pkg-config against the moved prefix.
    let exe = work.join("app-pc");
    compile(
        &cc,
        &exe,
        &pkg_config(&prefix, &["--cflags", "--libs", "llmpool"]),
    );
    run_legacy(&exe, &server.base_url, Some(&prefix.join("lib")));
    let _ = std::fs::remove_dir_all(&work);
}

/// The functions `include/llmpool.h` declares.
fn header_functions() -> Vec<String> {
    let header =
        std::fs::read_to_string(root().join("include/llmpool.h")).expect("read include/llmpool.h");
    let code: String = header
        .lines()
        .filter(|l| !l.trim_start().starts_with("//") && !l.trim_start().starts_with('*'))
        .collect::<Vec<_>>()
        .join("\n");
    // Every identifier `llmpool_*` directly followed by `(`.
    let mut names: Vec<String> = code
        .split('(')
        .filter_map(|before| {
            let ident_start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            let ident = &before[ident_start..];
            ident.starts_with("llmpool_").then(|| ident.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `(type, name)` of every symbol `nm -D --defined-only` lists for `lib`.
fn exported_symbols(lib: &Path) -> Vec<(String, String)> {
    let out = check_output(
        &format!("nm -D --defined-only {}", lib.display()),
        Command::new("nm").args(["-D", "--defined-only"]).arg(lib),
    );
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace().rev();
            let name = parts.next()?;
            let ty = parts.next()?;
            Some((ty.to_string(), name.to_string()))
        })
        .collect()
}

#[test]
fn shared_library_exports_only_llmpool_symbols() {
    if !cfg!(target_os = "linux") {
        SKIP.skip("nm -D check: written for Linux ELF shared libraries");
        return;
    }
    if !runs("nm") {
        SKIP.skip("nm -D check: no nm (`nm --version` failed; install binutils)");
        return;
    }
    let profile = profile_dir();
    // This run's cdylib must export exactly the header's functions; the
    // release one (possibly older than the header) only llmpool_* symbols.
    let mut libs = vec![(cdylib(&profile), true)];
    let release = profile
        .parent()
        .expect("target dir")
        .join("release/libllmpool.so");
    if release.exists() && libs[0].0 != release {
        libs.push((release, false));
    }
    let declared = header_functions();
    assert!(
        declared.len() >= 20,
        "too few functions in the header: {declared:?}"
    );
    for (lib, exact) in libs {
        let symbols = exported_symbols(&lib);
        // Absolute symbols ('A') are version-node markers, not code or data.
        let leaks: Vec<String> = symbols
            .iter()
            .filter(|(ty, name)| ty != "A" && !name.starts_with("llmpool_"))
            .map(|(ty, name)| format!("{ty} {name}"))
            .collect();
        assert!(
            leaks.is_empty(),
            "{} exports symbols outside llmpool_*:\n{}",
            lib.display(),
            leaks.join("\n")
        );
        if !exact {
            println!("{}: exports only llmpool_* symbols", lib.display());
            continue;
        }
        let mut exported: Vec<String> = symbols.into_iter().map(|(_, n)| n).collect();
        exported.sort();
        exported.dedup();
        let missing: Vec<&String> = declared.iter().filter(|n| !exported.contains(n)).collect();
        let undeclared: Vec<&String> = exported.iter().filter(|n| !declared.contains(n)).collect();
        assert!(
            missing.is_empty() && undeclared.is_empty(),
            "{}: declared in llmpool.h but not exported: {missing:?}; exported but not declared: {undeclared:?}",
            lib.display()
        );
        println!(
            "{}: exports exactly the {} llmpool_* functions of llmpool.h",
            lib.display(),
            exported.len()
        );
    }
}
