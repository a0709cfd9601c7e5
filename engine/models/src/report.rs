//! The load report: which weights went where, and everything that did not fit.

use std::fmt;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<i64>,
    pub found: Vec<i64>,
}

/// What loading a checkpoint into an architecture did. A load with anything missing,
/// mismatched or unexpected fails with this report as its error.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// The checkpoint (file or folder) the weights came from.
    pub source: String,
    /// The architecture it was loaded into, e.g. `llama` or `bert`.
    pub architecture: String,
    pub applied: usize,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub mismatched: Vec<ShapeMismatch>,
}

impl LoadReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

const SHOW: usize = 8;

fn list(f: &mut fmt::Formatter<'_>, what: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    write!(f, "\n  {what} ({}):", items.len())?;
    for i in items.iter().take(SHOW) {
        write!(f, "\n    {i}")?;
    }
    if items.len() > SHOW {
        write!(f, "\n    … and {} more", items.len() - SHOW)?;
    }
    Ok(())
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the weights in {} do not fit a {} model ({} tensors applied):",
            self.source, self.architecture, self.applied
        )?;
        list(f, "missing", &self.missing)?;
        let mism: Vec<String> = self
            .mismatched
            .iter()
            .map(|m| {
                format!(
                    "{}: checkpoint {:?}, model expects {:?}",
                    m.name, m.found, m.expected
                )
            })
            .collect();
        list(f, "shape mismatch", &mism)?;
        list(f, "unexpected", &self.unexpected)?;
        write!(
            f,
            "\n  help: check that config.json belongs to these weights (same model family and size); \
             a truncated or partial download also shows up as missing tensors"
        )
    }
}
