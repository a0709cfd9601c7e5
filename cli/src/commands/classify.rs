//! `ardpipe classify`: class probabilities from an encoder with a classification head, or a
//! decoder with transformers' sequence-classification `score` head.

use ardpipe_engine::models::arch::{ArchConfig, EncoderHead, SequenceClassifier};
use ardpipe_engine::models::text::classify_texts;
use ardpipe_engine::models::tokenizer::load_tokenizer;
use ardpipe_engine::models::{describe, load_decoder_classifier, load_encoder};
use ardpipe_engine::peft_merge::AdapterFolder;
use serde::Serialize;

use super::generate::{load_options, merge_adapter};
use crate::args::{ClassifyArgs, Format};
use crate::exit::Code;

#[derive(Serialize)]
struct Row<'a> {
    text: &'a str,
    label: String,
    probabilities: Vec<(String, f32)>,
    logits: Vec<f32>,
}

/// Labels from config.json's `id2label`, when it names them.
fn config_labels(model: &std::path::Path) -> Option<Vec<String>> {
    ardpipe_engine::peft_merge::config_id2label(&model.join("config.json"))
}

/// transformers' `problem_type` of a fine-tuned model, when config.json sets one: classify
/// computes single-label softmax probabilities, which a multi-label or regression model's
/// outputs are not.
fn refuse_other_problem_types(model: &std::path::Path) -> miette::Result<()> {
    let Ok(text) = std::fs::read_to_string(model.join("config.json")) else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match v.get("problem_type").and_then(|p| p.as_str()) {
        None | Some("single_label_classification") => Ok(()),
        Some(other) => Err(miette::miette!(
            help = "classify one-of-N classes with a single_label_classification model",
            "{}: problem_type is `{other}`, but ardpipe classify gives single-label softmax probabilities",
            model.join("config.json").display()
        )),
    }
}

pub fn run(a: ClassifyArgs) -> miette::Result<Code> {
    refuse_other_problem_types(&a.model)?;
    let adapter = match &a.adapter {
        Some(p) => Some(AdapterFolder::read(p).map_err(|e| miette::miette!("{e}"))?),
        None => None,
    };
    // A fine-tuned run names its classes (labels.json) and its classifier fixes their number.
    let from_adapter = match adapter
        .as_ref()
        .and_then(|f| Some((f, f.classifier_rows()?)))
    {
        None => None,
        Some((f, n)) => Some(match &f.labels {
            Some(l) if l.len() == n => l.clone(),
            Some(l) => {
                return Err(miette::miette!(
                    help = "restore the run's labels.json (one name per class, in class order)",
                    "{}: labels.json names {} classes, but the adapter's classifier has {n}",
                    f.dir.display(),
                    l.len()
                ));
            }
            None => (0..n).map(|i| format!("LABEL_{i}")).collect(),
        }),
    };
    let labels = match (from_adapter, config_labels(&a.model), a.num_labels) {
        (Some(l), _, None) => l,
        (Some(l), _, Some(n)) if l.len() == n => l,
        (Some(l), _, Some(n)) => {
            return Err(miette::miette!(
                help = "drop --num-labels: the adapter's classifier decides it",
                "--num-labels {n}, but the adapter's classifier has {} classes",
                l.len()
            ));
        }
        (None, Some(l), None) => l,
        (None, Some(l), Some(n)) if l.len() == n => l,
        (None, _, Some(n)) => (0..n).map(|i| format!("LABEL_{i}")).collect(),
        (None, None, None) => {
            return Err(miette::miette!(
                help = "pass --num-labels N to attach a new (untrained) classifier, or use a fine-tuned model",
                "{} names no labels (config.json has no id2label)",
                a.model.display()
            ));
        }
    };
    let opts = load_options(&a.compute)?;
    let err = |e: ardpipe_engine::models::ModelError| miette::miette!("{e}");
    // An encoder classifies with its BERT/RoBERTa head, a decoder with transformers' `score`.
    let config = describe(&a.model).map_err(err)?.config;
    let (model, location, from_checkpoint): (Box<dyn SequenceClassifier>, _, bool) = match config {
        ArchConfig::Llama(_) => {
            let mut m =
                load_decoder_classifier(&a.model, labels.len(), a.seed, &opts).map_err(err)?;
            let trained = match &adapter {
                Some(f) => {
                    let head = m.model.head_parameters();
                    merge_adapter(f, m.model.linears_mut(), &head)?.head_tensors > 0
                }
                None => false,
            };
            let from = m.model.score_from_checkpoint || trained;
            (Box::new(m.model), m.location, from)
        }
        ArchConfig::PaliGemma(_) => {
            return Err(miette::miette!(
                help = "ask it with `ardpipe generate --image FILE`",
                "{} is a vision-language model: it answers in text and has no classification head",
                a.model.display()
            ));
        }
        ArchConfig::Bert(_) => {
            let head = EncoderHead::Classification {
                num_labels: labels.len(),
                seed: a.seed,
            };
            let mut enc = load_encoder(&a.model, head, &opts).map_err(err)?;
            let trained = match &adapter {
                Some(f) => {
                    let head = enc.model.head_parameters();
                    merge_adapter(f, enc.model.linears_mut(), &head)?.head_tensors > 0
                }
                None => false,
            };
            let from = enc.model.classifier_from_checkpoint || trained;
            (Box::new(enc.model), enc.location, from)
        }
    };
    if !from_checkpoint {
        eprintln!(
            "note: {} has no trained classifier: a new head with {} labels (seed {}) is attached, \
             so the labels are arbitrary until the model is fine-tuned",
            a.model.display(),
            labels.len(),
            a.seed
        );
    }
    let tok = load_tokenizer(&location).map_err(err)?;
    let texts: Vec<&str> = a.texts.iter().map(String::as_str).collect();
    let out = classify_texts(model.as_ref(), &tok.tokenizer, &texts).map_err(err)?;
    let rows: Vec<Row<'_>> = texts
        .iter()
        .zip(out.logits.into_iter().zip(out.probabilities))
        .map(|(t, (logits, p))| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            Row {
                text: t,
                label: labels[best].clone(),
                probabilities: labels.iter().cloned().zip(p.iter().copied()).collect(),
                logits,
            }
        })
        .collect();
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialises")
        ),
        Format::Yaml => print!("{}", crate::output::yaml(&rows)?),
        Format::Text => {
            for r in &rows {
                let p = r
                    .probabilities
                    .iter()
                    .find(|(l, _)| *l == r.label)
                    .map(|x| x.1)
                    .unwrap_or(0.0);
                println!("{}\t{:.3}\t{}", r.label, p, r.text);
            }
        }
    }
    Ok(Code::Success)
}
