//! Data parallelism in the trainer, on a c10d process group ([`ardpipe_dist`]).
//!
//! Every process holds the whole model and takes its part of each global batch (the seeded
//! single-process order, cut by rank). A process weights its loss by its share of the batch,
//! so the mean of all processes' gradients is the global batch's gradient; the regularisers,
//! computed identically everywhere, pass through the mean unchanged. After the all-reduce every
//! process holds the same gradients and takes the same optimiser step. Rank decisions (ARD-LoRA
//! compaction, AdaLoRA masking) read parameters broadcast from rank 0 first, so they cannot
//! differ even if floating point ever did. Rank 0 alone writes the run directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ardpipe_dist::ProcessGroup;
use tch::{Kind, Tensor};

use super::{TrainError, Trainer};

/// The process group and how the trainer uses it.
#[derive(Debug, Clone)]
pub struct DataParallel {
    pub group: Arc<ProcessGroup>,
    /// Gradient all-reduce bucket size.
    pub bucket_bytes: usize,
}

impl DataParallel {
    pub fn new(group: Arc<ProcessGroup>, bucket_mb: f64) -> DataParallel {
        DataParallel {
            group,
            bucket_bytes: (bucket_mb * 1024.0 * 1024.0).max(1.0) as usize,
        }
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world_size()
    }
}

impl Trainer {
    /// Whether this process writes the run directory (rank 0, or the only process).
    pub fn writes(&self) -> bool {
        self.parallel.as_ref().is_none_or(|d| d.group.is_root())
    }

    /// For the manifest: the processes of this run (None for one).
    pub fn processes(&self) -> Option<crate::manifest::Processes> {
        self.parallel.as_ref().map(|d| crate::manifest::Processes {
            world_size: d.world(),
            backend: d.group.backend().name().to_string(),
        })
    }

    /// (rank, world size); (0, 1) without data parallelism.
    pub fn rank_and_world(&self) -> (usize, usize) {
        self.parallel
            .as_ref()
            .map_or((0, 1), |d| (d.rank(), d.world()))
    }

    /// Every trainable tensor (head, adapters, α), in the same order on every process.
    pub(super) fn trainable_tensors(&self) -> Vec<Tensor> {
        let mut v: Vec<Tensor> = self
            .model
            .head_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        for lin in self.model.linears() {
            v.extend(lin.trainable().into_iter().map(|(_, t, _)| t));
        }
        v
    }

    /// Give every process rank 0's trainable parameters (at the start, after a resume, and
    /// before rank decisions). `paths` limits it to those modules' adapters (and no head).
    pub(super) fn sync_parameters(&self, paths: Option<&[String]>) -> Result<(), TrainError> {
        let Some(dp) = &self.parallel else {
            return Ok(());
        };
        let tensors: Vec<Tensor> = match paths {
            None => self.trainable_tensors(),
            Some(paths) => self
                .model
                .linears()
                .into_iter()
                .filter(|l| paths.contains(&l.path))
                .flat_map(|l| l.trainable().into_iter().map(|(_, t, _)| t))
                .collect(),
        };
        dp.group.broadcast_from_root(&tensors, dp.bucket_bytes)?;
        Ok(())
    }

    /// Replace each trainable parameter's gradient by its mean over all processes.
    pub(super) fn average_gradients(&self) -> Result<(), TrainError> {
        let Some(dp) = &self.parallel else {
            return Ok(());
        };
        let grads: Vec<Tensor> = self.trainable_tensors().iter().map(|t| t.grad()).collect();
        dp.group.average(&grads, dp.bucket_bytes)?;
        Ok(())
    }

    /// Whether this run was asked to stop (SIGINT, SIGTERM), and by which signal. With several
    /// processes, any one's request stops all of them after the same step (a process that
    /// stopped alone would leave the others waiting in the next all-reduce).
    pub(super) fn stop_signal(&self) -> Result<Option<i32>, TrainError> {
        let mine = crate::rundir::stop_requested();
        if self.parallel.is_none() {
            return Ok(mine);
        }
        let m = f64::from(mine.unwrap_or(0));
        let local = Tensor::from_slice(&[f64::from(u8::from(m > 0.0)), m]).to_device(self.device);
        let v = Vec::<f64>::try_from(self.sum_over_processes(local)?.to_device(tch::Device::Cpu))?;
        Ok((v[0] > 0.0).then(|| {
            // Another process's request: SIGINT if every requesting process had SIGINT.
            mine.unwrap_or(if (v[1] / v[0]).round() as i32 == 2 {
                2
            } else {
                15
            })
        }))
    }

    /// Sum small per-step statistics (f64) over all processes.
    pub(super) fn sum_over_processes(&self, values: Tensor) -> Result<Tensor, TrainError> {
        let Some(dp) = &self.parallel else {
            return Ok(values);
        };
        let t = values.to_kind(Kind::Double).contiguous();
        dp.group.all_reduce_sum(std::slice::from_ref(&t))?;
        Ok(t)
    }
}

/// Rank 0 tells the others where the run directory is (it may hold a timestamp only rank 0
/// knows).
pub fn share_path(group: &ProcessGroup, path: Option<&Path>) -> Result<PathBuf, TrainError> {
    let text = path.map(|p| p.to_string_lossy().into_owned());
    Ok(PathBuf::from(share_text(group, text.as_deref())?))
}

/// Rank 0's `text` on every rank (the others pass None). Sent as bytes through a broadcast:
/// c10d has no string collective.
pub fn share_text(group: &ProcessGroup, text: Option<&str>) -> Result<String, TrainError> {
    let bytes = text.map(|t| t.as_bytes().to_vec()).unwrap_or_default();
    let len = Tensor::from_slice(&[bytes.len() as i64]);
    group.broadcast_from_root(std::slice::from_ref(&len), 1 << 20)?;
    let n = len.int64_value(&[0]) as usize;
    let mut padded = bytes;
    padded.resize(n, 0);
    let t = Tensor::from_slice(&padded.iter().map(|&b| b as i64).collect::<Vec<_>>());
    if n > 0 {
        group.broadcast_from_root(std::slice::from_ref(&t), 1 << 20)?;
    }
    let out: Vec<u8> = Vec::<i64>::try_from(&t)
        .map_err(TrainError::Torch)?
        .into_iter()
        .map(|b| b as u8)
        .collect();
    Ok(String::from_utf8_lossy(&out).into_owned())
}
