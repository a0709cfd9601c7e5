//! Models named `hf:ORG/NAME[@REVISION]`, found in the local Hugging Face cache (the layout
//! `huggingface_hub`, `hf download` and transformers fill: `models--ORG--NAME/refs/REVISION`
//! holds a commit, `snapshots/COMMIT/` the files, usually symlinks into `blobs/`). Read through
//! the `hf-hub` crate's offline cache API; nothing is downloaded. [`ModelLocation::detect`]
//! calls [`resolve_path`], so every command and the trainer accept such a name wherever they
//! take a model path.
//!
//! [`ModelLocation::detect`]: crate::model::ModelLocation::detect

use std::path::{Path, PathBuf};

use ardpipe_dsl::HfRef;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{ModelError, Result};

/// The cache folder, as `huggingface_hub` chooses it: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = var("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    var("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/huggingface/hub")
}

/// `Ok(None)` for an ordinary path; for an `hf:` name, the snapshot folder it names, or why it
/// cannot be used (malformed, or not downloaded: the error says what to download and where it
/// looked).
pub fn resolve_path(path: &Path) -> Result<Option<PathBuf>> {
    let Some(parsed) = path.to_str().and_then(HfRef::parse) else {
        return Ok(None);
    };
    let r = parsed.map_err(|why| ModelError::format(path, why))?;
    resolve(&r, &cache_dir()).map(Some)
}

/// The snapshot folder of `r` in the cache at `dir`.
pub fn resolve(r: &HfRef, dir: &Path) -> Result<PathBuf> {
    let revision = r.revision_or_main();
    let repo = Repo::with_revision(r.repo_id.clone(), RepoType::Model, revision.to_string());
    let repo_dir = dir.join(repo.folder_name());
    let cached = Cache::new(dir.to_path_buf()).repo(repo);
    // A full commit hash names its snapshot directly; a branch or tag goes through its ref file.
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        let ref_file = repo_dir.join("refs").join(revision);
        match std::fs::read_to_string(&ref_file) {
            Ok(c) => c.trim().to_string(),
            Err(_) => {
                let refs = refs_in(&repo_dir);
                let why = if refs.is_empty() {
                    format!("{} is not there", repo_dir.display())
                } else {
                    format!("it has {} at {} only", r.repo_id, refs.join(", "))
                };
                return Err(not_cached(r, dir, &why));
            }
        }
    };
    let snapshot = cached.pointer_path(&commit);
    if !snapshot.is_dir() {
        let why = format!("no snapshot folder {}", snapshot.display());
        return Err(not_cached(r, dir, &why));
    }
    Ok(snapshot)
}

fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The branches and tags the cache holds for a repository (`refs/main`, `refs/pr/1`, ...).
fn refs_in(repo_dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.path().is_dir() {
                walk(&e.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_dir.join("refs"), "", &mut out);
    out.sort();
    out
}

/// What to download and where this looked.
fn not_cached(r: &HfRef, dir: &Path, why: &str) -> ModelError {
    let rev = match &r.revision {
        Some(rev) => format!(" --revision {rev}"),
        None => String::new(),
    };
    ModelError::Format {
        path: PathBuf::from(r.to_string()),
        what: format!(
            "not in the Hugging Face cache {} ({why}). Download it with `hf download {}{rev}` \
             (or `huggingface-cli download {}{rev}`), which fills that cache, or set HF_HUB_CACHE \
             (or HF_HOME) to the cache that holds it; ardpipe itself downloads nothing",
            dir.display(),
            r.repo_id,
            r.repo_id
        ),
    }
}
