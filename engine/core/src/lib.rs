//! ardpipe's execution side: it turns a checked pipeline into an execution plan and runs it.

pub use ardpipe_adapters as adapters;
pub use ardpipe_data as data;
pub use ardpipe_dist as dist;
pub use ardpipe_models as models;
/// The tch the engine is built on, for callers that hold its tensors (the CLI has no tch of its own).
pub use tch;

// From a checked pipeline to a plan, and the loop that runs it.
pub mod convert;
pub mod git;
pub mod memory;
pub mod plan;
pub mod train;

// Run infrastructure: everything a run writes and reads back, independent of the trainer loop.
pub mod checkpoint;
pub mod manifest;
pub mod metrics;
pub mod peft_merge;
pub mod report;
pub mod rng;
pub mod rundir;
pub mod schedule;
pub mod tensorboard;
