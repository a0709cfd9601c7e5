//! The example assets that `scripts/setup.py` installs: where they live and whether they are intact.
//!
//! The pinned manifest (`assets/manifest.json`) is compiled in, so the binary and the set-up
//! script agree on names, files and sha256 digests.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MANIFEST: &str = include_str!("../../../assets/manifest.json");
const STAMP: &str = ".verified.json";

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub libtorch: LibtorchSpec,
    pub assets: Vec<AssetSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LibtorchSpec {
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssetSpec {
    pub name: String,
    pub description: String,
    /// Only one example pipeline needs it, and set-up may be unable to fetch it (the Debian
    /// fortunes need apt-get): missing, it is reported but is not a problem.
    #[serde(default)]
    pub optional: bool,
    pub files: Vec<FileSpec>,
    /// Folders of many files (thousands of images) under one pin each.
    #[serde(default)]
    pub folders: Vec<FolderSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileSpec {
    pub to: String,
    pub sha256: String,
}

/// A folder's files are pinned together: `sha256` is the digest of their `sha256sum`-style
/// listing (`<hex>  <name>` per file, sorted by name), `count` how many there are.
#[derive(Debug, Clone, Deserialize)]
pub struct FolderSpec {
    pub to: String,
    pub sha256: String,
    pub count: usize,
}

pub fn manifest() -> Manifest {
    serde_json::from_str(MANIFEST)
        .expect("assets/manifest.json is compiled in and checked by tests")
}

/// The per-user cache: `ARDPIPE_CACHE`, else `$XDG_CACHE_HOME/ardpipe`, else `~/.cache/ardpipe`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARDPIPE_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("ardpipe")
}

/// Directory of one installed asset (it may not exist yet).
pub fn asset_dir(name: &str) -> PathBuf {
    cache_root().join("assets").join(name)
}

/// A file of an installed example asset, or an error that says how to install it.
pub fn asset_file(asset: &str, file: &str) -> Result<PathBuf, String> {
    let p = asset_dir(asset).join(file);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "example asset {asset}/{file} is not installed at {}: run `python3 scripts/setup.py` \
             (or set ARDPIPE_CACHE to the cache that holds it)",
            p.display()
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetState {
    Verified,
    Missing,
    /// Present but not what was pinned (a size or digest differs, or the stamp is gone).
    Corrupt,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssetStatus {
    pub name: String,
    pub description: String,
    pub optional: bool,
    pub dir: PathBuf,
    pub state: AssetState,
    pub files: usize,
    pub detail: Option<String>,
}

#[derive(Deserialize)]
struct Stamp {
    files: std::collections::BTreeMap<String, StampEntry>,
    #[serde(default)]
    folders: std::collections::BTreeMap<String, FolderStamp>,
}

#[derive(Deserialize)]
struct FolderStamp {
    sha256: String,
    count: usize,
    size: u64,
}

/// The plain files directly in a folder: (name, path, size).
fn folder_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = std::fs::symlink_metadata(e.path())?;
        if meta.is_file() {
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                e.path(),
                meta.len(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// The sha256 of a folder's `sha256sum`-style listing, every file re-hashed.
fn listing_digest(files: &[(String, PathBuf, u64)]) -> std::io::Result<String> {
    let mut h = Sha256::new();
    for (name, path, _) in files {
        h.update(format!("{}  {name}\n", sha256_file(path)?));
    }
    Ok(format!("{:x}", h.finalize()))
}

#[derive(Deserialize)]
struct StampEntry {
    sha256: String,
    size: u64,
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Check one asset against the manifest. `deep` re-hashes every file; otherwise the stamp that
/// set-up wrote after hashing, plus file sizes, are trusted.
pub fn check_asset(spec: &AssetSpec, deep: bool) -> AssetStatus {
    let dir = asset_dir(&spec.name);
    let status = |state, detail: Option<String>| AssetStatus {
        name: spec.name.clone(),
        description: spec.description.clone(),
        optional: spec.optional,
        dir: dir.clone(),
        state,
        files: spec.files.len() + spec.folders.iter().map(|f| f.count).sum::<usize>(),
        detail,
    };
    if !dir.exists() {
        return status(AssetState::Missing, None);
    }
    let stamp: Option<Stamp> = std::fs::read_to_string(dir.join(STAMP))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    let Some(stamp) = stamp else {
        return status(
            AssetState::Corrupt,
            Some("no verification stamp (interrupted set-up?)".into()),
        );
    };
    for f in &spec.files {
        let path = dir.join(&f.to);
        let Ok(meta) = std::fs::metadata(&path) else {
            return status(AssetState::Corrupt, Some(format!("{} is missing", f.to)));
        };
        match stamp.files.get(&f.to) {
            Some(e) if e.sha256 == f.sha256 && e.size == meta.len() => {}
            _ => {
                return status(
                    AssetState::Corrupt,
                    Some(format!("{} differs from the pinned file", f.to)),
                );
            }
        }
        if deep {
            match sha256_file(&path) {
                Ok(d) if d == f.sha256 => {}
                Ok(d) => {
                    return status(
                        AssetState::Corrupt,
                        Some(format!("{}: sha256 {d}, expected {}", f.to, f.sha256)),
                    );
                }
                Err(e) => return status(AssetState::Corrupt, Some(format!("{}: {e}", f.to))),
            }
        }
    }
    for f in &spec.folders {
        let corrupt = |why: String| status(AssetState::Corrupt, Some(format!("{}: {why}", f.to)));
        let files = match folder_files(&dir.join(&f.to)) {
            Ok(files) => files,
            Err(e) => return corrupt(e.to_string()),
        };
        let (count, size) = (files.len(), files.iter().map(|f| f.2).sum::<u64>());
        match stamp.folders.get(&f.to) {
            Some(e) if e.sha256 == f.sha256 && e.count == f.count => {
                if (count, size) != (e.count, e.size) {
                    return corrupt(format!(
                        "{count} files of {size} bytes, set-up verified {} of {}",
                        e.count, e.size
                    ));
                }
            }
            _ => return corrupt("differs from the pinned folder".into()),
        }
        if deep {
            match listing_digest(&files) {
                Ok(d) if d == f.sha256 => {}
                Ok(d) => {
                    return corrupt(format!("listing sha256 {d}, expected {}", f.sha256));
                }
                Err(e) => return corrupt(e.to_string()),
            }
        }
    }
    status(AssetState::Verified, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_names_are_unique() {
        let m = manifest();
        assert_eq!(m.libtorch.version, "2.13.0");
        let mut names: Vec<_> = m.assets.iter().map(|a| a.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), m.assets.len());
        assert!(
            m.assets
                .iter()
                .all(|a| a.files.iter().all(|f| f.sha256.len() == 64))
        );
    }
}
