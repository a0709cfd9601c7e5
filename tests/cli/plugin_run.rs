//! Plugins inside `ardpipe run`: the shipped fortunes pipeline streams its dataset from the
//! example loader plugin and scores it with the MCC metric plugin; a plugin that panics, or
//! refuses an option, stops the run with a clear error (exit 1) that names it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::plugin::{c_plugin, plugin};
use crate::{ardpipe, stderr};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("plugin-run-{name}"))
}

/// `ardpipe run` single-threaded (see tests/cli/run.rs), from the repository root.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ardpipe"))
        .current_dir(repo())
        .args(["run", "-q", "--threads", "1"])
        .args(args)
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000")
        .output()
        .expect("ardpipe runs")
}

/// The installed fortunes asset, or why there is none (it is optional: set-up needs apt-get).
fn fortunes_asset() -> Result<PathBuf, String> {
    let out = ardpipe(&["doctor", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("ardpipe doctor gave no JSON ({e}): {}", stderr(&out)))?;
    let asset = report["assets"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "fortunes"))
        .ok_or("ardpipe doctor lists no `fortunes` asset")?;
    assert_eq!(asset["optional"], true, "{asset}");
    match asset["state"].as_str() {
        Some("verified") => Ok(PathBuf::from(asset["dir"].as_str().unwrap_or_default())),
        state => Err(format!(
            "the optional fortunes asset is {} (`python3 scripts/setup.py` fetches it with apt-get)",
            state.unwrap_or("unknown")
        )),
    }
}

#[test]
fn fortunes_pipeline_streams_from_the_loader_and_reports_mcc() {
    // No silent pass: without the asset this test fails with the reason and the fix.
    if let Err(why) = fortunes_asset() {
        panic!("cannot run the fortunes pipeline: {why}");
    }
    let out_dir = scratch("fortunes");
    let loader = format!(
        "plugin.fortunes.library=\"{}\"",
        plugin("fortunes-loader").display()
    );
    let metric = format!("plugin.mcc.library=\"{}\"", plugin("mcc-metric").display());
    let output = format!("output.dir=\"{}/{{name}}\"", out_dir.display());
    let mut args = vec!["pipelines/fortunes_mcc.ard"];
    for set in [
        loader.as_str(),
        metric.as_str(),
        output.as_str(),
        "train.steps=4",
        "train.batch_size=8",
        "train.eval_every=2 steps",
        "dataset.fortunes.split.validation=5%",
    ] {
        args.extend(["--set", set]);
    }
    let out = run(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("\nmcc "),
        "the summary lists the plugin's metric:\n{text}"
    );

    let dir = out_dir.join("fortunes-mcc");
    let evals: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["split"] == "eval")
        .collect();
    assert_eq!(
        evals.len(),
        2,
        "one evaluation at step 2, the final one at 4"
    );
    for e in &evals {
        let mcc = e["mcc"].as_f64().unwrap_or(f64::NAN);
        assert!(mcc.is_finite() && (-1.0..=1.0).contains(&mcc), "{e}");
        assert!(e["accuracy"].is_f64(), "built-in metrics too: {e}");
    }

    // The classes are the five fortune files the plugin was asked for...
    let labels: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.join("labels.json")).unwrap()).unwrap();
    assert_eq!(labels, ["computers", "food", "love", "science", "sports"]);
    // ...and the manifest names both plugins as they describe themselves.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let plugins = manifest["plugins"].as_array().unwrap();
    let identity = |name: &str| {
        let p = plugins.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["sha256"].as_str().map(str::len), Some(64), "{p}");
        p["identity"].clone()
    };
    assert_eq!(identity("fortunes")["kind"], "loader");
    assert_eq!(identity("mcc")["kind"], "metric");
    assert_eq!(identity("mcc")["version"], env!("CARGO_PKG_VERSION"));
    // The folder the loader read is hashed like any dataset's file.
    let data = manifest["datasets"].as_array().unwrap();
    assert!(
        data.iter()
            .any(|d| d["name"] == "fortunes" && d["sha256"].as_str().map(str::len) == Some(64)),
        "{data:?}"
    );
    std::fs::remove_dir_all(&out_dir).ok();
}

/// A pipeline in `dir` whose dataset is `format` and whose evaluation lists `metrics`.
fn write_pipeline(dir: &Path, plugins: &[(&str, &str)], dataset: &str, metrics: &str) -> PathBuf {
    let mut text = String::new();
    for (name, package) in plugins {
        text += &format!(
            "plugin {name} {{\n    library = \"{}\"\n    abi = 1\n}}\n\n",
            plugin(package).display()
        );
    }
    text += &format!(
        "dataset d {{\n{dataset}\n\n    split {{\n        validation = 25%\n    }}\n}}\n\n\
         model {{\n    path = \"${{assets}}/minilm\"\n    format = hf_folder\n    head = sequence_classification\n    classes = auto\n}}\n\n\
         adapter a {{\n    method = lora\n    modules = [query]\n    rank = 2\n}}\n\n\
         train {{\n    lr = 1e-3\n    batch_size = 2\n    steps = 2\n}}\n\n\
         evaluate {{\n    metrics = {metrics}\n}}\n\n\
         output {{\n    dir = \"{}/runs/{{name}}\"\n}}\n",
        dir.display()
    );
    let file = dir.join("p.ard");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn a_plugin_that_panics_while_streaming_stops_the_run_naming_it() {
    let dir = scratch("panic");
    let file = write_pipeline(
        &dir,
        &[("misbehaving", "ardpipe-test-misbehaving")],
        "    format = plugin(misbehaving, panic_in = \"next_batch\")",
        "[loss]",
    );
    let out = run(&[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for expected in [
        "ardpipe::plugin::panic",
        "dataset `d`: plugin `misbehaving` panicked in next_batch",
        "index out of bounds",
        "this is a bug in the plugin `misbehaving`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        !err.contains("thread 'main' panicked"),
        "ardpipe itself must not panic:\n{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_refused_option_is_shown_where_the_pipeline_writes_it() {
    let dir = scratch("option");
    let data = dir.join("fortunes");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("art"), "Art is long.\n%\nLife is short.\n").unwrap();
    std::fs::write(data.join("wisdom"), "Look first.\n%\nThen leap.\n").unwrap();
    let dataset =
        "    format = plugin(fortunes, categories = [\"art\", \"nope\"])\n    path = \"fortunes\"";
    let plugins = [("fortunes", "fortunes-loader"), ("mcc", "mcc-metric")];
    let file = write_pipeline(&dir, &plugins, dataset, "[loss]");
    let out = run(&[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for expected in [
        "ardpipe::dsl::plugin_option",
        "plugin `fortunes` refused option `categories` in open: no fortune file `nope`",
        "p.ard:12:44",
        "plugin `fortunes` refused `categories`",
        "ardpipe plugin inspect",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }

    // A metric plugin's option is checked before training starts, and shown the same way.
    std::fs::remove_dir_all(dir.join("runs")).ok();
    let dataset = "    format = plugin(fortunes, categories = [\"art\", \"wisdom\"])\n    path = \"fortunes\"";
    let file = write_pipeline(
        &dir,
        &plugins,
        dataset,
        "[loss, plugin(mcc, num_classes = 1)]",
    );
    let out = run(&[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("plugin `mcc` refused option `num_classes` in create")
            && err.contains("plugin `mcc` refused `num_classes`"),
        "{err}"
    );
    let metrics = dir.join("runs/p/metrics.jsonl");
    assert!(
        !metrics.exists() || std::fs::read_to_string(&metrics).unwrap().is_empty(),
        "no training step ran"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The C loader example (plugins/examples/c-loader), built with `cc` from the guide's command, feeds
/// a real run: its `limit = 6` arrives as the integer the C code reads, and its records train.
#[test]
fn the_c_loader_example_feeds_a_run() {
    let dir = scratch("c-loader");
    let library = c_plugin("plugins/examples/c-loader/tsv_loader.c", "tsv_loader");
    let mut data = String::new();
    for i in 0..8 {
        data += &format!("{}\tline number {i}\n", ["pos", "neg"][i % 2]);
    }
    std::fs::write(dir.join("data.tsv"), data).unwrap();
    let mut text = format!(
        "plugin tsv {{\n    library = \"{}\"\n    abi = 1\n}}\n\n",
        library.display()
    );
    let file = write_pipeline(
        &dir,
        &[],
        "    format = plugin(tsv, limit = 6)\n    path = \"data.tsv\"",
        "[loss, accuracy]",
    );
    text += &std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text).unwrap();

    let inspect = ardpipe(&["plugin", "inspect", library.to_str().unwrap()]);
    assert_eq!(inspect.status.code(), Some(0), "{}", stderr(&inspect));
    let shown = String::from_utf8_lossy(&inspect.stdout);
    assert!(shown.contains("name          c-tsv\n"), "{shown}");
    assert!(
        shown.contains("  limit  integer: stop after this many records"),
        "{shown}"
    );

    let out = run(&[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("runs/p/manifest.json")).unwrap()).unwrap();
    let plugins = manifest["plugins"].as_array().unwrap();
    assert!(plugins.iter().any(|p| p["name"] == "tsv"), "{plugins:?}");
    let labels: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.join("runs/p/labels.json")).unwrap()).unwrap();
    assert_eq!(labels, ["neg", "pos"]);

    // An option the C plugin does not declare is refused by ardpipe, at the option, naming the
    // declared ones: the plugin's own code never sees it.
    std::fs::remove_dir_all(dir.join("runs")).ok();
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("limit = 6", "limt = 6");
    std::fs::write(&file, text).unwrap();
    let out = run(&[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for expected in [
        "plugin `c-tsv` refused option `limt` in open: unknown option `limt` (did you mean \
         `limit`?); it declares: path (path, required), limit (integer)",
        "plugin `tsv` refused `limt`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
