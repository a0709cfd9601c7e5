//! The `distributed { backend bucket_mb timeout }` block: values, defaults, errors, variants,
//! overrides, and old resolved pipelines without it.

mod common;

use std::path::Path;

use ardpipe_dsl::Code;
use ardpipe_dsl::pipeline::*;
use common::{ctx, render, repo};

/// A complete pipeline; `device` is the model's, `extra` goes at the end of the file.
fn pipeline(device: &str, extra: &str) -> String {
    format!(
        "dataset d {{\n    format = jsonl\n    path = \"d.jsonl\"\n}}\n\n\
         model {{\n    path = \"m\"\n    head = causal_lm\n    device = {device}\n}}\n\n\
         adapter a {{\n    method = lora\n    modules = [query, value]\n}}\n\n\
         train {{\n    lr = 1e-3\n    steps = 10\n}}\n\n{extra}"
    )
}

fn checks(text: &str) -> Pipeline {
    check_with(text, ardpipe_dsl::Context::default())
}

fn check_with(text: &str, extra: ardpipe_dsl::Context) -> Pipeline {
    let mut c = ctx();
    c.overrides = extra.overrides;
    match ardpipe_dsl::check_source(Path::new("p.ard"), text, &c) {
        Ok(c) => {
            assert!(c.warnings.problems.is_empty(), "{}", render(&c.warnings));
            c.pipeline
        }
        Err(d) => panic!("does not check:\n{text}\n{}", render(&d)),
    }
}

/// Every problem's message, label and help on one line each (the rendering wraps long lines),
/// asserting one of them has `code`.
fn fails(text: &str, code: Code) -> String {
    let d =
        ardpipe_dsl::check_source(Path::new("p.ard"), text, &ctx()).expect_err("should not check");
    assert!(
        d.problems.iter().any(|p| p.code == code),
        "no {code:?} error:\n{}",
        render(&d)
    );
    d.problems
        .iter()
        .map(|p| {
            format!(
                "{} | {} | {}\n",
                p.message,
                p.label,
                p.help.as_deref().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn a_distributed_block_resolves_to_its_values() {
    let p = checks(&pipeline(
        "cuda",
        "distributed {\n    backend = nccl\n    bucket_mb = 0.5\n    timeout = 2 min\n}\n",
    ));
    assert_eq!(
        p.distributed,
        Distributed {
            backend: DistBackend::Nccl,
            bucket_mb: 0.5,
            timeout_seconds: 120.0,
        }
    );
    let p = checks(&pipeline(
        "cpu",
        "distributed {\n    backend = gloo\n    bucket_mb = 1024\n}\n",
    ));
    assert_eq!(p.distributed.backend, DistBackend::Gloo);
    assert_eq!(p.distributed.bucket_mb, 1024.0);
    assert_eq!(p.distributed.timeout_seconds, 1800.0);
    // `auto` is fine on any device: it picks gloo on the CPU.
    let p = checks(&pipeline("cpu", "distributed {\n    backend = auto\n}\n"));
    assert_eq!(p.distributed.backend, DistBackend::Auto);
}

#[test]
fn timeout_takes_every_unit_of_time() {
    for (written, seconds) in [
        ("300 s", 300.0),
        ("1 sec", 1.0),
        ("1 second", 1.0),
        ("90 seconds", 90.0),
        ("2 min", 120.0),
        ("1 minute", 60.0),
        ("0.5 minutes", 30.0),
        ("1 h", 3600.0),
        ("1 hour", 3600.0),
        ("1.5 hours", 5400.0),
    ] {
        let p = checks(&pipeline(
            "auto",
            &format!("distributed {{\n    timeout = {written}\n}}\n"),
        ));
        assert_eq!(p.distributed.timeout_seconds, seconds, "{written}");
    }
}

#[test]
fn without_the_block_the_defaults_apply() {
    let p = checks(&pipeline("auto", ""));
    assert_eq!(p.distributed, Distributed::default());
    assert_eq!(
        Distributed::default(),
        Distributed {
            backend: DistBackend::Auto,
            bucket_mb: 25.0,
            timeout_seconds: 1800.0,
        }
    );
    // An empty block is the defaults too.
    let p = checks(&pipeline("auto", "distributed {}\n"));
    assert_eq!(p.distributed, Distributed::default());
}

#[test]
fn an_unknown_key_gets_a_suggestion() {
    let text = fails(
        &pipeline("auto", "distributed {\n    bucket_mib = 25\n}\n"),
        Code::UnknownKey,
    );
    assert!(
        text.contains("unknown key `bucket_mib` in `distributed`"),
        "{text}"
    );
    assert!(text.contains("did you mean `bucket_mb`?"), "{text}");
    let text = fails(
        &pipeline("auto", "distributed {\n    backend = mpi\n}\n"),
        Code::WrongType,
    );
    assert!(text.contains("`mpi` is not a valid `backend`"), "{text}");
    assert!(text.contains("`auto`, `gloo`, `nccl`"), "{text}");
}

#[test]
fn nccl_on_the_cpu_is_an_error() {
    let text = fails(
        &pipeline("cpu", "distributed {\n    backend = nccl\n}\n"),
        Code::Contradiction,
    );
    assert!(text.contains("nccl needs CUDA"), "{text}");
    assert!(text.contains("use `backend = gloo` (or `auto`"), "{text}");
}

#[test]
fn bucket_mb_must_lie_in_0_to_1024() {
    for bad in ["0", "-1", "1024.5", "2048"] {
        let text = fails(
            &pipeline(
                "auto",
                &format!("distributed {{\n    bucket_mb = {bad}\n}}\n"),
            ),
            Code::OutOfRange,
        );
        assert!(
            text.contains(&format!(
                "`bucket_mb` must be more than 0 and at most 1024, not {bad}"
            )),
            "{text}"
        );
    }
    let text = fails(
        &pipeline("auto", "distributed {\n    bucket_mb = 25 MiB\n}\n"),
        Code::BadUnit,
    );
    assert!(text.contains("plain number of MiB"), "{text}");
    fails(
        &pipeline("auto", "distributed {\n    bucket_mb = \"25\"\n}\n"),
        Code::WrongType,
    );
}

#[test]
fn timeout_needs_a_unit_of_time() {
    let text = fails(
        &pipeline("auto", "distributed {\n    timeout = 30 steps\n}\n"),
        Code::BadUnit,
    );
    assert!(text.contains("`steps` is not a unit of time"), "{text}");
    assert!(
        text.contains(
            "`s`, `sec`, `second`, `seconds`, `min`, `minute`, `minutes`, `h`, `hour`, `hours`"
        ),
        "{text}"
    );
    let text = fails(
        &pipeline("auto", "distributed {\n    timeout = 30 mins\n}\n"),
        Code::BadUnit,
    );
    assert!(text.contains("did you mean `min`?"), "{text}");
    let text = fails(
        &pipeline("auto", "distributed {\n    timeout = 300\n}\n"),
        Code::BadUnit,
    );
    assert!(text.contains("`timeout` needs a unit of time"), "{text}");
    assert!(text.contains("write `timeout = 300 s`"), "{text}");
    for bad in ["0 s", "-5 min", "8 days", "200 h"] {
        let text = fails(
            &pipeline(
                "auto",
                &format!("distributed {{\n    timeout = {bad}\n}}\n"),
            ),
            if bad.ends_with("days") {
                Code::BadUnit
            } else {
                Code::OutOfRange
            },
        );
        assert!(text.contains("timeout"), "{text}");
    }
    fails(
        &pipeline("auto", "distributed {\n    timeout = forever\n}\n"),
        Code::WrongType,
    );
}

#[test]
fn one_distributed_block_only() {
    let text = fails(
        &pipeline(
            "auto",
            "distributed {\n    backend = gloo\n}\n\ndistributed {\n    bucket_mb = 50\n}\n",
        ),
        Code::Duplicate,
    );
    assert!(text.contains("second `distributed` block"), "{text}");
    let text = fails(
        &pipeline("auto", "distributed ddp {\n    backend = gloo\n}\n"),
        Code::Syntax,
    );
    assert!(
        text.contains("a `distributed` block takes no name"),
        "{text}"
    );
}

#[test]
fn variants_replace_or_edit_the_distributed_block() {
    let p = checks(&pipeline(
        "cuda",
        "distributed {\n    backend = nccl\n    timeout = 10 min\n}\n\n\
         variant big_buckets {\n    distributed.bucket_mb = 100\n}\n\n\
         variant gloo {\n    distributed {\n        backend = gloo\n    }\n}\n",
    ));
    assert_eq!(p.distributed.backend, DistBackend::Nccl);
    let big = &p.variants[0].pipeline.distributed;
    assert_eq!(
        (big.backend, big.bucket_mb, big.timeout_seconds),
        (DistBackend::Nccl, 100.0, 600.0)
    );
    // A whole block replaces the base one: its other keys are back to their defaults.
    let g = &p.variants[1].pipeline.distributed;
    assert_eq!(
        (g.backend, g.bucket_mb, g.timeout_seconds),
        (DistBackend::Gloo, 25.0, 1800.0)
    );
    // A variant's distributed block is checked against that variant's model.
    let text = fails(
        &pipeline(
            "cuda",
            "variant on_cpu {\n    model.device = cpu\n    distributed.backend = nccl\n}\n",
        ),
        Code::Contradiction,
    );
    assert!(text.contains("nccl needs CUDA"), "{text}");
}

#[test]
fn command_line_overrides_set_distributed_keys() {
    let set = |overrides: &[&str]| ardpipe_dsl::Context {
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    // Without a block in the file, the override creates it.
    let p = check_with(
        &pipeline("auto", ""),
        set(&["distributed.bucket_mb=50", "distributed.timeout=1 h"]),
    );
    assert_eq!(p.distributed.bucket_mb, 50.0);
    assert_eq!(p.distributed.timeout_seconds, 3600.0);
    assert_eq!(p.distributed.backend, DistBackend::Auto);
    // With one, it edits that key only.
    let p = check_with(
        &pipeline("cpu", "distributed {\n    backend = gloo\n}\n"),
        set(&["distributed.bucket_mb=50"]),
    );
    assert_eq!(
        (p.distributed.backend, p.distributed.bucket_mb),
        (DistBackend::Gloo, 50.0)
    );
    // On a shipped pipeline, and checked like file content.
    let mut c = ctx();
    c.overrides = vec!["distributed.bucket_mb=50".into()];
    let p = ardpipe_dsl::check_file(&repo().join("pipelines/quickstart.ard"), &c)
        .expect("valid override")
        .pipeline;
    assert_eq!(p.distributed.bucket_mb, 50.0);
    c.overrides = vec!["distributed.timeout=30".into()];
    let d =
        ardpipe_dsl::check_file(&repo().join("pipelines/quickstart.ard"), &c).expect_err("no unit");
    let text = render(&d);
    assert!(text.contains("--set #1"), "{text}");
    assert!(text.contains("write `timeout = 30 s`"), "{text}");
    assert_eq!(d.problems[0].code, Code::BadUnit);
}

#[test]
fn a_resolved_pipeline_without_distributed_still_deserializes() {
    let p = checks(&pipeline(
        "cuda",
        "distributed {\n    backend = nccl\n    bucket_mb = 50\n}\n\n\
         variant v {\n    train.steps = 20\n}\n",
    ));
    let mut json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json["distributed"],
        serde_json::json!({"backend": "nccl", "bucket_mb": 50.0, "timeout_seconds": 1800.0})
    );
    let back: Pipeline = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, p);
    // A run directory's pipeline.json written before the block existed has no such key.
    json.as_object_mut().unwrap().remove("distributed");
    json["variants"][0]["pipeline"]
        .as_object_mut()
        .unwrap()
        .remove("distributed");
    let old: Pipeline = serde_json::from_str(&serde_json::to_string(&json).unwrap()).unwrap();
    assert_eq!(old.distributed, Distributed::default());
    assert_eq!(old.variants[0].pipeline.distributed, Distributed::default());
    assert_eq!(old.train, p.train);
    // Unknown keys inside it are still refused.
    let mut bad = serde_json::to_value(&p).unwrap();
    bad["distributed"]["world_size"] = serde_json::json!(2);
    assert!(serde_json::from_value::<Pipeline>(bad).is_err());
}
