//! README.md starts with the two commands a newcomer runs; CI must run the
//! second one verbatim, and the first must name files that exist.

use std::path::PathBuf;

fn read(rel: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The first fenced block of the README, as command lines without comments.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```sh block first");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn readme_starts_with_two_commands_that_ci_and_the_tree_honour() {
    let cmds = readme_commands();
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    let script = cmds[0]
        .strip_prefix("bash ")
        .expect("first command runs a script");
    assert!(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(script)
            .is_file(),
        "{script} is missing"
    );
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == cmds[1]),
        ".ci/run must run the README's test command `{}` verbatim",
        cmds[1]
    );
}

/// The README's C example compiles cleanly against the generated header.
#[test]
fn readme_c_example_compiles() {
    let readme = read("README.md");
    let example = readme
        .split("## The C API in one example")
        .nth(1)
        .and_then(|rest| rest.split("```c\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has the C example");
    let dir = std::env::temp_dir().join(format!("llmpool-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("example.c");
    std::fs::write(&file, example).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include");
    let out = std::process::Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(&include)
        .arg(&file)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "the README's C example does not compile:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if std::env::var("LLMPOOL_REQUIRE_ALL").is_ok_and(|v| v == "1") => {
            panic!("LLMPOOL_REQUIRE_ALL=1 but {cc} cannot run: {e}")
        }
        Err(e) => {
            // Straight to stderr: libtest captures println!/eprintln!.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: README C example: {cc} cannot run: {e}"
            );
        }
    }
}
