//! The layers stay true: every `crate::` path in `src/` (in `use` lines
//! and inline, tests included) points down the layer order below or
//! sideways within a layer, and no modules import each other in a circle.
//!
//! The same order, with what each layer owns, is in docs/architecture.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may use modules of its own layer or lower ones.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "error", "sync", "env", "secret", "civil", "headers", "log", "body", "sse", "request",
            "assemble",
        ],
    ),
    ("runtime", &["exec", "response", "net", "store"]),
    ("domains", &["policy", "cost", "metrics", "prometheus"]),
    ("options", &["options"]),
    ("client", &["client"]),
    ("boundary", &["ffi"]),
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&top))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/net/proxy.rs` -> `net::proxy`, `src/client/mod.rs` -> `client`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// Every `crate::a::b...` path in the code (comments skipped), as its
/// segments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let segs: Vec<String> = rest
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty() && s.chars().next().unwrap().is_lowercase())
                .collect();
            if !segs.is_empty() {
                out.push(segs);
            }
        }
    }
    out
}

/// The longest known module a path names (`net::proxy::Proxies` ->
/// `net::proxy`).
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

struct Graph {
    /// module -> modules it uses, with one file line as evidence.
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(&src, f);
        if from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for p in crate_paths(&text) {
            let Some(to) = resolve(&p, &modules) else {
                continue;
            };
            if to != from {
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("{}: crate::{}", f.display(), p.join("::")));
            }
        }
    }
    Graph { edges }
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap()
}

#[test]
fn every_module_has_a_layer() {
    let g = graph();
    let mut missing = BTreeSet::new();
    for (from, tos) in &g.edges {
        for m in std::iter::once(from).chain(tos.keys()) {
            if layer_of(top(m)).is_none() {
                missing.insert(top(m).to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a layer (add them to LAYERS here and to docs/architecture.md): {missing:?}"
    );
}

#[test]
fn no_import_runs_up_a_layer() {
    let g = graph();
    let mut up = Vec::new();
    for (from, tos) in &g.edges {
        for (to, at) in tos {
            let (Some(lf), Some(lt)) = (layer_of(top(from)), layer_of(top(to))) else {
                continue;
            };
            if lt > lf {
                up.push(format!(
                    "{from} ({}) -> {to} ({}) at {at}",
                    LAYERS[lf].0, LAYERS[lt].0
                ));
            }
        }
    }
    assert!(
        up.is_empty(),
        "imports that run up a layer:\n{}",
        up.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let g = graph();
    // Module level (a file) and top level (a folder) both: a circle
    // between two folders through different files is a circle too.
    let tops: BTreeMap<String, BTreeMap<String, String>> =
        g.edges.iter().fold(BTreeMap::new(), |mut acc, (f, tos)| {
            for (t, at) in tos {
                if top(f) != top(t) {
                    acc.entry(top(f).to_string())
                        .or_default()
                        .entry(top(t).to_string())
                        .or_insert_with(|| at.clone());
                }
            }
            acc
        });
    for edges in [&g.edges, &tops] {
        if let Some(cycle) = find_cycle(edges) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], edges[&w[0]][&w[1]]))
                .collect();
            panic!("import circle:\n{}", steps.join("\n"));
        }
    }
}

fn find_cycle(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for next in edges.get(n).into_iter().flat_map(|t| t.keys()) {
            match state.get(next.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == next).unwrap();
                    let mut c = stack[at..].to_vec();
                    c.push(next.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n) {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_checker_sees_what_it_checks() {
    // Guards against a checker that passes because it reads nothing.
    let g = graph();
    assert!(
        g.edges["client"].contains_key("cost::spend"),
        "{:?}",
        g.edges["client"]
    );
    assert!(g.edges.contains_key("net::transport"));
    let paths = crate_paths("use crate::a::b::{C, d}; // crate::x\nlet y = $crate::z::w;");
    assert_eq!(paths, vec![vec!["a".to_string(), "b".to_string()]]);
    let mut e: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    e.entry("a".into())
        .or_default()
        .insert("b".into(), "x".into());
    assert!(find_cycle(&e).is_none());
    e.entry("b".into())
        .or_default()
        .insert("a".into(), "y".into());
    assert_eq!(find_cycle(&e).unwrap(), vec!["a", "b", "a"]);
}
