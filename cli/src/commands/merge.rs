//! `ardpipe merge`: a trained adapter folded into its base model, written as a complete Hugging
//! Face folder (engine/core/src/peft_merge.rs `merge_into_folder`).

use std::path::{Path, PathBuf};

use ardpipe_engine::models::hf::export::ExportDtype;
use ardpipe_engine::peft_merge::{self, AdapterFolder, FolderOptions, MergedTask};

use crate::args::{MergeArgs, MergeDtype};
use crate::exit::Code;

/// The base model a run trained: `model.path` of its pipeline.resolved.json (made absolute
/// when the run started).
fn run_base_model(run: &Path) -> miette::Result<PathBuf> {
    let resolved = run.join("pipeline.resolved.json");
    let v = ardpipe_engine::rundir::read_json(&resolved).map_err(|e| miette::miette!("{e}"))?;
    v.pointer("/model/path")
        .and_then(|p| p.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| {
            miette::miette!(
                help = "pass the base model with --model",
                "{} names no model.path",
                resolved.display()
            )
        })
}

pub fn run(a: MergeArgs) -> miette::Result<Code> {
    let is_run = a.adapter.join("pipeline.resolved.json").is_file();
    if is_run && !a.adapter.join("adapter").is_dir() {
        let merged = a.adapter.join("merged");
        return Err(if merged.join("config.json").is_file() {
            miette::miette!(
                help = format!(
                    "{} is the merged model already (export = [merged]); to merge again, run with \
                     `output.export` including `peft`",
                    merged.display()
                ),
                "{} has no adapter/ to merge",
                a.adapter.display()
            )
        } else {
            miette::miette!(
                help = "a run writes adapter/ when it finishes with `peft` in output.export; \
                        finish an interrupted run with `ardpipe run --resume RUN_DIR`",
                "{} has no adapter/ to merge",
                a.adapter.display()
            )
        });
    }
    let model = match (&a.model, is_run) {
        (Some(m), _) => m.clone(),
        (None, true) => run_base_model(&a.adapter)?,
        (None, false) => {
            return Err(miette::miette!(
                help = "pass --model with the base model the adapter was trained on (a folder or GGUF file)",
                "{} is a PEFT adapter folder, not a run directory: it does not say which base model to merge into",
                a.adapter.display()
            ));
        }
    };
    // Before anything loads: an --out in the way is refused at once.
    peft_merge::check_output(&a.out, a.force, &[&model, &a.adapter])
        .map_err(|e| miette::miette!("{e}"))?;
    let adapter = AdapterFolder::read(&a.adapter).map_err(|e| miette::miette!("{e}"))?;
    let opts = FolderOptions {
        max_shard_bytes: a.max_shard_size,
        dtype: match a.dtype {
            MergeDtype::Base => None,
            MergeDtype::F32 => Some(ExportDtype::F32),
            MergeDtype::F16 => Some(ExportDtype::F16),
            MergeDtype::Bf16 => Some(ExportDtype::Bf16),
        },
        force: a.force,
        extra_json: Vec::new(),
    };
    let done = peft_merge::merge_into_folder(&model, &adapter, &a.out, &opts)
        .map_err(|e| miette::miette!("{e}"))?;
    let ranks: Vec<usize> = done.merge.ranks.iter().map(|(_, r)| *r).collect();
    eprintln!(
        "adapter {}: merged {} modules (ranks {}–{}){} into {}",
        adapter.dir.display(),
        done.merge.modules,
        ranks.iter().min().unwrap_or(&0),
        ranks.iter().max().unwrap_or(&0),
        if done.merge.head_tensors > 0 {
            format!(", {} head tensors", done.merge.head_tensors)
        } else {
            String::new()
        },
        model.display()
    );
    let w = &done.folder.weights;
    let what = match &done.task {
        MergedTask::CausalLm => "causal LM".to_string(),
        MergedTask::SequenceClassification { labels, .. } => {
            format!("sequence classifier, {} classes", labels.len())
        }
    };
    println!(
        "wrote {} ({what}): {} tensors, {} parameters, {} in {} safetensors file(s); {}",
        done.folder.dir.display(),
        w.tensors,
        w.parameters,
        done.folder.dtype.torch_name(),
        w.files.len(),
        done.folder.files.join(", ")
    );
    Ok(Code::Success)
}
