//! The library's modules import only downward: every `crate::` path in every source file
//! (`use` lines, inline paths, and names re-exported through the crate root alike) must name a
//! module its layer may import. The layers are the code map in DESIGN.md; this test holds a
//! copy and checks that the two agree.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The code map, bottom to top: `(layer, module, modules it may import)`. Each entry may only
/// name modules of lower layers.
const LAYERS: &[(u32, &str, &[&str])] = &[
    (1, "outcome", &[]),
    (2, "error", &["outcome"]),
    (3, "timing", &["error"]),
    (3, "keys", &["error"]),
    (3, "token", &["error"]),
    (3, "retry", &["error"]),
    (3, "telemetry", &["error", "outcome"]),
    (4, "options", &["error", "retry", "timing"]),
    (5, "script", &["outcome"]),
    (6, "conn", &["error"]),
    (7, "backend", &["conn", "error", "script", "timing"]),
    (8, "quorum", &["backend", "error", "outcome", "script"]),
    (
        9,
        "lease",
        &["keys", "outcome", "script", "telemetry", "timing", "token"],
    ),
    (10, "subscribe", &["conn"]),
    (11, "renew", &["lease", "quorum", "telemetry", "timing"]),
    (
        12,
        "engine",
        &[
            "error",
            "keys",
            "lease",
            "outcome",
            "quorum",
            "renew",
            "subscribe",
            "telemetry",
            "timing",
        ],
    ),
    (
        13,
        "acquire",
        &[
            "backend",
            "engine",
            "error",
            "lease",
            "outcome",
            "quorum",
            "retry",
            "script",
            "subscribe",
            "telemetry",
            "timing",
        ],
    ),
    (
        14,
        "lock",
        &[
            "acquire",
            "backend",
            "engine",
            "error",
            "keys",
            "lease",
            "options",
            "outcome",
            "quorum",
            "script",
            "telemetry",
            "timing",
            "token",
        ],
    ),
    (
        15,
        "rwlock",
        &[
            "acquire", "engine", "error", "keys", "lease", "lock", "options", "outcome", "retry",
            "script", "timing",
        ],
    ),
    (
        15,
        "semaphore",
        &[
            "acquire",
            "backend",
            "engine",
            "error",
            "keys",
            "lease",
            "lock",
            "options",
            "outcome",
            "quorum",
            "retry",
            "script",
            "subscribe",
            "timing",
        ],
    ),
    (
        16,
        "client",
        &[
            "backend",
            "conn",
            "engine",
            "error",
            "keys",
            "lock",
            "options",
            "quorum",
            "retry",
            "rwlock",
            "script",
            "semaphore",
            "subscribe",
            "timing",
        ],
    ),
    (
        17,
        "blocking",
        &[
            "client",
            "error",
            "lock",
            "options",
            "outcome",
            "rwlock",
            "semaphore",
            "token",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_code_map_only_points_downward() {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().map(|&(l, m, _)| (m, l)).collect();
    assert_eq!(layer.len(), LAYERS.len(), "a module is listed twice");
    for &(l, module, imports) in LAYERS {
        for import in imports {
            let below = layer
                .get(import)
                .unwrap_or_else(|| panic!("{module} may import unknown {import}"));
            assert!(
                *below < l,
                "{module} (layer {l}) may not import {import} (layer {below})"
            );
        }
    }
}

#[test]
fn every_module_of_the_crate_root_is_in_the_code_map() {
    let lib = strip(&std::fs::read_to_string(src().join("lib.rs")).unwrap());
    let declared: BTreeSet<String> = top_level_modules(&lib);
    let mapped: BTreeSet<String> = LAYERS.iter().map(|&(_, m, _)| m.to_owned()).collect();
    assert_eq!(declared, mapped, "lib.rs's modules and the code map differ");
}

#[test]
fn modules_import_only_what_their_layer_allows() {
    let root = src();
    let lib = strip(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let modules = top_level_modules(&lib);
    let reexports = root_reexports(&lib);
    let allowed: BTreeMap<&str, BTreeSet<&str>> = LAYERS
        .iter()
        .map(|&(_, m, imports)| (m, imports.iter().copied().collect()))
        .collect();
    let mut violations = Vec::new();
    let mut files = Vec::new();
    collect_rs(&root, &mut files);
    assert!(
        files.len() > LAYERS.len(),
        "found only {} files",
        files.len()
    );
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        if relative == Path::new("lib.rs") {
            continue;
        }
        let (top, depth) = module_of(&relative);
        let text = strip(&std::fs::read_to_string(&file).unwrap());
        for name in crate_paths(&text, depth) {
            let target = if modules.contains(&name) {
                name.clone()
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                // `crate::redis` and the like: not one of our modules.
                continue;
            };
            if target != top && !allowed[top.as_str()].contains(target.as_str()) {
                violations.push(format!(
                    "{} reaches {target} (via crate::{name})",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports outside the code map:\n{}",
        violations.join("\n")
    );
}

#[test]
fn design_md_has_the_same_code_map() {
    let design = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../DESIGN.md");
    // The packaged crate has no DESIGN.md; the map above still holds there.
    let Ok(text) = std::fs::read_to_string(&design) else {
        return;
    };
    let section = text
        .split("\n## ")
        .find(|section| section.starts_with("Code map"))
        .expect("DESIGN.md has a \"Code map\" section");
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [layer, module, _owns, imports] = cells.as_slice() else {
            continue;
        };
        let (Ok(layer), Some(module)) = (layer.parse::<u32>(), backticked(module).first().cloned())
        else {
            continue;
        };
        rows.insert(module, (layer, backticked(imports)));
    }
    let expected: BTreeMap<String, (u32, Vec<String>)> = LAYERS
        .iter()
        .map(|&(l, m, imports)| {
            (
                m.to_owned(),
                (l, imports.iter().map(|&i| i.to_owned()).collect()),
            )
        })
        .collect();
    assert_eq!(
        rows, expected,
        "DESIGN.md's code map and tests/layers.rs differ"
    );
}

/// The names in backticks in a table cell, sorted.
fn backticked(cell: &str) -> Vec<String> {
    let mut names: Vec<String> = cell
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The top-level module a file belongs to, and how deep its own module is (`lock/mod.rs`: 1,
/// `lock/guard.rs`: 2), for resolving `super::`.
fn module_of(relative: &Path) -> (String, usize) {
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let top = parts[0].trim_end_matches(".rs").to_owned();
    let last = parts.last().unwrap();
    let depth = if last == "mod.rs" {
        parts.len() - 1
    } else {
        parts.len()
    };
    (top, depth)
}

/// `mod x;` lines of the crate root (`pub mod x;` for a public one such as `blocking`).
fn top_level_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = ["pub mod ", "pub(crate) mod ", "mod "]
                .iter()
                .find_map(|declaration| line.strip_prefix(declaration))?;
            Some(rest.strip_suffix(';')?.trim().to_owned())
        })
        .collect()
}

/// Names the crate root re-exports, mapped to the module they come from
/// (`pub use lock::{Guard, LockInfo};` → `Guard`: `lock`, `LockInfo`: `lock`).
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        for item in items
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|s| !s.is_empty())
        {
            map.insert(item.to_owned(), module.trim().to_owned());
        }
    }
    map
}

/// The first segment of every path that starts at the crate root: `crate::x…`, each item of
/// `crate::{x, y::z}`, and `super::` chains that climb out of the file's own module.
fn crate_paths(text: &str, depth: usize) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !is_ident(bytes[i - 1]);
        if boundary && text[i..].starts_with("crate::") {
            i += "crate::".len();
            i = segments_at(text, i, &mut found);
            continue;
        }
        if boundary && text[i..].starts_with("super::") {
            let mut climbs = 0;
            let mut j = i;
            while text[j..].starts_with("super::") {
                climbs += 1;
                j += "super::".len();
            }
            if climbs >= depth {
                i = segments_at(text, j, &mut found);
            } else {
                i = j;
            }
            continue;
        }
        i += 1;
    }
    found
}

/// Reads the identifier (or brace group of paths) at `i`, pushing first segments; returns the
/// position after it.
fn segments_at(text: &str, mut i: usize, found: &mut Vec<String>) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'{' {
        let mut level = 0;
        let mut expecting = true;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => {
                    level += 1;
                    if level == 1 {
                        expecting = true;
                    }
                }
                b'}' => {
                    level -= 1;
                    if level == 0 {
                        return i + 1;
                    }
                }
                b',' if level == 1 => expecting = true,
                c if level == 1 && expecting && is_ident(c) => {
                    let start = i;
                    while i < bytes.len() && is_ident(bytes[i]) {
                        i += 1;
                    }
                    found.push(text[start..i].to_owned());
                    expecting = false;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        return i;
    }
    let start = i;
    while i < bytes.len() && is_ident(bytes[i]) {
        i += 1;
    }
    if i > start {
        found.push(text[start..i].to_owned());
    }
    i
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The source without comments, string and character literals (their text is not code).
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut level = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    level += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    level -= 1;
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !chars[i - 1].is_alphanumeric())
        {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[test]
fn the_scanner_finds_every_kind_of_path() {
    let code = strip(
        r#"
        use crate::a::B;
        use crate::{c, d::{E, F}, g as h};
        fn f() { crate::i::j(); let s = "crate::not_code"; } // crate::comment
        /* crate::block */ let c = '{'; let l: &'static str = "x";
        super::super::k::L;
    "#,
    );
    assert_eq!(crate_paths(&code, 2), ["a", "c", "d", "g", "i", "k"]);
    assert_eq!(crate_paths(&code, 3), ["a", "c", "d", "g", "i"]);
    assert_eq!(
        module_of(Path::new("lock/guard.rs")),
        ("lock".to_owned(), 2)
    );
    assert_eq!(module_of(Path::new("lock/mod.rs")), ("lock".to_owned(), 1));
    assert_eq!(module_of(Path::new("engine.rs")), ("engine".to_owned(), 1));
    let exports =
        root_reexports("pub use lock::{Guard, LockInfo};\npub use token::Token;\npub use redis;");
    assert_eq!(exports["Guard"], "lock");
    assert_eq!(exports["Token"], "token");
}
