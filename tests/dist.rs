//! Checks the release packages that `scripts/dist.sh` (the release command)
//! writes into `dist/`, each installed as its users would, in an empty
//! directory outside the repository, with nothing but its language's tools,
//! and run against the loopback test server:
//!
//! - `shipped_libraries_need_glibc_2_17_and_carry_the_soname`: the `.so` of
//!   the C tarball (and the same bytes in the wheel and the npm platform
//!   package) needs no `GLIBC_*` symbol version newer than 2.17
//!   (`objdump -T`) and has the SONAME `libllmpool.so.0` (`readelf -d`);
//!   `auditwheel show` accepts the wheel as manylinux2014
//!   (`manylinux_2_17_x86_64`).
//! - `wheel_installs_in_a_fresh_venv_and_calls_the_test_server`: `pip
//!   install` of the wheel into a new venv (no index, no checkout on the
//!   path, no `LLMPOOL_LIB`), then a chat, a stream and an `AsyncClient`
//!   call.
//! - `sdist_builds_from_source_with_cargo`: `pip wheel` of the sdist (cargo
//!   builds the library from the sources it carries), installed and called.
//! - `npm_tarballs_install_in_an_empty_dir_for_require_and_import`: `npm
//!   install` of the two tarballs (koffi from the npm cache or registry),
//!   then `require('llmpool')` and ESM `import` both call the server, and
//!   `tsc --strict` type-checks a TypeScript program against `index.d.ts`.
//! - `c_tarball_builds_with_pkg_config_and_cmake`: the unpacked C tarball
//!   (relocatable `.pc`, CMake config) with `cc $(pkg-config ...)`, shared
//!   and static, and a `find_package(llmpool)` project linking
//!   `llmpool::llmpool` and `llmpool::llmpool_static`.
//!
//! When `dist/` lacks a package the tests print `SKIPPED: ... run bash
//! scripts/dist.sh` and pass, unless `LLMPOOL_REQUIRE_ALL=1` (set by
//! `.ci/run`, which runs `scripts/dist.sh` first), where a skip fails.
//! `LLMPOOL_DIST_DIR` names another directory.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    c_compiler, fresh_dir, output_of, root, run_with_timeout, runs, server_binary,
    without_gateway_settings, Server, Skip,
};

const SKIP: Skip = Skip::new("the release-package tests", "release packages: ");

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest one install or build step may take (the sdist builds the library).
const STEP_TIMEOUT: Duration = Duration::from_secs(900);

/// The packages in `dist/`.
struct Dist {
    wheel: PathBuf,
    sdist: PathBuf,
    npm_main: PathBuf,
    npm_platform: PathBuf,
    c_tarball: PathBuf,
}

fn dist() -> Option<Dist> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        SKIP.skip("the release packages are built for x86_64 Linux");
        return None;
    }
    let dir = std::env::var_os("LLMPOOL_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("dist"));
    let file = |name: String| {
        let p = dir.join(&name);
        p.exists().then_some(p).ok_or(name)
    };
    let found = (|| {
        Ok::<_, String>(Dist {
            wheel: file(format!(
                "llmpool-{VERSION}-py3-none-manylinux2014_x86_64.whl"
            ))?,
            sdist: file(format!("llmpool-{VERSION}.tar.gz"))?,
            npm_main: file(format!("llmpool-{VERSION}.tgz"))?,
            npm_platform: file(format!("llmpool-linux-x64-gnu-{VERSION}.tgz"))?,
            c_tarball: file(format!("llmpool-{VERSION}-linux-x86_64-gnu.tar.gz"))?,
        })
    })();
    match found {
        Ok(d) => Some(d),
        Err(name) => {
            SKIP.skip(&format!(
                "{} has no {name}: run `bash scripts/dist.sh` (the release command)",
                dir.display()
            ));
            None
        }
    }
}

/// A fresh directory, removed (with what the test left in it) on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(what: &str) -> Tmp {
        Tmp(fresh_dir(what))
    }
}

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` under the step timeout; panics with its output unless it exits 0.
fn check(what: &str, cmd: &mut Command) -> String {
    run_with_timeout(what, cmd, STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Unpacks a `.tar.gz`/`.tgz` into a fresh directory and returns it.
fn untar(tarball: &Path, what: &str) -> Tmp {
    let dir = Tmp::new(what);
    check(
        &format!("tar xzf {}", tarball.display()),
        Command::new("tar")
            .arg("xzf")
            .arg(tarball)
            .arg("-C")
            .arg(&*dir),
    );
    dir
}

/// The unpacked C tarball and its top directory.
fn c_tree(d: &Dist) -> (Tmp, PathBuf) {
    let dir = untar(&d.c_tarball, "dist-c");
    let top = dir.join(format!("llmpool-{VERSION}-linux-x86_64-gnu"));
    (dir, top)
}

/// `(major, minor)` of a `GLIBC_2.17`-style version.
fn glibc_version(v: &str) -> (u32, u32) {
    let mut it = v
        .trim_start_matches("GLIBC_")
        .split('.')
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// A loopback test server (the debug build of `llmpool-testserver`).
fn server() -> Server {
    Server::start(&server_binary(&support::profile_dir()), &["--port", "0"])
}

#[test]
fn shipped_libraries_need_glibc_2_17_and_carry_the_soname() {
    let Some(d) = dist() else { return };
    if !runs("objdump") || !runs("readelf") {
        SKIP.skip("no objdump/readelf (apt-get install binutils)");
        return;
    }
    let (_unpacked, tree) = c_tree(&d);
    let lib = tree.join("lib");
    let so = lib.join(format!("libllmpool.so.{VERSION}"));
    let symbols = check("objdump -T", Command::new("objdump").arg("-T").arg(&so));
    let mut versions: Vec<&str> = symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| w.starts_with("GLIBC_2"))
        .collect();
    versions.sort_by_key(|v| glibc_version(v));
    versions.dedup();
    let floor = versions.last().expect("the library uses glibc");
    println!("{}: newest glibc symbol version {floor}", so.display());
    assert!(
        glibc_version(floor) <= (2, 17),
        "{} needs {floor} (all: {versions:?}); it must load on glibc 2.17",
        so.display()
    );
    let dynamic = check("readelf -d", Command::new("readelf").arg("-d").arg(&so));
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    assert!(
        dynamic.contains(&format!("Library soname: [libllmpool.so.{major}]")),
        "no SONAME libllmpool.so.{major}:\n{dynamic}"
    );
    assert_eq!(
        std::fs::read_link(lib.join(format!("libllmpool.so.{major}"))).expect("the SONAME link"),
        Path::new(&format!("libllmpool.so.{VERSION}"))
    );
    assert_eq!(
        std::fs::read_link(lib.join("libllmpool.so")).expect("the link-time name"),
        Path::new(&format!("libllmpool.so.{major}"))
    );
    for f in [
        "include/llmpool.h",
        "include/llmpool.hpp",
        "lib/libllmpool.a",
        "lib/pkgconfig/llmpool.pc",
        "lib/cmake/llmpool/llmpoolConfig.cmake",
        "lib/cmake/llmpool/llmpoolConfigVersion.cmake",
    ] {
        assert!(tree.join(f).exists(), "the C tarball lacks {f}");
    }
    let shipped = std::fs::read(&so).expect("read the .so");

    // The same library in the npm platform package and in the wheel.
    let npm = untar(&d.npm_platform, "dist-npm-platform");
    let in_npm = std::fs::read(npm.join("package/libllmpool.so")).expect("the npm .so");
    assert!(
        in_npm == shipped,
        "the npm platform package ships another .so"
    );
    let unzipped = Tmp::new("dist-wheel");
    check(
        "python3 -m zipfile -e",
        Command::new(support::tool("PYTHON", "python3"))
            .args(["-m", "zipfile", "-e"])
            .arg(&d.wheel)
            .arg(&*unzipped),
    );
    let in_wheel = std::fs::read(unzipped.join("llmpool/libllmpool.so")).expect("the wheel's .so");
    assert!(in_wheel == shipped, "the wheel ships another .so");

    let auditwheel = std::env::var_os("AUDITWHEEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/dist/venv/bin/auditwheel"));
    if !auditwheel.exists() {
        SKIP.skip(&format!(
            "auditwheel part: no {} (scripts/dist.sh installs it; or set AUDITWHEEL)",
            auditwheel.display()
        ));
        return;
    }
    let shown = check(
        "auditwheel show",
        Command::new(&auditwheel).arg("show").arg(&d.wheel),
    );
    let shown = shown.split_whitespace().collect::<Vec<_>>().join(" ");
    println!("{shown}");
    assert!(
        shown.contains("\"manylinux_2_17_x86_64\""),
        "auditwheel does not accept the wheel as manylinux2014: {shown}"
    );
}

/// A new venv in a fresh directory: the directory and its python's path.
fn venv(what: &str) -> Option<(Tmp, PathBuf)> {
    let python = support::tool("PYTHON", "python3");
    let tmp = Tmp::new(what);
    let dir = tmp.join("venv");
    let made = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        SKIP.skip(&format!(
            "`{python} -m venv` failed (Debian: apt-get install python3-venv)"
        ));
        return None;
    }
    Some((tmp, dir.join("bin/python")))
}

/// pip-installs `wheel` (no index: it has no dependencies) into the venv.
fn pip_install(python: &Path, wheel: &Path) {
    check(
        "pip install",
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--no-index",
                "--disable-pip-version-check",
                "-q",
            ])
            .arg(wheel),
    );
}

const PY_HELLO: &str = r#"
import asyncio, importlib.metadata, os, sys
import llmpool

here = os.path.dirname(llmpool.__file__)
assert "site-packages" in here, here
lib = llmpool.load_library()
print("lib:", lib._name)
print("version:", llmpool.version(), importlib.metadata.version("llmpool"))
req = {"model": "test-model", "messages": [{"role": "user", "content": "hello from a wheel"}]}
with llmpool.Client({"base_url": sys.argv[1], "max_retries": 1}) as c:
    print("chat:", c.chat(req).text)
    print("stream:", "".join(c.stream(req)))

async def main():
    async with llmpool.AsyncClient({"base_url": sys.argv[1]}) as a:
        r = await a.chat(req)
        print("async:", r.text)

asyncio.run(main())
"#;

/// Runs PY_HELLO with `python` from an empty directory against a server.
fn python_hello(python: &Path) -> String {
    let s = server();
    let cwd = Tmp::new("dist-py-run");
    std::fs::write(cwd.join("hello.py"), PY_HELLO).expect("write hello.py");
    let mut cmd = Command::new(python);
    without_gateway_settings(&mut cmd)
        .arg("hello.py")
        .arg(&s.base_url)
        .current_dir(&*cwd)
        .env_remove("LLMPOOL_LIB")
        .env_remove("PYTHONPATH")
        .env_remove("LD_LIBRARY_PATH");
    let out = check("python hello.py (installed package)", &mut cmd);
    print!("{out}");
    for want in [
        "chat: Echo: hello from a wheel\n",
        "stream: Echo: hello from a wheel\n",
        "async: Echo: hello from a wheel\n",
        &format!("version: {VERSION} {VERSION}\n"),
    ] {
        assert!(out.contains(want), "output lacks {want:?}:\n{out}");
    }
    let lib_line = out
        .lines()
        .find(|l| l.starts_with("lib: "))
        .expect("lib line");
    assert!(
        lib_line.contains("site-packages/llmpool/libllmpool.so"),
        "not the bundled library: {lib_line}"
    );
    out
}

#[test]
fn wheel_installs_in_a_fresh_venv_and_calls_the_test_server() {
    let Some(d) = dist() else { return };
    let Some((_venv, python)) = venv("dist-wheel-venv") else {
        return;
    };
    pip_install(&python, &d.wheel);
    python_hello(&python);
}

#[test]
fn sdist_builds_from_source_with_cargo() {
    let Some(d) = dist() else { return };
    let tools = root().join("target/dist/venv/bin/python");
    if !tools.exists() {
        SKIP.skip(&format!(
            "sdist build: no {} with setuptools (scripts/dist.sh makes it)",
            tools.display()
        ));
        return;
    }
    let out_dir = Tmp::new("dist-sdist-wheel");
    let mut cmd = Command::new(&tools);
    cmd.args([
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "-w",
    ])
    .arg(&*out_dir)
    .arg(&d.sdist)
    // Its own target dir, kept between runs: only the first build is slow.
    .env("CARGO_TARGET_DIR", root().join("target/dist/sdist"))
    .env_remove("LLMPOOL_PREBUILT_LIB")
    .env_remove("LLMPOOL_WHEEL_PLAT");
    support::cargo_env_removed(&mut cmd);
    check("pip wheel <sdist> (cargo build --release)", &mut cmd);
    let wheel = std::fs::read_dir(&*out_dir)
        .expect("read the wheel dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("pip wheel wrote a wheel");
    println!("built {}", wheel.display());
    let Some((_venv, python)) = venv("dist-sdist-venv") else {
        return;
    };
    pip_install(&python, &wheel);
    python_hello(&python);
}

#[test]
fn npm_tarballs_install_in_an_empty_dir_for_require_and_import() {
    let Some(d) = dist() else { return };
    let node = support::tool("NODE", "node");
    let npm = support::tool("NPM", "npm");
    if output_of(Command::new(&node).arg("--version")).is_none()
        || output_of(Command::new(&npm).arg("--version")).is_none()
    {
        SKIP.skip("npm part: no node/npm (Debian: apt-get install nodejs npm)");
        return;
    }
    let app = Tmp::new("dist-npm-app");
    std::fs::write(
        app.join("package.json"),
        "{\"name\": \"hello\", \"version\": \"1.0.0\", \"private\": true}\n",
    )
    .expect("write package.json");
    check(
        "npm install <tarballs>",
        Command::new(&npm)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--prefer-offline",
                "--loglevel=error",
            ])
            .arg(&d.npm_main)
            .arg(&d.npm_platform)
            .current_dir(&*app),
    );
    let manifest = std::fs::read_to_string(app.join("node_modules/llmpool/package.json"))
        .expect("llmpool installed");
    assert!(
        manifest.contains(&format!("\"version\": \"{VERSION}\"")),
        "{manifest}"
    );
    assert!(
        manifest.contains("\"optionalDependencies\"")
            && manifest.contains("\"@llmpool/linux-x64-gnu\""),
        "{manifest}"
    );
    assert!(app.join("node_modules/llmpool/index.d.ts").exists());

    std::fs::write(
        app.join("hello.cjs"),
        r#"const { Client, LIB_PATH, version } = require('llmpool');
(async () => {
  console.log('lib:', LIB_PATH);
  console.log('version:', version());
  const c = new Client({ base_url: process.argv[2], max_retries: 1 });
  const req = { model: 'test-model', messages: [{ role: 'user', content: 'hello from npm' }] };
  console.log('chat:', (await c.chat(req)).text);
  let s = '';
  for await (const { delta } of c.stream(req)) s += delta;
  console.log('stream:', s);
  await c.close();
})().catch((e) => { console.error(e); process.exit(1); });
"#,
    )
    .expect("write hello.cjs");
    std::fs::write(
        app.join("hello.mjs"),
        r#"import llmpool, { Client, Code } from 'llmpool';
const c = new Client({ base_url: process.argv[2] });
const r = await c.chat({ model: 'test-model', messages: [{ role: 'user', content: 'hello from esm' }] });
console.log('esm:', r.text, r.code === Code.OK, typeof llmpool.version);
await c.close();
"#,
    )
    .expect("write hello.mjs");
    let s = server();
    let run = |script: &str| {
        let mut cmd = Command::new(&node);
        without_gateway_settings(&mut cmd)
            .arg(script)
            .arg(&s.base_url)
            .current_dir(&*app)
            .env_remove("LLMPOOL_LIB")
            .env_remove("NODE_PATH")
            .env_remove("NODE_OPTIONS");
        let out = check(&format!("node {script}"), &mut cmd);
        print!("{out}");
        out
    };
    let out = run("hello.cjs");
    for want in [
        "chat: Echo: hello from npm\n",
        "stream: Echo: hello from npm\n",
        &format!("version: {VERSION}\n"),
        "node_modules/@llmpool/linux-x64-gnu/libllmpool.so\n",
    ] {
        assert!(out.contains(want), "output lacks {want:?}:\n{out}");
    }
    let out = run("hello.mjs");
    assert!(
        out.contains("esm: Echo: hello from esm true function"),
        "{out}"
    );

    // The declarations type-check a TypeScript program using them (tsc
    // from the npm cache or registry, as a TypeScript user gets it).
    check(
        "npm install typescript @types/node",
        Command::new(&npm)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--prefer-offline",
                "--loglevel=error",
                "--save-dev",
                "typescript@5",
                "@types/node@20",
            ])
            .current_dir(&*app),
    );
    std::fs::write(
        app.join("hello.ts"),
        r#"import llmpool, { Client, Code, LLMPoolError, Response } from 'llmpool';
export async function hello(url: string): Promise<string> {
  const c = new Client({ base_url: url });
  const r: Response = await c.chat({ model: 'm', messages: [] });
  let text: string = r.ok && r.code === Code.OK ? r.text : '';
  for await (const { delta } of c.stream({ model: 'm', messages: [] })) text += delta;
  const opened: number = await c.warm(1, { signal: AbortSignal.timeout(100) });
  const e = r.toError();
  if (e instanceof LLMPoolError) text += e.codeName + e.status;
  await c.close();
  return `${text} ${opened} ${llmpool.version()}`;
}
"#,
    )
    .expect("write hello.ts");
    check(
        "tsc --noEmit hello.ts",
        Command::new(&node)
            .arg(app.join("node_modules/typescript/bin/tsc"))
            .args([
                "--noEmit",
                "--strict",
                "--target",
                "es2022",
                "--module",
                "nodenext",
                "--moduleResolution",
                "nodenext",
                "hello.ts",
            ])
            .current_dir(&*app),
    );
}

#[test]
fn c_tarball_builds_with_pkg_config_and_cmake() {
    let Some(d) = dist() else { return };
    let Some(cc) = c_compiler() else {
        SKIP.skip("C part: no C compiler (`cc --version` failed)");
        return;
    };
    if !runs("pkg-config") {
        SKIP.skip("C part: no pkg-config (apt-get install pkg-config)");
        return;
    }
    let Some(cmake) = SKIP.tool("CMAKE", "cmake", "cmake") else {
        return;
    };
    let (_unpacked, tree) = c_tree(&d);
    let s = server();
    let app_c = root().join("examples/legacy/legacy.c");
    let run = |exe: &Path, lib_path: Option<&Path>| {
        let mut cmd = Command::new(exe);
        without_gateway_settings(&mut cmd)
            .env_remove("LD_LIBRARY_PATH")
            .env("LLMPOOL_BASE_URL", &s.base_url)
            .env("LLMPOOL_MODEL", "test-model");
        if let Some(p) = lib_path {
            cmd.env("LD_LIBRARY_PATH", p);
        }
        let out = check(&exe.display().to_string(), &mut cmd);
        for want in [
            "chat: Echo: Hello from a legacy C program\n",
            "stream: Echo: Hello from a legacy C program\n",
        ] {
            assert!(
                out.contains(want),
                "{}: lacks {want:?}:\n{out}",
                exe.display()
            );
        }
    };
    let pc = |args: &[&str]| -> Vec<String> {
        check(
            "pkg-config",
            Command::new("pkg-config")
                .args(args)
                .env("PKG_CONFIG_PATH", tree.join("lib/pkgconfig")),
        )
        .split_whitespace()
        .map(str::to_string)
        .collect()
    };
    let work = Tmp::new("dist-c-app");
    for (name, module, lib_path) in [
        ("app-shared", "llmpool", Some(tree.join("lib"))),
        ("app-static", "llmpool-static", None),
    ] {
        let exe = work.join(name);
        let mut cmd = Command::new(&cc);
        cmd.arg(&app_c)
            .args(pc(&["--cflags", "--libs", module]))
            .arg("-o")
            .arg(&exe);
        check(
            &format!("cc app.c $(pkg-config --cflags --libs {module})"),
            &mut cmd,
        );
        run(&exe, lib_path.as_deref());
    }

    let src = work.join("cmake-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::copy(&app_c, src.join("app.c")).expect("copy app.c");
    std::fs::write(
        src.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.10)\nproject(app C)\n\
         find_package(llmpool REQUIRED)\n\
         add_executable(app app.c)\n\
         target_link_libraries(app PRIVATE llmpool::llmpool)\n\
         add_executable(app_static app.c)\n\
         target_link_libraries(app_static PRIVATE llmpool::llmpool_static)\n",
    )
    .expect("write CMakeLists.txt");
    let build = work.join("cmake-build");
    check(
        "cmake configure",
        Command::new(&cmake)
            .arg("-S")
            .arg(&src)
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", tree.display()))
            .env("CC", &cc),
    );
    check(
        "cmake --build",
        Command::new(&cmake).arg("--build").arg(&build),
    );
    run(&build.join("app"), None);
    run(&build.join("app_static"), None);
}
