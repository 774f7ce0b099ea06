//! ARCHITECTURE.md's dependency rules, checked against the code: every file of
//! `host/src` is read, its `crate::` (and `super::`) paths give the module graph, and
//! the graph must obey the layers written in ARCHITECTURE.md's `layers` block (a module
//! imports only modules on lines below its own), have no cycle between top-level
//! modules nor between the files of one module, keep `store/` free of the rest of the
//! host, and keep HTTP (`axum`, `StatusCode`, `ApiError`, `IntoResponse`) out of the
//! services. One crate gives no compiler-checked boundaries; this test is the boundary.
//!
//! `cargo test --test architecture -- --nocapture` also prints the graph it read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file of `host/src`, read for its imports.
struct Source {
    /// Its module path: `["projection", "worker"]`; a `mod.rs` is its directory's
    /// module, `lib.rs` the empty path.
    module: Vec<String>,
    /// Path relative to `host/src`, for messages.
    path: String,
    /// The text with comments and the trailing `#[cfg(test)]` module removed: tests
    /// may reach anywhere, the code may not.
    code: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read_sources() -> Vec<Source> {
    let root = src_dir();
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let rel = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&file).unwrap();
            Source {
                module,
                path: rel,
                code: code_of(&text),
            }
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The code of a file: line comments (doc comments included) and block comments
/// removed, and everything from `#[cfg(test)]` followed by `mod` on.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut in_block = false;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        let mut line = line.to_owned();
        if in_block {
            match line.find("*/") {
                Some(end) => {
                    line = line[end + 2..].to_owned();
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(start) = line.find("/*") {
            in_block = !line[start..].contains("*/");
            line.truncate(start);
        }
        if let Some(comment) = line.find("//") {
            line.truncate(comment);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Every path a piece of code names through `crate::`, each split in segments;
/// `crate::{a, b::c}` gives `a` and `b::c`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    paths_after(code, "crate::")
}

fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at;
        from = start + prefix.len();
        // `$crate::` and `my_crate::` are not this crate's paths.
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'$')
        {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let segments = segments_of(part.trim());
                if !segments.is_empty() {
                    found.push(segments);
                }
            }
        } else {
            let segments = segments_of(rest);
            if !segments.is_empty() {
                found.push(segments);
            }
        }
    }
    found
}

/// `a::b::C` up to the first character that is not part of a path.
fn segments_of(text: &str) -> Vec<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The graph between top-level modules: module → (module it names → files naming it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn top_level_graph(sources: &[Source]) -> Graph {
    let modules: BTreeSet<String> = sources
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .collect();
    let mut graph = Graph::new();
    for source in sources {
        let Some(from) = source.module.first() else {
            continue;
        };
        // `main.rs` and `cli/` are the binary: their `crate::` is the binary's root.
        if from == "main" || from == "cli" {
            continue;
        }
        let edges = graph.entry(from.clone()).or_default();
        for path in crate_paths(&source.code) {
            let to = &path[0];
            if to != from && modules.contains(to) {
                edges
                    .entry(to.clone())
                    .or_default()
                    .insert(source.path.clone());
            }
        }
    }
    graph
}

/// The graph between the files of each directory module (`runtime/sandbox` →
/// `runtime/documents`), from `super::x` and `crate::m::x` paths that name a sibling.
fn file_graph(sources: &[Source]) -> Graph {
    let files: BTreeSet<String> = sources.iter().map(|s| s.module.join("/")).collect();
    let mut graph = Graph::new();
    for source in sources.iter().filter(|s| s.module.len() >= 2) {
        let from = source.module.join("/");
        let parent = &source.module[..source.module.len() - 1];
        let mut named: Vec<Vec<String>> = crate_paths(&source.code);
        for path in paths_after(&source.code, "super::") {
            let mut full = parent.to_vec();
            full.extend(path);
            named.push(full);
        }
        let edges = graph.entry(from.clone()).or_default();
        for path in named {
            if path.len() <= parent.len() || path[..parent.len()] != *parent {
                continue;
            }
            let sibling = path[..=parent.len()].join("/");
            if sibling != from && files.contains(&sibling) {
                edges
                    .entry(sibling)
                    .or_default()
                    .insert(source.path.clone());
            }
        }
    }
    graph
}

/// The strongly connected components with more than one node (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// ARCHITECTURE.md's `layers` block: one line per layer, the highest first; each
/// module's layer number (higher imports lower).
fn layers() -> BTreeMap<String, usize> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md at the repository's root");
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has a ```layers block");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut layer = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let names = line.split('#').next().unwrap();
        for name in names.split_whitespace() {
            layer.insert(name.to_owned(), lines.len() - i);
        }
    }
    layer
}

/// Modules whose files may speak HTTP: the edge. Everything else is a service, the
/// runtime, the store or shared vocabulary, and answers in its own terms.
const HTTP_MODULES: &[&str] = &["api", "serve", "app", "error"];
/// What a file outside the edge may not name.
const HTTP_NAMES: &[&str] = &[
    "axum",
    "StatusCode",
    "ApiError",
    "ApiResult",
    "IntoResponse",
];

/// Files outside `api/` that still name `ApiError` (issue 30 item 2, errors per layer,
/// is under way): each is debt, listed so that the list only shrinks. A file that no
/// longer names HTTP must leave the list (the test says so), and no file may join it.
const HTTP_DEBT: &[&str] = &[
    "commands/load.rs",
    "commands/mod.rs",
    "commands/pipeline.rs",
    "fleet/follow.rs",
    "fleet/leases.rs",
    "plugins/mod.rs",
    "plugins/upload.rs",
    "plugins/verify.rs",
    "projection/mod.rs",
    "projection/owned.rs",
    "projection/promotion.rs",
    "projection/restart.rs",
    "projection/status.rs",
    "tenancy/gate.rs",
    "tenancy/limits.rs",
];

fn print_graph(title: &str, graph: &Graph) {
    println!("{title}");
    for (from, edges) in graph {
        let to: Vec<&str> = edges.keys().map(String::as_str).collect();
        println!("  {from} -> {}", to.join(", "));
    }
}

#[test]
fn modules_import_only_downward() {
    let sources = read_sources();
    let graph = top_level_graph(&sources);
    print_graph("modules of host/src (crate:: paths):", &graph);
    let layer = layers();
    let mut wrong = Vec::new();
    for (from, edges) in &graph {
        let Some(&mine) = layer.get(from) else {
            wrong.push(format!(
                "`{from}` is in no line of ARCHITECTURE.md's layers block"
            ));
            continue;
        };
        for (to, files) in edges {
            let theirs = layer.get(to).copied().unwrap_or(usize::MAX);
            if theirs >= mine {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                wrong.push(format!(
                    "`{from}` (layer {mine}) imports `{to}` (layer {theirs}), not below it: {}",
                    files.join(", ")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against ARCHITECTURE.md's layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_cycles_between_modules_nor_files() {
    let sources = read_sources();
    let modules = top_level_graph(&sources);
    let files = file_graph(&sources);
    print_graph(
        "files within each module (super:: and crate:: paths):",
        &files,
    );
    let mut found = cycles(&modules);
    found.extend(cycles(&files));
    assert!(found.is_empty(), "dependency cycles: {found:?}");
}

#[test]
fn store_imports_only_itself() {
    let sources = read_sources();
    let graph = top_level_graph(&sources);
    let outside: Vec<&String> = graph
        .get("store")
        .map(|e| e.keys().collect())
        .unwrap_or_default();
    assert!(outside.is_empty(), "store/ imports {outside:?}");
    for source in sources
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m == "store"))
    {
        for banned in ["axum", "wasmtime"] {
            assert!(
                !source.code.contains(banned),
                "{} names {banned}",
                source.path
            );
        }
    }
}

#[test]
fn services_speak_no_http() {
    let sources = read_sources();
    let mut wrong = Vec::new();
    let mut paid = Vec::new();
    for source in &sources {
        let Some(top) = source.module.first() else {
            continue;
        };
        if HTTP_MODULES.contains(&top.as_str()) || top == "main" || top == "cli" {
            continue;
        }
        let named: Vec<&str> = HTTP_NAMES
            .iter()
            .copied()
            .filter(|name| contains_word(&source.code, name))
            .collect();
        let in_debt = HTTP_DEBT.contains(&source.path.as_str());
        if !named.is_empty() && !in_debt {
            wrong.push(format!("{} names {}", source.path, named.join(", ")));
        }
        if named.is_empty() && in_debt {
            paid.push(source.path.clone());
        }
    }
    assert!(wrong.is_empty(), "HTTP outside api/:\n{}", wrong.join("\n"));
    assert!(
        paid.is_empty(),
        "no longer HTTP, take them out of HTTP_DEBT: {paid:?}"
    );
}

#[test]
fn the_client_uses_nothing_of_the_host_library() {
    for source in read_sources()
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m == "cli"))
    {
        assert!(
            !source.code.contains("cairn_host"),
            "{} uses the host library",
            source.path
        );
    }
}

#[test]
fn the_code_map_names_every_file() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
            .unwrap();
    let mut missing = Vec::new();
    for source in read_sources() {
        let name = source.path.rsplit('/').next().unwrap();
        let row = match source.path.split_once('/') {
            // A file at the top of `host/src` has a row of its own.
            None => format!("`host/src/{}`", source.path),
            // A file in a module is named in its module's row.
            Some((top, _)) => format!("`host/src/{top}/`"),
        };
        let named = doc
            .lines()
            .filter(|line| line.starts_with("| ") && line.contains(&row))
            .any(|line| !source.path.contains('/') || line.contains(&format!("`{name}`")));
        if !named {
            missing.push(source.path.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "files ARCHITECTURE.md's code map does not name: {missing:?}"
    );
}

/// `name` as a whole word (so `ApiErrorView` is not `ApiError`).
fn contains_word(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + name.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !part(before) && !part(after)
    })
}
