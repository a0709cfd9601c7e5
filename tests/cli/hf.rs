//! Models by name: `hf:ORG/NAME[@REVISION]` read from a Hugging Face cache laid out as
//! `huggingface_hub` lays it out (refs/main → snapshots/COMMIT/ → symlinks into blobs/), here
//! holding the real MiniLM files; nothing is downloaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{asset, stderr, stdout};

const NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";
const COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

fn scratch(name: &str) -> PathBuf {
    crate::fresh_dir(&format!("hf-{name}"))
}

/// `HOME/hub` as the cache: MiniLM's files as blobs (symlinks to the example asset, so nothing
/// is copied), the snapshot's entries relative symlinks to them, refs/main naming the commit.
fn hf_cache(home: &Path) -> PathBuf {
    let hub = home.join("hub");
    let repo = hub.join("models--sentence-transformers--all-MiniLM-L6-v2");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    let minilm = asset("minilm");
    for (i, entry) in std::fs::read_dir(&minilm).unwrap().enumerate() {
        let file = entry.unwrap().path();
        let blob = format!("{i:064x}");
        std::os::unix::fs::symlink(&file, repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(&blob),
            snapshot.join(file.file_name().unwrap()),
        )
        .unwrap();
    }
    // huggingface_hub writes the commit without a newline.
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    hub
}

fn ardpipe_with(env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ardpipe"));
    c.args(args)
        .env("ARDPIPE_COLOR", "never")
        .env("COLUMNS", "1000")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the ardpipe binary runs")
}

#[test]
fn hf_names_resolve_from_the_local_cache() {
    let dir = scratch("cache");
    let hub = hf_cache(&dir);
    let env = [("HF_HUB_CACHE", hub.as_path())];
    let spec = format!("hf:{NAME}");

    let out = ardpipe_with(&env, &["inspect", "model", &spec]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("architecture  bert"), "{text}");
    assert!(
        text.contains(COMMIT),
        "the snapshot is what was read:\n{text}"
    );
    // $HF_HOME/hub when HF_HUB_CACHE is unset; a commit names its snapshot directly.
    let out = ardpipe_with(
        &[("HF_HOME", dir.as_path())],
        &["inspect", "model", &format!("{spec}@{COMMIT}")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A pipeline written for the name keeps it.
    let file = dir.join("p.ard");
    let out = ardpipe_with(&env, &["new", file.to_str().unwrap(), "--model", &spec]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("path = \"{spec}\"")), "{text}");
    // It trains (the trainer loads the snapshot too), keeps the name in the resolved pipeline,
    // and the PEFT adapter names its base by the repository id, as PEFT loads it from the Hub.
    let run = dir.join("run");
    // A small CSV in the example's layout: the model, not the data, is what this run is about.
    let csv = dir.join("tweets.csv");
    let rows: String = (0..60)
        .map(|i| {
            format!(
                "{},{}-{i}\n",
                ["good news today", "bad news again"][i % 2],
                ["a", "b"][i % 2]
            )
        })
        .collect();
    std::fs::write(&csv, format!("text,source_id\n{rows}")).unwrap();
    let out = ardpipe_with(
        &env,
        &[
            "run",
            file.to_str().unwrap(),
            "-q",
            "--set",
            "train.steps=2",
            "--set",
            &format!("dataset.tweets.path=\"{}\"", csv.display()),
            "--set",
            &format!("output.dir=\"{}\"", run.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let read = |rel: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join(rel)).unwrap()).unwrap()
    };
    assert_eq!(
        read("pipeline.resolved.json")["model"]["path"],
        spec.as_str()
    );
    assert_eq!(
        read("adapter/adapter_config.json")["base_model_name_or_path"],
        NAME
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_missing_from_the_cache_says_what_to_download_and_where() {
    let dir = scratch("missing");
    let hub = hf_cache(&dir);
    let env = [("HF_HUB_CACHE", hub.as_path())];
    let out = ardpipe_with(&env, &["inspect", "model", "hf:HuggingFaceTB/SmolLM2-135M"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("hf download HuggingFaceTB/SmolLM2-135M"),
        "{err}"
    );
    assert!(err.contains("huggingface-cli download"), "{err}");
    assert!(err.contains(&hub.display().to_string()), "{err}");
    // A revision the cache lacks: the download names it, and the cache says what it has.
    let out = ardpipe_with(&env, &["inspect", "model", &format!("hf:{NAME}@v2")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("hf download {NAME} --revision v2")),
        "{err}"
    );
    assert!(err.contains("at main only"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_refuses_a_malformed_hf_name() {
    let dir = scratch("bad");
    let file = dir.join("p.ard");
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/quickstart.ard");
    let text = std::fs::read_to_string(quickstart)
        .unwrap()
        .replace("\"${assets}/minilm\"", "\"hf:all-MiniLM-L6-v2\"");
    std::fs::write(&file, text).unwrap();
    let out = ardpipe_with(&[], &["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("names no organisation"), "{err}");
    assert!(err.contains("hf:ORG/NAME"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
