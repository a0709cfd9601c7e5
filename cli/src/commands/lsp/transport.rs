//! JSON-RPC over stdin/stdout in LSP's framing (`Content-Length: N\r\n\r\n` then N bytes of
//! JSON), feeding an `lsp_server::Connection`. lsp-server's own stdio threads stop reading at the
//! first malformed frame (the server would then go deaf); here a frame that is not JSON, or not a
//! JSON-RPC message, is answered with a JSON-RPC error and the next frame is read.

use std::io::{self, BufRead, Read, Write};
use std::thread;

use lsp_server::{Connection, Message};
use serde_json::{Value, json};

/// JSON-RPC's codes for a body that is not JSON, and for JSON that is not a request.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
/// The largest frame read: a pipeline file is at most 4 MiB (dsl's limit), with room for JSON.
const MAX_FRAME: usize = 64 << 20;

/// The server's end of a connection over stdio, and the writer thread to join after the server's
/// end is dropped (so every answer is written before the process exits).
pub fn stdio() -> (Connection, thread::JoinHandle<()>) {
    let (server, client) = Connection::memory();
    let to_server = client.sender;
    thread::spawn(move || {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        loop {
            match read_frame(&mut input) {
                Ok(Some(body)) => match parse(&body) {
                    Ok(msg) => {
                        if to_server.send(msg).is_err() {
                            return;
                        }
                    }
                    Err(error) => write_raw(&error),
                },
                Ok(None) => return,
                Err(FrameError::Bad(why)) => {
                    write_raw(&error_response(Value::Null, PARSE_ERROR, &why))
                }
                Err(FrameError::Io) => return,
            }
        }
        // At end of input the channel closes: the server's loop ends as after `exit`.
    });
    let from_server = client.receiver;
    let writer = thread::spawn(move || {
        for msg in from_server {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            if msg.write(&mut out).is_err() {
                return;
            }
        }
    });
    (server, writer)
}

enum FrameError {
    /// A frame whose header is wrong: answered, then the next frame is read.
    Bad(String),
    /// Input closed or unreadable.
    Io,
}

/// One frame's body; `None` at the end of input.
fn read_frame(input: &mut impl BufRead) -> Result<Option<Vec<u8>>, FrameError> {
    let mut length: Option<Result<usize, String>> = None;
    let mut line = String::new();
    let mut any = false;
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) if !any => return Ok(None),
            Ok(0) => return Err(FrameError::Io),
            Ok(_) => {}
            Err(_) => return Err(FrameError::Io),
        }
        any = true;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("Content-Length `{}` is not a number", value.trim())),
            );
        }
    }
    let n = match length {
        Some(Ok(n)) if n <= MAX_FRAME => n,
        Some(Ok(n)) => {
            // Read past it so the stream stays in step, then refuse it.
            io::copy(&mut (&mut *input).take(n as u64), &mut io::sink())
                .map_err(|_| FrameError::Io)?;
            return Err(FrameError::Bad(format!(
                "a message of {n} bytes is larger than the {MAX_FRAME} bytes accepted"
            )));
        }
        Some(Err(why)) => return Err(FrameError::Bad(why)),
        None => return Err(FrameError::Bad("a header without Content-Length".into())),
    };
    let mut body = vec![0; n];
    input.read_exact(&mut body).map_err(|_| FrameError::Io)?;
    Ok(Some(body))
}

/// A message, or the error response that answers a body that is not one.
fn parse(body: &[u8]) -> Result<Message, Value> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| error_response(Value::Null, PARSE_ERROR, &format!("not JSON: {e}")))?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if value.get("method").is_some_and(|m| !m.is_string()) {
        return Err(error_response(
            id,
            INVALID_REQUEST,
            "`method` is not a string",
        ));
    }
    serde_json::from_value::<Message>(value)
        .map_err(|e| error_response(id, INVALID_REQUEST, &format!("not a JSON-RPC message: {e}")))
}

fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// Writes a message lsp-server cannot represent (an error whose id is `null`).
fn write_raw(v: &Value) {
    let body = v.to_string();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let _ = write!(out, "Content-Length: {}\r\n\r\n{body}", body.len());
    let _ = out.flush();
}
