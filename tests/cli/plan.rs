use crate::{ardpipe, stderr, stdout};

#[test]
fn plan_prints_the_resolved_pipeline_in_each_format() {
    let q = format!("{}/../pipelines/quickstart.ard", env!("CARGO_MANIFEST_DIR"));
    let out = ardpipe(&["plan", &q, "--format", "json", "--set", "train.steps=200"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["train"]["duration"]["value"], 200);
    assert_eq!(v["adapters"][0]["method"]["method"], "ard_lora");
    assert!(
        v["model"]["path"]
            .as_str()
            .unwrap()
            .ends_with("assets/minilm")
    );

    let out = ardpipe(&["plan", &q, "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("method: ard_lora"));

    let out = ardpipe(&["plan", &q]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("name: quickstart") && text.contains("r0: 8"),
        "{text}"
    );
}
