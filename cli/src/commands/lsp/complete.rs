//! Completion and hover: what goes where comes from the checker's tables (`ardpipe_dsl::keys`),
//! module names from the model itself, words from docs/LANGUAGE.md.

use std::path::{Path, PathBuf};

use lsp_types::{
    CompletionItem, CompletionItemKind, Documentation, Hover, HoverContents, MarkupContent,
    MarkupKind, Url,
};

use super::Server;
use super::hover::docs;
use super::scan::{Place, Tok, cursor, next_token, word_at, written};

fn item(label: &str, kind: CompletionItemKind, doc: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        documentation: doc.map(|d| {
            Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value: d,
            })
        }),
        ..Default::default()
    }
}

pub fn complete(server: &mut Server, uri: &Url, text: &str, at: usize) -> Vec<CompletionItem> {
    let c = cursor(text, at);
    let path: Vec<&str> = c.path.iter().map(String::as_str).collect();
    match c.place {
        Place::None => Vec::new(),
        Place::Top => {
            let mut items: Vec<CompletionItem> = ardpipe_dsl::keys::top_blocks()
                .iter()
                .map(|b| item(b, CompletionItemKind::MODULE, docs().block(&[], b)))
                .collect();
            for k in ["let", "import"] {
                items.push(item(k, CompletionItemKind::KEYWORD, None));
            }
            items
        }
        Place::Key => {
            let Some(k) = ardpipe_dsl::keys::block_keys(&path, c.method.as_deref()) else {
                return Vec::new();
            };
            let mut items: Vec<CompletionItem> = k
                .keys
                .iter()
                .filter(|key| !c.set.iter().any(|s| s == *key))
                .map(|key| item(key, CompletionItemKind::PROPERTY, docs().key(&path, key)))
                .collect();
            items.extend(
                k.blocks
                    .iter()
                    .map(|b| item(b, CompletionItemKind::MODULE, docs().block(&path, b))),
            );
            items
        }
        Place::Value { key, .. } => {
            let adapter = matches!(path.as_slice(), ["adapter"] | ["variant", "adapter"]);
            if adapter && (key == "modules" || key == "exclude") {
                let mut items: Vec<CompletionItem> = module_names(server, uri, text)
                    .into_iter()
                    .map(|m| item(&m, CompletionItemKind::FIELD, None))
                    .collect();
                items.push(item("all", CompletionItemKind::ENUM_MEMBER, None));
                return items;
            }
            ardpipe_dsl::keys::key_values(&path, &key)
                .iter()
                .map(|v| item(v, CompletionItemKind::ENUM_MEMBER, None))
                .collect()
        }
    }
}

/// The adaptable module names of the model `model.path` names, when it resolves to a model on
/// disk: read as `ardpipe inspect model` reads it (no tensor data), once per path.
fn module_names(server: &mut Server, uri: &Url, text: &str) -> Vec<String> {
    let Some(path) = model_path(server, uri, text) else {
        return Vec::new();
    };
    if let Some(names) = server.models.get(&path) {
        return names.clone();
    }
    // Only a model that could be read is kept: one that is not there yet (being downloaded,
    // a path still being typed) is looked for again at the next completion.
    match ardpipe_engine::models::describe(&path) {
        Ok(d) => {
            let mut names: Vec<String> = Vec::new();
            for m in d.modules {
                if !names.contains(&m.name) {
                    names.push(m.name);
                }
            }
            server.models.insert(path, names.clone());
            names
        }
        Err(why) => {
            eprintln!(
                "ardpipe lsp: no module names from {}: {why}",
                path.display()
            );
            Vec::new()
        }
    }
}

/// `model { path = ... }` as written: a string (with `${assets}`, `${pipeline_dir}` and string
/// `let`s interpolated) or a `let` holding one, relative to the document's folder.
fn model_path(server: &Server, uri: &Url, text: &str) -> Option<PathBuf> {
    let all = written(text);
    let string_of = |v: &Tok| -> Option<String> {
        match v {
            Tok::Str(s) => Some(s.clone()),
            Tok::Word(w) => all.iter().find_map(|e| match &e.value {
                Tok::Str(s) if e.path == ["let"] && e.key == *w => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        }
    };
    let raw = all
        .iter()
        .find(|e| e.path == ["model"] && e.key == "path")
        .and_then(|e| string_of(&e.value))?;
    let doc = super::doc_path(uri);
    let dir = doc.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut out = String::new();
    let mut rest = raw.as_str();
    while let Some(i) = rest.find("${") {
        out += &rest[..i];
        let end = rest[i..].find('}')? + i;
        let name = &rest[i + 2..end];
        let value = match name {
            "assets" => server.ctx.assets.as_ref()?.display().to_string(),
            "pipeline_dir" => dir.display().to_string(),
            n => string_of(&Tok::Word(n.to_string()))?,
        };
        out += &value;
        rest = &rest[end + 1..];
    }
    out += rest;
    Some(dir.join(out))
}

pub fn hover(text: &str, at: usize) -> Option<Hover> {
    let (start, end, word) = word_at(text, at)?;
    let c = cursor(text, start);
    let path: Vec<&str> = c.path.iter().map(String::as_str).collect();
    let next = next_token(text, end);
    let value = match (&c.place, next) {
        (Place::Top, _) => docs().block(&[], word),
        (Place::Key, Some(Tok::Eq)) => docs().key(&path, word),
        (Place::Key, Some(Tok::Open('{'))) => docs().block(&path, word),
        // A value (`int8`, a module name) is explained by its key's text.
        (Place::Value { key, .. }, _) => docs().key(&path, key),
        // A top-level block's name: `dataset tweets {`.
        (Place::Key, Some(Tok::Word(_))) if path.first() == Some(&"variant") => {
            docs().block(&[], word)
        }
        _ => None,
    }?;
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value,
        }),
        range: Some(super::range(text, start, end)),
    })
}
