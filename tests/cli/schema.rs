use crate::{ardpipe, stdout};

#[test]
fn schema_prints_the_checked_in_pipeline_schema() {
    let out = ardpipe(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let stored = std::fs::read_to_string(format!(
        "{}/../schemas/pipeline.schema.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_eq!(stdout(&out), stored);
}
