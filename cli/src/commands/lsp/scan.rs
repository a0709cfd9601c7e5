//! A lexical reading of pipeline text that works while it does not parse (what an editor holds
//! while one types `quantize = `): the blocks around a point, whether a key or a value goes
//! there, and the entries written so far. The checker's grammar (dsl/src/grammar.pest) decides
//! what is valid; this only has to find its way in text that is valid so far.

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name, a dotted key (`train.steps`) or a number.
    Word(String),
    /// A string's text between its quotes (escapes kept as written).
    Str(String),
    Eq,
    Open(char),
    Close(char),
    Comma,
    Comment,
    Other,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

pub fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let (tok, end) = match c {
            '#' => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                while it.peek().is_some_and(|(j, _)| *j < end) {
                    it.next();
                }
                (Tok::Comment, end)
            }
            '"' | '\'' => {
                // A string ends at its quote or, unterminated, at the end of its line.
                let mut end = text.len();
                let mut escaped = false;
                for (j, d) in it.by_ref() {
                    if d == '\n' {
                        end = j;
                        break;
                    }
                    if c == '"' && d == '\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    if d == c && !escaped {
                        end = j + 1;
                        break;
                    }
                    escaped = false;
                }
                let inner_end = if end > i + 1 && text[..end].ends_with(c) {
                    end - 1
                } else {
                    end
                };
                (Tok::Str(text[i + 1..inner_end.max(i + 1)].to_string()), end)
            }
            c if word_char(c) || c == '-' && it.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = it.peek() {
                    if word_char(d) || d == '.' && !text[j..].starts_with("..") {
                        end = j + d.len_utf8();
                        it.next();
                    } else {
                        break;
                    }
                }
                (Tok::Word(text[i..end].to_string()), end)
            }
            '=' => (Tok::Eq, i + 1),
            '{' | '[' | '(' => (Tok::Open(c), i + 1),
            '}' | ']' | ')' => (Tok::Close(c), i + 1),
            ',' => (Tok::Comma, i + 1),
            c if c.is_whitespace() => continue,
            c => (Tok::Other, i + c.len_utf8()),
        };
        out.push(Token { tok, start: i, end });
    }
    out
}

#[derive(Debug, Clone)]
enum Frame {
    Block {
        kind: String,
        /// The key whose value is being written (set at its `=`).
        key: Option<String>,
        /// `key = word` entries so far: what `method` an adapter has.
        words: Vec<(String, String)>,
        /// Every key set so far (a second one would be an error: completion leaves them out).
        set: Vec<String>,
    },
    Bracket {
        open: char,
        /// The key of the block entry this bracket is (part of) the value of.
        key: Option<String>,
        /// Whether the bracket opens right inside a block (not inside another bracket).
        direct: bool,
    },
}

/// What goes at a point.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// Between top-level items: a block kind, `let` or `import`.
    Top,
    /// A key or a nested block of the enclosing block.
    Key,
    /// The value of `key`; `list` inside its `[...]`.
    Value { key: String, list: bool },
    /// Nothing to offer (inside a string, a comment or a call's arguments).
    None,
}

#[derive(Debug, Clone)]
pub struct Cursor {
    /// Kinds of the enclosing blocks, outermost first (`["adapter", "alpha"]`).
    pub path: Vec<String>,
    /// The innermost enclosing adapter's `method`, when written before the point.
    pub method: Option<String>,
    /// The keys the innermost block sets before the point.
    pub set: Vec<String>,
    pub place: Place,
}

/// A `key = value` written in the text, with the kinds of the blocks around it (`let NAME =
/// value` at the top level has the path `["let"]`).
#[derive(Debug, Clone)]
pub struct Written {
    pub path: Vec<String>,
    pub key: String,
    pub value: Tok,
}

struct Walk {
    stack: Vec<Frame>,
    written: Vec<Written>,
    /// The last significant token before the end of the walk.
    last: Option<Tok>,
    before_last: Option<Tok>,
}

fn path_of(stack: &[Frame]) -> Vec<String> {
    stack
        .iter()
        .filter_map(|f| match f {
            Frame::Block { kind, .. } => Some(kind.clone()),
            Frame::Bracket { .. } => None,
        })
        .collect()
}

/// Reads the tokens that end at or before `upto`.
fn walk(toks: &[Token], upto: usize) -> Walk {
    let mut stack: Vec<Frame> = Vec::new();
    let mut written = Vec::new();
    let mut recent: Vec<&Tok> = Vec::new();
    for t in toks
        .iter()
        .filter(|t| t.end <= upto && t.tok != Tok::Comment)
    {
        match &t.tok {
            Tok::Open('{') => {
                let n = recent.len();
                let word = |k: usize| match n.checked_sub(k).map(|i| recent[i]) {
                    Some(Tok::Word(w)) => Some(w.clone()),
                    _ => None,
                };
                let before = n.checked_sub(3).map(|i| recent[i]);
                let kind = match (word(2), word(1)) {
                    (Some(k), Some(_)) if before != Some(&Tok::Eq) => k,
                    (_, Some(k)) => k,
                    _ => String::new(),
                };
                if let Some(Frame::Block { key, .. }) = stack.last_mut() {
                    *key = None;
                }
                stack.push(Frame::Block {
                    kind,
                    key: None,
                    words: Vec::new(),
                    set: Vec::new(),
                });
            }
            Tok::Open(open) => {
                let (key, direct) = match stack.last() {
                    Some(Frame::Block { key, .. }) => (key.clone(), true),
                    Some(Frame::Bracket { key, .. }) => (key.clone(), false),
                    None => (None, false),
                };
                stack.push(Frame::Bracket {
                    open: *open,
                    key,
                    direct,
                });
            }
            Tok::Close(c) => {
                if *c == '}' {
                    while let Some(f) = stack.pop() {
                        if matches!(f, Frame::Block { .. }) {
                            break;
                        }
                    }
                } else if matches!(stack.last(), Some(Frame::Bracket { .. })) {
                    stack.pop();
                }
                let at_block_level = stack.iter().all(|f| matches!(f, Frame::Block { .. }));
                if let Some(Frame::Block { key, .. }) = stack.last_mut()
                    && *c != '}'
                    && at_block_level
                {
                    *key = None;
                }
            }
            Tok::Eq => {
                if let (Some(Tok::Word(k)), Some(Frame::Block { key, set, .. })) =
                    (recent.last(), stack.last_mut())
                {
                    *key = Some(k.clone());
                    set.push(k.clone());
                }
            }
            value @ (Tok::Word(_) | Tok::Str(_)) if recent.last() == Some(&&Tok::Eq) => {
                let n = recent.len();
                if let Some(Tok::Word(k)) = n.checked_sub(2).map(|i| recent[i]) {
                    let top_let = stack.is_empty()
                        && n.checked_sub(3).map(|i| recent[i]) == Some(&Tok::Word("let".into()));
                    if top_let || matches!(stack.last(), Some(Frame::Block { .. })) {
                        let path = if top_let {
                            vec!["let".to_string()]
                        } else {
                            path_of(&stack)
                        };
                        written.push(Written {
                            path,
                            key: k.clone(),
                            value: value.clone(),
                        });
                    }
                    if let (Some(Frame::Block { words, .. }), Tok::Word(w)) =
                        (stack.last_mut(), value)
                    {
                        words.push((k.clone(), w.clone()));
                    }
                }
            }
            _ => {}
        }
        recent.push(&t.tok);
    }
    let n = recent.len();
    Walk {
        stack,
        written,
        last: recent.last().map(|t| (*t).clone()),
        before_last: n.checked_sub(2).map(|i| recent[i].clone()),
    }
}

/// What goes at byte offset `at` of `text`.
pub fn cursor(text: &str, at: usize) -> Cursor {
    let at = at.min(text.len());
    let toks = tokens(text);
    let word_start = text[..at]
        .char_indices()
        .rev()
        .take_while(|(_, c)| word_char(*c))
        .last()
        .map_or(at, |(i, _)| i);
    let inside = toks.iter().any(|t| {
        matches!(t.tok, Tok::Str(_) | Tok::Comment)
            && t.start < at
            && (at < t.end || at == t.end && !closed(text, t))
    });
    let w = walk(&toks, word_start);
    let path = path_of(&w.stack);
    let method = w.stack.iter().rev().find_map(|f| match f {
        Frame::Block { kind, words, .. } if kind == "adapter" => words
            .iter()
            .find(|(k, _)| k == "method")
            .map(|(_, v)| v.clone()),
        _ => None,
    });
    let set = w
        .stack
        .iter()
        .rev()
        .find_map(|f| match f {
            Frame::Block { set, .. } => Some(set.clone()),
            Frame::Bracket { .. } => None,
        })
        .unwrap_or_default();
    let place = if inside {
        Place::None
    } else {
        match w.stack.last() {
            None if w.last == Some(Tok::Eq) => Place::None,
            None => Place::Top,
            Some(Frame::Bracket {
                open: '[',
                key: Some(key),
                direct: true,
            }) => Place::Value {
                key: key.clone(),
                list: true,
            },
            Some(Frame::Bracket { .. }) => Place::None,
            Some(Frame::Block { .. }) => match (&w.last, &w.before_last) {
                (Some(Tok::Eq), Some(Tok::Word(k))) => Place::Value {
                    key: k.clone(),
                    list: false,
                },
                (Some(Tok::Eq), _) => Place::None,
                _ => Place::Key,
            },
        }
    };
    Cursor {
        path,
        method,
        set,
        place,
    }
}

/// Whether a string or comment token is closed before the line ends (a comment never is).
fn closed(text: &str, t: &Token) -> bool {
    match t.tok {
        Tok::Str(_) => {
            let s = &text[t.start..t.end];
            s.len() >= 2 && s.ends_with(&s[..1])
        }
        _ => false,
    }
}

/// Every `key = word-or-string` of the text, and the top-level `let`s.
pub fn written(text: &str) -> Vec<Written> {
    let toks = tokens(text);
    walk(&toks, text.len()).written
}

/// The word (name or dotted key) around byte offset `at`, with where it starts and ends.
pub fn word_at(text: &str, at: usize) -> Option<(usize, usize, &str)> {
    let at = at.min(text.len());
    let start = text[..at]
        .char_indices()
        .rev()
        .take_while(|(_, c)| word_char(*c))
        .last()
        .map_or(at, |(i, _)| i);
    let end = text[at..]
        .char_indices()
        .find(|(_, c)| !word_char(*c))
        .map_or(text.len(), |(i, _)| at + i);
    (start < end).then(|| (start, end, &text[start..end]))
}

/// The first significant token that starts at or after `at`.
pub fn next_token(text: &str, at: usize) -> Option<Tok> {
    tokens(text)
        .into_iter()
        .find(|t| t.start >= at && t.tok != Tok::Comment)
        .map(|t| t.tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Cursor {
        let i = text.find('|').unwrap();
        cursor(&text.replace('|', ""), i)
    }

    #[test]
    fn finds_the_place_in_unfinished_text() {
        let c = at("model {\n  path = \"x\"\n  qu|");
        assert_eq!(c.path, ["model"]);
        assert_eq!(c.set, ["path"]);
        assert_eq!(c.place, Place::Key);
        let c = at("model {\n  quantize = |");
        assert_eq!(
            c.place,
            Place::Value {
                key: "quantize".into(),
                list: false
            }
        );
        let c = at("adapter qv {\n method = lora\n modules = [query, |");
        assert_eq!(c.path, ["adapter"]);
        assert_eq!(c.method.as_deref(), Some("lora"));
        assert_eq!(
            c.place,
            Place::Value {
                key: "modules".into(),
                list: true
            }
        );
        let c = at("dataset d {\n mode = lines\n split {\n |");
        assert_eq!(c.path, ["dataset", "split"]);
        let c = at("model { }\n|");
        assert_eq!(c.place, Place::Top);
        let c = at("model { path = \"ab|");
        assert_eq!(c.place, Place::None);
        let c = at("train { lr = warmup(cosine(|");
        assert_eq!(c.place, Place::None);
        let c = at("variant v { adapter qv { r0 = 4 alpha { |");
        assert_eq!(c.path, ["variant", "adapter", "alpha"]);
    }

    #[test]
    fn collects_written_entries() {
        let w = written("let m = \"${assets}/minilm\"\nmodel {\n path = m\n head = causal_lm\n}\n");
        assert!(w.iter().any(|e| e.path == ["let"] && e.key == "m"));
        assert!(
            w.iter().any(|e| e.path == ["model"]
                && e.key == "path"
                && e.value == Tok::Word("m".into()))
        );
    }
}
