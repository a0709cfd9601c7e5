//! `hf:ORG/NAME[@REVISION]`: a model named by its Hugging Face repository instead of a path.
//!
//! The grammar lives here, beside the checker that refuses a malformed name at `check` time;
//! the engine reads the same [`HfRef`] to find the model in the local Hugging Face cache
//! (engine/models/src/hf/hub_cache.rs), so a name `check` accepts is the name that is looked up.

use std::fmt;

/// What marks a model path as a repository name.
pub const SCHEME: &str = "hf:";

/// A Hugging Face model repository and an optional revision (branch, tag or commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfRef {
    /// `ORG/NAME`, as the Hub spells it.
    pub repo_id: String,
    /// `None`: the `main` branch.
    pub revision: Option<String>,
}

impl HfRef {
    /// `None` when `text` is not an `hf:` name (an ordinary path); otherwise the parsed name or
    /// why it is malformed, in words that say how to write it.
    pub fn parse(text: &str) -> Option<Result<HfRef, String>> {
        let rest = text.strip_prefix(SCHEME)?;
        Some(parse_rest(rest))
    }

    /// The revision to read: the named one or `main`.
    pub fn revision_or_main(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }
}

impl fmt::Display for HfRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.repo_id)?;
        if let Some(r) = &self.revision {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// What a PEFT adapter's `base_model_name_or_path` says for a model path: the repository id of
/// an `hf:` name (PEFT and transformers load the base from the Hub by it), else the path.
pub fn base_model_name(path: &std::path::Path) -> String {
    match HfRef::parse(&path.to_string_lossy()) {
        Some(Ok(r)) => r.repo_id,
        _ => path.display().to_string(),
    }
}

const FORM: &str = "write `hf:ORG/NAME` or `hf:ORG/NAME@REVISION`, e.g. \
                    `hf:sentence-transformers/all-MiniLM-L6-v2`";

fn parse_rest(rest: &str) -> Result<HfRef, String> {
    let (repo, revision) = match rest.split_once('@') {
        Some((repo, rev)) => (repo, Some(rev)),
        None => (rest, None),
    };
    let Some((org, name)) = repo.split_once('/') else {
        return Err(format!("`{SCHEME}{rest}` names no organisation: {FORM}"));
    };
    for (what, part) in [("organisation", org), ("model name", name)] {
        repo_part(what, part)?;
    }
    if let Some(rev) = revision {
        revision_ok(rev)?;
    }
    Ok(HfRef {
        repo_id: format!("{org}/{name}"),
        revision: revision.map(str::to_string),
    })
}

/// The Hub's rule for the two halves of a repository id: letters, digits, `-`, `_` and `.`,
/// not starting or ending with `-` or `.`, no `--` or `..`, at most 96 characters.
fn repo_part(what: &str, part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!("the {what} is empty: {FORM}"));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the {what} `{part}` has `{c}`, which a Hugging Face repository name cannot hold \
             (letters, digits, `-`, `_` and `.` only): {FORM}"
        ));
    }
    if part.starts_with(['-', '.'])
        || part.ends_with(['-', '.'])
        || part.contains("--")
        || part.contains("..")
        || part.len() > 96
    {
        return Err(format!(
            "the {what} `{part}` is not a Hugging Face repository name (it may not start or end \
             with `-` or `.`, hold `--` or `..`, or be longer than 96 characters): {FORM}"
        ));
    }
    Ok(())
}

/// A branch, tag or commit: no spaces, no `..`, not empty, no leading `/`.
fn revision_ok(rev: &str) -> Result<(), String> {
    if rev.is_empty()
        || rev.starts_with('/')
        || rev.ends_with('/')
        || rev.contains("..")
        || rev.contains('@')
        || rev.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`{rev}` is not a revision (a branch, tag or commit, without spaces or `..`): {FORM}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_revisions_parse() {
        assert_eq!(HfRef::parse("/models/minilm"), None);
        let r = HfRef::parse("hf:sentence-transformers/all-MiniLM-L6-v2")
            .unwrap()
            .unwrap();
        assert_eq!(r.repo_id, "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(r.revision_or_main(), "main");
        let r = HfRef::parse("hf:HuggingFaceTB/SmolLM2-135M@refs/pr/1")
            .unwrap()
            .unwrap();
        assert_eq!(r.revision.as_deref(), Some("refs/pr/1"));
        assert_eq!(r.to_string(), "hf:HuggingFaceTB/SmolLM2-135M@refs/pr/1");
    }

    #[test]
    fn malformed_names_say_how_to_write_one() {
        for bad in [
            "hf:",
            "hf:minilm",
            "hf:/name",
            "hf:org/",
            "hf:org/na me",
            "hf:org/a/b",
            "hf:org/-x",
            "hf:org/x@",
            "hf:org/x@a b",
            "hf:org/x@../main",
        ] {
            let e = HfRef::parse(bad).unwrap().unwrap_err();
            assert!(e.contains("hf:ORG/NAME"), "{bad}: {e}");
        }
    }
}
