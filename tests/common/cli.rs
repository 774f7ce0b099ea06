//! Running the `cairn` client binary in tests (tests/cli.rs): a clean environment
//! with a config file of the test's own, exit codes and output captured, lines of a
//! long-running child (`tail`) read on a thread, cargo for scaffolded crates.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::Server;

/// The client binary with a clean environment: no CAIRN_* variable of the caller, a
/// config file path of the test's own (absent until a test writes it).
pub struct Cli {
    pub url: String,
    pub home: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub fn ok(self) -> Ran {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Cli {
    pub fn new(server: &Server) -> Cli {
        Cli {
            url: server.base.clone(),
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.home.path().join("cairn.toml")
    }

    /// Sets an environment variable for every later run.
    pub fn with_env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CAIRN_") {
                command.env_remove(key);
            }
        }
        command
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path())
            .env("CAIRN_CONFIG", self.config_path())
            .env("CAIRN_URL", &self.url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().expect("running cairn");
        Ran {
            code: status.code().expect("an exit code, not a signal"),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

pub fn plugin_path(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-plugins` first",
        path.display()
    );
    path.display().to_string()
}

/// A tenant made with `cairn tenant create --json`; returns its token.
pub fn create_tenant(cli: &Cli, server: &Server, id: &str) -> String {
    let answer = cli
        .run(&["--token", server.admin(), "--json", "tenant", "create", id])
        .ok()
        .json();
    assert_eq!(answer["id"], id);
    answer["token"].as_str().expect("a token").to_owned()
}

/// A client set up for one tenant by environment variables.
pub fn tenant_cli(server: &Server, tenant: &str, token: &str) -> Cli {
    Cli::new(server)
        .with_env("CAIRN_TENANT", tenant)
        .with_env("CAIRN_TOKEN", token)
}

/// Lines of a child's pipe, read on a thread (so a test never blocks on a pipe).
pub fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// The next line that satisfies `wanted` (a guard against hanging, not a timing check).
pub fn wait_for(lines: &mpsc::Receiver<String>, wanted: impl Fn(&str) -> bool) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the line never came");
        if wanted(&line) {
            return line;
        }
    }
}

/// Runs cargo in `dir`, building into the checkout's shared scaffold cache.
pub fn cargo(dir: &Path, args: &[&str]) {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
