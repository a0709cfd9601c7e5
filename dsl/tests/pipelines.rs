//! The shipped pipelines check, are formatted, and resolve to what they say.

mod common;

use ardpipe_dsl::pipeline::*;
use common::{ctx, render, repo};

const FILES: &[&str] = &[
    "quickstart",
    "classification",
    "causal_lm",
    "compare_baselines",
    "study/classification",
    "study/causal_lm",
];

fn check(name: &str) -> Pipeline {
    let path = repo().join("pipelines").join(format!("{name}.ard"));
    match ardpipe_dsl::check_file(&path, &ctx()) {
        Ok(c) => {
            assert!(
                c.warnings.problems.is_empty(),
                "{name}: warnings\n{}",
                render(&c.warnings)
            );
            c.pipeline
        }
        Err(d) => panic!("{name} does not check:\n{}", render(&d)),
    }
}

#[test]
fn every_shipped_pipeline_checks_and_is_formatted() {
    let mut files: Vec<_> = FILES
        .iter()
        .map(|f| repo().join("pipelines").join(format!("{f}.ard")))
        .collect();
    files.push(repo().join("pipelines/shared/healthtweets.ard"));
    for f in FILES {
        check(f);
    }
    for path in files {
        let text = std::fs::read_to_string(&path).expect("pipeline readable");
        let formatted = ardpipe_dsl::format_source("p.ard", &text).expect("formats");
        assert_eq!(
            formatted,
            text,
            "{} is not formatted (run `ardpipe fmt`)",
            path.display()
        );
    }
}

#[test]
fn quickstart_is_the_measured_ard_lora_setting() {
    let p = check("quickstart");
    assert_eq!(p.model.path, std::path::Path::new("/assets/minilm"));
    assert_eq!(p.model.format, ModelFormat::HfFolder);
    let d = &p.datasets[0];
    assert_eq!(d.fields.label.as_deref(), Some("source_id"));
    assert_eq!(d.fields.label_regex.as_deref(), Some("^(.*)-[^-]*$"));
    assert_eq!(d.preprocess.strip, vec!["http\\S+".to_string()]);
    let Method::ArdLora(ard) = &p.adapters[0].method else {
        panic!("quickstart trains ARD-LoRA")
    };
    assert_eq!(ard.r0, 8);
    assert_eq!(
        ard.alpha,
        AlphaBounds {
            init: 1.0,
            min: 0.0,
            max: 2.0,
            update: AlphaUpdate::Proximal,
        }
    );
    assert_eq!(ard.scale / ard.r0 as f64, 2.0);
    assert_eq!(
        p.adapters[0].targets.modules,
        vec![
            Selector::Name("query".into()),
            Selector::Name("value".into())
        ]
    );
    assert_eq!(p.train.duration, Duration::Steps(200));
    assert_eq!(
        p.evaluate.as_ref().map(|e| e.metrics.clone()),
        Some(vec![Metric::Loss, Metric::Accuracy, Metric::MacroF1])
    );
    assert_eq!(p.output.export, vec![Export::Peft]);
    assert!(
        p.output
            .dir
            .starts_with(repo().join("runs").to_str().unwrap()),
        "{}",
        p.output.dir
    );
}

#[test]
fn comparison_runs_every_method_side_by_side() {
    let p = check("compare_baselines");
    let methods: Vec<(&str, &str)> = p
        .runs()
        .iter()
        .map(|(n, r)| (*n, r.adapters[0].method.name()))
        .collect();
    assert_eq!(
        methods,
        vec![
            ("ard_lora", "ard_lora"),
            ("lora_r4", "lora"),
            ("lora_r8", "lora"),
            ("dora", "dora"),
            ("adalora", "adalora"),
            ("full", "full")
        ]
    );
    let full = &p.variants[5].pipeline;
    assert_eq!(full.output.export, vec![Export::Merged]);
    assert!(matches!(full.train.lr, Schedule::WarmUp { .. }));
    // The shared dataset comes from the import, paths resolved against the imported file's folder.
    assert_eq!(p.datasets[0].name, "tweets");
}

#[test]
fn causal_lm_uses_gguf_and_perplexity() {
    let p = check("causal_lm");
    assert_eq!(p.model.format, ModelFormat::Gguf);
    assert_eq!(p.model.head, Head::CausalLm);
    assert!(matches!(
        p.datasets[0].source,
        Source::Text {
            mode: TextMode::Lines,
            ..
        }
    ));
    assert_eq!(p.datasets[0].preprocess.block_size, 128);
    assert_eq!(
        p.adapters[1].targets.layers,
        Indices::Only((15..=29).collect())
    );
}

#[test]
fn command_line_overrides_win_over_variants() {
    let path = repo().join("pipelines/compare_baselines.ard");
    let mut c = ctx();
    c.overrides = vec![
        "output.dir=\"/tmp/x/{variant}\"".into(),
        "train.steps=300".into(),
    ];
    let p = match ardpipe_dsl::check_file(&path, &c) {
        Ok(c) => c.pipeline,
        Err(d) => panic!("{}", render(&d)),
    };
    // The `full` variant replaces the whole output block; the override still applies.
    for v in &p.variants {
        assert_eq!(v.pipeline.output.dir, "/tmp/x/{variant}", "{}", v.name);
        assert_eq!(
            v.pipeline.train.duration,
            ardpipe_dsl::pipeline::Duration::Steps(300),
            "{}",
            v.name
        );
    }
}

#[test]
fn one_selected_variant_is_checked_alone() {
    let path = repo().join("pipelines/compare_baselines.ard");
    // Four steps: the AdaLoRA variant's `delta_t = 10 steps` lies past the end of training.
    let mut c = ctx();
    c.overrides = vec!["train.steps=4".into(), "train.eval_every=2 steps".into()];
    let all = ardpipe_dsl::check_file(&path, &c).expect_err("adalora cannot fit 4 steps");
    assert!(render(&all).contains("delta_t"), "{}", render(&all));
    // Selecting another variant checks only that one, so it runs.
    c.variant = Some("lora_r8".into());
    let p = match ardpipe_dsl::check_file(&path, &c) {
        Ok(c) => c.pipeline,
        Err(d) => panic!("{}", render(&d)),
    };
    let names: Vec<&str> = p.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["lora_r8"]);
    // A misspelt variant is an error with a suggestion, not an empty run list.
    c.variant = Some("lora_r9".into());
    let d = ardpipe_dsl::check_file(&path, &c).expect_err("no such variant");
    let text = render(&d);
    assert!(
        text.contains("--variant lora_r9: the pipeline has no such variant"),
        "{text}"
    );
    assert!(
        text.contains("did you mean `lora_r4`?") || text.contains("did you mean `lora_r8`?"),
        "{text}"
    );
}

#[test]
fn head_only_adapts_no_module_and_exports_merged() {
    let text = "dataset d {\n    format = jsonl\n    path = \"d.jsonl\"\n    label = \"label\"\n}\n\
                model {\n    path = \"/m/minilm\"\n    head = sequence_classification\n}\n\
                adapter probe {\n    method = head_only\n}\n\
                train {\n    steps = 10\n    lr = 1e-3\n}\n";
    let p = match ardpipe_dsl::check_source(std::path::Path::new("p.ard"), text, &ctx()) {
        Ok(c) => c.pipeline,
        Err(d) => panic!("{}", render(&d)),
    };
    let [a] = p.adapters.as_slice() else {
        panic!("one adapter: {:?}", p.adapters)
    };
    assert_eq!(a.method, Method::HeadOnly(HeadOnly {}));
    assert!(a.targets.modules.is_empty(), "{:?}", a.targets);
    assert!(a.targets.exclude.is_empty(), "{:?}", a.targets);
    // No PEFT form (PEFT loads no adapter without a module): the default export is merged.
    assert_eq!(p.output.export, vec![Export::Merged]);
}
