//! `ardpipe data preview`: the first examples of a split as the model will see them, from the
//! compiled data of a run ([`Batches`]: the model's tokenizer and chat template, no weights).
//!
//! What is shown, per kind of data:
//! - classification: each example's tokens (as truncated to `max_length`), its label and class id;
//! - plain-text causal LM: the blocks cut from the joined texts;
//! - supervised causal LM (prompt/completion, chat): each example's tokens with the loss mask
//!   (which tokens are targets), and when packed, the first rows with the examples (segments)
//!   each holds.
//!
//! A token is "trained on" when the loss predicts it from the tokens before it: for an example,
//! `loss_mask[j]` and `j > 0` (the first token of an example is never predicted, since examples
//! never see each other); for a row, `labels[j - 1]` is token `j`.
//!
//! The training split is shown in the first epoch's seeded order (the order training reads it);
//! an evaluation split in its own order.

use ardpipe_data::{CausalRow, IGNORE_INDEX, Origin, SupervisedExample, TextTokenizer};
use serde::Serialize;

use super::TrainError;
use super::batches::{Batches, Kind};
use crate::plan::DataPlan;

/// Which split to preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewSplit {
    Train,
    /// The split the pipeline evaluates on (`Batches` was built with it).
    Eval,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// `train`, or the evaluation split's name (`validation`, `test`, `train`).
    pub split: String,
    pub sizes: Sizes,
    pub plan: DataPlan,
    /// The first examples of the split (for plain-text LM: none, see `rows`).
    pub examples: Vec<ExamplePreview>,
    /// Packed supervised rows or plain-text LM blocks, first ones of the split.
    pub rows: Vec<RowPreview>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Records read into the training split (good rows).
    pub train_records: usize,
    /// Records read into the evaluation split.
    pub eval_records: usize,
    /// Supervised data: records that encode to an example (the others had no answer token left
    /// after truncation). Otherwise the records.
    pub train_examples: usize,
    pub eval_examples: usize,
    /// What an epoch goes through (examples, blocks, packed rows or bucketed batches).
    pub train_units: usize,
    pub eval_units: usize,
    /// Rows the bad-row policy skipped while reading.
    pub skipped_rows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub file: String,
    pub line: u64,
}

impl From<&Origin> for Source {
    fn from(o: &Origin) -> Self {
        Source {
            file: o.file.display().to_string(),
            line: o.line,
        }
    }
}

/// A run of consecutive tokens, all trained on or all not.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub text: String,
    pub trained: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExamplePreview {
    /// Position in the split (its store's order).
    pub index: usize,
    pub source: Source,
    /// Tokens, after truncation.
    pub length: usize,
    pub ids: Vec<u32>,
    /// Each token decoded alone (special tokens kept).
    pub pieces: Vec<String>,
    /// Causal LM: whether each token is a target of the loss. Absent for classification.
    pub loss_mask: Option<Vec<bool>>,
    /// The tokens decoded in runs of equal `loss_mask` (one untrained span for classification).
    pub spans: Vec<Span>,
    /// Classification: the label as written and its class id.
    pub label: Option<String>,
    pub class_id: Option<usize>,
    /// Image questions: the image file, and how many image tokens lead the row (`ids`,
    /// `pieces` and `loss_mask` cover the text after them; `length` counts them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImagePreview>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImagePreview {
    pub file: String,
    pub tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowPreview {
    /// Position among the split's rows (training: in the first epoch's order).
    pub index: usize,
    pub length: usize,
    pub ids: Vec<u32>,
    pub pieces: Vec<String>,
    pub loss_mask: Vec<bool>,
    /// The example each token belongs to (1, 2, …); one segment for a plain-text block.
    pub segments: Vec<i64>,
    /// The examples of a packed row, in order (empty for a plain-text block).
    pub examples: Vec<RowSegment>,
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowSegment {
    pub segment: i64,
    pub source: Source,
    /// Token range in the row.
    pub start: usize,
    pub end: usize,
    pub spans: Vec<Span>,
}

/// The first `n` examples (and rows) of `split`.
pub fn preview(b: &Batches, split: PreviewSplit, n: usize) -> Result<Preview, TrainError> {
    let plan = b.data_plan();
    let train = split == PreviewSplit::Train;
    let store = if train {
        &b.splits.train
    } else {
        &b.splits.eval
    };
    let tok = &b.tokenizer;
    let mut examples = Vec::new();
    let mut rows = Vec::new();
    let (train_examples, eval_examples) = match &b.kind {
        Kind::Classification {
            batcher,
            labels,
            train_labels,
            eval_labels,
        } => {
            let order = if train {
                ardpipe_data::epoch_permutation(train_labels.len(), b.seed, 0)
            } else {
                (0..eval_labels.len()).collect()
            };
            let ids_of = if train { train_labels } else { eval_labels };
            for &i in order.iter().take(n) {
                let record = store.get(i)?;
                let batch = batcher.batch(&[&record])?;
                let ids: Vec<u32> = batch
                    .input_ids
                    .iter()
                    .zip(&batch.attention_mask)
                    .filter(|(_, m)| **m == 1)
                    .map(|(&t, _)| t as u32)
                    .collect();
                let mask = vec![false; ids.len()];
                let class = ids_of[i];
                examples.push(ExamplePreview {
                    index: i,
                    source: (&record.origin).into(),
                    length: ids.len(),
                    pieces: pieces(tok, &ids)?,
                    spans: spans(tok, &ids, &mask)?,
                    ids,
                    loss_mask: None,
                    label: labels.labels().get(class).cloned(),
                    class_id: Some(class),
                    image: None,
                });
            }
            (train_labels.len(), eval_labels.len())
        }
        Kind::Blocks {
            train: tr,
            eval: ev,
        } => {
            let (blocks, order) = if train {
                (tr, ardpipe_data::epoch_permutation(tr.len(), b.seed, 0))
            } else {
                (ev, (0..ev.len()).collect())
            };
            let store = if train {
                &b.splits.train
            } else {
                &b.splits.eval
            };
            for &i in order.iter().take(n) {
                rows.push(row_preview(tok, i, &blocks.row(store, i)?, Vec::new())?);
            }
            (b.splits.train.len(), b.splits.eval.len())
        }
        Kind::Supervised(s) => {
            let examples_of = if train { &s.train } else { &s.eval };
            // Units in the order read: the first epoch's rows or batches, or the evaluation
            // split's rows (packed) or examples.
            let units: Vec<Vec<usize>> = if train {
                s.epoch_units(b.seed, 0, b.batch_size)?.clone()
            } else if s.packing {
                s.rows(&s.eval, &(0..s.eval.len()).collect::<Vec<_>>())?
            } else {
                (0..s.eval.len()).map(|i| vec![i]).collect()
            };
            for &i in units.iter().flatten().take(n) {
                let ex = s.example(store, examples_of, i)?;
                let record_at = examples_of[i].0;
                let origin = store.get(record_at)?.origin;
                let mask = targets(&ex);
                examples.push(ExamplePreview {
                    index: record_at,
                    source: (&origin).into(),
                    length: ex.len(),
                    pieces: pieces(tok, &ex.ids)?,
                    spans: spans(tok, &ex.ids, &mask)?,
                    ids: ex.ids,
                    loss_mask: Some(mask),
                    label: None,
                    class_id: None,
                    image: None,
                });
            }
            if s.packing {
                for (r, unit) in units.iter().take(n).enumerate() {
                    let exs = unit
                        .iter()
                        .map(|&i| s.example(store, examples_of, i))
                        .collect::<Result<Vec<_>, _>>()?;
                    let row = CausalRow::pack(&exs.iter().collect::<Vec<_>>());
                    let mut segs = Vec::new();
                    let mut start = 0;
                    for (k, (&i, ex)) in unit.iter().zip(&exs).enumerate() {
                        let origin = store.get(examples_of[i].0)?.origin;
                        segs.push(RowSegment {
                            segment: k as i64 + 1,
                            source: (&origin).into(),
                            start,
                            end: start + ex.len(),
                            spans: spans(tok, &ex.ids, &targets(ex))?,
                        });
                        start += ex.len();
                    }
                    rows.push(row_preview(tok, r, &row, segs)?);
                }
            }
            (s.train.len(), s.eval.len())
        }
        Kind::Vision(v) => {
            let examples_of = if train { &v.train } else { &v.eval };
            let order = if train {
                ardpipe_data::epoch_permutation(examples_of.len(), b.seed, 0)
            } else {
                (0..examples_of.len()).collect()
            };
            let skip = v.encoder.num_image_tokens();
            for &i in order.iter().take(n) {
                let record = store.get(examples_of[i])?;
                let ex = v.encoder.encode(&record)?;
                let ids = ex.text.ids[skip..].to_vec();
                let mask = ex.text.loss_mask[skip..].to_vec();
                examples.push(ExamplePreview {
                    index: examples_of[i],
                    source: (&record.origin).into(),
                    length: ex.len(),
                    pieces: pieces(tok, &ids)?,
                    spans: spans(tok, &ids, &mask)?,
                    ids,
                    loss_mask: Some(mask),
                    label: None,
                    class_id: None,
                    image: record.image.as_ref().map(|f| ImagePreview {
                        file: f.display().to_string(),
                        tokens: skip,
                    }),
                });
            }
            (v.train.len(), v.eval.len())
        }
    };
    Ok(Preview {
        split: if train {
            "train".into()
        } else {
            plan.eval_split.clone()
        },
        sizes: Sizes {
            train_records: b.splits.train.len(),
            eval_records: b.splits.eval.len(),
            train_examples,
            eval_examples,
            train_units: plan.train_units,
            eval_units: plan.eval_units,
            skipped_rows: plan.skipped_rows,
        },
        plan,
        examples,
        rows,
    })
}

/// Which tokens of an example the loss predicts: masked, and not the first.
fn targets(ex: &SupervisedExample) -> Vec<bool> {
    ex.loss_mask
        .iter()
        .enumerate()
        .map(|(j, &m)| m && j > 0)
        .collect()
}

fn row_preview(
    tok: &TextTokenizer,
    index: usize,
    row: &CausalRow,
    examples: Vec<RowSegment>,
) -> Result<RowPreview, TrainError> {
    let ids: Vec<u32> = row.input_ids.iter().map(|&t| t as u32).collect();
    // Token j is predicted by token j - 1 (labels are already shifted).
    let mask: Vec<bool> = (0..ids.len())
        .map(|j| j > 0 && row.labels[j - 1] != IGNORE_INDEX)
        .collect();
    Ok(RowPreview {
        index,
        length: ids.len(),
        pieces: pieces(tok, &ids)?,
        spans: spans(tok, &ids, &mask)?,
        ids,
        loss_mask: mask,
        segments: row.segments.clone(),
        examples,
    })
}

fn pieces(tok: &TextTokenizer, ids: &[u32]) -> Result<Vec<String>, TrainError> {
    Ok(ids
        .iter()
        .map(|&id| tok.decode(&[id], false))
        .collect::<Result<_, _>>()?)
}

/// The tokens decoded in runs of equal mask.
fn spans(tok: &TextTokenizer, ids: &[u32], mask: &[bool]) -> Result<Vec<Span>, TrainError> {
    let mut out = Vec::new();
    let mut start = 0;
    for j in 1..=ids.len() {
        if j == ids.len() || mask[j] != mask[start] {
            out.push(Span {
                text: tok.decode(&ids[start..j], false)?,
                trained: mask[start],
            });
            start = j;
        }
    }
    Ok(out)
}

/// How trained-on and masked text is marked in [`render_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// Masked (no-loss) text dimmed, trained-on text in normal weight (a terminal).
    Ansi,
    /// Trained-on text between `[[` and `]]`, masked text as is.
    Brackets,
}

/// The preview as text: sizes, how examples become rows, then each example (and packed row).
pub fn render_text(p: &Preview, marks: Marks) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let plan = &p.plan;
    let s = &p.sizes;
    let _ = writeln!(
        o,
        "dataset    {} ({} {} records): {}",
        plan.dataset,
        plan.format,
        plan.records,
        plan.files.join(", ")
    );
    let unit = match &plan.batching {
        crate::plan::Batching::Padded { .. } => "examples",
        crate::plan::Batching::Blocks { .. } => "blocks",
        crate::plan::Batching::Supervised { packing: true, .. } => "packed rows",
        crate::plan::Batching::Supervised { .. } => "length-bucketed padded batches",
        crate::plan::Batching::Images { .. } => "image questions",
    };
    let _ = writeln!(
        o,
        "train      {} records, {} examples, {} {unit} per epoch",
        s.train_records, s.train_examples, s.train_units
    );
    let eval_unit = match &plan.batching {
        crate::plan::Batching::Blocks { .. } => "blocks",
        _ => "examples",
    };
    let _ = writeln!(
        o,
        "{:<10} {} records, {} examples, evaluated as {} {eval_unit}",
        plan.eval_split, s.eval_records, s.eval_examples, s.eval_units
    );
    let _ = writeln!(o, "skipped    {} bad rows", s.skipped_rows);
    let batching = serde_json::to_value(&plan.batching)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|m| {
            // The kind first, then its settings.
            let mut kv: Vec<_> = m.iter().collect();
            kv.sort_by_key(|(k, _)| *k != "kind");
            kv.into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k} {s}"),
                    v => format!("{k} {v}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let _ = writeln!(o, "batching   {batching}");
    if !plan.classes.is_empty() {
        let _ = writeln!(
            o,
            "classes    {}: {}",
            plan.classes.len(),
            plan.classes.join(", ")
        );
    }
    let legend = match marks {
        Marks::Brackets => "trained-on tokens between [[ and ]]",
        Marks::Ansi => "masked (no-loss) tokens dimmed",
    };
    if !p.examples.is_empty() {
        let _ = writeln!(
            o,
            "\n{} split: first {} example(s){}",
            p.split,
            p.examples.len(),
            if p.examples.iter().any(|e| e.loss_mask.is_some()) {
                format!("; {legend}")
            } else {
                String::new()
            }
        );
    }
    for (k, e) in p.examples.iter().enumerate() {
        let trained = e
            .loss_mask
            .as_ref()
            .map(|m| m.iter().filter(|&&t| t).count());
        let _ = write!(
            o,
            "\n#{} {}:{} ({} tokens",
            k + 1,
            e.source.file,
            e.source.line,
            e.length
        );
        if let Some(t) = trained {
            let _ = write!(o, ", {t} trained on");
        }
        let _ = write!(o, ")");
        if let (Some(l), Some(c)) = (&e.label, e.class_id) {
            let _ = write!(o, " label {l:?} (class {c})");
        }
        let _ = writeln!(o);
        o.push_str(&indent(&marked(&e.spans, marks), "    "));
    }
    if !p.rows.is_empty() {
        let what = if p.rows.iter().any(|r| !r.examples.is_empty()) {
            "packed rows (examples never attend to each other)"
        } else {
            "blocks"
        };
        let _ = writeln!(
            o,
            "\n{} split: first {} {what}; {legend}",
            p.split,
            p.rows.len()
        );
    }
    for r in &p.rows {
        let trained = r.loss_mask.iter().filter(|&&t| t).count();
        let _ = write!(
            o,
            "\nrow {} ({} tokens, {trained} trained on",
            r.index + 1,
            r.length
        );
        if r.examples.is_empty() {
            let _ = writeln!(o, ")");
            o.push_str(&indent(&marked(&r.spans, marks), "    "));
        } else {
            let _ = writeln!(o, ", {} examples)", r.examples.len());
            for seg in &r.examples {
                let _ = writeln!(
                    o,
                    "  segment {} tokens {}..{} from {}:{}",
                    seg.segment, seg.start, seg.end, seg.source.file, seg.source.line
                );
                o.push_str(&indent(&marked(&seg.spans, marks), "    "));
            }
        }
    }
    o
}

fn marked(spans: &[Span], marks: Marks) -> String {
    spans
        .iter()
        .map(|s| match (marks, s.trained) {
            (Marks::Brackets, true) => format!("[[{}]]", s.text),
            (Marks::Ansi, false) => format!("\x1b[2m{}\x1b[22m", s.text),
            _ => s.text.clone(),
        })
        .collect()
}

/// Every line indented, ending with one newline.
fn indent(text: &str, pad: &str) -> String {
    let mut out: String = text.lines().map(|l| format!("{pad}{l}\n")).collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}
