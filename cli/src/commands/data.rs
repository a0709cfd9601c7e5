//! `ardpipe data preview FILE`: the first examples of a split as the model will see them,
//! through the trainer's own data path (engine/core's `train::batches`, shown by
//! `train::preview`): the model's tokenizer and chat template are read, never its weights.

use std::io::IsTerminal;

use ardpipe_dsl::pipeline as p;
use ardpipe_engine::train::batches::Batches;
use ardpipe_engine::train::preview::{Marks, PreviewSplit, preview as build_preview, render_text};

use crate::args::{ColorChoice, DataPreviewArgs, Global, PreviewSplitArg, TextOrJson};
use crate::exit::Code;

pub fn preview(args: DataPreviewArgs, global: &Global) -> miette::Result<Code> {
    let Some(pipeline) =
        super::check::checked_pipeline(&args.file, &args.overrides, args.variant.as_deref())
    else {
        return Ok(Code::Failure);
    };
    let runs = super::run::select_runs(&pipeline, args.variant.as_deref())?;
    let Some(&(name, run)) = runs.first() else {
        return Err(miette::miette!("pipeline `{}` has no run", pipeline.name));
    };
    if runs.len() > 1 {
        tracing::info!("previewing the data of variant `{name}` (choose one with --variant)");
    }
    // An evaluation split other than the pipeline's: compile the data as if it evaluated there.
    let mut run = run.clone();
    let split = match args.split {
        PreviewSplitArg::Train => PreviewSplit::Train,
        PreviewSplitArg::Eval => PreviewSplit::Eval,
        PreviewSplitArg::Validation | PreviewSplitArg::Test => {
            let want = if args.split == PreviewSplitArg::Test {
                p::SplitName::Test
            } else {
                p::SplitName::Validation
            };
            match &mut run.evaluate {
                Some(e) => e.split = want,
                None => {
                    run.evaluate = Some(p::Evaluate {
                        dataset: run.train.dataset.clone(),
                        split: want,
                        metrics: Vec::new(),
                        batch_size: run.train.batch_size,
                        max_examples: None,
                    });
                }
            }
            PreviewSplit::Eval
        }
    };
    let batches = Batches::build(&run).map_err(super::run::report)?;
    let shown = build_preview(&batches, split, args.count).map_err(super::run::report)?;
    let records = match split {
        PreviewSplit::Train => shown.sizes.train_records,
        PreviewSplit::Eval => shown.sizes.eval_records,
    };
    if records == 0 {
        return Err(miette::miette!(
            help = "declare the split in the dataset block (`split { validation = 10% }`, \
                    `test = 10%`, or a file), or preview another with --split",
            "the {} split of dataset `{}` is empty",
            shown.split,
            shown.plan.dataset
        ));
    }
    match args.format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::to_string_pretty(&shown).map_err(|e| miette::miette!("{e}"))?
        ),
        TextOrJson::Text => {
            let ansi = match global.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            let marks = if ansi { Marks::Ansi } else { Marks::Brackets };
            print!("{}", render_text(&shown, marks));
        }
    }
    Ok(Code::Success)
}
