//! `ardpipe schema [pipeline|plan|manifest]`: the JSON Schemas checked in under schemas/.

use crate::args::SchemaKind;
use crate::exit::Code;

pub fn print(kind: SchemaKind) -> miette::Result<Code> {
    let schema = match kind {
        SchemaKind::Pipeline => ardpipe_dsl::pipeline_schema(),
        SchemaKind::Plan => ardpipe_engine::plan::plan_schema(),
        SchemaKind::Manifest => ardpipe_engine::manifest::manifest_schema(),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    Ok(Code::Success)
}
