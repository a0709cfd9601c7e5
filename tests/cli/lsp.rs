//! `ardpipe lsp`, driven over stdio as an editor drives it: JSON-RPC frames on stdin, answers
//! and published diagnostics read back from stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{ardpipe, asset, stderr};

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("lsp-{name}"))
}

fn uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// A client on the server's stdio; every wait fails the test after 10 s instead of hanging.
struct Client {
    child: Child,
    stdin: ChildStdin,
    from_server: Receiver<Value>,
    /// Notifications that arrived while waiting for something else.
    pending: Vec<Value>,
    next_id: i64,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ardpipe"))
            .arg("lsp")
            .env("ARDPIPE_COLOR", "never")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ardpipe lsp starts");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            loop {
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if out.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("Content-Length: ") {
                        length = v.parse().expect("a numeric Content-Length");
                    }
                }
                let mut body = vec![0; length];
                out.read_exact(&mut body).expect("a whole frame");
                let v: Value = serde_json::from_slice(&body).expect("the server writes JSON");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            from_server: rx,
            pending: Vec::new(),
            next_id: 0,
        };
        let init = c.request(
            "initialize",
            json!({ "processId": null, "rootUri": null, "capabilities": {} }),
        );
        let caps = &init["result"]["capabilities"];
        assert_eq!(caps["hoverProvider"], json!(true), "{init}");
        assert_eq!(
            caps["textDocumentSync"]["change"],
            json!(1),
            "full sync: {init}"
        );
        c.notify("initialized", json!({}));
        c
    }

    fn send_raw(&mut self, body: &str) {
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        let body = json!({ "jsonrpc": "2.0", "method": method, "params": params }).to_string();
        self.send_raw(&body);
    }

    fn next(&mut self) -> Value {
        self.from_server
            .recv_timeout(Duration::from_secs(10))
            .expect("the server answers within 10 s")
    }

    /// The response to a request, keeping notifications that come first.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send_raw(&body.to_string());
        self.response(json!(id))
    }

    fn response(&mut self, id: Value) -> Value {
        loop {
            let v = self.next();
            if v.get("method").is_some() {
                self.pending.push(v);
            } else if v["id"] == id {
                return v;
            } else {
                panic!("an answer to another request: {v}");
            }
        }
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        loop {
            let v = match self.pending.iter().position(|n| {
                n["method"] == "textDocument/publishDiagnostics" && n["params"]["uri"] == uri
            }) {
                Some(i) => self.pending.remove(i),
                None => self.next(),
            };
            if v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri {
                return v["params"]["diagnostics"].as_array().unwrap().clone();
            }
            if v.get("method").is_some() {
                self.pending.push(v);
            }
        }
    }

    fn open(&mut self, uri: &str, text: &str) -> Vec<Value> {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "ard", "version": 1, "text": text } }),
        );
        self.diagnostics(uri)
    }

    fn at(&mut self, method: &str, uri: &str, (line, character): (usize, usize)) -> Value {
        self.request(
            method,
            json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } }),
        )
    }

    /// `shutdown` then `exit`: the process ends with code 0.
    fn finish(mut self) {
        let r = self.request("shutdown", Value::Null);
        assert_eq!(r["result"], Value::Null, "{r}");
        self.notify("exit", Value::Null);
        let status = wait(&mut self.child);
        assert_eq!(status, Some(0), "exit code after shutdown and exit");
    }
}

fn wait(child: &mut Child) -> Option<i32> {
    for _ in 0..1000 {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("the server did not exit within 10 s");
}

/// The LSP position (line, UTF-16 column) where `needle` starts in `text`, plus `delta` chars.
fn pos(text: &str, needle: &str, delta: usize) -> (usize, usize) {
    let i = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} in {text}"));
    let before = &text[..i];
    let line = before.matches('\n').count();
    let start = before.rfind('\n').map_or(0, |n| n + 1);
    let col: usize = before[start..].encode_utf16().count();
    (line, col + needle[..delta].encode_utf16().count())
}

fn labels(v: &Value) -> Vec<String> {
    let items = match &v["result"] {
        Value::Array(a) => a.clone(),
        r => r["items"].as_array().cloned().unwrap_or_default(),
    };
    items
        .iter()
        .map(|i| i["label"].as_str().unwrap().to_string())
        .collect()
}

/// A pipeline that checks, on the example MiniLM.
fn pipeline(minilm: &Path) -> String {
    format!(
        r#"pipeline {{
    description = "α😀"
    seed = 1
}}

dataset tweets {{
    format = csv
    path = "data.csv"
    label = "label"
}}

model {{
    path = "{}"
    head = sequence_classification
}}

adapter qv {{
    method = lora
    modules = [query, value]
}}

train {{
    lr = 1e-3
    steps = 10
}}
"#,
        minilm.display()
    )
}

#[test]
fn lsp_publishes_the_checkers_diagnostics_with_utf16_ranges() {
    let dir = scratch("diag");
    let f = dir.join("p.ard");
    let good = pipeline(&asset("minilm"));
    // An unknown key after a string with `α` (1 UTF-16 unit, 2 bytes) and `😀` (2 units, 4 bytes).
    let bad = good.replace("\"α😀\"\n", "\"α😀\" sede = 2\n");
    let mut c = Client::start();
    let d = c.open(&uri(&f), &bad);
    assert_eq!(d.len(), 1, "{d:?}");
    let (line, col) = pos(&bad, "sede", 0);
    assert_eq!(
        d[0]["range"]["start"],
        json!({ "line": line, "character": col })
    );
    assert_eq!(
        d[0]["range"]["end"],
        json!({ "line": line, "character": col + 4 })
    );
    assert_eq!(d[0]["severity"], json!(1));
    assert_eq!(d[0]["code"], json!("ardpipe::dsl::unknown_key"));
    let msg = d[0]["message"].as_str().unwrap();
    assert!(msg.contains("unknown key `sede` in `pipeline`"), "{msg}");
    assert!(msg.contains("help: did you mean `seed`?"), "{msg}");

    // Fixed as one types: the next change publishes no problem.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri(&f), "version": 2 }, "contentChanges": [{ "text": good }] }),
    );
    assert_eq!(c.diagnostics(&uri(&f)), Vec::<Value>::new());

    // A saved import is read again for every open pipeline that imports it.
    let shared = dir.join("shared.ard");
    std::fs::write(&shared, "let n = 10\n").unwrap();
    let importing = format!(
        "import \"shared.ard\"\n{}",
        good.replace("steps = 10", "steps = n")
    );
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri(&f), "version": 3 }, "contentChanges": [{ "text": importing }] }),
    );
    assert_eq!(c.diagnostics(&uri(&f)), Vec::<Value>::new());
    std::fs::write(&shared, "let n = 0\n").unwrap();
    c.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": uri(&shared) } }),
    );
    let d = c.diagnostics(&uri(&f));
    assert_eq!(d.len(), 1, "{d:?}");
    let msg = d[0]["message"].as_str().unwrap();
    assert!(msg.contains("`steps` must be between 1"), "{msg}");
    let (line, col) = pos(&importing, "steps = n", 8);
    assert_eq!(
        d[0]["range"]["start"],
        json!({ "line": line, "character": col })
    );
    // A problem inside the imported file shows at the top of this one, saying where it is.
    std::fs::write(&shared, "let n = 10 let = 2\n").unwrap();
    c.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": uri(&shared) } }),
    );
    let d = c.diagnostics(&uri(&f));
    assert!(!d.is_empty());
    let msg = d[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("shared.ard:1:16: "), "{msg}");
    assert_eq!(d[0]["range"]["start"], json!({ "line": 0, "character": 0 }));
    assert_eq!(d[0]["code"], json!("ardpipe::dsl::syntax"));
    c.finish();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn lsp_completes_keys_values_and_the_models_modules() {
    let dir = scratch("complete");
    let f = dir.join("p.ard");
    let u = uri(&f);
    let text = pipeline(&asset("minilm"));
    let mut c = Client::start();
    c.open(&u, &text);

    // Inside `model {`, at the start of a line: the model block's keys.
    let inside = text.replace(
        "    head = sequence_classification\n",
        "    head = sequence_classification\n    \n",
    );
    c.notify("textDocument/didChange", json!({ "textDocument": { "uri": u, "version": 2 }, "contentChanges": [{ "text": inside }] }));
    let (line, _) = pos(&inside, "    head = sequence_classification", 0);
    let got = labels(&c.at("textDocument/completion", &u, (line + 1, 4)));
    for want in ["quantize", "dtype", "device"] {
        assert!(got.contains(&want.to_string()), "{want} in {got:?}");
    }
    // Keys the block already sets are not offered again (a second one is an error).
    for set in ["path", "head"] {
        assert!(
            !got.contains(&set.to_string()),
            "{set} offered again: {got:?}"
        );
    }
    assert!(
        !got.contains(&"steps".to_string()),
        "a train key offered in model: {got:?}"
    );

    // After `quantize = `: its values.
    let typing = text.replace(
        "    head = sequence_classification\n",
        "    head = sequence_classification\n    quantize = \n",
    );
    c.notify("textDocument/didChange", json!({ "textDocument": { "uri": u, "version": 3 }, "contentChanges": [{ "text": typing }] }));
    let got = labels(&c.at(
        "textDocument/completion",
        &u,
        pos(&typing, "quantize = ", 11),
    ));
    assert_eq!(got, ["none", "int8", "int4"]);

    // In `modules = [`: the module names of the model at `model.path`.
    let typing = text.replace("modules = [query, value]", "modules = [");
    c.notify("textDocument/didChange", json!({ "textDocument": { "uri": u, "version": 4 }, "contentChanges": [{ "text": typing }] }));
    let got = labels(&c.at(
        "textDocument/completion",
        &u,
        pos(&typing, "modules = [", 11),
    ));
    for want in ["query", "key", "value", "intermediate.dense"] {
        assert!(got.contains(&want.to_string()), "{want} in {got:?}");
    }

    // At the top level: the blocks.
    let got = labels(&c.at("textDocument/completion", &u, (text.lines().count(), 0)));
    for want in ["dataset", "model", "adapter", "train", "variant"] {
        assert!(got.contains(&want.to_string()), "{want} in {got:?}");
    }
    c.finish();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn lsp_hover_formatting_and_definition() {
    let dir = scratch("nav");
    let shared = dir.join("shared.ard");
    std::fs::write(&shared, "let rate = 1e-3\n").unwrap();
    let f = dir.join("p.ard");
    let u = uri(&f);
    let text = pipeline(&asset("minilm"))
        .replace(
            "dataset tweets",
            "import \"shared.ard\"\n\nlet rank = 4\n\ndataset tweets",
        )
        .replace(
            "    modules = [query, value]\n",
            "    modules = [query, value]\n    rank = rank\n",
        )
        .replace("lr = 1e-3", "lr = rate");
    let mut c = Client::start();
    let d = c.open(&u, &text);
    assert_eq!(d, Vec::<Value>::new(), "the pipeline checks");

    // Hover on a key: its row of docs/LANGUAGE.md's table.
    let typed = text.replace(
        "    head = sequence_classification\n",
        "    head = sequence_classification\n    quantize = int8\n",
    );
    c.notify("textDocument/didChange", json!({ "textDocument": { "uri": u, "version": 2 }, "contentChanges": [{ "text": typed }] }));
    let h = c.at("textDocument/hover", &u, pos(&typed, "quantize", 2));
    let value = h["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_default();
    assert!(
        value.contains("`int8` (one scale per output channel)"),
        "{h}"
    );
    assert!(value.contains("Default: `none`"), "{h}");
    // On its value: the key's text too.
    let h = c.at("textDocument/hover", &u, pos(&typed, "int8", 1));
    let on_value = h["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(on_value, value, "{h}");
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/LANGUAGE.md"))
            .unwrap();
    assert!(doc.contains("`int8` (one scale per output channel)"));
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": u, "version": 3 }, "contentChanges": [{ "text": text }] }),
    );

    // Definition: a variable's use goes to its `let`, here and across the import.
    let r = c.at("textDocument/definition", &u, pos(&text, "rank = rank", 8));
    let (line, col) = pos(&text, "let rank", 4);
    assert_eq!(r["result"]["uri"], json!(u), "{r}");
    assert_eq!(
        r["result"]["range"]["start"],
        json!({ "line": line, "character": col }),
        "{r}"
    );
    let r = c.at("textDocument/definition", &u, pos(&text, "lr = rate", 6));
    assert_eq!(r["result"]["uri"], json!(uri(&shared)), "{r}");
    assert_eq!(
        r["result"]["range"]["start"],
        json!({ "line": 0, "character": 4 }),
        "{r}"
    );
    let r = c.at("textDocument/definition", &u, pos(&text, "shared.ard", 2));
    assert_eq!(r["result"]["uri"], json!(uri(&shared)), "{r}");

    // Formatting: one edit replacing the document with `ardpipe fmt`'s output.
    let messy = text.replace("    steps = 10\n", "steps=10   # short\n");
    std::fs::write(&f, &messy).unwrap();
    let out = ardpipe(&["fmt", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let formatted = std::fs::read_to_string(&f).unwrap();
    assert_ne!(formatted, messy);
    c.notify("textDocument/didChange", json!({ "textDocument": { "uri": u, "version": 4 }, "contentChanges": [{ "text": messy }] }));
    let r = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": u }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    let edits = r["result"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(edits.len(), 1, "{r}");
    assert_eq!(edits[0]["newText"], json!(formatted));
    assert_eq!(
        edits[0]["range"]["start"],
        json!({ "line": 0, "character": 0 })
    );
    assert_eq!(
        edits[0]["range"]["end"],
        json!({ "line": messy.lines().count(), "character": 0 })
    );
    // A text that does not parse gets no edit.
    c.notify("textDocument/didChange", json!({ "textDocument": { "uri": u, "version": 5 }, "contentChanges": [{ "text": "model { path = " }] }));
    let r = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": u }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    assert_eq!(r["result"], Value::Null, "{r}");
    c.finish();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn lsp_answers_malformed_messages_with_errors_and_keeps_serving() {
    let mut c = Client::start();
    // Not JSON: a parse error with a null id.
    c.send_raw("{ not json");
    let r = c.response(Value::Null);
    assert_eq!(r["error"]["code"], json!(-32700), "{r}");
    // JSON that is no JSON-RPC message.
    c.send_raw(r#"{"jsonrpc":"2.0","id":77,"method":5}"#);
    let r = c.response(json!(77));
    assert_eq!(r["error"]["code"], json!(-32600), "{r}");
    // An unknown method, and parameters of the wrong shape.
    let r = c.request("textDocument/rename", json!({}));
    assert_eq!(r["error"]["code"], json!(-32601), "{r}");
    let r = c.request("textDocument/hover", json!({ "textDocument": 3 }));
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
    // Unknown notifications and a change to a document never opened are ignored.
    c.notify("$/somethingNew", json!({ "x": 1 }));
    c.notify("textDocument/didChange", json!({ "textDocument": { "uri": "file:///nowhere.ard", "version": 2 }, "contentChanges": [{ "text": "x" }] }));
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": "not an object" }),
    );
    // A position past the end of a document.
    let u = "file:///tmp/ardpipe-lsp-nowhere/p.ard";
    c.open(u, "model {\n");
    let r = c.at("textDocument/completion", u, (99, 99));
    assert!(r.get("result").is_some(), "{r}");
    let r = c.at("textDocument/hover", u, (0, 9999));
    assert_eq!(r["result"], Value::Null, "{r}");
    c.finish();
}

/// Every key and nested block the checker knows has hover text from docs/LANGUAGE.md, but for
/// the keys listed here, which LANGUAGE.md describes only in prose that does not name them.
#[test]
fn lsp_every_checker_key_has_hover_text() {
    const UNDOCUMENTED: &[&str] = &["evaluate.metrics", "evaluate.batch_size"];
    let mut c = Client::start();
    let mut missing = Vec::new();
    for (n, (path, keys)) in ardpipe_dsl::keys::all_blocks().into_iter().enumerate() {
        if path.is_empty() || path == ["variant"] {
            continue;
        }
        let mut text = String::new();
        for (depth, kind) in path.iter().enumerate() {
            let name = if depth == 0 && ardpipe_dsl::keys::named_blocks().contains(kind) {
                " x"
            } else {
                ""
            };
            text += &format!("{kind}{name} {{\n");
        }
        let mut lines = Vec::new();
        for k in &keys.keys {
            lines.push((k.to_string(), text.lines().count()));
            text += &format!("{k} = 1\n");
        }
        for b in &keys.blocks {
            lines.push((format!("{b} {{}}"), text.lines().count()));
            text += &format!("{b} {{\n}}\n");
        }
        text += &"}\n".repeat(path.len());
        let u = format!("file:///tmp/ardpipe-lsp-keys/{n}.ard");
        c.open(&u, &text);
        for (key, line) in lines {
            let h = c.at("textDocument/hover", &u, (line, 0));
            let id = format!("{}.{key}", path.join("."));
            if h["result"].is_null() && !UNDOCUMENTED.contains(&id.as_str()) {
                missing.push(id);
            }
        }
    }
    assert!(missing.is_empty(), "keys without hover text: {missing:?}");
    c.finish();
}
