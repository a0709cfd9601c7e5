//! The ardpipe pipeline language: `.ard` text → spanned AST → checked, resolved [`Pipeline`].
//!
//! Nothing here touches tensors or models; the only disk reads are the pipeline file and its
//! imports. Module selectors stay symbolic: the engine resolves them against a real model.
//!
//! ```no_run
//! let ctx = ardpipe_dsl::Context { assets: Some("/root/.cache/ardpipe/assets".into()), ..Default::default() };
//! match ardpipe_dsl::check_file(std::path::Path::new("pipelines/quickstart.ard"), &ctx) {
//!     Ok(checked) => println!("{}", checked.pipeline.name),
//!     Err(diagnostics) => eprintln!("{} errors", diagnostics.error_count()),
//! }
//! ```

pub mod ast;
mod check;
pub mod diag;
mod eval;
mod format;
pub mod hf_ref;
pub mod language;
mod load;
mod overrides;
mod parse;
pub mod pipeline;
pub mod plugin_uses;
mod reader;
mod scan;
pub mod source;
mod suggest;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The checker's keys, blocks and value words, for editors.
pub use check::keys;
pub use diag::{Code, Diagnostics, JsonProblem, Problem, Severity};
pub use format::format_source;
pub use hf_ref::HfRef;
pub use load::normalize as normalize_path;
pub use pipeline::Pipeline;
pub use plugin_uses::{PluginSite, PluginUse, PluginUses};

use ast::{BodyItem, Item};
use diag::Sink;
use source::SourceMap;

/// What the caller provides besides the file.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Value of `${assets}`: where the example assets are installed.
    pub assets: Option<PathBuf>,
    /// `path.to.key=value` overrides, applied in order after the files are read.
    pub overrides: Vec<String>,
    /// Where a relative pipeline path starts (the current directory of a CLI user); defaults to
    /// the process's current directory. Relative paths in overrides, like those written in the
    /// file, start from the pipeline file's directory.
    pub cwd: Option<PathBuf>,
    /// Check only this variant (`--variant NAME`): the others are not run, so their settings
    /// cannot block it (e.g. a schedule point past a `--set train.steps` that only one needs).
    pub variant: Option<String>,
}

/// A pipeline that passed the checker, with any warnings.
#[derive(Debug)]
pub struct Checked {
    pub pipeline: Pipeline,
    pub warnings: Diagnostics,
    /// Where its plugins' options are written, to show a plugin's errors against the text.
    pub plugin_uses: PluginUses,
}

/// Reads, parses and checks a pipeline file with its imports.
pub fn check_file(path: &Path, ctx: &Context) -> Result<Checked, Diagnostics> {
    check_impl(path, None, ctx, None)
}

/// Checks pipeline text as if it were the file at `path` (imports and relative paths start from
/// its directory; nothing is read for the top file itself).
pub fn check_source(path: &Path, text: &str, ctx: &Context) -> Result<Checked, Diagnostics> {
    check_impl(path, Some(text), ctx, None)
}

/// Reads an imported file by its absolute path, or says why it cannot (e.g. from a Git
/// revision's tree, for `ardpipe diff REV:path`).
pub type ImportReader<'a> = &'a dyn Fn(&Path) -> Result<String, String>;

/// [`check_source`] with imported files read through `imports` instead of from the disk.
pub fn check_source_with_imports(
    path: &Path,
    text: &str,
    ctx: &Context,
    imports: ImportReader<'_>,
) -> Result<Checked, Diagnostics> {
    check_impl(path, Some(text), ctx, Some(imports))
}

/// The JSON Schema of [`Pipeline`] (checked in as `schemas/pipeline.schema.json`).
pub fn pipeline_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Pipeline)).unwrap_or_default()
}

fn check_impl(
    path: &Path,
    text: Option<&str>,
    ctx: &Context,
    imports: Option<ImportReader<'_>>,
) -> Result<Checked, Diagnostics> {
    let abs = absolute(path, ctx);
    let name = path.display().to_string();
    let mut sources = SourceMap::default();
    let mut sink = Sink::default();
    let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut builtins = HashMap::new();
    builtins.insert(
        "assets".to_string(),
        ctx.assets.as_ref().map(|p| p.display().to_string()),
    );
    builtins.insert("pipeline_dir".to_string(), Some(dir.display().to_string()));

    let loaded = load::Loader::new(&mut sources, &mut sink, &builtins)
        .with_imports(imports)
        .load_top(&abs, &name, text);
    let mut base_dirs = loaded.base_dirs;
    let mut items = loaded.items;
    let top = loaded.top;
    // An unreadable top file (not UTF-8, too large, a directory): its one problem says so. Checking
    // nothing further would only add "missing block" problems pointing into a text that is not there.
    if top.is_none() {
        return Err(Diagnostics::new(sink.problems, Arc::new(sources)));
    }

    let mut scope = eval::Scope::new(builtins.clone());
    for item in &items {
        if let Item::Let(l) = item {
            if check::VOCABULARY.contains(&l.name.name.as_str()) {
                sink.push(
                    Problem::error(
                        Code::Duplicate,
                        l.name.span,
                        format!("`{}` is a word of the language", l.name.name),
                    )
                    .label("reserved")
                    .help(format!(
                        "a variable named `{0}` would hide the value `{0}`: pick another name",
                        l.name.name
                    )),
                );
                continue;
            }
            scope.define(l, &mut sink);
        }
    }

    // Overrides edit the tree, so they are checked like file content, and their relative paths
    // start where the file's own do: `--set model.path=m` means the `m` beside the pipeline.
    let override_dir = dir.clone();
    // Block overrides again after each variant's expansion: the command line wins over a
    // variant that replaces a whole block, not just over the base file.
    let mut block_overrides = Vec::new();
    for (i, o) in ctx.overrides.iter().enumerate() {
        let id = sources.add(format!("--set #{}", i + 1), None, o);
        base_dirs.insert(id, override_dir.clone());
        if let Some(entry) = parse::parse_override(o, id, &mut sink) {
            overrides::apply(&mut items, &entry, Some(&mut scope), &mut sink);
            if entry.key.first().is_some_and(|k| k.name != "let") {
                block_overrides.push(entry);
            }
        }
    }

    // A file for a newer ardpipe is refused before anything else is checked: its other keys
    // may mean what this build does not know, and listing them as errors would mislead.
    if let Some(p) = language::too_new(&items) {
        return Err(Diagnostics::new(vec![p], Arc::new(sources)));
    }

    let complete = loaded.complete;
    let mut positions = Vec::new();
    let mut cx = reader::Ctx {
        sink: &mut sink,
        scope: &mut scope,
        base_dirs: &base_dirs,
        complete,
        positions: std::mem::take(&mut positions),
        plugin_refs: Vec::new(),
        plugin_uses: Vec::new(),
    };
    let base_items: Vec<Item> = items.iter().filter(|i| !is_variant(i)).cloned().collect();
    let mut pipeline = check::check_run(&base_items, &abs, &mut cx);
    let mut uses = PluginUses {
        base: std::mem::take(&mut cx.plugin_uses),
        ..PluginUses::default()
    };

    let mut seen = HashSet::new();
    for item in &items {
        let Item::Block(v) = item else { continue };
        if v.kind.name != "variant" {
            continue;
        }
        let Some(label) = &v.label else { continue };
        if !seen.insert(label.name.clone()) {
            continue;
        }
        if ctx.variant.as_ref().is_some_and(|want| *want != label.name) {
            continue;
        }
        let mut run_items = variant_items(&base_items, v, &mut cx);
        for e in &block_overrides {
            overrides::apply(&mut run_items, e, None, cx.sink);
        }
        let vp = check::check_run(&run_items, &abs, &mut cx);
        uses.variants
            .insert(label.name.clone(), std::mem::take(&mut cx.plugin_uses));
        if let (Some(p), Some(vp)) = (pipeline.as_mut(), vp) {
            p.variants.push(pipeline::Variant {
                name: label.name.clone(),
                pipeline: Box::new(vp),
            });
        }
    }

    if let Some(want) = &ctx.variant
        && !seen.is_empty()
        && !seen.contains(want)
    {
        let mut names: Vec<&str> = seen.iter().map(String::as_str).collect();
        names.sort_unstable();
        cx.sink.push(
            Problem::global(
                Code::Unresolved,
                format!("--variant {want}: the pipeline has no such variant"),
            )
            .help(match suggest::closest(want, names.iter().copied()) {
                Some(c) => format!(
                    "did you mean `{c}`? The variants are: {}",
                    suggest::list(&names)
                ),
                None => format!("the variants are: {}", suggest::list(&names)),
            }),
        );
    }

    // Variables of the top file nobody used are probably a mistake (imported ones may be shared).
    // With one variant selected, the others' uses were not seen: say nothing then.
    let unused: Vec<_> = scope
        .lets()
        .filter(|_| ctx.variant.is_none())
        .filter(|l| Some(l.name.span.file) == top && !scope.used.contains(&l.name.name))
        .map(|l| l.name.clone())
        .collect();
    for n in unused {
        sink.push(
            Problem::warning(
                Code::Unused,
                n.span,
                format!("variable `{}` is never used", n.name),
            )
            .label("unused")
            .help("remove it, or use it as a value or inside a string as `${name}`"),
        );
    }

    let problems = cap(dedup(sink.problems));
    let sources = Arc::new(sources);
    uses.sources = sources.clone();
    let has_errors = problems.iter().any(|p| p.severity == Severity::Error);
    match pipeline {
        Some(p) if !has_errors => Ok(Checked {
            pipeline: p,
            warnings: Diagnostics::new(problems, sources),
            plugin_uses: uses,
        }),
        _ => {
            let mut problems = problems;
            if !problems.iter().any(|p| p.severity == Severity::Error) {
                problems.push(Problem::global(Code::Missing, "the pipeline is incomplete"));
            }
            Err(Diagnostics::new(problems, sources))
        }
    }
}

fn is_variant(i: &Item) -> bool {
    matches!(i, Item::Block(b) if b.kind.name == "variant")
}

/// The base items with a variant's blocks swapped in and its dotted entries applied.
fn variant_items(base: &[Item], v: &ast::Block, cx: &mut reader::Ctx) -> Vec<Item> {
    let mut items = base.to_vec();
    for b in &v.body {
        match b {
            BodyItem::Block(nb) => {
                if !check::TOP_BLOCKS.contains(&nb.kind.name.as_str()) || nb.kind.name == "variant" || nb.kind.name == "pipeline" {
                    cx.push(
                        Problem::error(Code::UnknownBlock, nb.kind.span, format!("a variant cannot replace `{}`", nb.kind.name))
                            .label("not replaceable")
                            .help("a variant replaces dataset, model, adapter, train, evaluate, output, distributed or plugin blocks"),
                    );
                    continue;
                }
                let same = |i: &Item| matches!(i, Item::Block(x) if x.kind.name == nb.kind.name
                    && x.label.as_ref().map(|l| &l.name) == nb.label.as_ref().map(|l| &l.name));
                match items.iter().position(same) {
                    Some(i) => items[i] = Item::Block(nb.clone()),
                    None => items.push(Item::Block(nb.clone())),
                }
            }
            BodyItem::Entry(e) if e.key.len() == 1 => cx.push(
                Problem::error(Code::UnknownKey, e.key_span(), format!("`{}` is not a variant setting", e.key_text()))
                    .label("needs a block path")
                    .help("inside a variant, write `block.key = value` (e.g. `train.steps = 600`) or a whole block"),
            ),
            BodyItem::Entry(e) => overrides::apply(&mut items, e, None, cx.sink),
        }
    }
    items
}

/// The most problems one check reports. Each is rendered with its source, so a file with 200,000
/// unused variables would take minutes to report; past this many, fixing the first ones and
/// checking again is the way anyway.
const MAX_REPORTED: usize = 100;

/// At most `MAX_REPORTED` problems, errors first, then a note of how many more there are.
fn cap(problems: Vec<Problem>) -> Vec<Problem> {
    if problems.len() <= MAX_REPORTED {
        return problems;
    }
    let total = problems.len();
    let (errors, warnings): (Vec<Problem>, Vec<Problem>) = problems
        .into_iter()
        .partition(|p| p.severity == Severity::Error);
    let error_count = errors.len();
    let mut kept: Vec<Problem> = errors.into_iter().take(MAX_REPORTED).collect();
    let room = MAX_REPORTED - kept.len();
    kept.extend(warnings.into_iter().take(room));
    let mut more = Problem::global(
        Code::TooLarge,
        format!(
            "{} more problem(s) not shown ({total} in all, {error_count} of them errors)",
            total - kept.len()
        ),
    )
    .help(format!(
        "a check reports at most {MAX_REPORTED} problems, errors first: fix these and check again"
    ));
    if error_count <= MAX_REPORTED {
        more.severity = Severity::Warning;
    }
    kept.push(more);
    kept
}

fn dedup(problems: Vec<Problem>) -> Vec<Problem> {
    let mut seen = HashSet::new();
    problems
        .into_iter()
        .filter(|p| {
            seen.insert((
                p.code,
                p.span.map(|s| (s.file, s.start, s.end)),
                p.message.clone(),
            ))
        })
        .collect()
}

fn absolute(path: &Path, ctx: &Context) -> PathBuf {
    if path.is_absolute() {
        return load::normalize(path);
    }
    let base = ctx
        .cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    load::normalize(&base.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--set model.path="m"` means the `m` beside the pipeline file, as `path = "m"` written in
    /// the file does, whatever the current directory (as `--help` says).
    #[test]
    fn relative_override_paths_start_at_the_pipeline_file() {
        let text = include_str!("../../pipelines/quickstart.ard");
        let ctx = Context {
            assets: Some("/assets".into()),
            overrides: vec![r#"model.path="m""#.into()],
            cwd: Some("/somewhere/else".into()),
            variant: None,
        };
        let checked = check_source(Path::new("/work/p/quick.ard"), text, &ctx)
            .unwrap_or_else(|d| panic!("{:?}", d.problems));
        assert_eq!(checked.pipeline.model.path, Path::new("/work/p/m"));
    }
}
