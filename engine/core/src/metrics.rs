//! The records of a run's metric logs: a line of `metrics.jsonl` (named scalars per step and
//! split) and of `ranks.jsonl` (α and effective rank of every unit). The trainer computes the
//! values (engine/core/src/train/run_loop.rs); the report reads them back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricsRecord {
    pub step: u64,
    /// `train` or `eval` (or a dataset split name).
    pub split: String,
    pub values: BTreeMap<String, f64>,
}

/// One line of `ranks.jsonl`: α and effective rank of every unit at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RankRecord {
    pub step: u64,
    pub units: Vec<UnitRank>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnitRank {
    /// Module kind, e.g. `query`, `value`, `q_proj`, `mlp.up_proj`.
    pub module: String,
    pub layer: u32,
    /// Head (or MLP group) index within the module.
    pub head: u32,
    pub alpha: f64,
    pub rank: u32,
}
