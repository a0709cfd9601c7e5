//! `ardpipe lsp`: a language server over stdin/stdout (lsp-server's synchronous loop). Diagnostics
//! come from the checker `ardpipe check` runs, completions from the checker's own key tables
//! (`ardpipe_dsl::keys`) and the model's modules (read as `ardpipe inspect model` reads them),
//! hover text from docs/LANGUAGE.md, formatting from `ardpipe fmt`'s formatter.
//!
//! A request the server cannot answer gets an LSP error response, never a crash: unknown methods
//! get MethodNotFound, parameters of the wrong shape InvalidParams, and a handler that panics
//! InternalError; unknown notifications are ignored.

mod complete;
mod definition;
mod diagnostics;
mod hover;
mod scan;
mod transport;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::Notification as _;
use lsp_types::{
    CompletionOptions, DidChangeTextDocumentParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, DidSaveTextDocumentParams, DocumentFormattingParams,
    GotoDefinitionParams, HoverParams, HoverProviderCapability, OneOf, Position,
    PublishDiagnosticsParams, Range, SaveOptions, ServerCapabilities, TextDocumentSyncCapability,
    TextDocumentSyncKind, TextDocumentSyncOptions, TextDocumentSyncSaveOptions, TextEdit, Url,
};
use serde_json::Value;

use crate::args::Overrides;
use crate::exit::Code;

pub fn run() -> miette::Result<Code> {
    let (connection, writer) = transport::stdio();
    let code = serve(&connection);
    // The writer ends when the server's end is gone: every answer is out before the exit.
    drop(connection);
    let _ = writer.join();
    code
}

fn serve(connection: &Connection) -> miette::Result<Code> {
    let (id, _params) = connection
        .initialize_start()
        .map_err(|e| miette::miette!("lsp: {e}"))?;
    let result = serde_json::json!({
        "capabilities": capabilities(),
        "serverInfo": { "name": "ardpipe", "version": env!("CARGO_PKG_VERSION") },
    });
    // Answered here rather than by `initialize_finish`, which stops the server when anything but
    // `initialized` comes next; `initialized` is then one more notification that needs nothing.
    let _ = connection.sender.send(Response::new_ok(id, result).into());
    let mut server = Server::new(connection);
    for msg in &connection.receiver {
        match msg {
            Message::Request(req) => {
                match connection.handle_shutdown(&req) {
                    Ok(true) => return Ok(Code::Success),
                    Ok(false) => {}
                    // Something other than `exit` after `shutdown`.
                    Err(e) => return Err(miette::miette!("lsp: {e}")),
                }
                let id = req.id.clone();
                let response = catch_unwind(AssertUnwindSafe(|| server.request(req)))
                    .unwrap_or_else(|_| {
                        Response::new_err(
                            id,
                            ErrorCode::InternalError as i32,
                            "the server failed on this request (see its log)".into(),
                        )
                    });
                let _ = connection.sender.send(response.into());
            }
            Message::Notification(n) if n.method == lsp_types::notification::Exit::METHOD => {
                // `exit` without `shutdown` first: the protocol's exit code 1.
                return Ok(Code::Failure);
            }
            Message::Notification(n) => {
                let method = n.method.clone();
                if catch_unwind(AssertUnwindSafe(|| server.notification(n))).is_err() {
                    eprintln!("ardpipe lsp: the server failed on a `{method}` notification");
                }
            }
            Message::Response(_) => {}
        }
    }
    // Input closed without `exit`.
    Ok(Code::Failure)
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::FULL),
                save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                    include_text: Some(false),
                })),
                ..Default::default()
            },
        )),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["=".into(), "[".into(), ",".into(), " ".into()]),
            ..Default::default()
        }),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        definition_provider: Some(OneOf::Left(true)),
        ..Default::default()
    }
}

pub(crate) struct Server<'c> {
    connection: &'c Connection,
    /// Open documents by URI: their current full text.
    docs: HashMap<Url, String>,
    ctx: ardpipe_dsl::Context,
    /// Adaptable module names of each model path completion has read.
    models: HashMap<PathBuf, Vec<String>>,
}

/// A request's parameters, or the InvalidParams response that says why they are not.
fn params<P: serde::de::DeserializeOwned>(req: &Request) -> Result<P, Response> {
    serde_json::from_value(req.params.clone()).map_err(|e| {
        Response::new_err(
            req.id.clone(),
            ErrorCode::InvalidParams as i32,
            format!("`{}`: {e}", req.method),
        )
    })
}

fn ok<T: serde::Serialize>(req: &Request, result: T) -> Response {
    Response::new_ok(
        req.id.clone(),
        serde_json::to_value(result).unwrap_or(Value::Null),
    )
}

/// Where a document's relative paths and imports start: its file, or (not a file) a name in the
/// current directory.
pub(crate) fn doc_path(uri: &Url) -> PathBuf {
    uri.to_file_path().unwrap_or_else(|_| {
        std::env::current_dir()
            .unwrap_or_default()
            .join("untitled.ard")
    })
}

/// The byte offset of an LSP position in `text`.
pub(crate) fn offset(text: &str, p: Position) -> usize {
    ardpipe_dsl::source::utf16_offset(text, p.line, p.character)
}

/// The LSP range of a byte range of `text`.
pub(crate) fn range(text: &str, start: usize, end: usize) -> Range {
    let (l0, c0) = ardpipe_dsl::source::utf16_position(text, start);
    let (l1, c1) = ardpipe_dsl::source::utf16_position(text, end);
    Range::new(Position::new(l0, c0), Position::new(l1, c1))
}

impl<'c> Server<'c> {
    fn new(connection: &'c Connection) -> Server<'c> {
        Server {
            connection,
            docs: HashMap::new(),
            ctx: super::check::context(&Overrides::default()),
            models: HashMap::new(),
        }
    }

    /// The text of a document: the editor's copy when open, else the file on disk.
    fn text(&self, uri: &Url) -> Option<String> {
        match self.docs.get(uri) {
            Some(t) => Some(t.clone()),
            None => std::fs::read_to_string(uri.to_file_path().ok()?).ok(),
        }
    }

    fn request(&mut self, req: Request) -> Response {
        match req.method.as_str() {
            "textDocument/completion" => {
                let p: lsp_types::CompletionParams = match params(&req) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let at = p.text_document_position;
                let Some(text) = self.text(&at.text_document.uri) else {
                    return ok(&req, Value::Null);
                };
                let items = complete::complete(
                    self,
                    &at.text_document.uri,
                    &text,
                    offset(&text, at.position),
                );
                ok(&req, items)
            }
            "textDocument/hover" => {
                let p: HoverParams = match params(&req) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let at = p.text_document_position_params;
                let hover = self
                    .text(&at.text_document.uri)
                    .and_then(|text| complete::hover(&text, offset(&text, at.position)));
                ok(&req, hover)
            }
            "textDocument/formatting" => {
                let p: DocumentFormattingParams = match params(&req) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let uri = p.text_document.uri;
                let Some(text) = self.text(&uri) else {
                    return ok(&req, Value::Null);
                };
                let name = doc_path(&uri).display().to_string();
                // A text that does not parse gets no edit: the formatter never guesses.
                match ardpipe_dsl::format_source(&name, &text) {
                    Ok(f) if f == text => ok(&req, Vec::<TextEdit>::new()),
                    Ok(f) => ok(&req, vec![TextEdit::new(range(&text, 0, text.len()), f)]),
                    Err(_) => ok(&req, Value::Null),
                }
            }
            "textDocument/definition" => {
                let p: GotoDefinitionParams = match params(&req) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let at = p.text_document_position_params;
                let uri = at.text_document.uri;
                let found = self.text(&uri).and_then(|text| {
                    definition::definition(self, &uri, &text, offset(&text, at.position))
                });
                ok(&req, found)
            }
            _ => Response::new_err(
                req.id.clone(),
                ErrorCode::MethodNotFound as i32,
                format!("ardpipe lsp does not implement `{}`", req.method),
            ),
        }
    }

    fn notification(&mut self, n: Notification) {
        let p = n.params;
        match n.method.as_str() {
            "textDocument/didOpen" => {
                if let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(p) {
                    let uri = p.text_document.uri;
                    self.docs.insert(uri.clone(), p.text_document.text);
                    self.publish(&uri);
                }
            }
            "textDocument/didChange" => {
                if let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(p) {
                    let uri = p.text_document.uri;
                    let Some(text) = self.docs.get_mut(&uri) else {
                        return;
                    };
                    for change in p.content_changes {
                        match change.range {
                            // Full sync sends whole texts; a client that sends ranges anyway
                            // still gets them applied.
                            Some(r) => {
                                let (a, b) = (offset(text, r.start), offset(text, r.end));
                                if a <= b {
                                    text.replace_range(a..b, &change.text);
                                }
                            }
                            None => *text = change.text,
                        }
                    }
                    self.publish(&uri);
                }
            }
            "textDocument/didSave" => {
                if let Ok(p) = serde_json::from_value::<DidSaveTextDocumentParams>(p) {
                    let uri = p.text_document.uri;
                    if let Some(t) = p.text {
                        self.docs.insert(uri.clone(), t);
                    }
                    // The checker reads imports from disk: a saved file may change what every
                    // open pipeline that imports it says.
                    let open: Vec<Url> = self.docs.keys().cloned().collect();
                    for u in open {
                        self.publish(&u);
                    }
                }
            }
            "textDocument/didClose" => {
                if let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(p) {
                    let uri = p.text_document.uri;
                    self.docs.remove(&uri);
                    self.send_diagnostics(uri, Vec::new());
                }
            }
            // Anything else (`initialized`, `$/cancelRequest`, `workspace/...`) needs nothing.
            _ => {}
        }
    }

    fn publish(&self, uri: &Url) {
        let Some(text) = self.docs.get(uri) else {
            return;
        };
        let found = diagnostics::diagnostics(&doc_path(uri), text, &self.ctx);
        self.send_diagnostics(uri.clone(), found);
    }

    fn send_diagnostics(&self, uri: Url, diagnostics: Vec<lsp_types::Diagnostic>) {
        let params = PublishDiagnosticsParams {
            uri,
            diagnostics,
            version: None,
        };
        let n = Notification::new(
            lsp_types::notification::PublishDiagnostics::METHOD.into(),
            params,
        );
        let _ = self.connection.sender.send(n.into());
    }
}
