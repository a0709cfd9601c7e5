//! The end products of a run: a Hugging Face PEFT adapter (ARD-LoRA folded into per-module
//! ranks), the merged model as a complete Hugging Face folder, and the run report. Each is
//! written whole or not at all through [`rundir::write_dir_atomic`] (`adapter.partial/`,
//! `merged.partial/`, fsynced, renamed), so a kill mid-export leaves the previous export (or
//! none) and `--resume` writes it again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ardpipe_adapters::peft::{PeftModule, PeftType};
use ardpipe_dsl::pipeline as p;
use tch::Tensor;

use super::task::TaskModel;
use super::{RunSummary, TrainError, Trainer};
use crate::peft_merge::{self, AdapterExport, MergedTask};
use crate::rundir;

/// The folder `export = [merged]` writes in the run directory.
pub const MERGED: &str = "merged";

impl Trainer {
    /// Write every export the pipeline asks for into the run directory.
    pub fn export(&mut self) -> Result<(), TrainError> {
        if !self.writes() {
            return Ok(());
        }
        for e in self.plan.settings.output.export.clone() {
            match e {
                p::Export::Peft => self.export_peft()?,
                p::Export::Merged => self.export_merged()?,
            }
        }
        Ok(())
    }

    fn export_peft(&self) -> Result<(), TrainError> {
        let methods: std::collections::BTreeSet<&str> = self
            .plan
            .settings
            .adapters
            .iter()
            .map(|a| a.method.name())
            .collect();
        if methods.contains("full") {
            tracing::info!(
                "full fine-tuning has no PEFT adapter: use `export = [merged]` for its weights"
            );
            if methods.len() == 1 {
                return Ok(());
            }
        }
        if methods.contains("head_only") {
            // The checker refuses this (dsl/src/check/mod.rs, `output`): PEFT will not load an
            // adapter that targets no module, even with the head in `modules_to_save`.
            return Err(TrainError::Other(
                "`head_only` adapts no module, and PEFT cannot load an adapter without one: export `merged`".into(),
            ));
        }
        let peft_type = if methods.contains("adalora") {
            PeftType::AdaLora
        } else {
            PeftType::Lora
        };
        if methods.contains("adalora") && methods.len() > 1 {
            return Err(TrainError::Other(
                "one PEFT adapter cannot mix AdaLoRA with other methods: export them from separate pipelines".into(),
            ));
        }
        let mut modules: Vec<PeftModule> = Vec::new();
        for lin in self.model.linears() {
            if let Some(a) = &lin.adapter
                && a.method() != "full"
            {
                modules.push(a.peft_export(&lin.base)?);
            }
        }
        let dropout = self
            .plan
            .settings
            .adapters
            .iter()
            .find_map(|a| match &a.method {
                p::Method::Lora(l) | p::Method::Dora(l) => Some(l.dropout),
                p::Method::ArdLora(c) => Some(c.dropout),
                p::Method::AdaLora(c) => Some(c.dropout),
                p::Method::Full(_) | p::Method::HeadOnly(_) => None,
            });
        let mut extra = BTreeMap::new();
        if let Some(a) = self
            .plan
            .settings
            .adapters
            .iter()
            .find_map(|a| match &a.method {
                p::Method::AdaLora(c) => Some(c),
                _ => None,
            })
        {
            let s = self.adalora.first().map(|b| b.allocator.schedule());
            extra.insert("init_r".into(), serde_json::json!(a.init_r));
            extra.insert("target_r".into(), serde_json::json!(a.target_r));
            extra.insert("beta1".into(), serde_json::json!(a.beta1));
            extra.insert("beta2".into(), serde_json::json!(a.beta2));
            extra.insert("orth_reg_weight".into(), serde_json::json!(a.orth_reg));
            if let Some(s) = s {
                extra.insert("tinit".into(), serde_json::json!(s.tinit));
                extra.insert("tfinal".into(), serde_json::json!(s.tfinal));
                extra.insert("deltaT".into(), serde_json::json!(s.delta_t));
                extra.insert("total_step".into(), serde_json::json!(s.total_step));
            }
        }
        let dir = self.run_dir.adapter_dir();
        AdapterExport {
            peft_type,
            modules: &modules,
            dropout: dropout.unwrap_or(0.0),
            use_dora: methods.contains("dora"),
            head: self.model.head_parameters(),
            modules_to_save: self.model.modules_to_save(),
            task_type: match self.plan.settings.model.head {
                p::Head::CausalLm => "CAUSAL_LM",
                _ => "SEQ_CLS",
            },
            base_model: ardpipe_dsl::hf_ref::base_model_name(&self.plan.settings.model.path),
            extra,
        }
        .write(&dir)
        .map_err(|e| TrainError::Other(format!("cannot export the PEFT adapter: {e}")))?;
        tracing::info!("PEFT adapter written to {}", dir.display());
        Ok(())
    }

    /// The merged model as a complete Hugging Face folder, `merged/`: every base weight with
    /// the adapters folded in, the trained head, config.json, the base's tokenizer files, in the
    /// base's dtype (f32 for a GGUF base); written whole or not at all, like `adapter/`. A base
    /// trained in a reduced form (bf16 storage of an f32 file, int8/int4) is read again from its
    /// file in f32 on the CPU, so the adapters merge into the original weights, not rounded ones.
    fn export_merged(&mut self) -> Result<(), TrainError> {
        let original = self.original_base()?;
        let source = original.as_ref().unwrap_or(&self.model);
        let originals: BTreeMap<String, Tensor> = source
            .linears()
            .into_iter()
            .map(|l| (l.path.clone(), l.base.dense_weight()))
            .collect();
        let linears: BTreeMap<String, Tensor> = tch::no_grad(|| {
            self.model
                .linears()
                .into_iter()
                .filter_map(|lin| {
                    let a = lin.adapter.as_ref()?;
                    if a.is_merged() || a.method() == "full" {
                        return None;
                    }
                    let original = &originals[&lin.path];
                    let delta = a.delta_weight(&lin.base).to_kind(tch::Kind::Float);
                    let w = original.detach().to_kind(tch::Kind::Float)
                        + delta.to_device(original.device());
                    Some((format!("{}.weight", lin.path), w))
                })
                .collect()
        });
        let with_merged = |params: Vec<(String, Tensor)>| -> Vec<(String, Tensor)> {
            params
                .into_iter()
                .map(|(n, t)| match linears.get(&n) {
                    Some(m) => (n, m.shallow_clone()),
                    None => (n, t.detach()),
                })
                .collect()
        };
        let (tensors, task) = match &self.model {
            TaskModel::CausalLm(_) | TaskModel::VisionLm(_) => {
                (with_merged(source.base_parameters()), MergedTask::CausalLm)
            }
            TaskModel::Classifier(_) | TaskModel::DecoderClassifier(_) => {
                // A decoder classifier has no LM head (transformers' has `score` instead).
                let mut t: Vec<(String, Tensor)> = with_merged(source.base_parameters())
                    .into_iter()
                    .filter(|(n, _)| n != "lm_head.weight")
                    .collect();
                t.extend(
                    self.model
                        .head_parameters()
                        .into_iter()
                        .map(|(n, t)| (n, t.detach())),
                );
                let labels: Vec<String> =
                    serde_json::from_value(rundir::read_json(&self.run_dir.path("labels.json"))?)
                        .map_err(|e| {
                        TrainError::Other(format!("labels.json is not a list of class names: {e}"))
                    })?;
                let pad_token_id = match &self.model {
                    TaskModel::DecoderClassifier(m) => Some(m.pad_token_id),
                    _ => None,
                };
                (
                    t,
                    MergedTask::SequenceClassification {
                        labels,
                        pad_token_id,
                    },
                )
            }
        };
        let merge_err = |e: peft_merge::PeftMergeError| {
            TrainError::Other(format!("cannot export the merged model: {e}"))
        };
        let base = ardpipe_models::ModelLocation::detect(&self.plan.settings.model.path)
            .map_err(|e| merge_err(e.into()))?;
        let desc = ardpipe_models::describe(&self.plan.settings.model.path)
            .map_err(|e| merge_err(e.into()))?;
        let config = peft_merge::merged_config(&base, &desc.config, &task).map_err(merge_err)?;
        let dir = self.run_dir.path(MERGED);
        let opts = peft_merge::FolderOptions {
            force: true,
            ..Default::default()
        };
        let written = peft_merge::write_model_folder(&dir, &base, config, &tensors, &opts)
            .map_err(merge_err)?;
        tracing::info!(
            "merged model written to {} ({} tensors in {} file(s), {}; transformers loads it with from_pretrained)",
            dir.display(),
            written.weights.tensors,
            written.weights.files.len(),
            written.dtype.torch_name()
        );
        Ok(())
    }

    /// The base model as its file holds it (f32, dense, on the CPU) when training used a
    /// reduced copy; `None` when the loaded base already is exact.
    fn original_base(&self) -> Result<Option<TaskModel>, TrainError> {
        let s = &self.plan.settings;
        let reduced = super::setup::precision(s).storage != ardpipe_models::StorageDtype::F32
            || s.model.quantize != p::Quantize::None;
        if !reduced {
            return Ok(None);
        }
        let mut exact = s.clone();
        exact.model.dtype = p::DType::F32;
        exact.model.quantize = p::Quantize::None;
        exact.train.precision = p::Precision::F32;
        tracing::info!(
            "reading {} again in f32 to merge into its original weights",
            s.model.path.display()
        );
        super::setup::load_model(&exact, self.plan.data.classes.len(), tch::Device::Cpu).map(Some)
    }

    /// `report/report.md` with the summary, and SVG pictures of the learned rank map per
    /// module kind (layer × head), α and loss curves, drawn from the run's own logs; and
    /// `report/index.html`, whose path it returns.
    pub fn write_report(&self, summary: &RunSummary) -> Result<Option<PathBuf>, TrainError> {
        if !self.plan.settings.output.report || !self.writes() {
            return Ok(None);
        }
        // The manifest is marked finished after the report (a kill before then resumes the
        // run): the report says how the training ended itself.
        let status = if summary.stopped_early {
            "stopped early (early stopping)"
        } else {
            "completed"
        };
        let mut rows: Vec<(String, String)> = vec![
            ("status".into(), status.into()),
            (
                "steps".into(),
                format!(
                    "{} in {:.0} s of training ({:.0} tokens/s)",
                    summary.steps, self.state.train_seconds, summary.tokens_per_second
                ),
            ),
        ];
        for (k, v) in summary.initial_eval.iter().flatten() {
            rows.push((format!("{k} before training"), format!("{v:.4}")));
        }
        if let Some(e) = &summary.final_eval {
            for (k, v) in &e.metrics {
                rows.push((format!("final {k}"), format!("{v:.4}")));
            }
        }
        if let Some(b) = summary.majority_baseline {
            let what = match self.model {
                // Image questions: always giving the most frequent training answer.
                TaskModel::VisionLm(_) => "majority-answer exact match",
                _ => "majority-class accuracy",
            };
            rows.push((what.into(), format!("{b:.4}")));
        }
        rows.push((
            "exported parameters".into(),
            format!(
                "{} ({:.3}% of {}); {} at peak during training",
                summary.exported_parameters,
                100.0 * summary.exported_parameters as f64 / summary.base_parameters.max(1) as f64,
                summary.base_parameters,
                summary.peak_parameters
            ),
        ));
        rows.push((
            "adaptation memory".into(),
            format!(
                "{:.2} MiB at peak, {:.2} MiB at the end (trainable tensors, gradients, optimiser state)",
                summary.adaptation_memory.peak_bytes as f64 / 1048576.0,
                summary.adaptation_memory.final_bytes as f64 / 1048576.0
            ),
        ));
        let files =
            crate::report::write_run_report(self.run_dir.root(), &self.plan.settings.name, rows)?;
        Ok(files.html)
    }

    /// `report/index.html` of the run so far (at a checkpoint): the logs, plan and manifest,
    /// with the steps done as its summary.
    pub fn write_progress_report(&self) -> Result<(), TrainError> {
        if !self.plan.settings.output.report || !self.writes() {
            return Ok(());
        }
        let rows = vec![(
            "steps".to_string(),
            format!(
                "{} of {} (training; this page is rewritten at each checkpoint)",
                self.state.step, self.total_steps
            ),
        )];
        crate::report::html::write_progress(self.run_dir.root(), &self.plan.settings.name, &rows)?;
        Ok(())
    }
}
