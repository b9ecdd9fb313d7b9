//! The layering check: every `crate::…` path in `src/` (outside `src/tests/`) must point at
//! a module that the README's layer table lets its own top-level module import.
//!
//! The README's "Layers" table is the only source of the rules; this test parses it. A
//! path counts wherever it appears: `use` lines, grouped `use crate::{a, b}`, inline
//! paths in code (`crate::x::f()`), `super::` chains that climb to the crate root, and
//! `crate::x` written in comments (doc links are dependencies too). String literals do not
//! count. `crate::tests` (compiled only for tests) may be used by any module's tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use scan::{crate_paths, module_path};

mod scan;

/// Top-level module → the top-level modules it may import.
type Table = BTreeMap<String, BTreeSet<String>>;

/// One import that goes against the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` imports `{}`, which its row of the README layer table does not allow",
            self.file, self.line, self.from, self.to
        )
    }
}

/// The table under the README heading `### Layers`: rows `` | `module` | `a`, `b` | ``
/// (`—` for none).
fn parse_table(readme: &str) -> Table {
    let section = readme
        .split("\n### Layers")
        .nth(1)
        .expect("README has a `### Layers` section");
    let mut table = Table::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [module, imports] = cells[..] else {
            panic!("layer table row without two cells: {line}");
        };
        let names = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let Some(module) = names(module).into_iter().next() else {
            continue; // the header and its rule
        };
        table.insert(module, names(imports).into_iter().collect());
    }
    assert!(!table.is_empty(), "the README layer table has no rows");
    table
}

/// The imports of one file (`rel` relative to `src/`) that the table does not allow.
fn check_source(rel: &Path, src: &str, table: &Table) -> Vec<Violation> {
    let from = module_path(rel)[0].clone();
    let allowed = table.get(&from);
    crate_paths(rel, src)
        .into_iter()
        .filter(|(_, to)| {
            to != &from && to != "tests" && !allowed.is_some_and(|a| a.contains(to.as_str()))
        })
        .map(|(line, to)| Violation {
            file: format!("src/{}", rel.display()),
            line,
            from: from.clone(),
            to,
        })
        .collect()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `src/lib.rs` declares.
fn crate_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l
                .trim_start()
                .strip_prefix("pub ")
                .unwrap_or(l.trim_start());
            let name = l.strip_prefix("mod ")?.trim_end_matches(';').trim();
            Some(name.to_string())
        })
        .collect()
}

/// Fails unless `table` has a row for exactly the crate's modules, names only modules,
/// and has no cycle.
fn check_table(table: &Table, modules: &BTreeSet<String>) {
    let rows: BTreeSet<String> = table.keys().cloned().collect();
    let expected: BTreeSet<String> = modules.iter().filter(|m| *m != "tests").cloned().collect();
    assert_eq!(
        rows, expected,
        "the layer table's rows are not the crate's modules"
    );
    for (module, imports) in table {
        for i in imports {
            assert!(
                rows.contains(i),
                "`{module}` may import `{i}`, which has no row"
            );
        }
    }
    // No cycle: repeatedly drop the modules that import nothing left.
    let mut left = table.clone();
    while !left.is_empty() {
        let done: Vec<String> = left
            .iter()
            .filter(|(_, imports)| imports.iter().all(|i| !left.contains_key(i)))
            .map(|(m, _)| m.clone())
            .collect();
        assert!(
            !done.is_empty(),
            "the layer table has a cycle among {:?}",
            left.keys()
        );
        for m in done {
            left.remove(&m);
        }
    }
}

#[test]
fn imports_follow_the_readme_layer_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = parse_table(&std::fs::read_to_string(root.join("README.md")).unwrap());
    let src = root.join("src");
    check_table(
        &table,
        &crate_modules(&std::fs::read_to_string(src.join("lib.rs")).unwrap()),
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        if rel.starts_with("tests") || rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
            continue;
        }
        checked += 1;
        violations.extend(check_source(
            rel,
            &std::fs::read_to_string(path).unwrap(),
            &table,
        ));
    }
    assert!(checked > 50, "only {checked} files checked");
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "imports against the layer table (README, \"Layers\"):\n{}",
        report.join("\n")
    );
}

/// The rows of the README's code map: the first cell, and the whole row.
fn code_map(readme: &str) -> Vec<(String, String)> {
    let section = readme
        .split("\n### Code map")
        .nth(1)
        .expect("README has a `### Code map` section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let first = l.trim_start_matches('|').split('|').next().unwrap_or("");
            (first.to_string(), l.to_string())
        })
        .collect()
}

#[test]
fn the_code_map_names_every_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = code_map(&std::fs::read_to_string(root.join("README.md")).unwrap());
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut missing = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let parts = module_path(rel);
        if parts[0] == "tests" {
            continue;
        }
        // A file `src/x.rs` is named in the first cell of a row; a file under `src/x/`
        // by its name (or its path below `src/x/`) in the row of `src/x.rs`.
        let top = format!("`src/{}.rs`", parts[0]);
        let Some((_, row)) = rows.iter().find(|(first, _)| first.contains(&top)) else {
            missing.push(format!("src/{} (no row names {top})", rel.display()));
            continue;
        };
        let name = rel.file_name().unwrap().to_string_lossy();
        if parts.len() > 1
            && !row.contains(&format!("`{name}`"))
            && !row.contains(&format!("/{name}`"))
        {
            missing.push(format!("src/{}", rel.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "files the README code map does not name:\n{}",
        missing.join("\n")
    );
}

/// The checker on synthetic source.
mod checker {
    use super::*;

    fn table() -> Table {
        parse_table(
            "intro\n### Layers\n\ntext\n\n| module | may import |\n|---|---|\n\
             | `http` | `domain`, `error` |\n| `domain` | `store`, `error` |\n\
             | `store` | `error` |\n| `error` | — |\n\nafter\n",
        )
    }

    fn imports(file: &str, src: &str) -> Vec<(usize, String)> {
        check_source(Path::new(file), src, &table())
            .into_iter()
            .map(|v| (v.line, v.to))
            .collect()
    }

    #[test]
    fn the_table_parses() {
        let t = table();
        assert_eq!(t.len(), 4);
        assert_eq!(t["http"], ["domain", "error"].map(String::from).into());
        assert!(t["error"].is_empty());
    }

    #[test]
    fn a_forbidden_import_is_reported() {
        let src = "//! Handlers.\nuse crate::domain::Services;\nuse crate::store::Store;\n";
        assert_eq!(imports("http/api.rs", src), [(3, "store".to_string())]);
        let v = check_source(Path::new("http/api.rs"), src, &table());
        assert_eq!(
            v[0].to_string(),
            "src/http/api.rs:3: `http` imports `store`, which its row of the README layer table does not allow"
        );
    }

    #[test]
    fn every_kind_of_path_counts() {
        let src = r#"
use crate::{error::Result, store};
use crate::{
    domain::{self, Services},
    cluster::Redis,
};
fn f() { let _ = crate::cluster::ping(); }
/// See [`crate::ws::Hub`].
fn g() {}
use super::super::super::store::Store;
"#;
        assert_eq!(
            imports("http/api/x.rs", src),
            [
                (2, "store".to_string()),
                (5, "cluster".to_string()),
                (7, "cluster".to_string()),
                (10, "store".to_string()),
                (8, "ws".to_string()),
            ]
        );
    }

    #[test]
    fn strings_own_modules_and_inner_supers_do_not_count() {
        let src = r##"
use super::Ctx;
use crate::http::router;
pub(in crate::http) fn f() -> &'static str { "crate::store::x" }
const R: &str = r#"crate::cluster"#;
const C: char = '{';
#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::harness;
    fn h<'a>(s: &'a str) -> &'a str { s }
}
"##;
        assert_eq!(imports("http/api.rs", src), []);
        assert_eq!(
            imports("http/api.rs", "use super::super::*;\n"),
            [(1, "*".to_string())]
        );
    }

    #[test]
    fn a_cycle_in_the_table_is_refused() {
        let mut t = table();
        t.get_mut("store").unwrap().insert("http".to_string());
        let modules = ["http", "domain", "store", "error"]
            .map(String::from)
            .into();
        let caught = std::panic::catch_unwind(|| check_table(&t, &modules));
        assert!(caught.is_err());
        check_table(&table(), &modules);
    }
}
