//! Running `git` for what ardpipe reads from a repository: the run manifest's Git fields
//! (manifest.rs), the versions of a pipeline file `ardpipe runs --pipeline` matches and the
//! revisions `ardpipe diff` reads.

use std::path::Path;
use std::process::Command;

/// Why a `git` command gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitError {
    /// `git` could not be started (it is not installed): the OS error.
    NotFound(String),
    /// It ran and failed: what it printed on stderr.
    Failed(String),
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::NotFound(e) => write!(f, "cannot run git: {e}"),
            GitError::Failed(e) => f.write_str(e),
        }
    }
}

/// `git [-C DIR] ARGS`: its standard output, which must be UTF-8 text.
pub fn run(dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| GitError::NotFound(e.to_string()))?;
    if !out.status.success() {
        return Err(GitError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| GitError::Failed("git printed bytes that are not UTF-8".into()))
}
