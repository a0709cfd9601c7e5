//! The plan a run would follow, for `ardpipe plan`: the model's configuration always; the
//! data only when the plan depends on it (training in epochs, or classes read from the data),
//! so planning a pipeline given in steps with named classes reads no data and no weights.

use ardpipe_dsl::pipeline as p;

use super::TrainError;
use super::batches::Batches;
use crate::plan::{self, ExecutionPlan};

pub fn plan_run(pipeline: &p::Pipeline) -> Result<ExecutionPlan, TrainError> {
    let in_epochs = matches!(pipeline.train.duration, p::Duration::Epochs(_));
    let classes_from_data = matches!(
        pipeline.model.head,
        p::Head::SequenceClassification {
            classes: p::Classes::FromData
        }
    );
    if !in_epochs && !classes_from_data {
        return Ok(plan::plan(pipeline, 0)?);
    }
    tracing::info!("reading the data to count steps and classes");
    let data = Batches::build(pipeline)?;
    let steps_per_epoch =
        data.steps_per_epoch(pipeline.train.batch_size, pipeline.train.grad_accum);
    let classes = (data.num_labels() > 0).then(|| data.num_labels());
    Ok(plan::plan_with_data(pipeline, steps_per_epoch, classes)?)
}
