//! Compiling a pipeline into the plan a run executes: the model's configuration, the data (read,
//! split and counted once) and every setting resolved. The trainer takes the result and reads
//! nothing from the pipeline; `ardpipe plan` prints the same plan.

use std::path::PathBuf;

use ardpipe_dsl::pipeline as p;

use super::TrainError;
use super::batches::Batches;
use crate::plan::{self, ExecutionPlan};

/// A pipeline compiled for one run.
pub struct Compiled {
    /// What the run does; the trainer's one source of settings.
    pub plan: ExecutionPlan,
    /// The data the plan was counted on, ready to batch.
    pub data: Batches,
    /// The resolved pipeline, saved in the run directory: `ardpipe run --resume DIR` compiles
    /// it again, and resuming refuses a pipeline that changed what the run computes.
    pub pipeline: serde_json::Value,
    /// Dataset files by dataset name, whose bytes the manifest records.
    pub dataset_files: Vec<(String, PathBuf)>,
    /// Plugin libraries by plugin name, likewise.
    pub plugin_files: Vec<(String, PathBuf)>,
    /// The validation split, batched, when the run also reports it ([`validation_data`]).
    pub validation: Option<Batches>,
}

/// Read the data and the model's configuration and resolve the pipeline into its plan.
pub fn compile(pipeline: &p::Pipeline) -> Result<Compiled, TrainError> {
    let data = Batches::build(pipeline)?;
    let plan = plan::plan_with_data(pipeline, data.data_plan())?;
    let value = serde_json::to_value(pipeline).map_err(|e| TrainError::Other(e.to_string()))?;
    Ok(Compiled {
        plan,
        data,
        pipeline: value,
        dataset_files: dataset_files(pipeline),
        plugin_files: pipeline
            .plugins
            .iter()
            .map(|pl| (pl.name.clone(), pl.library.clone()))
            .collect(),
        validation: None,
    })
}

/// `ardpipe run --validate`: the validation split batched like the evaluation split, so the
/// run also reports its final metrics on validation (what a study selects settings on while
/// the evaluation split, say test, is only reported). None when validation is the evaluation
/// split already.
pub fn validation_data(pipeline: &p::Pipeline) -> Result<Option<Batches>, TrainError> {
    let eval = pipeline.evaluate.as_ref().map(|e| e.split);
    if matches!(eval, None | Some(p::SplitName::Validation)) {
        return Ok(None);
    }
    let has_validation =
        crate::plan::pipeline_dataset(pipeline).is_some_and(|d| d.split.validation.is_some());
    if !has_validation {
        return Err(TrainError::Other(format!(
            "--validate: dataset `{}` has no validation split; give it one (`split {{ validation = 10% }}`) or leave --validate out",
            pipeline.train.dataset
        )));
    }
    let mut on_validation = pipeline.clone();
    if let Some(e) = on_validation.evaluate.as_mut() {
        e.split = p::SplitName::Validation;
    }
    Ok(Some(Batches::build(&on_validation)?))
}

/// The plan alone, for `ardpipe plan`.
pub fn plan_run(pipeline: &p::Pipeline) -> Result<ExecutionPlan, TrainError> {
    Ok(compile(pipeline)?.plan)
}

/// The dataset files and folders of a pipeline, by name (a loader plugin's `path` is its data;
/// the plugin's own bytes are hashed as a plugin).
fn dataset_files(pipeline: &p::Pipeline) -> Vec<(String, PathBuf)> {
    pipeline
        .datasets
        .iter()
        .flat_map(|d| d.source.paths().iter().map(|p| (d.name.clone(), p.clone())))
        .filter(|(_, path)| path.exists())
        .collect()
}
