//! Go to definition: an `import` path opens the imported file; a variable's use goes to its
//! `let`, in this file or, following imports (as the loader reads them: relative to the
//! importing file), in an imported one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use lsp_types::{Location, Range, Url};

use super::Server;
use super::scan::{Tok, Token, tokens, word_at};

/// Imports are followed at most this deep (the loader's own limit is 16).
const MAX_DEPTH: usize = 16;

pub fn definition(server: &Server, uri: &Url, text: &str, at: usize) -> Option<Location> {
    let toks = tokens(text);
    let dir = super::doc_path(uri).parent()?.to_path_buf();
    // On an import's path (or its keyword): the imported file.
    for (i, t) in toks.iter().enumerate() {
        if t.tok != Tok::Word("import".into()) {
            continue;
        }
        if let Some(Token {
            tok: Tok::Str(p),
            end,
            ..
        }) = toks.get(i + 1)
            && t.start <= at
            && at <= *end
        {
            let file = dir.join(p);
            if file.is_file() {
                let target = Url::from_file_path(&file).ok()?;
                return Some(Location::new(target, Range::default()));
            }
            return None;
        }
    }
    let (_, _, name) = word_at(text, at)?;
    let mut seen = HashSet::new();
    find_let(server, uri.clone(), text, name, &mut seen, 0)
}

fn find_let(
    server: &Server,
    uri: Url,
    text: &str,
    name: &str,
    seen: &mut HashSet<Url>,
    depth: usize,
) -> Option<Location> {
    if depth > MAX_DEPTH || !seen.insert(uri.clone()) {
        return None;
    }
    let toks = tokens(text);
    let significant: Vec<&Token> = toks.iter().filter(|t| t.tok != Tok::Comment).collect();
    for w in significant.windows(3) {
        if w[0].tok == Tok::Word("let".into())
            && w[1].tok == Tok::Word(name.into())
            && w[2].tok == Tok::Eq
        {
            return Some(Location::new(uri, super::range(text, w[1].start, w[1].end)));
        }
    }
    let dir: PathBuf = super::doc_path(&uri).parent()?.to_path_buf();
    for w in significant.windows(2) {
        if let (Tok::Word(k), Tok::Str(p)) = (&w[0].tok, &w[1].tok)
            && k == "import"
        {
            let file = dir.join(Path::new(p));
            let Ok(next) = Url::from_file_path(&file) else {
                continue;
            };
            let Some(imported) = server.text(&next) else {
                continue;
            };
            if let Some(found) = find_let(server, next, &imported, name, seen, depth + 1) {
                return Some(found);
            }
        }
    }
    None
}
