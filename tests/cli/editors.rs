//! editors/vscode: the extension's manifest and the TextMate grammar for `.ard`.
//!
//! What this covers: the grammar is valid JSON; every `match`/`begin`/`end` regex compiles under
//! fancy-regex (close to the Oniguruma engine VS Code runs: look-around, `\b`, anchors); every
//! `include` resolves and every scope ends in `.ard`. A small tokenizer below applies the grammar
//! as a TextMate engine does (per line, earliest match first, ties to the end pattern and then to
//! the first rule, begin/end regions carried across lines, captures) to every shipped pipeline
//! (pipelines/**/*.ard), and independent line patterns check that keys, block kinds, strings
//! with their `${...}` interpolations, raw strings, numbers with their units, calls and comments
//! get the intended scopes. Not covered: how VS Code itself loads the extension (no VS Code here).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fancy_regex::{Captures, Regex};
use serde_json::Value;

fn editors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../editors/vscode")
}

fn json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn grammar() -> Value {
    json(&editors().join("syntaxes/ard.tmLanguage.json"))
}

/// Every object of the grammar, depth first.
fn objects<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            out.push(v);
            m.values().for_each(|x| objects(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| objects(x, out)),
        _ => {}
    }
}

#[test]
fn editors_grammar_is_valid_and_every_pattern_compiles() {
    let g = grammar();
    assert_eq!(g["scopeName"], "source.ard");
    let repo = g["repository"].as_object().expect("a repository");
    let mut all = Vec::new();
    objects(&g, &mut all);
    let mut patterns = 0;
    for o in &all {
        for key in ["match", "begin", "end"] {
            if let Some(re) = o.get(key).and_then(Value::as_str) {
                Regex::new(re).unwrap_or_else(|e| panic!("`{re}` does not compile: {e}"));
                patterns += 1;
            }
        }
        if let Some(inc) = o.get("include").and_then(Value::as_str) {
            let name = inc
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("include {inc}"));
            assert!(
                repo.contains_key(name),
                "include {inc} names no repository rule"
            );
        }
        if let Some(name) = o.get("name").and_then(Value::as_str)
            && o.get("scopeName").is_none()
            && o != &&g
        {
            assert!(name.ends_with(".ard"), "scope {name} does not end in .ard");
        }
    }
    assert!(patterns >= 15, "only {patterns} patterns");

    let pkg = json(&editors().join("package.json"));
    let lang = &pkg["contributes"]["languages"][0];
    assert_eq!(lang["id"], "ard");
    assert_eq!(lang["extensions"][0], ".ard");
    let grammar_entry = &pkg["contributes"]["grammars"][0];
    assert_eq!(grammar_entry["scopeName"], "source.ard");
    assert!(
        editors()
            .join(grammar_entry["path"].as_str().unwrap())
            .is_file()
    );
    assert!(
        pkg["activationEvents"]
            .as_array()
            .unwrap()
            .contains(&"onLanguage:ard".into())
    );
    assert!(pkg["dependencies"]["vscode-languageclient"].is_string());
    let config = json(&editors().join(lang["configuration"].as_str().unwrap()));
    assert_eq!(config["comments"]["lineComment"], "#");
    assert_eq!(config["brackets"][0], serde_json::json!(["{", "}"]));
    let ext = std::fs::read_to_string(editors().join(pkg["main"].as_str().unwrap())).unwrap();
    assert!(ext.contains("require(\"vscode-languageclient/node\")"));
    assert!(ext.contains("args: [\"lsp\"]"));
}

/// A TextMate tokenizer small enough to read: scopes for each byte of each line.
struct Tokenizer<'g> {
    grammar: &'g Value,
    regexes: HashMap<String, Regex>,
}

struct Region<'g> {
    rule: &'g Value,
}

impl<'g> Tokenizer<'g> {
    fn new(grammar: &'g Value) -> Tokenizer<'g> {
        Tokenizer {
            grammar,
            regexes: HashMap::new(),
        }
    }

    fn regex(&mut self, re: &str) -> Regex {
        self.regexes
            .entry(re.to_string())
            .or_insert_with(|| Regex::new(re).unwrap())
            .clone()
    }

    /// The rules a list of patterns stands for, includes expanded.
    fn rules(&self, patterns: &'g Value, out: &mut Vec<&'g Value>) {
        for p in patterns.as_array().into_iter().flatten() {
            match p.get("include").and_then(Value::as_str) {
                Some(inc) => {
                    let r = &self.grammar["repository"][&inc[1..]];
                    if r.get("patterns").is_some() && r.get("begin").is_none() {
                        self.rules(&r["patterns"], out);
                    } else {
                        out.push(r);
                    }
                }
                None if p.get("patterns").is_some() && p.get("begin").is_none() => {
                    self.rules(&p["patterns"], out)
                }
                None => out.push(p),
            }
        }
    }

    fn tokenize(&mut self, text: &str) -> Vec<Vec<Vec<String>>> {
        let mut stack: Vec<Region> = Vec::new();
        let mut out = Vec::new();
        for line in text.lines() {
            let mut scopes: Vec<Vec<String>> = vec![Vec::new(); line.len()];
            let mut pos = 0;
            loop {
                let base: Vec<String> = stack
                    .iter()
                    .filter_map(|r| r.rule.get("name").and_then(Value::as_str))
                    .map(String::from)
                    .collect();
                let top: &'g Value = match stack.last() {
                    Some(r) => r.rule,
                    None => self.grammar,
                };
                let patterns: &'g Value = &top["patterns"];
                let mut rules = Vec::new();
                self.rules(patterns, &mut rules);
                // (start, rule or None for the region's end, captures)
                let mut best: Option<(usize, Option<&'g Value>, Captures)> = None;
                if let Some(r) = stack.last() {
                    let end = self.regex(r.rule["end"].as_str().unwrap());
                    if let Some(c) = end.captures_from_pos(line, pos).unwrap() {
                        best = Some((c.get(0).unwrap().start(), None, c));
                    }
                }
                for rule in rules {
                    let Some(re) = rule
                        .get("match")
                        .or(rule.get("begin"))
                        .and_then(Value::as_str)
                    else {
                        continue;
                    };
                    let re = self.regex(re);
                    if let Some(c) = re.captures_from_pos(line, pos).unwrap() {
                        let start = c.get(0).unwrap().start();
                        if best.as_ref().is_none_or(|b| start < b.0) {
                            best = Some((start, Some(rule), c));
                        }
                    }
                }
                let Some((start, rule, caps)) = best else {
                    break;
                };
                for s in &mut scopes[pos..start] {
                    *s = base.clone();
                }
                let whole = caps.get(0).unwrap();
                let paint = |scopes: &mut Vec<Vec<String>>,
                             base: &[String],
                             name: Option<&str>,
                             capmap: Option<&Value>| {
                    for s in &mut scopes[whole.start()..whole.end()] {
                        *s = base.to_vec();
                        s.extend(name.map(String::from));
                    }
                    for (k, v) in capmap.and_then(Value::as_object).into_iter().flatten() {
                        let (Ok(i), Some(n)) = (k.parse::<usize>(), v["name"].as_str()) else {
                            continue;
                        };
                        if let Some(g) = caps.get(i) {
                            for s in &mut scopes[g.start()..g.end()] {
                                s.push(n.to_string());
                            }
                        }
                    }
                };
                match rule {
                    None => {
                        paint(
                            &mut scopes,
                            &base,
                            None,
                            stack.last().unwrap().rule.get("endCaptures"),
                        );
                        stack.pop();
                    }
                    Some(r) if r.get("begin").is_some() => {
                        let name = r.get("name").and_then(Value::as_str);
                        paint(&mut scopes, &base, name, r.get("beginCaptures"));
                        stack.push(Region { rule: r });
                    }
                    Some(r) => {
                        let name = r.get("name").and_then(Value::as_str);
                        paint(&mut scopes, &base, name, r.get("captures"));
                    }
                }
                let next = whole.end();
                if next > pos {
                    pos = next;
                } else if rule.is_some() {
                    // An empty match moves on by one character.
                    match line[pos..].chars().next() {
                        Some(c) => pos += c.len_utf8(),
                        None => break,
                    }
                }
                // An empty end (`$`) closed its region: the parent's rules go on from here.
            }
            let base: Vec<String> = stack
                .iter()
                .filter_map(|r| r.rule.get("name").and_then(Value::as_str))
                .map(String::from)
                .collect();
            for s in &mut scopes[pos.min(line.len())..] {
                *s = base.clone();
            }
            out.push(scopes);
        }
        out
    }
}

fn has(scopes: &[Vec<String>], range: std::ops::Range<usize>, scope: &str) -> Result<(), String> {
    for i in range.clone() {
        if !scopes[i].iter().any(|s| s == scope) {
            return Err(format!(
                "byte {i} of {range:?} has {:?}, not {scope}",
                scopes[i]
            ));
        }
    }
    Ok(())
}

/// Byte ranges of the double-quoted strings, raw strings and the comment of one line.
fn lexical(
    line: &str,
) -> (
    Vec<std::ops::Range<usize>>,
    Vec<std::ops::Range<usize>>,
    Option<usize>,
) {
    let (mut strings, mut raws) = (Vec::new(), Vec::new());
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => return (strings, raws, Some(i)),
            q @ (b'"' | b'\'') => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if q == b'"' && b[i] == b'\\' { 2 } else { 1 };
                }
                let r = start..(i + 1).min(b.len());
                if q == b'"' {
                    strings.push(r)
                } else {
                    raws.push(r)
                }
            }
            _ => {}
        }
        i += 1;
    }
    (strings, raws, None)
}

fn scope_text(text: &str, label: &str, counts: &mut HashMap<&'static str, usize>) -> Vec<String> {
    let g = grammar();
    let mut t = Tokenizer::new(&g);
    let lines = t.tokenize(text);
    let key = Regex::new(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=").unwrap();
    let block =
        Regex::new(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(\s+[A-Za-z_][A-Za-z0-9_]*)?\s*\{").unwrap();
    let number = Regex::new(r"=\s*(-?[0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?:(%)|[ \t]+([A-Za-z_][A-Za-z0-9_]*)\b(?![ \t]*[=.{(]))?").unwrap();
    let call = Regex::new(r"\b([A-Za-z_][A-Za-z0-9_]*)\(").unwrap();
    let interp = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").unwrap();
    let mut problems = Vec::new();
    for (n, (line, scopes)) in text.lines().zip(&lines).enumerate() {
        let mut check = |what: &'static str, r: std::ops::Range<usize>, scope: &str| {
            *counts.entry(what).or_default() += 1;
            if let Err(e) = has(scopes, r, scope) {
                problems.push(format!("{label}:{}: {what}: {e}\n    {line}", n + 1));
            }
        };
        let (strings, raws, comment) = lexical(line);
        let code = &line[..comment.unwrap_or(line.len())];
        let in_string = |i: usize| strings.iter().chain(&raws).any(|r| r.contains(&i));
        if let Some(c) = comment {
            check("comment", c..line.len(), "comment.line.number-sign.ard");
        }
        for r in &strings {
            check("string", r.clone(), "string.quoted.double.ard");
            for m in interp.captures_iter(&line[r.clone()]) {
                let g = m.unwrap().get(1).unwrap();
                check(
                    "interpolation",
                    r.start + g.start()..r.start + g.end(),
                    "variable.other.interpolated.ard",
                );
            }
        }
        for r in &raws {
            let scope = if line[..r.start].trim_end().ends_with("regex(") {
                "string.regexp.ard"
            } else {
                "string.quoted.single.ard"
            };
            check("raw string", r.clone(), scope);
        }
        if let Some(c) = key.captures(code).unwrap() {
            let g = c.get(1).unwrap();
            if g.as_str() != "let" {
                check("key", g.range(), "variable.other.property.key.ard");
            }
        }
        if let Some(c) = block.captures(code).unwrap() {
            check(
                "block",
                c.get(1).unwrap().range(),
                "entity.name.type.block.ard",
            );
        }
        for c in number.captures_iter(code) {
            let c = c.unwrap();
            if in_string(c.get(1).unwrap().start()) {
                continue;
            }
            check("number", c.get(1).unwrap().range(), "constant.numeric.ard");
            if let Some(u) = c.get(2).or(c.get(3)) {
                check("unit", u.range(), "keyword.other.unit.ard");
            }
        }
        for c in call.captures_iter(code) {
            let g = c.unwrap().get(1).unwrap();
            if !in_string(g.start()) {
                check("call", g.range(), "entity.name.function.ard");
            }
        }
    }
    problems
}

fn shipped(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            shipped(&p, out);
        } else if p.extension().is_some_and(|x| x == "ard") {
            out.push(p);
        }
    }
}

#[test]
fn editors_grammar_scopes_every_shipped_pipeline() {
    let mut files = Vec::new();
    shipped(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines"),
        &mut files,
    );
    assert!(files.len() >= 10, "{files:?}");
    let mut counts = HashMap::new();
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        problems.extend(scope_text(&text, &f.display().to_string(), &mut counts));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Each kind of token was met often enough for the check to mean something.
    for (what, least) in [
        ("comment", 20),
        ("key", 100),
        ("block", 40),
        ("string", 20),
        ("number", 30),
        ("unit", 3),
        ("interpolation", 5),
        ("call", 3),
    ] {
        let n = counts.get(what).copied().unwrap_or(0);
        assert!(
            n >= least,
            "only {n} {what}(s) in the shipped pipelines: {counts:?}"
        );
    }
}

/// What the shipped pipelines may not contain: each construct of the language once.
#[test]
fn editors_grammar_scopes_every_construct() {
    let sample = r#"import "shared/healthtweets.ard"
let data = "${assets}/x\t\"q\""  # a comment with "quotes"
train { lr = warmup(cosine(from = 1e-3, to = 0), over = 10%) steps = 100 }
adapter qv {
    modules = [query, regex('.*\.value$'), "encoder.layer.*.dense"]
    layers = 0..6
    r0 = 8 alpha {
        init = 1
    }
    compaction { every = 100 steps }
}
distributed { timeout = 30 min bucket_mb = 0.5 }
variant lr_small { train.steps = 600 }
evaluate { metrics = [loss, accuracy] }
"#;
    let mut counts = HashMap::new();
    let problems = scope_text(sample, "sample", &mut counts);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let g = grammar();
    let lines = Tokenizer::new(&g).tokenize(sample);
    let at = |line: usize, needle: &str, scope: &str| {
        let text = sample.lines().nth(line).unwrap();
        let i = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in {text}"));
        has(&lines[line], i..i + needle.len(), scope).unwrap_or_else(|e| panic!("`{needle}`: {e}"));
    };
    at(0, "import", "keyword.control.import.ard");
    at(1, "data", "variable.other.definition.ard");
    at(1, "\\t", "constant.character.escape.ard");
    at(1, "assets", "variable.other.interpolated.ard");
    at(
        1,
        "# a comment with \"quotes\"",
        "comment.line.number-sign.ard",
    );
    at(2, "warmup", "entity.name.function.ard");
    at(2, "cosine", "entity.name.function.ard");
    at(2, "from", "variable.parameter.ard");
    at(2, "10", "constant.numeric.ard");
    at(2, "%", "keyword.other.unit.ard");
    at(2, "steps", "variable.other.property.key.ard");
    at(2, "1e-3", "constant.numeric.ard");
    at(4, "query", "variable.other.ard");
    at(4, "'.*\\.value$'", "string.regexp.ard");
    at(5, "..", "keyword.operator.range.ard");
    at(6, "alpha", "entity.name.type.block.ard");
    at(9, "steps", "keyword.other.unit.ard");
    at(11, "min", "keyword.other.unit.ard");
    at(11, "bucket_mb", "variable.other.property.key.ard");
    at(12, "train.steps", "variable.other.property.key.ard");
    at(12, "lr_small", "entity.name.section.block-name.ard");
}
