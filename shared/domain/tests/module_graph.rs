//! The domain's modules form layers: no module reaches, directly or through others, back to
//! itself. An import circle (the lead knowing its CRM record, which knows the lead) makes every
//! change ripple both ways; this test names the circle when one appears.
//!
//! A module's dependencies are the `crate::<module>` paths in its code (comments and the
//! `#[cfg(test)]` part at the end of a file do not count; test code may use anything). A name
//! the crate root re-exports (`crate::Lead`) counts as the module it comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The code of a file without comments and without its trailing test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("//") {
        // `//` inside a string (a URL) is not a comment; strings with `//` rarely hold paths.
        let line_start = rest[..i].rfind('\n').map_or(0, |n| n + 1);
        let before = &rest[line_start..i];
        let in_string = before.matches('"').count() % 2 == 1;
        let end = rest[i..].find('\n').map_or(rest.len(), |n| i + n);
        if in_string {
            out.push_str(&rest[..end]);
        } else {
            out.push_str(&rest[..i]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every `crate::x` in `code`, and the names inside `crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let after = &code[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name = ident_at(item.trim());
                if !name.is_empty() {
                    out.push(name.to_owned());
                }
            }
        } else {
            out.push(ident_at(after).to_owned());
        }
    }
    out
}

/// Name → module for the crate root's `pub use module::{A, B}` re-exports.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in code_of(lib).split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            out.insert(name.to_owned(), module.trim().to_owned());
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexports = root_reexports(&lib);
    let modules: BTreeSet<String> = code_of(&lib)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    let mut g = Graph::new();
    for module in &modules {
        let dir = src.join(module);
        let files: Vec<_> = if dir.is_dir() {
            std::fs::read_dir(&dir)
                .expect("module dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                // The module's own test file is test code.
                .filter(|p| p.file_stem().is_some_and(|s| s != "tests"))
                .collect()
        } else {
            vec![src.join(format!("{module}.rs"))]
        };
        let deps = g.entry(module.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source file");
            for name in crate_paths(&code_of(&text)) {
                let target = if modules.contains(&name) {
                    Some(name)
                } else {
                    reexports.get(&name).cloned()
                };
                if let Some(t) = target.filter(|t| t != module) {
                    deps.insert(t);
                }
            }
        }
    }
    g
}

/// A circle of modules, if the graph has one (`a → b → a`).
fn find_circle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut circle = path[i..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in g.get(node).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn the_domain_modules_have_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(
        g.len() > 10 && g["lead"].contains("stage") && g["routing"].contains("lead"),
        "the graph was read: {g:?}"
    );
    if let Some(circle) = find_circle(&g) {
        panic!(
            "the domain modules import each other in a circle: {}",
            circle.join(" → ")
        );
    }
}

#[test]
fn the_reader_sees_paths_groups_and_reexports_but_not_comments_or_tests() {
    let code = code_of(
        "use crate::lead::Lead; // crate::crm in a comment\nuse crate::{stage::Stage, Tag};\nlet u = \"https://x//y\"; crate::sla::deadline();\n#[cfg(test)]\nmod tests { use crate::ports; }",
    );
    assert_eq!(crate_paths(&code), ["lead", "stage", "Tag", "sla"]);
    let re = root_reexports("pub use tag::Tag;\npub use lead::{Lead, LeadId};\n");
    assert_eq!(re["Tag"], "tag");
    assert_eq!(re["LeadId"], "lead");
}

#[test]
fn a_circle_is_found_and_named() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let circle = find_circle(&edges(&[
        ("lead", "crm"),
        ("crm", "stage"),
        ("crm", "lead"),
    ]));
    assert_eq!(circle.unwrap(), ["crm", "lead", "crm"]);
    assert_eq!(
        find_circle(&edges(&[
            ("crm", "lead"),
            ("lead", "stage"),
            ("crm", "stage")
        ])),
        None
    );
}
