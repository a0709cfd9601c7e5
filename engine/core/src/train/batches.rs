//! The trainer's side of the data: engine/data reads, splits, tokenises, labels, packs and pads;
//! this module holds the compiled dataset's splits, hands out each step's batch in the seeded,
//! resumable order and moves it to the device.
//!
//! What an epoch goes through (its "units", counted by the checkpoint's data position):
//! - classification: examples, one per row, padded per batch;
//! - causal LM on plain text: blocks of `block_size` tokens cut from the joined texts;
//! - supervised causal LM (prompt/completion, chat): packed rows, each holding whole examples
//!   that never attend to each other (planned per epoch from that epoch's order), or, unpacked,
//!   batches of similar-length examples.

use std::cell::RefCell;
use std::collections::BTreeMap;

use ardpipe_data::{
    CausalBatch, CausalRow, ClassificationBatcher, Encoded, LabelVocab, OnError, RecordStore,
    SkipReport, SupervisedEncoder, SupervisedExample, TextBlocks, TextTokenizer, TruncationSide,
    VisionBatch, VisionEncoder, bucket_batches, epoch_permutation, judge, plan_rows,
};
use ardpipe_dsl::pipeline as p;
use tch::{Device, Tensor};

use super::TrainError;
use super::dataset::DataSplits;
use super::task::TensorBatch;
use crate::checkpoint::DataPosition;
use crate::plan::{Batching, DataPlan};

/// Tokens of plain-text records kept in memory (4 bytes each): a corpus within this is
/// tokenised once; a larger one is tokenised again as its blocks are read, with flat memory.
const TEXT_CACHE_TOKENS: usize = 32 << 20;

pub(super) enum Kind {
    Classification {
        // Boxed: the tokenizer inside makes it far larger than the other variants.
        batcher: Box<ClassificationBatcher>,
        labels: LabelVocab,
        /// Label id of every training and evaluation example, by position in its split.
        train_labels: Vec<usize>,
        eval_labels: Vec<usize>,
    },
    /// Plain-text causal LM: the blocks of each split, by number (rebuilt from the records).
    Blocks {
        train: Box<TextBlocks>,
        eval: Box<TextBlocks>,
    },
    Supervised(Box<Supervised>),
    /// Image questions for a vision-language model: one padded example per row.
    Vision(Box<Vision>),
}

/// Image-question data: which records encode to an example (checked once, each image file
/// read once); examples, pixels included, are encoded when a batch needs them.
pub(super) struct Vision {
    pub(super) encoder: VisionEncoder,
    /// Positions (in the split's store) of the records that encode to an example.
    pub(super) train: Vec<usize>,
    pub(super) eval: Vec<usize>,
    /// Share of the evaluation examples whose answer is the most frequent training answer.
    majority: Option<f64>,
}

/// Supervised causal-LM data: examples are encoded when a batch needs them; what is kept is
/// which records encode to an example and its length.
pub(super) struct Supervised {
    pub(super) encoder: SupervisedEncoder,
    pub(super) packing: bool,
    max_length: usize,
    /// Positions (in the split's store) of the records that encode to an example, and the
    /// example's length in tokens.
    pub(super) train: Vec<(usize, usize)>,
    pub(super) eval: Vec<(usize, usize)>,
    /// The evaluation batches: fixed, in the split's order.
    pub(super) eval_batches: Vec<Vec<usize>>,
    /// The current epoch's units (rows or batches, each a list of positions in `train`).
    epoch: RefCell<Option<(u64, Vec<Vec<usize>>)>>,
}

pub struct Batches {
    pub(super) kind: Kind,
    pub(super) splits: DataSplits,
    pad_id: u32,
    pub(super) batch_size: usize,
    eval_batch_size: usize,
    pub(super) seed: u64,
    /// The model's tokenizer (train/preview.rs decodes with it).
    pub(super) tokenizer: TextTokenizer,
    /// This process's share of every batch under data parallelism: (rank, world size).
    shard: (usize, usize),
    plan: DataPlan,
}

impl Batches {
    /// Read, split, label and (for causal LMs) pack or measure the training and evaluation data.
    pub fn build(pipeline: &p::Pipeline) -> Result<Batches, TrainError> {
        let mut splits = super::dataset::read_splits(pipeline)?;
        // `evaluate.max_examples`: the evaluation split's first examples only.
        if let Some(max) = pipeline.evaluate.as_ref().and_then(|e| e.max_examples)
            && (max as usize) < splits.eval.len()
        {
            let first: Vec<usize> = (0..max as usize).collect();
            splits.eval = splits.eval.subset(&first)?;
        }
        let ds = &splits.dataset;
        let location = ardpipe_models::ModelLocation::detect(&pipeline.model.path)?;
        let mut loaded = ardpipe_models::tokenizer::load_tokenizer(&location)?;
        if let Some(path) = &pipeline.model.chat_template {
            let text = std::fs::read_to_string(path).map_err(|e| {
                TrainError::Other(format!(
                    "model.chat_template: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            loaded.set_chat_template(text, path.display().to_string())?;
        }
        let tokenizer = loaded.tokenizer;
        let pad_id = tokenizer.pad_id().or(tokenizer.eos_id()).unwrap_or(0);
        let eval_batch_size = pipeline
            .evaluate
            .as_ref()
            .map(|e| e.batch_size)
            .unwrap_or(pipeline.train.batch_size)
            .max(1) as usize;
        let side = |s: p::Side| match s {
            p::Side::Left => TruncationSide::Left,
            p::Side::Right => TruncationSide::Right,
        };
        let pre = &ds.preprocess;
        let mut truncated_away = 0;
        let (kind, batching) = match &pipeline.model.head {
            p::Head::CausalLm if ds.images() => {
                let (policy, max_skipped) = super::dataset::bad_row_policy(ds);
                let mut skipped = SkipReport {
                    skipped: splits.skipped,
                    ..SkipReport::default()
                };
                let encoder = vision_encoder(pipeline, &tokenizer, pre.max_length as usize)?;
                let image_tokens = encoder.num_image_tokens() as u32;
                let vision = Vision::measure(encoder, &splits, policy, max_skipped, &mut skipped)?;
                truncated_away =
                    warn_skipped(&ds.name, "image questions", splits.skipped, &skipped);
                if vision.train.is_empty() {
                    return Err(TrainError::Other(format!(
                        "dataset `{}` has no usable training image question",
                        ds.name
                    )));
                }
                (
                    Kind::Vision(Box::new(vision)),
                    Batching::Images {
                        max_length: pre.max_length,
                        image_tokens,
                    },
                )
            }
            p::Head::CausalLm if ds.fields.supervised() => {
                let train_on = match pre.train_on {
                    p::TrainOn::Completions => ardpipe_data::TrainOn::Completions,
                    p::TrainOn::All => ardpipe_data::TrainOn::All,
                };
                let encoder = SupervisedEncoder::new(
                    &tokenizer,
                    loaded.chat.clone(),
                    train_on,
                    pre.max_length as usize,
                    side(pre.truncation),
                )?;
                let mut sup = Supervised {
                    encoder,
                    packing: pre.packing,
                    max_length: pre.max_length as usize,
                    train: Vec::new(),
                    eval: Vec::new(),
                    eval_batches: Vec::new(),
                    epoch: RefCell::new(None),
                };
                // Examples left without an answer by truncation are bad rows of the dataset's
                // policy, counted with the rows the reader skipped.
                let (policy, max_skipped) = super::dataset::bad_row_policy(ds);
                let mut skipped = SkipReport {
                    skipped: splits.skipped,
                    ..SkipReport::default()
                };
                sup.train = sup.measure(&splits.train, policy, max_skipped, &mut skipped)?;
                sup.eval = sup.measure(&splits.eval, policy, max_skipped, &mut skipped)?;
                truncated_away = warn_skipped(
                    &ds.name,
                    "examples with no answer left after truncation",
                    splits.skipped,
                    &skipped,
                );
                if sup.train.is_empty() {
                    return Err(TrainError::Other(format!(
                        "dataset `{}` has no training example with an answer token left after truncation to {} tokens",
                        ds.name, pre.max_length
                    )));
                }
                let eval_order: Vec<usize> = (0..sup.eval.len()).collect();
                sup.eval_batches = if sup.packing {
                    let rows = sup.rows(&sup.eval, &eval_order)?;
                    rows.chunks(eval_batch_size)
                        .map(|c| c.iter().flatten().copied().collect())
                        .collect()
                } else {
                    eval_order
                        .chunks(eval_batch_size)
                        .map(<[usize]>::to_vec)
                        .collect()
                };
                let batching = Batching::Supervised {
                    max_length: pre.max_length,
                    truncation: pre.truncation,
                    train_on: format!("{:?}", pre.train_on).to_lowercase(),
                    packing: pre.packing,
                };
                (Kind::Supervised(Box::new(sup)), batching)
            }
            p::Head::CausalLm => {
                let block = pre.block_size as usize;
                let pack = |store: &RecordStore| -> Result<Box<TextBlocks>, TrainError> {
                    Ok(Box::new(TextBlocks::index(
                        store,
                        &tokenizer,
                        block,
                        TEXT_CACHE_TOKENS,
                    )?))
                };
                let (train, eval) = (pack(&splits.train)?, pack(&splits.eval)?);
                if train.is_empty() {
                    return Err(TrainError::Other(format!(
                        "dataset `{}` packs into no block of {block} tokens: give it more text or lower block_size",
                        ds.name
                    )));
                }
                (
                    Kind::Blocks { train, eval },
                    Batching::Blocks {
                        block_size: pre.block_size,
                    },
                )
            }
            p::Head::SequenceClassification { classes } => {
                let train_raw = labels_of(&splits.train)?;
                let eval_raw = labels_of(&splits.eval)?;
                let labels = label_vocabulary(classes, &train_raw, &ds.name)?;
                let ids = |split: &str, raw: &[Option<String>]| -> Result<Vec<usize>, TrainError> {
                    check_labels(split, raw, &labels, &train_raw, &ds.name)?;
                    Ok(raw
                        .iter()
                        .map(|l| l.as_deref().and_then(|l| labels.id(l)).unwrap_or(0))
                        .collect())
                };
                let train_labels = ids("training", &train_raw)?;
                let eval_labels = ids("evaluation", &eval_raw)?;
                let batcher = Box::new(ClassificationBatcher::new(
                    &tokenizer,
                    Some(labels.clone()),
                    pre.max_length as usize,
                    side(pre.truncation),
                )?);
                (
                    Kind::Classification {
                        batcher,
                        labels,
                        train_labels,
                        eval_labels,
                    },
                    Batching::Padded {
                        max_length: pre.max_length,
                        truncation: pre.truncation,
                    },
                )
            }
            p::Head::Embedding { .. } => {
                return Err(TrainError::Other(
                    "embedding heads do not train in this version".into(),
                ));
            }
        };
        let eval_split = pipeline
            .evaluate
            .as_ref()
            .map(|e| e.split)
            .unwrap_or(p::SplitName::Validation);
        let mut me = Batches {
            kind,
            tokenizer,
            pad_id,
            batch_size: pipeline.train.batch_size.max(1) as usize,
            eval_batch_size,
            seed: pipeline.train.seed,
            shard: (0, 1),
            plan: DataPlan {
                dataset: ds.name.clone(),
                format: splits.format.clone(),
                files: splits.files.clone(),
                records: splits.records.clone(),
                batching,
                train_units: 0,
                eval_units: 0,
                eval_split: format!("{eval_split:?}").to_lowercase(),
                classes: Vec::new(),
                skipped_rows: splits.skipped + truncated_away,
                steps_per_epoch: 0,
            },
            splits,
        };
        me.plan.train_units = me.train_len();
        me.plan.eval_units = me.eval_len();
        me.plan.classes = me.labels().to_vec();
        me.plan.steps_per_epoch =
            me.steps_per_epoch(pipeline.train.batch_size, pipeline.train.grad_accum);
        tracing::info!(
            "dataset `{}`: {} training and {} evaluation units",
            me.plan.dataset,
            me.plan.train_units,
            me.plan.eval_units
        );
        Ok(me)
    }

    /// The data section of the plan: what was read and how it becomes batches.
    pub fn data_plan(&self) -> DataPlan {
        self.plan.clone()
    }

    pub fn num_labels(&self) -> usize {
        self.labels().len()
    }

    pub fn labels(&self) -> &[String] {
        match &self.kind {
            Kind::Classification { labels, .. } => labels.labels(),
            _ => &[],
        }
    }

    /// Units of one epoch (for supervised packing, the first epoch's rows: each epoch packs its
    /// own order, so the count may differ by a few rows between epochs).
    fn train_len(&self) -> usize {
        match &self.kind {
            Kind::Classification { train_labels, .. } => train_labels.len(),
            Kind::Blocks { train, .. } => train.len(),
            Kind::Supervised(s) => s
                .epoch_units(self.seed, 0, self.batch_size)
                .map_or(0, |u| u.len()),
            Kind::Vision(v) => v.train.len(),
        }
    }

    pub fn eval_len(&self) -> usize {
        match &self.kind {
            Kind::Classification { eval_labels, .. } => eval_labels.len(),
            Kind::Blocks { eval, .. } => eval.len(),
            Kind::Supervised(s) => s.eval.len(),
            Kind::Vision(v) => v.eval.len(),
        }
    }

    pub fn train_examples(&self) -> usize {
        self.train_len()
    }

    /// Optimiser steps per epoch (the last partial batch of an epoch is dropped).
    pub fn steps_per_epoch(&self, batch_size: u32, grad_accum: u32) -> u64 {
        let per_batch = match &self.kind {
            // Bucketed batches are units themselves.
            Kind::Supervised(s) if !s.packing => 1,
            _ => batch_size.max(1) as usize,
        };
        (self.train_len() / (per_batch * grad_accum.max(1) as usize)).max(1) as u64
    }

    /// Accuracy of always predicting the most frequent training label, on the evaluation split.
    pub fn majority_baseline(&self) -> Option<f64> {
        if let Kind::Vision(v) = &self.kind {
            return v.majority;
        }
        let Kind::Classification {
            train_labels,
            eval_labels,
            ..
        } = &self.kind
        else {
            return None;
        };
        majority_share(train_labels, eval_labels)
    }

    /// Data parallelism: from now on this process takes part `rank` of `world` of every
    /// training batch (and every `world`-th evaluation batch). The seeded order is the
    /// single-process one; each global batch is cut into contiguous, near-equal parts.
    pub fn set_shard(&mut self, rank: usize, world: usize) -> Result<(), TrainError> {
        let smallest = match &self.kind {
            // A bucketed batch may be short at the end of a mega-batch: every part must still
            // get an example.
            Kind::Supervised(s) if !s.packing => s
                .epoch_units(self.seed, 0, self.batch_size)?
                .iter()
                .map(Vec::len)
                .min()
                .unwrap_or(0),
            _ => self.batch_size.min(self.train_len()),
        };
        check_batch_splits(smallest, world)?;
        self.shard = (rank, world);
        Ok(())
    }

    /// The next training batch (this process's part of it); advances `pos`, starting a new
    /// seeded epoch when this one has no full batch left.
    pub fn next_train(
        &self,
        pos: &mut DataPosition,
        device: Device,
    ) -> Result<TensorBatch, TrainError> {
        let (rank, world) = self.shard;
        if let Kind::Supervised(s) = &self.kind
            && !s.packing
        {
            // One bucketed batch per step.
            let mut units = s.epoch_units(self.seed, pos.epoch, self.batch_size)?;
            if pos.examples_consumed as usize >= units.len() {
                pos.epoch += 1;
                pos.examples_consumed = 0;
                units = s.epoch_units(self.seed, pos.epoch, self.batch_size)?;
            }
            let batch = &units[pos.examples_consumed as usize];
            pos.examples_consumed += 1;
            let mine = &batch[shard_range(batch.len(), rank, world)];
            let mut t = s.padded_batch(&self.splits.train, &s.train, mine, self.pad_id, device)?;
            t.share = mine.len() as f64 / batch.len() as f64;
            return Ok(t);
        }
        let mut n = self.epoch_len(pos.epoch)?;
        let bs = self.batch_size.min(n).max(1);
        if pos.examples_consumed as usize + bs > n {
            pos.epoch += 1;
            pos.examples_consumed = 0;
            n = self.epoch_len(pos.epoch)?;
        }
        let at = pos.examples_consumed as usize;
        pos.examples_consumed += bs as u64;
        let units: Vec<usize> = match &self.kind {
            Kind::Supervised(_) => (at..at + bs).collect(),
            _ => epoch_permutation(n, self.seed, pos.epoch)[at..at + bs].to_vec(),
        };
        let mine = &units[shard_range(bs, rank, world)];
        let mut batch = self.train_batch(pos.epoch, mine, device)?;
        batch.share = mine.len() as f64 / bs as f64;
        Ok(batch)
    }

    /// Units in `epoch` (constant but for supervised packing).
    fn epoch_len(&self, epoch: u64) -> Result<usize, TrainError> {
        Ok(match &self.kind {
            Kind::Supervised(s) => s.epoch_units(self.seed, epoch, self.batch_size)?.len(),
            _ => self.train_len(),
        })
    }

    fn train_batch(
        &self,
        epoch: u64,
        units: &[usize],
        device: Device,
    ) -> Result<TensorBatch, TrainError> {
        match &self.kind {
            Kind::Classification {
                batcher,
                train_labels,
                ..
            } => classification_batch(batcher, &self.splits.train, units, train_labels, device),
            Kind::Blocks { train, .. } => {
                let rows = units
                    .iter()
                    .map(|&i| train.row(&self.splits.train, i))
                    .collect::<Result<Vec<_>, _>>()?;
                rows_batch(rows.iter(), self.pad_id, device)
            }
            Kind::Supervised(s) => {
                let all = s.epoch_units(self.seed, epoch, self.batch_size)?;
                let rows: Vec<&[usize]> = units.iter().map(|&u| &all[u][..]).collect();
                s.packed_batch(&self.splits.train, &s.train, &rows, self.pad_id, device)
            }
            Kind::Vision(v) => v.batch(&self.splits.train, &v.train, units, self.pad_id, device),
        }
    }

    /// Evaluation batches in order.
    pub fn eval_batches(
        &self,
        device: Device,
    ) -> impl Iterator<Item = Result<TensorBatch, TrainError>> + '_ {
        self.eval_batches_of(device, 0, 1)
    }

    /// Every `world`-th evaluation batch, starting at `rank`.
    pub fn eval_batches_of(
        &self,
        device: Device,
        rank: usize,
        world: usize,
    ) -> impl Iterator<Item = Result<TensorBatch, TrainError>> + '_ {
        let batches: Vec<Vec<usize>> = match &self.kind {
            Kind::Supervised(s) => s.eval_batches.clone(),
            _ => {
                let n = self.eval_len();
                (0..n)
                    .step_by(self.eval_batch_size)
                    .map(|start| (start..(start + self.eval_batch_size).min(n)).collect())
                    .collect()
            }
        };
        batches
            .into_iter()
            .skip(rank)
            .step_by(world.max(1))
            .map(move |idx| self.eval_batch(&idx, device))
    }

    fn eval_batch(&self, idx: &[usize], device: Device) -> Result<TensorBatch, TrainError> {
        match &self.kind {
            Kind::Classification {
                batcher,
                eval_labels,
                ..
            } => classification_batch(batcher, &self.splits.eval, idx, eval_labels, device),
            Kind::Blocks { eval, .. } => {
                let rows = idx
                    .iter()
                    .map(|&i| eval.row(&self.splits.eval, i))
                    .collect::<Result<Vec<_>, _>>()?;
                rows_batch(rows.iter(), self.pad_id, device)
            }
            Kind::Supervised(s) if s.packing => {
                let order: Vec<usize> = idx.to_vec();
                let rows = s.rows(&s.eval, &order)?;
                let rows: Vec<&[usize]> = rows.iter().map(Vec::as_slice).collect();
                s.packed_batch(&self.splits.eval, &s.eval, &rows, self.pad_id, device)
            }
            Kind::Supervised(s) => {
                s.padded_batch(&self.splits.eval, &s.eval, idx, self.pad_id, device)
            }
            Kind::Vision(v) => v.batch(&self.splits.eval, &v.eval, idx, self.pad_id, device),
        }
    }
}

impl Supervised {
    /// Encode every record of a split once to learn which train and their lengths; records
    /// with no answer left after truncation go to the bad-row count.
    fn measure(
        &self,
        store: &RecordStore,
        policy: OnError,
        max_skipped: Option<usize>,
        skipped: &mut SkipReport,
    ) -> Result<Vec<(usize, usize)>, TrainError> {
        let mut out = Vec::with_capacity(store.len());
        for i in 0..store.len() {
            let example = match self.encoder.encode(&store.get(i)?)? {
                Encoded::Example(e) => Ok(e),
                Encoded::NoAnswerLeft(why) => Err(why.to_error()),
            };
            if let Some(e) = judge(example, policy, max_skipped, skipped)? {
                out.push((i, e.len()));
            }
        }
        Ok(out)
    }

    /// Rows packing the examples at `order` (positions in `examples`), in that order.
    pub(super) fn rows(
        &self,
        examples: &[(usize, usize)],
        order: &[usize],
    ) -> Result<Vec<Vec<usize>>, TrainError> {
        let lengths: Vec<usize> = order.iter().map(|&i| examples[i].1).collect();
        Ok(plan_rows(&lengths, self.max_length)?
            .into_iter()
            .map(|row| row.into_iter().map(|k| order[k]).collect())
            .collect())
    }

    /// This epoch's units: packed rows (each a list of example positions) of the epoch's
    /// shuffled order, or bucketed batches. Cached for the epoch in progress.
    pub(super) fn epoch_units(
        &self,
        seed: u64,
        epoch: u64,
        batch_size: usize,
    ) -> Result<std::cell::Ref<'_, Vec<Vec<usize>>>, TrainError> {
        let fresh = self
            .epoch
            .borrow()
            .as_ref()
            .is_none_or(|(e, _)| *e != epoch);
        if fresh {
            let order = epoch_permutation(self.train.len(), seed, epoch);
            let units = if self.packing {
                self.rows(&self.train, &order)?
            } else {
                let lengths: Vec<usize> = self.train.iter().map(|e| e.1).collect();
                bucket_batches(&order, &lengths, batch_size, seed, epoch)?
            };
            *self.epoch.borrow_mut() = Some((epoch, units));
        }
        Ok(std::cell::Ref::map(self.epoch.borrow(), |e| {
            &e.as_ref().expect("set above").1
        }))
    }

    pub(super) fn example(
        &self,
        store: &RecordStore,
        examples: &[(usize, usize)],
        i: usize,
    ) -> Result<SupervisedExample, TrainError> {
        let record = store.get(examples[i].0)?;
        match self.encoder.encode(&record)? {
            Encoded::Example(e) => Ok(e),
            // It encoded to an example when measured: the file changed under the run.
            Encoded::NoAnswerLeft(why) => Err(why.to_error().into()),
        }
    }

    fn packed_batch(
        &self,
        store: &RecordStore,
        examples: &[(usize, usize)],
        rows: &[&[usize]],
        pad_id: u32,
        device: Device,
    ) -> Result<TensorBatch, TrainError> {
        let rows = rows
            .iter()
            .map(|row| {
                let exs = row
                    .iter()
                    .map(|&i| self.example(store, examples, i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(CausalRow::pack(&exs.iter().collect::<Vec<_>>()))
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        rows_batch(rows.iter(), pad_id, device)
    }

    fn padded_batch(
        &self,
        store: &RecordStore,
        examples: &[(usize, usize)],
        idx: &[usize],
        pad_id: u32,
        device: Device,
    ) -> Result<TensorBatch, TrainError> {
        let exs = idx
            .iter()
            .map(|&i| self.example(store, examples, i))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = CausalBatch::padded(&exs.iter().collect::<Vec<_>>(), pad_id)?;
        Ok(causal_tensors(batch, device))
    }
}

/// The share of `eval` equal to the most frequent value of `train` (among equals the largest):
/// the score of always predicting the majority class or answer. `None` without both.
fn majority_share<T: Ord>(train: &[T], eval: &[T]) -> Option<f64> {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    for t in train {
        *counts.entry(t).or_default() += 1;
    }
    let top = counts.iter().max_by_key(|&(_, c)| *c)?.0;
    (!eval.is_empty()).then(|| eval.iter().filter(|e| e == top).count() as f64 / eval.len() as f64)
}

/// Warns about the examples the bad-row policy skipped after reading (`read` were skipped
/// while reading); returns how many.
fn warn_skipped(dataset: &str, what: &str, read: usize, skipped: &SkipReport) -> usize {
    let more = skipped.skipped - read;
    if more > 0 {
        tracing::warn!(
            "dataset `{dataset}`: skipped {more} {what}, e.g. {}",
            skipped.first_reasons.join("; ")
        );
    }
    more
}

/// The image-question encoder for the pipeline's model: its image token and count, and its
/// processor ([`ardpipe_models::vision_processor`]).
fn vision_encoder(
    pipeline: &p::Pipeline,
    tokenizer: &TextTokenizer,
    max_length: usize,
) -> Result<VisionEncoder, TrainError> {
    let path = &pipeline.model.path;
    let desc = ardpipe_models::describe(path)?;
    // The plan's check that the model reads images; only called for data with images, so a
    // model that does not is that check's error.
    let Some(c) = crate::plan::image_model(&desc, pipeline)? else {
        return Err(TrainError::Other(
            "image questions without images: the dataset maps no `image`".into(),
        ));
    };
    let images = ardpipe_models::vision_processor(path, c)?;
    let image_token = u32::try_from(c.image_token_id).map_err(|_| {
        TrainError::Other(format!(
            "image token id {} is out of range",
            c.image_token_id
        ))
    })?;
    Ok(VisionEncoder::new(
        tokenizer,
        image_token,
        c.num_image_tokens(),
        max_length,
        images,
    )?)
}

impl Vision {
    /// Check every record of both splits once (bad ones go to the dataset's bad-row policy)
    /// and count the majority answer.
    fn measure(
        encoder: VisionEncoder,
        splits: &DataSplits,
        policy: OnError,
        max_skipped: Option<usize>,
        skipped: &mut SkipReport,
    ) -> Result<Self, TrainError> {
        let mut checked = std::collections::HashMap::new();
        let mut good =
            |store: &RecordStore, answers: &mut Vec<String>| -> Result<Vec<usize>, TrainError> {
                let mut out = Vec::with_capacity(store.len());
                for i in 0..store.len() {
                    let record = store.get(i)?;
                    let measured = encoder.measure(&record, &mut checked);
                    if judge(measured, policy, max_skipped, skipped)?.is_some() {
                        out.push(i);
                        if let Some(ardpipe_data::Turns::PromptCompletion { completion, .. }) =
                            record.turns
                        {
                            answers.push(completion);
                        }
                    }
                }
                Ok(out)
            };
        let (mut train_answers, mut eval_answers) = (Vec::new(), Vec::new());
        let train = good(&splits.train, &mut train_answers)?;
        let eval = good(&splits.eval, &mut eval_answers)?;
        let majority = majority_share(&train_answers, &eval_answers);
        Ok(Self {
            encoder,
            train,
            eval,
            majority,
        })
    }

    /// A padded batch of the examples at `idx` (positions in `examples`).
    fn batch(
        &self,
        store: &RecordStore,
        examples: &[usize],
        idx: &[usize],
        pad_id: u32,
        device: Device,
    ) -> Result<TensorBatch, TrainError> {
        let exs = idx
            .iter()
            .map(|&i| Ok(self.encoder.encode(&store.get(examples[i])?)?))
            .collect::<Result<Vec<_>, TrainError>>()?;
        let b = VisionBatch::collate(&exs.iter().collect::<Vec<_>>(), pad_id)?;
        let pixels = b.pixel_values_shape().map(|n| n as i64);
        let mut batch = causal_tensors(b.text, device);
        batch.vision = Some(super::task::VisionInputs {
            pixel_values: Tensor::from_slice(&b.pixel_values)
                .view(pixels)
                .to_device(device),
            prefix_len: Tensor::from_slice(&b.prefix_len).to_device(device),
        });
        Ok(batch)
    }
}

fn causal_tensors(b: CausalBatch, device: Device) -> TensorBatch {
    let (rows, seq) = (b.batch as i64, b.seq as i64);
    let t = |v: &[i64]| Tensor::from_slice(v).view([rows, seq]).to_device(device);
    let tokens = b.tokens() as i64;
    // One example per row needs no segments: the attention mask says all there is.
    let packed = b.segments.iter().any(|&s| s > 1);
    TensorBatch {
        input_ids: t(&b.input_ids),
        attention_mask: t(&b.attention_mask),
        padded: b.attention_mask.contains(&0),
        labels: t(&b.labels),
        segments: packed.then(|| t(&b.segments)),
        vision: None,
        tokens,
        share: 1.0,
    }
}

fn rows_batch<'a>(
    rows: impl Iterator<Item = &'a CausalRow>,
    pad_id: u32,
    device: Device,
) -> Result<TensorBatch, TrainError> {
    let rows: Vec<CausalRow> = rows.cloned().collect();
    Ok(causal_tensors(
        CausalBatch::from_rows(&rows, None, pad_id)?,
        device,
    ))
}

fn classification_batch(
    batcher: &ClassificationBatcher,
    store: &RecordStore,
    idx: &[usize],
    label_ids: &[usize],
    device: Device,
) -> Result<TensorBatch, TrainError> {
    let records = idx
        .iter()
        .map(|&i| store.get(i))
        .collect::<Result<Vec<_>, _>>()?;
    let b = batcher.batch(&records.iter().collect::<Vec<_>>())?;
    let ys: Vec<i64> = idx.iter().map(|&i| label_ids[i] as i64).collect();
    let (rows, seq) = (b.batch as i64, b.seq as i64);
    let tokens = b.attention_mask.iter().sum();
    Ok(TensorBatch {
        input_ids: Tensor::from_slice(&b.input_ids)
            .view([rows, seq])
            .to_device(device),
        attention_mask: Tensor::from_slice(&b.attention_mask)
            .view([rows, seq])
            .to_device(device),
        padded: b.attention_mask.contains(&0),
        labels: Tensor::from_slice(&ys).to_device(device),
        segments: None,
        vision: None,
        tokens,
        share: 1.0,
    })
}

/// Every example's label as written (after `label_regex`), by position.
fn labels_of(store: &RecordStore) -> Result<Vec<Option<String>>, TrainError> {
    (0..store.len()).map(|i| Ok(store.get(i)?.label)).collect()
}

/// Every example must carry one of the classes. A label the training split never shows is
/// reported with its count rather than mapped to some class.
fn check_labels(
    split: &str,
    raw: &[Option<String>],
    labels: &LabelVocab,
    train: &[Option<String>],
    dataset: &str,
) -> Result<(), TrainError> {
    let mut unknown: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    for l in raw {
        if l.as_deref().is_none_or(|l| labels.id(l).is_none()) {
            *unknown.entry(l.as_deref()).or_default() += 1;
        }
    }
    let Some((label, count)) = unknown.iter().next() else {
        return Ok(());
    };
    let in_training = label.is_some_and(|l| train.iter().any(|t| t.as_deref() == Some(l)));
    let what = match label {
        None => "no label".to_string(),
        Some(l) => format!("label {l:?}"),
    };
    Err(TrainError::Other(format!(
        "dataset `{dataset}`: {count} {split} example(s) have {what}, which is not among the {} classes ({}){}{}\n  \
         help: {}",
        labels.len(),
        labels.labels().join(", "),
        if !in_training && split == "evaluation" {
            " and never occurs in training"
        } else {
            ""
        },
        if unknown.len() > 1 {
            format!(" ({} other unknown labels too)", unknown.len() - 1)
        } else {
            String::new()
        },
        if split == "evaluation" {
            "a class the model never trains on cannot be predicted: give the training split examples of it \
             (another split seed or fraction), or name the classes with `classes = [...]`"
        } else {
            "fix the labels, or list every class in `classes = [...]`"
        }
    )))
}

fn label_vocabulary(
    classes: &p::Classes,
    train: &[Option<String>],
    dataset: &str,
) -> Result<LabelVocab, TrainError> {
    match classes {
        p::Classes::Names { names } => Ok(LabelVocab::new(names.clone())),
        p::Classes::FromData => {
            let mut set: Vec<String> = train.iter().flatten().cloned().collect();
            set.sort();
            set.dedup();
            if set.len() < 2 {
                return Err(TrainError::Other(format!(
                    "dataset `{dataset}` has {} distinct label(s) in its training split: classification needs at least 2 \
                     (check the label field and label_regex)",
                    set.len()
                )));
            }
            Ok(LabelVocab::new(set))
        }
    }
}

/// Every process needs at least one example of each global batch.
pub fn check_batch_splits(batch_size: usize, world: usize) -> Result<(), TrainError> {
    if batch_size < world {
        return Err(TrainError::Other(format!(
            "train.batch_size is {batch_size} but the run has {world} processes: every process needs at least one example per step; \
             raise batch_size to {world} or more, or start fewer processes"
        )));
    }
    Ok(())
}

/// Part `rank` of `world` of `0..n`: contiguous, sizes differing by at most one, the larger
/// parts first, so the parts of all ranks tile `0..n` in order.
pub fn shard_range(n: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let world = world.max(1);
    let (base, extra) = (n / world, n % world);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_batch_in_order_and_differ_by_at_most_one() {
        for n in 1..40 {
            for world in 1..=n.min(9) {
                let parts: Vec<_> = (0..world).map(|r| shard_range(n, r, world)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[world - 1].end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "n {n} world {world}");
                }
                let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(*lo >= 1 && hi - lo <= 1, "n {n} world {world}: {sizes:?}");
            }
        }
        assert_eq!(shard_range(10, 0, 3), 0..4);
        assert_eq!(shard_range(10, 2, 3), 7..10);
        assert!(check_batch_splits(2, 3).is_err());
        assert!(check_batch_splits(3, 3).is_ok());
    }

    /// An evaluation label the training split never shows is reported with its count, never
    /// mapped to some class (the model cannot predict a class it never trained on).
    #[test]
    fn an_evaluation_label_unseen_in_training_is_reported() {
        let some = |v: &[&str]| v.iter().map(|l| Some(l.to_string())).collect::<Vec<_>>();
        let train = some(&["a", "b", "a"]);
        let labels = label_vocabulary(&p::Classes::FromData, &train, "d").unwrap();
        assert_eq!(labels.labels(), ["a", "b"]);
        check_labels("evaluation", &some(&["b", "a"]), &labels, &train, "d").unwrap();
        let e = check_labels("evaluation", &some(&["c", "a", "c"]), &labels, &train, "d")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2 evaluation example(s) have label \"c\"")
                && e.contains("never occurs in training")
                && e.contains("classes = [...]"),
            "{e}"
        );
        let e = check_labels("training", &[None], &labels, &train, "d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 training example(s) have no label"), "{e}");
        // Named classes the data does not cover are refused the same way.
        let named = label_vocabulary(
            &p::Classes::Names {
                names: vec!["x".into(), "y".into()],
            },
            &train,
            "d",
        )
        .unwrap();
        assert!(check_labels("training", &train, &named, &train, "d").is_err());
    }
}
