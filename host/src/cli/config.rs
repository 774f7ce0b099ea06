//! Where the client side of `cairn` finds its server, tenant and tokens: the global
//! flags, then the environment, then a named profile of the config file (in that
//! order, field by field), and writing a new profile (`tenant create --save-profile`).
//!
//! The file is TOML, `$CAIRN_CONFIG` or `$XDG_CONFIG_HOME/cairn/config.toml` (by
//! default `~/.config/cairn/config.toml`):
//!
//! ```toml
//! default_profile = "local"
//!
//! [profiles.local]
//! url = "http://127.0.0.1:4600"
//! tenant = "acme"
//! token = "…"          # the tenant's token
//! admin_token = "…"    # the operator token, for `cairn tenant …`
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::CliError;

/// Where a server is when nothing says otherwise: `cairn serve`'s default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:4600";

/// The options every client command takes (global: before or after the subcommand).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// The server, e.g. `http://127.0.0.1:4600` (the default).
    #[arg(
        long,
        global = true,
        env = "CAIRN_URL",
        help_heading = "Client options"
    )]
    pub url: Option<String>,
    /// The bearer token to send [env: CAIRN_TOKEN; `cairn tenant …` falls back to
    /// CAIRN_ADMIN_TOKEN first].
    #[arg(long, global = true, help_heading = "Client options")]
    pub token: Option<String>,
    /// The tenant the command is about.
    #[arg(
        long,
        global = true,
        env = "CAIRN_TENANT",
        help_heading = "Client options"
    )]
    pub tenant: Option<String>,
    /// A named profile of the config file ($CAIRN_CONFIG, else
    /// ~/.config/cairn/config.toml).
    #[arg(
        long,
        global = true,
        env = "CAIRN_PROFILE",
        help_heading = "Client options"
    )]
    pub profile: Option<String>,
    /// Print the server's JSON as it came (one object per line for `tail`).
    #[arg(long, global = true, help_heading = "Client options")]
    pub json: bool,
}

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: Option<String>,
    pub tenant: Option<String>,
    pub token: Option<String>,
    pub admin_token: Option<String>,
}

/// What a command talks to, once flags, environment and profile are merged.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub tenant: Option<String>,
    /// `--token`, else `CAIRN_TOKEN`, else the profile's `token`.
    pub token: Option<String>,
    /// `CAIRN_ADMIN_TOKEN`, else the profile's `admin_token`.
    pub admin_token: Option<String>,
    pub token_from_flag: bool,
}

impl Target {
    /// The tenant named by `--tenant`, `CAIRN_TENANT` or the profile.
    pub fn tenant(&self) -> Result<&str, CliError> {
        self.tenant.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no tenant: pass --tenant, set CAIRN_TENANT, or name one in a profile".into(),
            )
        })
    }

    /// The token for `/t/{tenant}/…`: the tenant's, else the operator's (it reaches
    /// every tenant).
    pub fn tenant_token(&self) -> Option<String> {
        self.token.clone().or_else(|| self.admin_token.clone())
    }

    /// The token for `/admin/…`: `--token`, else `CAIRN_ADMIN_TOKEN` or the
    /// profile's `admin_token`, else the tenant token.
    pub fn operator_token(&self) -> Option<String> {
        if self.token_from_flag {
            return self.token.clone();
        }
        self.admin_token.clone().or_else(|| self.token.clone())
    }
}

/// The config file's path: `$CAIRN_CONFIG`, `$XDG_CONFIG_HOME/cairn/config.toml` or
/// `~/.config/cairn/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CAIRN_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("cairn").join("config.toml"))
}

/// Reads the config file; a missing file is an empty one.
pub fn read_config(path: &Path) -> Result<ConfigFile, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    toml::from_str(&text).map_err(|e| {
        CliError::Usage(format!(
            "{} is not a valid config file: {e}",
            path.display()
        ))
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Flags beat the environment, which beats the profile. The profile is `--profile`
/// (or `CAIRN_PROFILE`), else the file's `default_profile`, else one named
/// `default` if there is one; naming a profile the file lacks is an error.
pub fn resolve(args: &GlobalArgs) -> Result<Target, CliError> {
    let profile = match config_path() {
        Some(path) => {
            let file = read_config(&path)?;
            match args.profile.clone().or(file.default_profile.clone()) {
                Some(name) => file.profiles.get(&name).cloned().ok_or_else(|| {
                    CliError::Usage(format!(
                        "no profile {name:?} in {} (profiles there: {})",
                        path.display(),
                        if file.profiles.is_empty() {
                            "none".to_owned()
                        } else {
                            file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ))
                })?,
                None => file.profiles.get("default").cloned().unwrap_or_default(),
            }
        }
        None if args.profile.is_some() => {
            return Err(CliError::Usage(
                "--profile needs a config file: set CAIRN_CONFIG or HOME".into(),
            ));
        }
        None => Profile::default(),
    };
    let url = args
        .url
        .clone()
        .or(profile.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    Ok(Target {
        url: url.trim_end_matches('/').to_owned(),
        tenant: args.tenant.clone().or(profile.tenant),
        token: args
            .token
            .clone()
            .or_else(|| env("CAIRN_TOKEN"))
            .or(profile.token),
        admin_token: env("CAIRN_ADMIN_TOKEN").or(profile.admin_token),
        token_from_flag: args.token.is_some(),
    })
}

/// Refuses early (before a tenant is created) when `name` cannot be added to the file.
pub fn check_new_profile(path: &Path, name: &str) -> Result<(), CliError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(CliError::Usage(format!(
            "profile name {name:?}: use letters, digits, '-' and '_'"
        )));
    }
    if read_config(path)?.profiles.contains_key(name) {
        return Err(CliError::Usage(format!(
            "{} already has a profile {name:?}: remove it or choose another name",
            path.display()
        )));
    }
    Ok(())
}

/// Appends `[profiles.NAME]` to the file (made, mode 0600, when missing; an existing
/// one readable by others made 0600 first), keeping what is there untouched.
pub fn append_profile(path: &Path, name: &str, profile: &Profile) -> Result<(), CliError> {
    check_new_profile(path, name)?;
    let fail = |e: std::io::Error| CliError::Usage(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut section = format!("\n[profiles.{name}]\n");
    for (key, value) in [
        ("url", &profile.url),
        ("tenant", &profile.tenant),
        ("token", &profile.token),
        ("admin_token", &profile.admin_token),
    ] {
        if let Some(value) = value {
            section.push_str(&format!("{key} = {}\n", quote(value)));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    // The mode above applies only to a new file: an existing one that others can read
    // is closed to them before a token goes into it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(fail)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(fail)?;
            eprintln!(
                "note: {} was readable by other users (mode {:o}); it is now 0600",
                path.display(),
                mode & 0o777
            );
        }
    }
    file.write_all(section.as_bytes()).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_world_readable_file_is_closed_before_a_token_goes_in() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let profile = Profile {
            token: Some("cairn_secret".into()),
            ..Profile::default()
        };
        append_profile(&path, "p", &profile).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn appended_profiles_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let profile = Profile {
            url: Some("http://h:1".into()),
            tenant: Some("acme".into()),
            token: Some("t\"q".into()),
            admin_token: None,
        };
        append_profile(&path, "acme", &profile).unwrap();
        append_profile(&path, "other", &profile).unwrap();
        assert!(append_profile(&path, "acme", &profile).is_err());
        let file = read_config(&path).unwrap();
        assert_eq!(file.profiles["acme"].token.as_deref(), Some("t\"q"));
        assert_eq!(file.profiles.len(), 2);
    }
}
