//! `cairn new aggregate|projection NAME`: writes a plugin crate (Cargo.toml with both
//! crate types, its own empty workspace and small release settings, the `cairn-guest`
//! SDK as a path dependency, a working `src/lib.rs` with native tests, a README) that
//! builds with `cargo build --target wasm32-wasip2 --release` and uploads with
//! `cairn plugin push`. The templates are in `templates/`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::client::CliError;

#[derive(Subcommand, Debug)]
pub enum NewCommand {
    /// An aggregate (`decide`/`evolve`): a running total to start from.
    Aggregate(NewArgs),
    /// A projection (`handle` into documents): activity per stream to start from.
    Projection(NewArgs),
}

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The plugin's name (`[a-z][a-z0-9-]*`), also the crate's and the upload's.
    pub name: String,
    /// The crate's directory (default: `./NAME`); it must not exist or be empty.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// The `cairn-guest` SDK to depend on (default: this checkout's `guest-sdk/`).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");
const AGGREGATE: &str = include_str!("templates/aggregate.rs.tmpl");
const PROJECTION: &str = include_str!("templates/projection.rs.tmpl");
const README: &str = include_str!("templates/README.md.tmpl");

/// Where the SDK was when this binary was built.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// Names the SDK's own items take: a plugin type of that name would clash.
const TAKEN: &[&str] = &[
    "Aggregate",
    "CommandContext",
    "Rejection",
    "Documents",
    "Event",
    "Projection",
    "Self",
    "Super",
    "Crate",
];

/// `bank-account` → `BankAccount`.
pub fn type_name(name: &str) -> String {
    let camel: String = name
        .split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect();
    if TAKEN.contains(&camel.as_str()) {
        format!("{camel}Plugin")
    } else {
        camel
    }
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

pub fn run(command: NewCommand) -> Result<(), CliError> {
    let (kind, args) = match command {
        NewCommand::Aggregate(args) => ("aggregate", args),
        NewCommand::Projection(args) => ("projection", args),
    };
    let dir = write_crate(kind, &args)?;
    let file = args.name.replace('-', "_");
    println!("wrote the {kind} plugin {} in {}", args.name, dir.display());
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo test");
    println!("  cargo build --target wasm32-wasip2 --release");
    println!("  cairn plugin push target/wasm32-wasip2/release/{file}.wasm");
    Ok(())
}

/// Writes the crate and returns its directory.
pub fn write_crate(kind: &str, args: &NewArgs) -> Result<PathBuf, CliError> {
    let name = &args.name;
    if !valid_name(name) {
        return Err(CliError::Usage(format!(
            "plugin name {name:?}: use a lowercase letter, then lowercase letters, digits \
             and '-' (at most 63, not ending in '-')"
        )));
    }
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError::Usage(format!(
            "{} exists and is not empty",
            dir.display()
        )));
    }
    let sdk = match &args.sdk {
        Some(sdk) => sdk.clone(),
        None => PathBuf::from(BUILT_SDK),
    };
    let sdk = std::fs::canonicalize(&sdk)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "the cairn-guest SDK is not at {}: pass --sdk PATH (guest-sdk/ of a Cairn checkout)",
                sdk.display()
            ))
        })?;
    let sdk_text = sdk.display().to_string();
    let sdk_toml = toml::Value::String(sdk_text.clone()).to_string();
    let type_name = type_name(name);
    let category = name.replace('-', "_");
    let usage = if kind == "aggregate" {
        format!(
            "cairn command {name} 1 Add '{{\"amount\": 5}}'\ncairn state {name} 1      # the stream is {category}-1"
        )
    } else {
        format!("cairn projection status {name}\ncairn docs list {name}")
    };
    let values = [
        ("name", name.as_str()),
        ("Type", type_name.as_str()),
        ("category", category.as_str()),
        ("kind", kind),
        ("file", category.as_str()),
        ("sdk", sdk_text.as_str()),
        ("sdk_toml", sdk_toml.as_str()),
        ("usage", usage.as_str()),
    ];
    let lib = if kind == "aggregate" {
        AGGREGATE
    } else {
        PROJECTION
    };
    let files: [(&str, String); 4] = [
        ("Cargo.toml", fill(CARGO_TOML, &values)),
        ("src/lib.rs", fill(lib, &values)),
        ("README.md", fill(README, &values)),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (path, text) in files {
        write(&dir.join(path), &text)?;
    }
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::Usage(format!("cannot write {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types() {
        assert_eq!(type_name("bank-account"), "BankAccount");
        assert_eq!(type_name("counter"), "Counter");
        assert_eq!(type_name("documents"), "DocumentsPlugin");
        assert!(valid_name("a-1"));
        for bad in ["", "1a", "A", "a_b", "a-", "a/b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn templates_are_filled_and_the_manifest_parses() {
        for kind in ["aggregate", "projection"] {
            let dir = tempfile::tempdir().unwrap();
            let args = NewArgs {
                name: "bank-account".into(),
                path: Some(dir.path().join("crate")),
                sdk: None,
            };
            let out = write_crate(kind, &args).unwrap();
            for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
                let text = std::fs::read_to_string(out.join(file)).unwrap();
                assert!(!text.contains("{{"), "{kind} {file}: {text}");
            }
            let manifest: toml::Table =
                toml::from_str(&std::fs::read_to_string(out.join("Cargo.toml")).unwrap()).unwrap();
            assert_eq!(manifest["package"]["name"].as_str(), Some("bank-account"));
            assert!(manifest["workspace"].as_table().unwrap().is_empty());
            // Not twice into the same place.
            assert!(write_crate(kind, &args).is_err());
        }
    }
}
