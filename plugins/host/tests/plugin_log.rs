//! A plugin's log lines reach the host's `tracing` log, tagged with the plugin's name.
//!
//! Its own test binary (own process): the test captures the log with a scoped subscriber, and
//! `tracing` caches each callsite's interest process-wide, so another test thread that hits the
//! same callsite first, with no subscriber, can leave it disabled for this one (it failed about
//! one run in three beside the other plugin tests).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use ardpipe_plugin_host::load;
use common::plugin;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plugin_log_lines_reach_the_host_log_tagged_with_the_plugin() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let p = load(&plugin("ardpipe-test-misbehaving")).unwrap();
        drop(p.open_loader(br#"{"panic_in": "nowhere"}"#, 0).unwrap());
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("plugin=\"misbehaving\""), "{text}");
    assert!(text.contains("it will misbehave in `nowhere`"), "{text}");
}
