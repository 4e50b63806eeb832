//! The bindings' copies of the C enums, checked against `include/llmpool.h`:
//! every `llmpool_code` (`LLMPOOL_*`), `llmpool_log_level`
//! (`LLMPOOL_LOG_*`), `llmpool_api` (`LLMPOOL_API_*`) and
//! `llmpool_delta_kind` (`LLMPOOL_DELTA_*`) value must appear, with the same number and name, in
//! the Node table (`bindings/node/llmpool.js` and its `index.d.ts`), the
//! Python constants (`bindings/python/llmpool/__init__.py` and its `.pyi`
//! stub) and the Go constants (`bindings/go/llmpool.go`), and no binding may
//! have a value the header lacks. A new code added to the C API without the
//! bindings fails here. (The C++ wrapper uses the C enum itself.)
//!
//! Plain text parsing: needs no toolchain.

use std::collections::BTreeMap;
use std::path::PathBuf;

type Table = BTreeMap<String, i64>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// "POOL_EXHAUSTED", "PoolExhausted", "poolExhausted" -> "poolexhausted".
fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The `NAME = value` entries of the C enum `enum_name` in the header,
/// names without `strip`, normalized; at least `min` of them (a parse that
/// finds fewer went wrong).
fn header_enum(header: &str, enum_name: &str, strip: &str, min: usize) -> Table {
    let start = header
        .find(&format!("enum {enum_name}"))
        .unwrap_or_else(|| panic!("no enum {enum_name} in include/llmpool.h"));
    let body = &header[start..];
    let body = &body[body.find('{').expect("enum body") + 1..body.find('}').expect("enum end")];
    let mut table = Table::new();
    for line in body.lines() {
        let line = line.trim();
        let Some((name, value)) = line.trim_end_matches(',').split_once('=') else {
            continue;
        };
        let name = name.trim();
        if !name.starts_with("LLMPOOL_") {
            continue;
        }
        let value: i64 = value.trim().parse().unwrap_or_else(|_| panic!("{line}"));
        let short = name.strip_prefix(strip).unwrap_or_else(|| panic!("{name}"));
        table.insert(norm(short), value);
    }
    assert!(
        table.len() >= min,
        "too few values in enum {enum_name}: {table:?}"
    );
    table
}

/// `NAME<sep>value` lines between the first line containing `from` and the
/// next line containing `to`, names with `prefix` removed (lines without
/// it skipped), normalized.
fn table_between(text: &str, from: &str, to: &str, sep: char, prefix: &str) -> Table {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} found"));
    let rest = &text[start + from.len()..];
    let end = rest.find(to).unwrap_or(rest.len());
    let mut table = Table::new();
    for line in rest[..end].lines() {
        let line = line.trim().trim_end_matches([',', ';']);
        let Some((name, value)) = line.split_once(sep) else {
            continue;
        };
        let name = name.split_whitespace().next().unwrap_or("");
        let Some(short) = name.strip_prefix(prefix) else {
            continue;
        };
        // Go: `LogError LogLevel = 1` -> the value after the last word;
        // `APIChat API = 0 // POST ...` -> the same, comment dropped.
        let value = value.split("//").next().unwrap_or("");
        let value = value.split_whitespace().last().unwrap_or("");
        if let Ok(v) = value.parse::<i64>() {
            table.insert(norm(short), v);
        }
    }
    table
}

fn assert_same(what: &str, header: &Table, binding: &Table) {
    let missing: Vec<_> = header
        .iter()
        .filter(|(k, v)| binding.get(*k) != Some(v))
        .map(|(k, v)| format!("{k} = {v} (binding has {:?})", binding.get(k)))
        .collect();
    let extra: Vec<_> = binding
        .keys()
        .filter(|k| !header.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differs from include/llmpool.h:\n  missing or wrong: {missing:?}\n  not in the header: {extra:?}"
    );
}

/// Python's `PREFIX_A, PREFIX_B = 0, 1` line (names without `prefix`).
fn py_tuple_line(py: &str, prefix: &str) -> Table {
    let line = py
        .lines()
        .find(|l| l.starts_with(prefix) && l.split('=').next().is_some_and(|n| n.contains(',')))
        .unwrap_or_else(|| panic!("the {prefix}* line"));
    let (names, values) = line.split_once('=').expect("NAMES = values");
    names
        .split(',')
        .zip(values.split(','))
        .map(|(n, v)| {
            let n = n.trim().strip_prefix(prefix).expect("a prefixed name");
            (norm(n), v.trim().parse().expect("a number"))
        })
        .collect()
}

/// A one-line JS/TS table (`{ A: 0, B: 1 }` or `{ A: 0; B: 1 }`) after `from`.
fn one_line_table(text: &str, from: &str, to: &str) -> Table {
    table_between(
        &text.replace(", ", ",\n").replace("; ", ";\n"),
        from,
        to,
        ':',
        "",
    )
}

#[test]
fn stream_enums_match_the_header() {
    let header = read("include/llmpool.h");
    let apis = header_enum(&header, "llmpool_api", "LLMPOOL_API_", 3);
    let kinds = header_enum(&header, "llmpool_delta_kind", "LLMPOOL_DELTA_", 4);

    let js = read("bindings/node/llmpool.js");
    let dts = read("bindings/node/index.d.ts");
    for (name, table) in [("Api", &apis), ("DeltaKind", &kinds)] {
        assert_same(
            &format!("bindings/node/llmpool.js {name}"),
            table,
            &one_line_table(&js, &format!("const {name} = Object.freeze({{"), "});"),
        );
        assert_same(
            &format!("bindings/node/index.d.ts {name}"),
            table,
            &one_line_table(&dts, &format!("const {name}: Readonly<{{"), "}>"),
        );
    }

    let py = read("bindings/python/llmpool/__init__.py");
    let pyi = read("bindings/python/llmpool/__init__.pyi");
    for (prefix, table) in [("API_", &apis), ("DELTA_", &kinds)] {
        assert_same(
            &format!("bindings/python {prefix}*"),
            table,
            &py_tuple_line(&py, prefix),
        );
        for name in table.keys() {
            let declared = pyi.lines().any(|l| {
                l.strip_prefix(prefix)
                    .and_then(|l| l.strip_suffix(": int"))
                    .is_some_and(|n| norm(n) == *name)
            });
            assert!(declared, "llmpool/__init__.pyi lacks {prefix}{name}");
        }
    }

    let go = read("bindings/go/agents.go");
    assert_same(
        "bindings/go/agents.go API*",
        &apis,
        &table_between(&go, "// The streaming APIs", "\n)", '=', "API"),
    );
    assert_same(
        "bindings/go/agents.go Delta*",
        &kinds,
        &table_between(&go, "// Delta kinds", "\n)", '=', "Delta"),
    );
}

#[test]
fn binding_code_tables_match_the_header() {
    let header = read("include/llmpool.h");
    let codes = header_enum(&header, "llmpool_code", "LLMPOOL_", 5);
    let levels = header_enum(&header, "llmpool_log_level", "LLMPOOL_LOG_", 5);
    assert_eq!(codes.get("ok"), Some(&0), "{codes:?}");

    let js = read("bindings/node/llmpool.js");
    assert_same(
        "bindings/node/llmpool.js Code",
        &codes,
        &table_between(&js, "const Code = Object.freeze({", "});", ':', ""),
    );
    assert_same(
        "bindings/node/llmpool.js LogLevel",
        &levels,
        &table_between(
            &js.replace(", ", ",\n"),
            "const LogLevel = Object.freeze({",
            "});",
            ':',
            "",
        ),
    );
    let dts = read("bindings/node/index.d.ts");
    assert_same(
        "bindings/node/index.d.ts Code",
        &codes,
        &table_between(&dts, "const Code: Readonly<{", "}>", ':', ""),
    );
    assert_same(
        "bindings/node/index.d.ts LogLevel",
        &levels,
        &table_between(
            &dts.replace("; ", ";\n"),
            "const LogLevel: Readonly<{",
            "}>",
            ':',
            "",
        ),
    );

    let py = read("bindings/python/llmpool/__init__.py");
    assert_same(
        "bindings/python/llmpool/__init__.py result codes",
        &codes,
        &table_between(&py, "# Result codes", "\n\n\n", '=', ""),
    );
    // LOG_ERROR, LOG_WARN, ... = 1, 2, ...
    assert_same(
        "bindings/python LOG_*",
        &levels,
        &py_tuple_line(&py, "LOG_"),
    );
    let pyi = read("bindings/python/llmpool/__init__.pyi");
    for name in codes.keys() {
        let declared = pyi
            .lines()
            .any(|l| l.ends_with(": int") && norm(l.trim_end_matches(": int")) == *name);
        assert!(declared, "llmpool/__init__.pyi lacks the code {name}");
    }

    let go = read("bindings/go/llmpool.go");
    assert_same(
        "bindings/go/llmpool.go Code*",
        &codes,
        &table_between(&go, "// Result codes", "\n)", '=', "Code"),
    );
    assert_same(
        "bindings/go/llmpool.go Log*",
        &levels,
        &table_between(&go, "// Log levels, most severe first", "\n)", '=', "Log"),
    );
}

#[test]
fn cpp_wrapper_uses_the_c_enum() {
    // The C++ wrapper has no table of its own: it must use llmpool_code.
    let hpp = read("include/llmpool.hpp");
    assert!(
        hpp.contains("#include \"llmpool.h\"") || hpp.contains("#include <llmpool.h>"),
        "llmpool.hpp includes llmpool.h"
    );
    assert!(
        !hpp.contains("= 99") && !hpp.contains("PANIC ="),
        "llmpool.hpp has its own copy of the codes: compare it with the header here"
    );
}
