//! Plugins written in C against `plugins/sdk/include/ardpipe_plugin.h`, compiled here with `cc`
//! and loaded through the host: the header and the Rust ABI types must agree. The metric
//! (plugins/testdata/c-plugin/accuracy.c), the example loader (plugins/examples/c-loader) and a
//! loader that lies about lengths (plugins/testdata/c-plugin/lying_loader.c).

mod common;

use std::process::Command;

use ardpipe_plugin_host::{ErrorKind, Kind, Predictions, load};
use common::{scratch, workspace_root};

/// Compiles `source` (relative to the workspace) into a plugin library with `cc` (or `$CC`),
/// strictly: ISO C11 with -pedantic, so the header must be valid ISO C (its static descriptors
/// included). A missing compiler fails the test with the reason: set-up provides `cc`.
fn build(source: &str, name: &str) -> std::path::PathBuf {
    let out = scratch(name).join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let root = workspace_root();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&cc)
        .args([
            "-std=c11",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            "-I",
        ])
        .arg(root.join("plugins/sdk/include"))
        .arg(root.join(source))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "no C compiler: `{cc}` cannot run ({e}); install one (e.g. `apt-get install gcc`) \
                 or set CC — the C plugin tests need it"
            )
        });
    assert!(
        output.status.success(),
        "compiling {source} against the header failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

#[test]
fn a_c_metric_loads_and_computes() {
    let path = build("plugins/testdata/c-plugin/accuracy.c", "c_accuracy");
    let p = load(&path).unwrap();
    let info = p.info();
    assert_eq!(info.name, "c-accuracy");
    assert_eq!(info.version, "1.0.0");
    assert_eq!(info.kind, Kind::Metric);
    assert_eq!(info.capabilities, ["logits", "token-ids"]);
    assert_eq!(info.options[0].key, "strict");
    assert_eq!(info.options[0].default.as_deref(), Some("false"));

    let mut m = p.create_metric(br#"{"strict": true}"#).unwrap();
    let logits = [0.9f32, 0.1, 0.2, 0.8, 0.7, 0.3, 0.0, 1.0];
    m.update(
        Predictions::Logits {
            data: &logits,
            shape: &[4, 2],
        },
        &[0, 1, 1, -100],
        &[4],
    )
    .unwrap();
    m.update(
        Predictions::Ids {
            data: &[1, 0],
            shape: &[2],
        },
        &[1, 1],
        &[2],
    )
    .unwrap();
    let out = m.finish().unwrap();
    // Correct: 0, 1, (0≠1), skip, 1, (0≠1) → 3 of 5.
    assert_eq!(
        out,
        vec![("accuracy".to_string(), 0.6), ("count".to_string(), 5.0)]
    );

    // An undeclared option never reaches the plugin: the host refuses it, naming the declared ones.
    let e = p.create_metric(br#"{"other": 1}"#).err().unwrap();
    assert!(
        matches!(
            e.kind,
            ErrorKind::BadOption {
                during: "create",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.key.as_deref(), Some("other"));
    assert!(
        e.to_string().contains(
            "plugin `c-accuracy` refused option `other` in create: unknown option `other`; \
             it declares: strict (boolean, default false)"
        ),
        "{e}"
    );
    // A mistyped value is refused the same way, before the plugin sees it.
    let e = p.create_metric(br#"{"strict": "yes"}"#).err().unwrap();
    assert_eq!(e.key.as_deref(), Some("strict"));
    assert!(e.to_string().contains("must be true or false"), "{e}");
    let m = p.create_metric(b"{}").unwrap();
    assert!(
        m.finish()
            .unwrap_err()
            .to_string()
            .contains("no labelled examples")
    );
}

fn tsv(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data.tsv");
    std::fs::write(
        &data,
        "pos\tgood film\n\nneg\tbad film\r\nno label here\npos\tgreat \"quoted\" film\n",
    )
    .unwrap();
    data
}

#[test]
fn the_c_loader_example_streams_records_with_their_lines() {
    let path = build("plugins/examples/c-loader/tsv_loader.c", "c_tsv");
    let p = load(&path).unwrap();
    assert_eq!(p.info().name, "c-tsv");
    assert_eq!(p.info().kind, Kind::Loader);
    let data = tsv(&scratch("c-tsv-data"));
    let options = serde_json::json!({ "path": data });
    let mut stream = p
        .open_loader(options.to_string().as_bytes(), 0)
        .unwrap()
        .with_batch_size(2);
    // `size_hint` is NULL in this plugin: allowed, and it means "unknown".
    assert_eq!(stream.size_hint_records().unwrap(), None);
    let records: Vec<_> = stream.collect::<Result<_, _>>().unwrap();
    let seen: Vec<(Option<&str>, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.label.as_deref(),
                r.text.as_str(),
                r.extra["line"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("pos"), "good film", "1"),
            (Some("neg"), "bad film", "3"),
            (None, "no label here", "4"),
            (Some("pos"), "great \"quoted\" film", "5"),
        ]
    );
    assert_eq!(records[0].extra["file"], data.to_str().unwrap());

    // The pipeline writes every number as f64: `limit = 3` arrives at the host as 3.0 and at the
    // plugin as the integer 3, which its integer reader needs.
    let options = serde_json::json!({ "path": data, "limit": 3.0 });
    let n = p
        .open_loader(options.to_string().as_bytes(), 0)
        .unwrap()
        .count();
    assert_eq!(n, 3);
    let e = p
        .open_loader(
            serde_json::json!({ "path": data, "limit": 2.5 })
                .to_string()
                .as_bytes(),
            0,
        )
        .err()
        .unwrap();
    assert_eq!(e.key.as_deref(), Some("limit"));
    // A missing required option is the host's error; a bad path is the plugin's own, with its key.
    let e = p.open_loader(b"{}", 0).err().unwrap();
    assert_eq!(e.key.as_deref(), Some("path"));
    assert!(
        e.to_string()
            .contains("missing required option `path` (path)"),
        "{e}"
    );
    let e = p
        .open_loader(br#"{"path": "/no/such/file.tsv"}"#, 0)
        .err()
        .unwrap();
    assert!(
        matches!(e.kind, ErrorKind::Failed { during: "open", .. }),
        "{e:?}"
    );
    assert_eq!(e.key.as_deref(), Some("path"));
    assert!(
        e.to_string().contains("cannot open /no/such/file.tsv"),
        "{e}"
    );
}

#[test]
fn lengths_a_plugin_cannot_back_are_refused_naming_it() {
    let path = build("plugins/testdata/c-plugin/lying_loader.c", "c_liar");
    let p = load(&path).unwrap();
    let first = |lie: &str| {
        let options = serde_json::json!({ "lie": lie }).to_string();
        p.open_loader(options.as_bytes(), 0)
            .unwrap()
            .next()
            .expect("one item")
    };
    assert_eq!(first("none").unwrap().text, "the only record");
    for (lie, expected) in [
        (
            "len",
            "plugin `c-liar` returned invalid data from next_batch: it returned 1048576 records \
             when asked for at most 256 (`max_records`)",
        ),
        (
            "text_len",
            "plugin `c-liar` returned invalid data from next_batch: record 0 of the batch: its \
             text claims 1099511627776 bytes",
        ),
        (
            "extra_len",
            "plugin `c-liar` returned invalid data from next_batch: record 0 of the batch: it \
             claims 1073741824 extra fields",
        ),
        (
            "error_len",
            "plugin `c-liar` failed in next_batch: a message that claims to be a terabyte long",
        ),
    ] {
        let e = first(lie).unwrap_err();
        assert!(e.to_string().contains(expected), "{lie}: {e}");
    }
}

#[test]
fn a_metric_claiming_more_results_than_it_has_is_refused_naming_it() {
    let path = build("plugins/testdata/c-plugin/lying_metric.c", "c_lying_metric");
    let p = load(&path).unwrap();
    let finish = |lie: &str| {
        let options = serde_json::json!({ "lie": lie }).to_string();
        p.create_metric(options.as_bytes()).unwrap().finish()
    };
    assert_eq!(finish("none").unwrap(), vec![("score".to_string(), 1.0)]);
    for (lie, expected) in [
        (
            "len",
            "plugin `c-lying-metric` returned invalid data from finish: it claims 1099511627776 \
             results, more than the 1048576 a metric may report",
        ),
        (
            "name_len",
            "plugin `c-lying-metric` returned invalid data from finish: result 0's name claims \
             1099511627776 bytes",
        ),
    ] {
        let e = finish(lie).unwrap_err();
        assert!(e.to_string().contains(expected), "{lie}: {e}");
    }
}
