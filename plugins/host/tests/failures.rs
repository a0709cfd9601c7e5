//! Every way a plugin can be bad gives a clear error value; the host survives all of them.

mod common;

use ardpipe_plugin_host::{ErrorKind, PluginError, load};
use common::{plugin, scratch};
use serde_json::json;

fn load_err(path: &std::path::Path) -> PluginError {
    load(path).expect_err("the plugin must be refused")
}

/// The host still loads and runs a good plugin after a bad one.
fn host_still_works() {
    let p = load(&plugin("ardpipe-test-misbehaving")).unwrap();
    let n = p.open_loader(b"{}", 0).unwrap().count();
    assert_eq!(n, 5);
}

#[test]
fn missing_file() {
    let path = scratch("missing").join("libnothing.so");
    let e = load_err(&path);
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.code(), "ardpipe::plugin::not_found");
    assert!(e.to_string().contains("no file at"), "{e}");
    assert!(e.to_string().contains("libnothing.so"), "{e}");
    assert!(
        e.help()
            .contains("relative paths are resolved from the pipeline"),
        "{}",
        e.help()
    );
    host_still_works();
}

#[test]
fn a_text_file_named_like_a_library() {
    let path = scratch("text").join("libfake.so");
    std::fs::write(&path, "use ardpipe_plugin_sdk::*;\n").unwrap();
    let e = load_err(&path);
    assert!(
        matches!(e.kind, ErrorKind::NotSharedLibrary { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("is not a shared library"), "{e}");
    assert!(e.to_string().contains("starts with the text"), "{e}");
    assert!(e.help().contains("cdylib"), "{}", e.help());
    // Empty files and folders are not libraries either.
    let empty = scratch("empty").join("libempty.so");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_err(&empty).to_string().contains("the file is empty"));
    let dir = scratch("dir");
    assert!(load_err(&dir).to_string().contains("is a directory"));
    host_still_works();
}

#[test]
fn a_truncated_library_fails_to_load_with_the_loaders_message() {
    let good = std::fs::read(plugin("ardpipe-test-no-entry")).unwrap();
    let path = scratch("truncated").join("libtruncated.so");
    std::fs::write(&path, &good[..200]).unwrap();
    let e = load_err(&path);
    assert!(matches!(e.kind, ErrorKind::LoadFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("could not be loaded"), "{e}");
    host_still_works();
}

#[test]
fn a_library_without_the_entry_symbol() {
    let e = load_err(&plugin("ardpipe-test-no-entry"));
    assert_eq!(e.kind, ErrorKind::NoEntrySymbol);
    assert!(e.to_string().contains("not an ardpipe plugin"), "{e}");
    assert!(e.to_string().contains("ardpipe_plugin_v1"), "{e}");
    assert!(e.help().contains("export_plugin!"), "{}", e.help());
    host_still_works();
}

#[test]
fn abi_version_999_is_refused_naming_both_versions() {
    let e = load_err(&plugin("ardpipe-test-abi-999"));
    assert_eq!(
        e.kind,
        ErrorKind::AbiMismatch {
            plugin_abi: 999,
            host_abi: 1
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("ABI version 999") && text.contains("ABI version 1"),
        "{text}"
    );
    assert!(e.help().contains("newer SDK"), "{}", e.help());
    host_still_works();
}

#[test]
fn a_plugin_exporting_only_a_future_entry_symbol() {
    let e = load_err(&plugin("ardpipe-test-future-abi"));
    assert_eq!(
        e.kind,
        ErrorKind::AbiMismatch {
            plugin_abi: 2,
            host_abi: 1
        }
    );
    host_still_works();
}

fn misbehaving(options: serde_json::Value) -> Result<Vec<String>, PluginError> {
    let p = load(&plugin("ardpipe-test-misbehaving")).unwrap();
    let stream = p
        .open_loader(&serde_json::to_vec(&options).unwrap(), 0)?
        .with_batch_size(2);
    let mut texts = Vec::new();
    for record in stream {
        texts.push(record?.text);
    }
    Ok(texts)
}

#[test]
fn a_panic_in_open_is_caught_and_reported_with_its_location() {
    let e = misbehaving(json!({"panic_in": "open"})).unwrap_err();
    let ErrorKind::Panicked { during, message } = &e.kind else {
        panic!("expected a panic error, got {e:?}")
    };
    assert_eq!(*during, "open");
    assert!(message.contains("deliberate panic in open"), "{message}");
    assert!(
        message.contains("lib.rs:"),
        "the location is kept: {message}"
    );
    assert!(
        e.help().contains("bug in the plugin `misbehaving`"),
        "{}",
        e.help()
    );
    host_still_works();
}

#[test]
fn a_panic_mid_stream_ends_the_stream_with_one_error() {
    let p = load(&plugin("ardpipe-test-misbehaving")).unwrap();
    let mut stream = p
        .open_loader(br#"{"panic_in": "next_batch"}"#, 0)
        .unwrap()
        .with_batch_size(2);
    assert_eq!(stream.next().unwrap().unwrap().text, "record 0");
    assert_eq!(
        stream.next().unwrap().unwrap().label.as_deref(),
        Some("odd")
    );
    let e = stream.next().unwrap().unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Panicked { during: "next_batch", message } if message.contains("index out of bounds")),
        "{e:?}"
    );
    assert!(stream.next().is_none(), "nothing after the panic");
    assert!(
        stream.size_hint_records().is_err(),
        "the handle is not used again"
    );
    drop(stream);
    host_still_works();
}

#[test]
fn panics_in_size_hint_and_close_do_not_crash_the_host() {
    let p = load(&plugin("ardpipe-test-misbehaving")).unwrap();
    let mut stream = p.open_loader(br#"{"panic_in": "size_hint"}"#, 0).unwrap();
    let e = stream.size_hint_records().unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Panicked {
                during: "size_hint",
                ..
            }
        ),
        "{e:?}"
    );
    drop(stream);
    let stream = p.open_loader(br#"{"panic_in": "close"}"#, 0).unwrap();
    assert_eq!(stream.count(), 5);
    host_still_works();
}

#[test]
fn an_error_from_the_plugin_is_a_value_with_its_message() {
    let e = misbehaving(json!({"fail_in": "next_batch"})).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Failed {
                during: "next_batch",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("record source went away after 2 records"),
        "{e}"
    );
    assert_eq!(e.key, None);
    host_still_works();
}
