//! Reads a pipeline file and its imports into one list of items. Imports are expanded where they
//! stand; a file imported twice is read once; a cycle is an error that shows the chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ast::{ExprKind, Item, Span, StrPart};
use crate::diag::{Code, Problem, Sink};
use crate::parse;
use crate::scan::MAX_FILE_BYTES;
use crate::source::{FileId, SourceMap};

const MAX_IMPORT_DEPTH: usize = 16;
const MAX_FILES: usize = 256;

pub struct Loaded {
    pub items: Vec<Item>,
    /// Directory each file's relative paths start from.
    pub base_dirs: HashMap<FileId, PathBuf>,
    pub top: Option<FileId>,
    /// Whether a syntax error dropped part of a file (then "missing" errors are not reported).
    pub complete: bool,
}

pub struct Loader<'a> {
    pub sources: &'a mut SourceMap,
    pub sink: &'a mut Sink,
    pub builtins: &'a HashMap<String, Option<String>>,
    stack: Vec<PathBuf>,
    loaded: Vec<PathBuf>,
    out: Loaded,
    /// Where imported files are read from, when not the disk (a Git revision's tree).
    imports: Option<crate::ImportReader<'a>>,
}

impl<'a> Loader<'a> {
    pub fn new(
        sources: &'a mut SourceMap,
        sink: &'a mut Sink,
        builtins: &'a HashMap<String, Option<String>>,
    ) -> Self {
        Loader {
            sources,
            sink,
            builtins,
            stack: Vec::new(),
            loaded: Vec::new(),
            imports: None,
            out: Loaded {
                items: Vec::new(),
                base_dirs: HashMap::new(),
                top: None,
                complete: true,
            },
        }
    }

    /// Read imported files through `imports` instead of from the disk.
    pub fn with_imports(mut self, imports: Option<crate::ImportReader<'a>>) -> Self {
        self.imports = imports;
        self
    }

    /// Loads the top file: from `text` when given (e.g. an editor buffer), else from disk.
    pub fn load_top(mut self, path: &Path, name: &str, text: Option<&str>) -> Loaded {
        let text = match text {
            Some(t) => t.to_string(),
            None => match read(path) {
                Ok(t) => t,
                Err(why) => {
                    self.sink.push(
                        Problem::global(Code::ImportFailed, format!("cannot read {name}: {why}"))
                            .help("check the path; pipeline files end in `.ard`"),
                    );
                    return self.out;
                }
            },
        };
        let items = self.load_text(path, name.to_string(), &text, 0);
        self.out.items = items;
        self.out
    }

    fn load_text(&mut self, path: &Path, name: String, text: &str, depth: usize) -> Vec<Item> {
        let id = self.sources.add(name, Some(path.to_path_buf()), text);
        if self.out.top.is_none() {
            self.out.top = Some(id);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.out.base_dirs.insert(id, dir.clone());
        self.stack.push(path.to_path_buf());
        self.loaded.push(path.to_path_buf());
        let before = self.sink.error_count();
        let file = parse::parse_file(text, id, self.sink);
        if self.sink.problems[before..]
            .iter()
            .any(|p| p.code == Code::Syntax || p.code == Code::TooDeep || p.code == Code::TooLarge)
        {
            self.out.complete = false;
        }
        let mut items = Vec::new();
        for item in file.items {
            match item {
                Item::Import(imp) => items.extend(self.import(&imp.path, imp.span, &dir, depth)),
                other => items.push(other),
            }
        }
        self.stack.pop();
        items
    }

    fn import(&mut self, e: &crate::ast::Expr, span: Span, dir: &Path, depth: usize) -> Vec<Item> {
        // Import paths may use the built-in variables only: `let`s are not known yet.
        let ExprKind::Str(parts) = &e.kind else {
            return Vec::new();
        };
        let mut rel = String::new();
        for p in parts {
            match p {
                StrPart::Text(t) => rel.push_str(t),
                StrPart::Interp(id) => match self.builtins.get(&id.name) {
                    Some(Some(v)) => rel.push_str(v),
                    _ => {
                        self.sink.push(
                            Problem::error(Code::Unresolved, id.span, format!("`${{{}}}` cannot be used in an import path", id.name))
                                .label("no value here")
                                .help("import paths are relative to this file and may use `${assets}` and `${pipeline_dir}` only"),
                        );
                        return Vec::new();
                    }
                },
            }
        }
        let path = normalize(&dir.join(&rel));
        if self.stack.contains(&path) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .chain(std::iter::once(&path))
                .map(|p| {
                    p.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect();
            self.sink.push(
                Problem::error(
                    Code::ImportCycle,
                    e.span,
                    format!("import cycle: {}", chain.join(" → ")),
                )
                .label("imports a file that is importing this one")
                .help("move the shared blocks into a third file that both import"),
            );
            return Vec::new();
        }
        if self.loaded.contains(&path) {
            return Vec::new();
        }
        if depth >= MAX_IMPORT_DEPTH || self.loaded.len() >= MAX_FILES {
            self.sink.push(
                Problem::error(
                    Code::TooDeep,
                    span,
                    format!(
                        "imports nest deeper than {MAX_IMPORT_DEPTH} or exceed {MAX_FILES} files"
                    ),
                )
                .label("one import too many")
                .help("flatten the imports"),
            );
            return Vec::new();
        }
        let text = match self.imports {
            Some(read_import) => read_import(&path),
            None => read(&path),
        };
        match text {
            Ok(text) => self.load_text(&path, rel.clone(), &text, depth + 1),
            Err(why) => {
                self.sink.push(
                    Problem::error(
                        Code::ImportFailed,
                        e.span,
                        format!("cannot import `{rel}`: {why}"),
                    )
                    .label("not readable")
                    .help(format!(
                        "the path is relative to this file; it resolved to {}",
                        shown(&path)
                    )),
                );
                Vec::new()
            }
        }
    }
}

/// A path as the user can use it: relative to the current directory when it lies inside it.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(|r| r.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}

fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("it is a directory".into());
    }
    if meta.len() as usize > MAX_FILE_BYTES {
        return Err(format!(
            "it is {} bytes; pipeline files are limited to {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    // Bounded whatever the metadata said: a device such as /dev/zero reports a length of 0.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read as _;
            f.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes)
        })
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(format!(
            "it holds more than {MAX_FILE_BYTES} bytes, the limit for pipeline files"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("it is not UTF-8 text (byte {at}, line {line}); save it as UTF-8")
    })
}

/// `a/./b/../c` → `a/c`, lexically (the dsl does not look at the disk); a `..` with nothing
/// before it to cancel is kept.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
