//! `ardpipe schema`: the JSON Schema of the resolved pipeline (as checked in under schemas/).

use crate::exit::Code;

pub fn pipeline() -> miette::Result<Code> {
    println!(
        "{}",
        serde_json::to_string_pretty(&ardpipe_dsl::pipeline_schema()).unwrap_or_default()
    );
    Ok(Code::Success)
}
