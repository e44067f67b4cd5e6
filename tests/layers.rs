//! The module map, checked: every `crate::` path in `src/` points to a module in a lower
//! layer, so no two modules depend on each other and a change belongs in one place.
//! A new module must be given a layer here (the test names it if not).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    // The names of things: typed ids.
    &["ids"],
    // Foundations: no domain knowledge.
    &["clock", "config", "telemetry", "client", "status"],
    &["store"],
    &["error", "keyring"],
    &["catalog", "passkeys", "audit", "backup", "eid"],
    // What every request works with.
    &["context"],
    &["sessions", "ratelimit"],
    // The domain, nouns beneath the nouns that use them.
    &[
        "sealing",
        "agencies",
        "activity",
        "transparency",
        "webhooks",
    ],
    &["citizens"],
    &["documents", "auditors", "delegations"],
    &["grants"],
    &["requests", "emergencies"],
    // Edges: HTTP and pages, the process, the commands.
    &["http"],
    &["server"],
    &["witness"],
    &["demo"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::name` paths in a file (macros such as `crate::on_engine!` are not modules).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let macro_call = rest[name.len()..].starts_with('!');
        if !name.is_empty() && !macro_call {
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_dependency_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Macros exported at the crate root (`use crate::on_engine;`) are not modules.
    let mut macros = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("macro_rules! ") {
                macros.insert(
                    rest.trim_end_matches(|c: char| c == '{' || c.is_whitespace())
                        .to_owned(),
                );
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = top_module(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read a source file");
        for used in uses(&text) {
            if used != module && !macros.contains(&used) {
                edges.entry(module.clone()).or_default().insert(used);
            }
        }
        edges.entry(module).or_default();
    }
    let mut faults = Vec::new();
    for (module, used) in &edges {
        let Some(from) = layer_of(module) else {
            faults.push(format!("`{module}` has no layer in tests/layers.rs"));
            continue;
        };
        for target in used {
            match layer_of(target) {
                None => faults.push(format!("`{target}` (used by `{module}`) has no layer")),
                Some(to) if to >= from => faults.push(format!(
                    "`{module}` (layer {from}) uses `{target}` (layer {to}): arrows must point down"
                )),
                Some(_) => {}
            }
        }
    }
    let map: Vec<String> = edges
        .iter()
        .map(|(m, u)| {
            format!(
                "{m} -> {}",
                u.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        faults.is_empty(),
        "{}\n\nthe map as it is:\n{}",
        faults.join("\n"),
        map.join("\n")
    );
}

#[test]
fn the_check_sees_paths_and_skips_macros() {
    let found = uses("use crate::store::Store; crate::on_engine!(x); crate::audit::record(y)");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec!["audit".to_owned(), "store".to_owned()]
    );
}
