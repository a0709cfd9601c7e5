//! The example plugins, loaded as real shared libraries through the host.

mod common;

use std::collections::BTreeSet;

use ardpipe_plugin_host::{ErrorKind, Kind, Predictions, load, load_kind};
use common::{fortunes_folder, plugin};
use serde_json::json;

fn opts(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn fortunes_loader_describes_itself() {
    let p = load(&plugin("fortunes-loader")).unwrap();
    let info = p.info();
    assert_eq!(info.name, "fortunes");
    assert_eq!(info.kind, Kind::Loader);
    assert_eq!(info.abi_version, 1);
    assert!(info.has_capability("size-hint"));
    let keys: Vec<&str> = info.options.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["path", "categories", "shuffle", "limit"]);
    assert!(info.options[0].required);
    assert_eq!(info.options[2].default.as_deref(), Some("true"));
    // Loading twice gives the same plugin (libraries are loaded once and never unloaded).
    assert!(std::ptr::eq(p, load(&plugin("fortunes-loader")).unwrap()));
}

#[test]
fn fortunes_loader_streams_labelled_records_in_batches_deterministically() {
    let dir = fortunes_folder("stream");
    let p = load_kind(&plugin("fortunes-loader"), Kind::Loader).unwrap();
    let read = |seed: u64| {
        let mut stream = p
            .open_loader(&opts(json!({"path": dir})), seed)
            .unwrap()
            .with_batch_size(2);
        assert_eq!(stream.size_hint_records().unwrap(), Some(9));
        stream.collect::<Result<Vec<_>, _>>().unwrap()
    };
    let first = read(7);
    assert_eq!(first.len(), 9, "3 + 2 + 4 items, the .dat index skipped");
    assert_eq!(first, read(7), "same seed, same order");
    assert_ne!(first, read(8), "another seed shuffles differently");
    let labels: BTreeSet<&str> = first.iter().map(|r| r.label.as_deref().unwrap()).collect();
    assert_eq!(labels, BTreeSet::from(["art", "computers", "wisdom"]));
    let stitch = first
        .iter()
        .find(|r| r.text.starts_with("A stitch"))
        .unwrap();
    assert_eq!(stitch.text, "A stitch in time\nsaves nine.");
    assert_eq!(stitch.label.as_deref(), Some("wisdom"));
    assert_eq!(stitch.extra["line"], "5");
    assert!(stitch.extra["file"].ends_with("wisdom"));
    assert_eq!(stitch.text_pair, None);
}

#[test]
fn fortunes_options_errors_name_the_key() {
    let dir = fortunes_folder("options");
    let p = load(&plugin("fortunes-loader")).unwrap();
    let e = p
        .open_loader(&opts(json!({"path": dir.join("nope")})), 0)
        .err()
        .unwrap();
    assert_eq!(e.key.as_deref(), Some("path"));
    assert!(
        matches!(e.kind, ErrorKind::Failed { during: "open", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("plugin `fortunes`"), "{e}");
    let e = p.open_loader(&opts(json!({"pth": dir})), 0).err().unwrap();
    assert_eq!(e.key.as_deref(), Some("pth"));
    assert!(e.to_string().contains("did you mean `path`"), "{e}");
    let e = p
        .open_loader(&opts(json!({"path": dir, "shuffle": "yes"})), 0)
        .err()
        .unwrap();
    assert_eq!(e.key.as_deref(), Some("shuffle"));
    let e = p.open_loader(b"[1, 2]", 0).err().unwrap();
    assert!(e.to_string().contains("JSON object"), "{e}");
}

#[test]
fn fortunes_limit_and_categories() {
    let dir = fortunes_folder("limit");
    let p = load(&plugin("fortunes-loader")).unwrap();
    let records: Vec<_> = p
        .open_loader(
            &opts(
                json!({"path": dir, "categories": ["art", "wisdom"], "shuffle": false, "limit": 4}),
            ),
            0,
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let labels: Vec<&str> = records
        .iter()
        .map(|r| r.label.as_deref().unwrap())
        .collect();
    assert_eq!(labels, ["art", "art", "wisdom", "wisdom"]);
}

/// The real Debian collection: the example asset set-up installs (`.ardpipe/assets/fortunes`, the
/// files of Debian's `fortunes` package), or the package itself. Neither is a failure with the fix,
/// not a silent pass.
#[test]
fn the_real_debian_fortunes() {
    let asset = common::workspace_root().join(".ardpipe/assets/fortunes");
    let system = std::path::Path::new("/usr/share/games/fortunes");
    let debian = [asset.as_path(), system]
        .into_iter()
        .find(|d| d.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "neither {} nor {} exists: run `python3 scripts/setup.py` (it installs the \
                 fortunes asset with `apt-get download`), or `apt-get install fortunes`",
                asset.display(),
                system.display()
            )
        });
    let p = load(&plugin("fortunes-loader")).unwrap();
    let mut stream = p.open_loader(&opts(json!({"path": debian})), 1).unwrap();
    let n = stream.size_hint_records().unwrap().unwrap();
    let records: Vec<_> = stream.collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len() as u64, n);
    let labels: BTreeSet<_> = records.iter().map(|r| r.label.clone().unwrap()).collect();
    println!("{n} fortunes in {} categories", labels.len());
    assert!(n > 1000 && labels.len() > 10);
}

// Labels [0,0,1,1,2,2], predictions [0,1,1,1,2,0]: C = [[1,1,0],[0,2,0],[1,0,1]], c = 4, s = 6,
// t = [2,2,2], p = [2,3,1] → MCC = (24 − 12) / sqrt((36 − 14)(36 − 12)) = 12 / sqrt(528).
const HAND_MCC: f64 = 0.522_232_967_867_093_6;

#[test]
fn mcc_metric_through_the_host_matches_the_hand_value() {
    let p = load_kind(&plugin("mcc-metric"), Kind::Metric).unwrap();
    assert_eq!(p.info().name, "mcc");
    let mut m = p
        .create_metric(&opts(json!({"confusion_matrix": true})))
        .unwrap();
    // Two batches of logits [3, 3] with argmax [0,1,1] and [1,2,0].
    let b1 = [5.0f32, 1.0, 0.0, 0.1, 0.8, 0.1, 0.0, 2.0, 1.0];
    let b2 = [0.0f32, 1.0, 0.5, -1.0, -2.0, 3.0, 4.0, 3.9, 3.8];
    m.update(
        Predictions::Logits {
            data: &b1,
            shape: &[3, 3],
        },
        &[0, 0, 1],
        &[3],
    )
    .unwrap();
    m.update(
        Predictions::Logits {
            data: &b2,
            shape: &[3, 3],
        },
        &[1, 2, 2],
        &[3],
    )
    .unwrap();
    let out = m.finish().unwrap();
    assert_eq!(out[0].0, "mcc");
    assert!((out[0].1 - HAND_MCC).abs() < 1e-12, "{out:?}");
    let cell = |n: &str| out.iter().find(|(k, _)| k == n).unwrap().1;
    assert_eq!(cell("confusion.0.1"), 1.0);
    assert_eq!(cell("confusion.2.2"), 1.0);
}

#[test]
fn mcc_token_ids_with_ignored_positions() {
    let p = load(&plugin("mcc-metric")).unwrap();
    let mut m = p.create_metric(b"{}").unwrap();
    // [batch 2, seq 4] with -100 padding, same six labelled positions as above.
    let ids = [0i64, 1, 1, 9, 1, 2, 0, 9];
    let labels = [0i64, 0, 1, -100, 1, 2, 2, -100];
    m.update(
        Predictions::Ids {
            data: &ids,
            shape: &[2, 4],
        },
        &labels,
        &[2, 4],
    )
    .unwrap();
    let out = m.finish().unwrap();
    assert!((out[0].1 - HAND_MCC).abs() < 1e-12, "{out:?}");
}

#[test]
fn metric_errors_come_back_as_values() {
    let p = load(&plugin("mcc-metric")).unwrap();
    let e = p
        .create_metric(&opts(json!({"num_classes": 1})))
        .err()
        .unwrap();
    assert_eq!(e.key.as_deref(), Some("num_classes"));
    let mut m = p.create_metric(b"").unwrap();
    // A shape that does not match its buffer is caught by the host before the plugin sees it.
    let e = m
        .update(
            Predictions::Ids {
                data: &[0, 1],
                shape: &[3],
            },
            &[0, 1],
            &[2],
        )
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidInput { .. }), "{e:?}");
    // A shape mismatch between predictions and labels is the plugin's to refuse.
    let e = m
        .update(
            Predictions::Ids {
                data: &[0, 1],
                shape: &[2],
            },
            &[0, 1, 1],
            &[3],
        )
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Failed {
                during: "update",
                ..
            }
        ),
        "{e:?}"
    );
    let e = m.finish().unwrap_err();
    assert!(e.to_string().contains("no labelled examples"), "{e}");
}

#[test]
fn a_loader_is_not_a_metric() {
    let p = load(&plugin("fortunes-loader")).unwrap();
    let e = p.create_metric(b"{}").err().unwrap();
    assert_eq!(
        e.kind,
        ErrorKind::WrongKind {
            expected: Kind::Metric,
            found: Kind::Loader
        }
    );
    let e = load_kind(&plugin("mcc-metric"), Kind::Loader).unwrap_err();
    assert!(
        e.to_string()
            .contains("is a metric plugin, but a loader plugin is needed"),
        "{e}"
    );
}
