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
