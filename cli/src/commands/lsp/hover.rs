//! Hover text: docs/LANGUAGE.md's own words for a key or a block, from the copy built into the
//! binary, read once. A key's text is its row of its block's `| key | values | default |` table
//! (`| knob | meaning | default |` for ARD-LoRA), else the paragraph or list item of its block's
//! section that names it in backticks (`split { ... }`, `preprocess { }`, `lora`, `output`, ...).

use std::sync::OnceLock;

const LANGUAGE: &str = include_str!("../../../../docs/LANGUAGE.md");

enum Unit {
    /// A table row (header and separator rows dropped), with its table's header cells.
    Row {
        header: Vec<String>,
        cells: Vec<String>,
    },
    /// A paragraph or one list item.
    Text(String),
}

struct Section {
    /// `dataset` for "## `dataset NAME`", `top` for "## Top-level blocks".
    kind: String,
    units: Vec<Unit>,
}

pub struct Docs {
    sections: Vec<Section>,
}

pub fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| Docs::parse(LANGUAGE))
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    // Cells are split on `|` outside code spans (`a | b` inside backticks stays one cell).
    let mut out = vec![String::new()];
    let mut code = false;
    for c in inner.chars() {
        match c {
            '`' => {
                code = !code;
                out.last_mut().unwrap().push(c);
            }
            '|' if !code => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

fn separator(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// The code spans of a text: "`a`, `b { c }`" → ["a", "b { c }"].
fn code_spans(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// What a code span names: `alpha { init min max }` → (Some("alpha"), [init, min, max]);
/// `contiguous = N` → (None, [contiguous]).
fn names(span: &str) -> (Option<&str>, Vec<&str>) {
    match span.split_once('{') {
        Some((block, rest)) => {
            let inner = rest.trim_end_matches('}');
            let words = inner
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect();
            (Some(block.trim()), words)
        }
        None => {
            let first = span
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            (None, vec![first])
        }
    }
}

impl Docs {
    fn parse(text: &str) -> Docs {
        let mut sections: Vec<Section> = Vec::new();
        let mut fence = false;
        let mut para = String::new();
        let mut header: Vec<String> = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        let flush = |para: &mut String, sections: &mut Vec<Section>| {
            if !para.trim().is_empty()
                && let Some(s) = sections.last_mut()
            {
                s.units.push(Unit::Text(para.trim().to_string()));
            }
            para.clear();
        };
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("```") {
                flush(&mut para, &mut sections);
                fence = !fence;
                continue;
            }
            if fence {
                continue;
            }
            if let Some(h) = line.strip_prefix("## ") {
                flush(&mut para, &mut sections);
                let kind = match code_spans(h).next() {
                    Some(c) => c.split_whitespace().next().unwrap_or("").to_string(),
                    None if h.starts_with("Top-level blocks") => "top".to_string(),
                    None => h.trim().to_lowercase(),
                };
                sections.push(Section {
                    kind,
                    units: Vec::new(),
                });
                continue;
            }
            if line.starts_with('#') {
                flush(&mut para, &mut sections);
                continue;
            }
            if line.trim_start().starts_with('|') {
                flush(&mut para, &mut sections);
                if separator(line) {
                    continue;
                }
                if lines.get(i + 1).is_some_and(|n| separator(n)) {
                    header = cells(line);
                    continue;
                }
                if let Some(s) = sections.last_mut() {
                    s.units.push(Unit::Row {
                        header: header.clone(),
                        cells: cells(line),
                    });
                }
                continue;
            }
            if line.trim().is_empty() {
                flush(&mut para, &mut sections);
                continue;
            }
            if line.starts_with("- ") {
                flush(&mut para, &mut sections);
            }
            if !para.is_empty() {
                para.push('\n');
            }
            para.push_str(line);
        }
        flush(&mut para, &mut sections);
        Docs { sections }
    }

    fn section(&self, kind: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// The text for `key` in the block at `path` (kinds, as `dsl::keys::block_keys` takes).
    pub fn key(&self, path: &[&str], key: &str) -> Option<String> {
        let path = match path {
            ["variant", rest @ ..] if !rest.is_empty() => rest,
            p => p,
        };
        let (top, nested) = (*path.first()?, path.get(1).copied());
        let title = format!("`{}.{key}`", path.join("."));
        // `pipeline { }`'s keys are described in its row of the top-level table.
        let section = if top == "pipeline" { "top" } else { top };
        let units = &self.section(section)?.units;
        let row = units.iter().find_map(|u| match u {
            Unit::Row { header, cells } if top != "pipeline" => {
                let hit = code_spans(cells.first()?).any(|c| match (names(c), nested) {
                    ((None, words), None) => words == [key],
                    ((Some(b), words), Some(n)) => b == n && words.contains(&key),
                    _ => false,
                });
                hit.then(|| render_row(header, cells))
            }
            _ => None,
        });
        if let Some(r) = row {
            return Some(format!("{title}\n\n{r}"));
        }
        let names_key = |text: &str| code_spans(text).any(|c| names(c).1.first() == Some(&key));
        let text_of = |u: &Unit| match u {
            Unit::Row { header, cells } => render_row(header, cells),
            Unit::Text(t) => t.clone(),
        };
        let raw = |u: &Unit| match u {
            Unit::Row { cells, .. } => cells.join(" | "),
            Unit::Text(t) => t.clone(),
        };
        let in_block = |u: &Unit| match nested {
            Some(n) => code_spans(&raw(u)).any(|c| names(c).0 == Some(n) || c == n),
            None => true,
        };
        let hit = units
            .iter()
            .find(|u| names_key(&raw(u)) && in_block(u))
            .or_else(|| units.iter().find(|u| names_key(&raw(u))))?;
        Some(format!("{title}\n\n{}", text_of(hit)))
    }

    /// The text for a block: a top-level block's row of the top-level table (with `path` empty),
    /// or a nested block's row or paragraph in its parent's section.
    pub fn block(&self, path: &[&str], name: &str) -> Option<String> {
        let path = match path {
            ["variant", rest @ ..] => rest,
            p => p,
        };
        let Some(&top) = path.first() else {
            let units = &self.section("top")?.units;
            return units.iter().find_map(|u| match u {
                Unit::Row { cells, .. } => {
                    let first = code_spans(cells.first()?).next()?;
                    let what = cells.last()?;
                    (first.split_whitespace().next() == Some(name))
                        .then(|| format!("`{first}`\n\n{what}"))
                }
                Unit::Text(_) => None,
            });
        };
        let units = &self.section(top)?.units;
        units.iter().find_map(|u| match u {
            Unit::Row { header, cells } => code_spans(cells.first()?)
                .any(|c| names(c).0 == Some(name))
                .then(|| format!("`{top}.{name}`\n\n{}", render_row(header, cells))),
            Unit::Text(t) => code_spans(t)
                .next()
                .is_some_and(|c| names(c).0 == Some(name))
                .then(|| format!("`{top}.{name}`\n\n{t}")),
        })
    }
}

fn render_row(header: &[String], cells: &[String]) -> String {
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        if i == 0 {
            out += c;
            continue;
        }
        match header.get(i).map(String::as_str) {
            Some("default") => out += &format!("\n\nDefault: {c}"),
            _ => out += &format!(": {c}"),
        }
    }
    out
}
