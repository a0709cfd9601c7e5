//! The checked-in JSON Schema is what the Rust types generate (regenerate with
//! `ARDPIPE_UPDATE_SCHEMAS=1 cargo test -p ardpipe-dsl --test schema` or `ardpipe schema`).

mod common;

#[test]
fn pipeline_schema_has_not_drifted() {
    let path = common::repo().join("schemas/pipeline.schema.json");
    let fresh = format!(
        "{}\n",
        serde_json::to_string_pretty(&ardpipe_dsl::pipeline_schema()).unwrap()
    );
    if std::env::var_os("ARDPIPE_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == fresh,
        "schemas/pipeline.schema.json is out of date: run `ARDPIPE_UPDATE_SCHEMAS=1 cargo test -p ardpipe-dsl --test schema`"
    );
}

#[test]
fn a_resolved_pipeline_round_trips_through_json() {
    let path = common::repo().join("pipelines/compare_baselines.ard");
    let p = ardpipe_dsl::check_file(&path, &common::ctx())
        .unwrap()
        .pipeline;
    let json = serde_json::to_string(&p).unwrap();
    let back: ardpipe_dsl::Pipeline = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}
