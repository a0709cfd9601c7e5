//! Problems found in a pipeline, collected (never thrown one at a time) and rendered with miette.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use crate::ast::Span;
use crate::source::SourceMap;

/// What kind of problem; rendered as `ardpipe::dsl::<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    Syntax,
    TooDeep,
    TooLarge,
    UnknownBlock,
    UnknownKey,
    Duplicate,
    WrongType,
    OutOfRange,
    BadUnit,
    Unresolved,
    ImportCycle,
    ImportFailed,
    Missing,
    Contradiction,
    BadPattern,
    BadOverride,
    Unused,
    /// A plugin refused an option when the run opened it.
    PluginOption,
    /// Part of the language the engine does not implement yet.
    NotImplemented,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::TooDeep => "too_deep",
            Code::TooLarge => "too_large",
            Code::UnknownBlock => "unknown_block",
            Code::UnknownKey => "unknown_key",
            Code::Duplicate => "duplicate",
            Code::WrongType => "wrong_type",
            Code::OutOfRange => "out_of_range",
            Code::BadUnit => "bad_unit",
            Code::Unresolved => "unresolved",
            Code::ImportCycle => "import_cycle",
            Code::ImportFailed => "import_failed",
            Code::Missing => "missing",
            Code::Contradiction => "contradiction",
            Code::BadPattern => "bad_pattern",
            Code::BadOverride => "bad_override",
            Code::Unused => "unused",
            Code::PluginOption => "plugin_option",
            Code::NotImplemented => "not_implemented",
        }
    }
    pub fn full(self) -> String {
        format!("ardpipe::dsl::{}", self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem: what, where (a span and a label on it) and how to fix it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Option<Span>,
    pub label: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Problem {
        Problem {
            code,
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            label: String::new(),
            help: None,
        }
    }
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(code, span, message)
        }
    }
    /// A problem with no place in any file (e.g. the top file cannot be read).
    pub fn global(code: Code, message: impl Into<String>) -> Problem {
        Problem {
            code,
            severity: Severity::Error,
            message: message.into(),
            span: None,
            label: String::new(),
            help: None,
        }
    }
    pub fn label(mut self, label: impl Into<String>) -> Problem {
        self.label = label.into();
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }
}

/// Where problems go while checking.
#[derive(Debug, Default)]
pub struct Sink {
    pub problems: Vec<Problem>,
}

impl Sink {
    pub fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
    pub fn error_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

/// Every problem of one check, with the sources they point into.
#[derive(Debug)]
pub struct Diagnostics {
    pub problems: Vec<Problem>,
    pub sources: Arc<SourceMap>,
    rendered: Vec<Rendered>,
}

impl Diagnostics {
    pub fn new(problems: Vec<Problem>, sources: Arc<SourceMap>) -> Diagnostics {
        let rendered = problems
            .iter()
            .map(|p| Rendered::new(p, &sources))
            .collect();
        Diagnostics {
            problems,
            sources,
            rendered,
        }
    }
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
    pub fn error_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
    /// One miette diagnostic per problem, each carrying its own source file.
    pub fn reports(&self) -> &[Rendered] {
        &self.rendered
    }
    /// Machine-readable form for editors and CI (`ardpipe check --format json`).
    pub fn to_json(&self) -> Vec<JsonProblem> {
        self.problems
            .iter()
            .map(|p| {
                let (file, start, end) = match p.span {
                    Some(s) => {
                        let f = self.sources.get(s.file);
                        (
                            Some(f.name.clone()),
                            Some(self.sources.line_col(s.file, s.start)),
                            Some(self.sources.line_col(s.file, s.end)),
                        )
                    }
                    None => (None, None, None),
                };
                JsonProblem {
                    code: p.code.full(),
                    severity: p.severity,
                    message: p.message.clone(),
                    file,
                    line: start.map(|s| s.0),
                    column: start.map(|s| s.1),
                    end_line: end.map(|s| s.0),
                    end_column: end.map(|s| s.1),
                    label: p.label.clone(),
                    help: p.help.clone(),
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JsonProblem {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    pub label: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the pipeline", self.problems.len())
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostic for Diagnostics {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("ardpipe::dsl::check"))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.rendered.iter().map(|r| r as &dyn Diagnostic)))
    }
}

/// A problem made ready for miette: its file as a named source and its span as a label.
#[derive(Debug)]
pub struct Rendered {
    code: String,
    severity: Severity,
    message: String,
    help: Option<String>,
    source: Option<NamedSource<Arc<str>>>,
    label: Option<LabeledSpan>,
}

impl Rendered {
    fn new(p: &Problem, sources: &SourceMap) -> Rendered {
        let (source, label) = match p.span.and_then(|s| Some((s, sources.lookup(s.file)?))) {
            Some((s, f)) => {
                let span = SourceSpan::new(s.start.min(f.text.len()).into(), s.len());
                let label = if p.label.is_empty() {
                    LabeledSpan::underline(span)
                } else {
                    LabeledSpan::new_with_span(Some(p.label.clone()), span)
                };
                (
                    Some(NamedSource::new(f.name.clone(), f.text.clone()).with_language("ard")),
                    Some(label),
                )
            }
            None => (None, None),
        };
        Rendered {
            code: p.code.full(),
            severity: p.severity,
            message: p.message.clone(),
            help: p.help.clone(),
            source,
            label,
        }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.label
            .clone()
            .map(|l| Box::new(std::iter::once(l)) as Box<dyn Iterator<Item = LabeledSpan>>)
    }
}
