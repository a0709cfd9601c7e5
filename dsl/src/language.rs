//! The language version a pipeline file is written in (`pipeline { language = 1 }`; a file
//! without it is written in the current one) and the migrations that bring an older file up to
//! date. A migration rewrites the text (comments and layout kept, like `ardpipe fmt`) from one
//! version to the next; `ardpipe migrate` runs them in order and then sets `language` to the
//! version reached. A file newer than this build is refused at check time: its keys may mean
//! something this build does not know.

use crate::ast::{BodyItem, ExprKind, Item, Span};
use crate::diag::{Code, Diagnostics, Problem, Sink};
use crate::source::SourceMap;

/// The newest language version this build reads.
pub const CURRENT: u32 = 1;

/// [`CURRENT`], as serde's default for pipelines resolved before `language` existed.
pub fn current() -> u32 {
    CURRENT
}

/// One step: text of version `from` → text of version `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub from: u32,
    /// What the step changes, for `ardpipe migrate`'s report.
    pub summary: &'static str,
    pub apply: fn(&str) -> Result<String, String>,
}

/// Every migration, oldest first. Empty: version 1 is the first and only version so far.
pub const MIGRATIONS: &[Migration] = &[];

/// A `language = N` written as a number in the file's `pipeline` block: its value and where the
/// number stands.
pub fn declared(items: &[Item]) -> Option<(u32, Span)> {
    items.iter().find_map(|i| match i {
        Item::Block(b) if b.kind.name == "pipeline" => b.body.iter().find_map(|x| match x {
            BodyItem::Entry(e) if e.key_text() == "language" => match &e.value.kind {
                ExprKind::Number { value, .. }
                    if value.fract() == 0.0 && *value >= 0.0 && *value <= u32::MAX as f64 =>
                {
                    Some((*value as u32, e.value.span))
                }
                _ => None,
            },
            _ => None,
        }),
        _ => None,
    })
}

/// The refusal of a file written for a newer ardpipe (`None` for a current or older one).
pub fn too_new(items: &[Item]) -> Option<Problem> {
    let (v, span) = declared(items).filter(|(v, _)| *v > CURRENT)?;
    Some(
        Problem::error(
            Code::OutOfRange,
            span,
            format!(
                "this pipeline is written in ardpipe language version {v}; this ardpipe ({}) reads up to version {CURRENT}",
                env!("CARGO_PKG_VERSION")
            ),
        )
        .label("newer than this ardpipe")
        .help("upgrade ardpipe to a release that knows this language version (its keys may mean something this one does not know)"),
    )
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Migrated {
    pub from: u32,
    pub to: u32,
    pub text: String,
    /// The summaries of the steps applied, in order (empty: the file was current).
    pub steps: Vec<&'static str>,
}

/// Bring `text` (the file `name`) from its declared version up to `target` through
/// `registry`; a file without `language` is current and comes back unchanged.
pub fn migrate(
    name: &str,
    text: &str,
    registry: &[Migration],
    target: u32,
) -> Result<Migrated, Diagnostics> {
    let mut sources = SourceMap::default();
    let id = sources.add(name.to_string(), None, text);
    let mut sink = Sink::default();
    let file = crate::parse::parse_file(text, id, &mut sink);
    let fail = |problems: Vec<Problem>, sources: SourceMap| {
        Err(Diagnostics::new(problems, std::sync::Arc::new(sources)))
    };
    if sink.error_count() > 0 {
        return fail(sink.problems, sources);
    }
    let Some((from, _)) = declared(&file.items) else {
        return Ok(Migrated {
            from: target,
            to: target,
            text: text.to_string(),
            steps: vec![],
        });
    };
    if from > target {
        let p = too_new(&file.items).unwrap_or_else(|| {
            Problem::global(
                Code::OutOfRange,
                format!("language version {from} is newer than {target}"),
            )
        });
        return fail(vec![p], sources);
    }
    let mut text = text.to_string();
    let mut steps = Vec::new();
    for v in from..target {
        let Some(m) = registry.iter().find(|m| m.from == v) else {
            return fail(
                vec![Problem::global(
                    Code::OutOfRange,
                    format!("no migration from language version {v} to {}", v + 1),
                )
                .help("this ardpipe cannot upgrade the file; an older ardpipe release still reads it")],
                sources,
            );
        };
        text = (m.apply)(&text).map_err(|why| {
            Diagnostics::new(
                vec![Problem::global(
                    Code::OutOfRange,
                    format!("migration {v} → {} ({}): {why}", v + 1, m.summary),
                )],
                std::sync::Arc::new(SourceMap::default()),
            )
        })?;
        steps.push(m.summary);
    }
    // The steps may have moved text: find the number again, in the migrated file.
    let mut sources = SourceMap::default();
    let id = sources.add(name.to_string(), None, &text);
    let mut sink = Sink::default();
    let file = crate::parse::parse_file(&text, id, &mut sink);
    if let Some((_, span)) = declared(&file.items)
        && from != target
    {
        text.replace_range(span.start..span.end, &target.to_string());
    }
    Ok(Migrated {
        from,
        to: target,
        text,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 → 2 step of a language that renamed `train.steps` to `train.max_steps`.
    fn rename_steps(text: &str) -> Result<String, String> {
        if text.contains("max_steps") {
            return Err("the file already has `max_steps`".into());
        }
        Ok(text.replace(" steps = ", " max_steps = "))
    }

    const TEST_REGISTRY: &[Migration] = &[Migration {
        from: 1,
        summary: "train.steps is now train.max_steps",
        apply: rename_steps,
    }];

    const V1: &str = "# a comment stays\npipeline {\n    name = \"p\"\n    language = 1\n}\n\ntrain {\n    steps = 10\n}\n";

    #[test]
    fn a_file_is_migrated_step_by_step_and_its_version_set() {
        let m = migrate("p.ard", V1, TEST_REGISTRY, 2).unwrap();
        assert_eq!((m.from, m.to), (1, 2));
        assert_eq!(m.steps, ["train.steps is now train.max_steps"]);
        assert_eq!(
            m.text,
            "# a comment stays\npipeline {\n    name = \"p\"\n    language = 2\n}\n\ntrain {\n    max_steps = 10\n}\n"
        );
        // Migrating the result again changes nothing.
        let again = migrate("p.ard", &m.text, TEST_REGISTRY, 2).unwrap();
        assert_eq!(
            (again.text.as_str(), again.steps.len()),
            (m.text.as_str(), 0)
        );
    }

    #[test]
    fn current_files_are_left_alone_and_newer_ones_refused() {
        let m = migrate("p.ard", V1, MIGRATIONS, CURRENT).unwrap();
        assert_eq!((m.from, m.to, m.text.as_str()), (1, 1, V1));
        let none = migrate("p.ard", "train {\n steps = 3\n}\n", MIGRATIONS, CURRENT).unwrap();
        assert!(none.steps.is_empty());
        let newer = V1.replace("language = 1", "language = 7");
        let e = migrate("p.ard", &newer, MIGRATIONS, CURRENT).unwrap_err();
        assert!(
            e.problems[0].message.contains("language version 7"),
            "{:?}",
            e.problems
        );
        // A missing step is an error, not a silent skip.
        let e = migrate("p.ard", V1, &[], 2).unwrap_err();
        assert!(
            e.problems[0]
                .message
                .contains("no migration from language version 1")
        );
        // A failing step says which one.
        let e = migrate("p.ard", &V1.replace("steps", "max_steps"), TEST_REGISTRY, 2).unwrap_err();
        assert!(
            e.problems[0].message.contains("train.steps is now"),
            "{:?}",
            e.problems
        );
    }
}
