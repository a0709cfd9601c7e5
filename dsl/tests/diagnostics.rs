//! Rendered diagnostics of every fixture under tests/fixtures/errors, snapshot-tested.

mod common;

use std::path::Path;

#[test]
fn error_fixtures() {
    insta::glob!("fixtures/errors/*.ard", |path: &Path| {
        let text = std::fs::read_to_string(path).expect("fixture readable");
        let name = format!(
            "fixtures/errors/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        // Relative to dsl/tests, so names in snapshots do not depend on the checkout's place.
        let mut ctx = common::ctx();
        ctx.cwd = Some(common::repo().join("dsl/tests"));
        let rendered = match ardpipe_dsl::check_source(Path::new(&name), &text, &ctx) {
            Ok(_) => panic!("{name} should not check"),
            Err(d) => {
                assert!(d.error_count() > 0);
                common::render(&d)
            }
        };
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn json_diagnostics_carry_code_place_and_help() {
    let text = "model {\n    path = \"m\"\n    hed = causal_lm\n}\n";
    let d = ardpipe_dsl::check_source(Path::new("p.ard"), text, &common::ctx()).unwrap_err();
    let json = serde_json::to_value(d.to_json()).unwrap();
    let unknown = json
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "ardpipe::dsl::unknown_key")
        .expect("unknown key reported");
    assert_eq!(unknown["line"], 3);
    assert_eq!(unknown["column"], 5);
    assert_eq!(unknown["help"], "did you mean `head`?");
}

#[test]
fn overrides_are_checked_like_file_content() {
    let path = common::repo().join("pipelines/quickstart.ard");
    let mut ctx = common::ctx();
    ctx.overrides = vec![
        "train.steps=50".into(),
        "adapter.qv.r0=4".into(),
        "let.nothing=1".into(),
        "train.stpes=5".into(),
    ];
    let d = ardpipe_dsl::check_file(&path, &ctx).unwrap_err();
    let text = common::render(&d);
    assert!(text.contains("--set #3"), "{text}");
    assert!(text.contains("did you mean `steps`?"), "{text}");
    // The quickstart evaluates every 100 steps: with 50 steps that lies after training ends.
    assert!(
        text.contains("this lies after training ends (50 steps)"),
        "{text}"
    );
    ctx.overrides = vec!["train.steps=400".into(), "adapter.qv.r0=4".into()];
    let p = ardpipe_dsl::check_file(&path, &ctx)
        .expect("valid overrides")
        .pipeline;
    assert_eq!(
        p.train.duration,
        ardpipe_dsl::pipeline::Duration::Steps(400)
    );
    let ardpipe_dsl::pipeline::Method::ArdLora(a) = &p.adapters[0].method else {
        panic!()
    };
    assert_eq!(a.r0, 4);
}
