use crate::{ardpipe, stdout};

#[test]
fn schema_prints_each_checked_in_schema() {
    for (kind, file) in [
        ("pipeline", "pipeline.schema.json"),
        ("plan", "plan.schema.json"),
        ("manifest", "manifest.schema.json"),
    ] {
        let out = ardpipe(&["schema", kind]);
        assert_eq!(out.status.code(), Some(0), "{kind}");
        let stored =
            std::fs::read_to_string(format!("{}/../schemas/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            printed, stored,
            "ardpipe schema {kind} differs from schemas/{file}"
        );
    }
    // The default is the pipeline's schema.
    let out = ardpipe(&["schema"]);
    assert!(stdout(&out).contains("\"title\": \"Pipeline\""));
}
