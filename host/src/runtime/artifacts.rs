//! The on-disk cache of compiled components, keyed by component digest and by the
//! engine's compatibility hash (a wasmtime upgrade or a config change recompiles).
//!
//! Writes go through a cap-std `Dir`, so the host can only touch files below the
//! cache directory; loads use wasmtime's mmap of the file by path.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ArtifactCache {
    dir: Dir,
    /// The same directory as a path, for wasmtime's mmap loader.
    path: PathBuf,
    /// Distinguishes artifacts made by differently configured engines.
    engine_tag: String,
}

impl ArtifactCache {
    pub fn open(path: &Path, engine: &Engine) -> anyhow::Result<ArtifactCache> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the artifact cache {}", path.display()))?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())?;
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir,
            path: path.to_owned(),
            engine_tag: format!("{:016x}", hasher.finish()),
        })
    }

    /// File name for a digest: hex only, so it can never leave the directory.
    fn file_name(&self, digest: &str) -> Option<String> {
        let hex = digest.strip_prefix("sha256:")?;
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| format!("{hex}-{}.cwasm", self.engine_tag))
    }

    /// The cached component, or `None` when it is missing or unusable.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let name = self.file_name(digest)?;
        if !self.dir.exists(&name) {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Component::serialize` of
        // an engine with the same compatibility hash, and the cache directory belongs
        // to this host alone; wasmtime still checks the header before use.
        match unsafe { Component::deserialize_file(engine, self.path.join(&name)) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(%digest, "ignoring an unusable artifact: {error:#}");
                None
            }
        }
    }

    /// The size of a cached artifact on disk (0 when there is none).
    pub fn size(&self, digest: &str) -> u64 {
        self.file_name(digest)
            .and_then(|name| self.dir.metadata(&name).ok())
            .map_or(0, |meta| meta.len())
    }

    /// Deletes the artifact of a component no tenant uses any more.
    pub fn remove(&self, digest: &str) -> anyhow::Result<()> {
        if let Some(name) = self.file_name(digest)
            && self.dir.exists(&name)
        {
            self.dir.remove_file(&name)?;
        }
        Ok(())
    }

    /// Writes the artifact atomically (temporary file, then rename).
    pub fn store(&self, digest: &str, component: &Component) -> anyhow::Result<()> {
        let name = self.file_name(digest).context("malformed digest")?;
        if self.dir.exists(&name) {
            return Ok(());
        }
        let bytes = component.serialize()?;
        let temporary = format!("{name}.{}.tmp", std::process::id());
        self.dir.write(&temporary, &bytes)?;
        self.dir.rename(&temporary, &self.dir, &name)?;
        Ok(())
    }
}
