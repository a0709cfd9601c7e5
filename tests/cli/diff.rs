//! `ardpipe diff` between Git revisions of a pipeline (the file and its import read from each
//! revision), its plan impact, a side that cannot be planned, and `git diff` through the
//! `--textconv` driver docs/GIT.md sets up.

use crate::{Scratch, ardpipe_in, git, text};

// One copy of the tiny model writer for the whole test binary (resume.rs includes it).
use crate::resume::tiny;

const EVAL: &str =
    "evaluate {\n split = validation\n metrics = [loss, accuracy]\n batch_size = 8\n}\n";

#[test]
fn diff_of_two_revisions_shows_changed_keys_and_the_plan_impact() {
    let root = std::env::temp_dir().join(format!("ardpipe-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let _cleanup = Scratch(root.clone());
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let (model, data) = (root.join("model"), root.join("data.csv"));
    tiny::write_tiny_bert(&model);
    tiny::write_data(&data);
    let full = tiny::pipeline("ard_lora", &model, &data, &root.join("run"), 8);
    assert!(
        full.contains(EVAL),
        "tiny.rs changed its evaluate block: {full}"
    );
    // The evaluate block lives in an imported file, so each revision's import is read too.
    let v1 = full.replace(EVAL, "import \"common.ard\"\n");
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("p.ard"), &v1).unwrap();
    std::fs::write(repo.join("common.ard"), EVAL).unwrap();
    git(&repo, &["add", "p.ard", "common.ard"]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    let v2 = v1
        .replace(" r0 = 4\n", " r0 = 2\n")
        .replace(" steps = 8\n", " steps = 6\n");
    assert_ne!(v1, v2);
    std::fs::write(repo.join("p.ard"), &v2).unwrap();
    std::fs::write(
        repo.join("common.ard"),
        EVAL.replace("batch_size = 8", "batch_size = 16"),
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "v2"]);
    // The work tree's import differs from both revisions: a diff of revisions must not read it.
    std::fs::write(
        repo.join("common.ard"),
        EVAL.replace("batch_size = 8", "batch_size = 32"),
    )
    .unwrap();

    let o = ardpipe_in(&repo, &["diff", "HEAD~1:p.ard", "HEAD:p.ard"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in [
        "changed   adapters[0].method.r0: 4 → 2",
        "changed   train.duration.value: 8 → 6",
        "changed   evaluate.batch_size: 8 → 16",
        "steps                8 → 6 (-2)",
        "trainable (initial)",
    ] {
        assert!(t.contains(want), "no `{want}` in:\n{t}");
    }

    let o = ardpipe_in(
        &repo,
        &["diff", "HEAD~1:p.ard", "HEAD:p.ard", "--format", "json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&str> = d["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "adapters[0].method.r0",
            "evaluate.batch_size",
            "train.duration.value"
        ],
        "{d:#}"
    );
    let plan = &d["plan"][0];
    let (old, new) = (
        plan["old"]["trainable_initial"].as_u64().unwrap(),
        plan["new"]["trainable_initial"].as_u64().unwrap(),
    );
    assert!(
        new < old,
        "halving r0 must cut the trainable parameters: {plan:#}"
    );
    assert_eq!(
        (plan["old"]["steps"].as_u64(), plan["new"]["steps"].as_u64()),
        (Some(8), Some(6))
    );

    // A side whose model is missing still shows the key diff, and says why it has no plan.
    let gone = v2.replace(
        &format!("{:?}", model.display().to_string()),
        "\"no-such-model\"",
    );
    std::fs::write(repo.join("gone.ard"), gone).unwrap();
    let o = ardpipe_in(&repo, &["diff", "HEAD:p.ard", "gone.ard"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("changed   model.path") && t.contains("NEW cannot be planned"),
        "{t}"
    );

    let o = ardpipe_in(&repo, &["diff", "HEAD~5:p.ard", "p.ard"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cannot read HEAD~5:p.ard"),
        "{}",
        text(&o)
    );

    // git diff through the textconv driver: the resolved change, one `key = value` per line.
    std::fs::write(repo.join(".gitattributes"), "*.ard diff=ard\n").unwrap();
    let conv = format!("{} diff --textconv", env!("CARGO_BIN_EXE_ardpipe"));
    git(&repo, &["config", "diff.ard.textconv", &conv]);
    let t = git(&repo, &["diff", "HEAD~1", "HEAD", "--", "p.ard"]);
    for want in [
        "-adapters[0].method.r0 = 4",
        "+adapters[0].method.r0 = 2",
        "-train.duration.value = 8",
        "+train.duration.value = 6",
    ] {
        assert!(t.contains(want), "no `{want}` in git diff:\n{t}");
    }
    let o = ardpipe_in(&repo, &["diff", "--textconv", "p.ard"]);
    assert!(o.status.success());
    assert!(
        text(&o).contains("evaluate.batch_size = 32"),
        "{}",
        text(&o)
    );
    // A file that cannot be resolved is shown as written, so `git diff` never fails on it.
    std::fs::write(repo.join("bad.ard"), "train {\n steps = \n}\n").unwrap();
    let o = ardpipe_in(&repo, &["diff", "--textconv", "bad.ard"]);
    assert!(o.status.success());
    assert!(
        text(&o).starts_with("# ardpipe: not resolved") && text(&o).contains("steps ="),
        "{}",
        text(&o)
    );
}
