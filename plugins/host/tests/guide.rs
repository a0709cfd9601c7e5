//! Follows docs/PLUGINS.md literally: in an empty temporary folder (with ardpipe "cloned" next to
//! it, as the guide assumes), runs every ```sh run block and writes every ```… file=PATH block, in
//! order; then loads the libraries the guide built through the host and uses them. If the guide
//! goes stale, this fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ardpipe_plugin_host::{Kind, Predictions, load};
use common::{scratch, workspace_root};

enum Step {
    Run(String),
    Write(PathBuf, String),
}

/// The guide's actionable code blocks, in order.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let body = body.join("\n") + "\n";
        let words: Vec<&str> = info.split_whitespace().collect();
        if let Some(file) = words.iter().find_map(|w| w.strip_prefix("file=")) {
            steps.push(Step::Write(PathBuf::from(file), body));
        } else if words.first() == Some(&"sh") && words.contains(&"run") {
            steps.push(Step::Run(body));
        }
    }
    steps
}

fn library(dir: &Path, crate_name: &str) -> PathBuf {
    dir.join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name,
        std::env::consts::DLL_SUFFIX
    ))
}

#[test]
fn the_plugin_guide_works_from_an_empty_folder() {
    let root = workspace_root().canonicalize().unwrap();
    let guide = std::fs::read_to_string(root.join("docs/PLUGINS.md")).unwrap();
    let steps = steps(&guide);
    let runs = steps.iter().filter(|s| matches!(s, Step::Run(_))).count();
    let files = steps.len() - runs;
    assert!(
        runs >= 4 && files >= 4,
        "the guide lost its steps ({runs} commands, {files} files)"
    );

    let work = scratch("guide");
    std::os::unix::fs::symlink(&root, work.join("ardpipe")).unwrap();
    // Build products are cached between test runs (the guide's own `target/` would be cold every
    // time); offline because everything the SDK needs is already in cargo's cache.
    let target = root.join("target").join("plugin-guide");
    for step in &steps {
        match step {
            Step::Write(path, text) => {
                let path = work.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            Step::Run(script) => {
                let out = Command::new("bash")
                    .args(["-euo", "pipefail", "-c", script])
                    .current_dir(&work)
                    .env("CARGO_TARGET_DIR", &target)
                    .env("CARGO_NET_OFFLINE", "true")
                    .env_remove("CARGO_MANIFEST_DIR")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "guide step failed:\n{script}\n--- stdout\n{}\n--- stderr\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    let release = target.join("release");
    let tsv = load(&library(&release, "tsv_loader")).unwrap();
    assert_eq!(
        (tsv.info().name.as_str(), tsv.info().kind),
        ("tsv", Kind::Loader)
    );
    let data = work.join("reviews.tsv");
    std::fs::write(
        &data,
        "label\ttext\npos\tloved it\nneg\tfell asleep\npos\tagain!\n",
    )
    .unwrap();
    let options = ardpipe_plugin_sdk::serde_json::json!({"path": data, "skip_header": true});
    let records: Vec<_> = tsv
        .open_loader(options.to_string().as_bytes(), 0)
        .unwrap()
        .with_batch_size(2)
        .collect::<Result<_, _>>()
        .unwrap();
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.label.as_deref().unwrap(), r.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("pos", "loved it"),
            ("neg", "fell asleep"),
            ("pos", "again!")
        ]
    );
    let e = tsv
        .open_loader(br#"{"path": "/nonexistent.tsv"}"#, 0)
        .err()
        .unwrap();
    assert_eq!(e.key.as_deref(), Some("path"));
    // The guide quotes this error word for word.
    let e = tsv
        .open_loader(br#"{"path": "/x.tsv", "skip_heder": true}"#, 0)
        .err()
        .unwrap();
    let quoted = "plugin `tsv` refused option `skip_heder` in open: unknown option `skip_heder` \
                  (did you mean `skip_header`?); it declares: path (path, required), skip_header \
                  (boolean, default false)";
    assert_eq!(e.to_string(), quoted);
    assert!(
        guide
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(quoted),
        "the guide no longer quotes: {quoted}"
    );

    // The C loader the guide compiles with `cc`.
    let c = load(&work.join("libc_tsv_loader.so")).unwrap();
    assert_eq!(
        (c.info().name.as_str(), c.info().kind),
        ("c-tsv", Kind::Loader)
    );
    let records: Vec<_> = c
        .open_loader(br#"{"path": "/dev/null"}"#, 0)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(records.is_empty());

    let topk = load(&library(&release, "topk_metric")).unwrap();
    assert_eq!(topk.info().kind, Kind::Metric);
    let mut m = topk.create_metric(br#"{"k": 2}"#).unwrap();
    // Label ranks: 1st, 2nd, 3rd → hits for k = 2: 2 of 3.
    let logits = [0.9f32, 0.1, 0.0, 0.5, 0.4, 0.1, 0.7, 0.2, 0.1];
    m.update(
        Predictions::Logits {
            data: &logits,
            shape: &[3, 3],
        },
        &[0, 1, 2],
        &[3],
    )
    .unwrap();
    let out = m.finish().unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "top2");
    assert!((out[0].1 - 2.0 / 3.0).abs() < 1e-12, "{out:?}");
}
