//! From the pipeline's datasets to tensor batches: splits, label vocabulary, seeded epoch
//! order with a resumable position, tokenisation per batch (classification) or packed blocks
//! (causal LM).

use std::collections::BTreeMap;

use ardpipe_data::TextTokenizer;
use ardpipe_dsl::pipeline as p;
use tch::{Device, Tensor};

use super::TrainError;
use super::task::TensorBatch;
use crate::checkpoint::DataPosition;

/// One example after the dataset's preprocessing.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub pair: Option<String>,
    pub label: Option<String>,
}

enum Kind {
    Classification {
        train: Vec<Example>,
        eval: Vec<Example>,
        labels: Vec<String>,
        max_length: usize,
        truncate_left: bool,
    },
    CausalLm {
        /// `block_size + 1` tokens each: inputs are the first `block_size`, targets the last.
        train: Vec<Vec<i64>>,
        eval: Vec<Vec<i64>>,
    },
}

pub struct Batches {
    kind: Kind,
    tokenizer: TextTokenizer,
    batch_size: usize,
    eval_batch_size: usize,
    seed: u64,
    pad_id: i64,
    /// This process's share of every batch under data parallelism: (rank, world size).
    shard: (usize, usize),
}

impl Batches {
    /// Read, split, label and (for causal LMs) pack the training and evaluation data.
    pub fn build(pipeline: &p::Pipeline) -> Result<Batches, TrainError> {
        let ds = crate::plan::pipeline_dataset(pipeline).ok_or_else(|| {
            TrainError::Other(format!(
                "train.dataset `{}` is not declared",
                pipeline.train.dataset
            ))
        })?;
        let location = ardpipe_models::ModelLocation::detect(&pipeline.model.path)?;
        let tokenizer = ardpipe_models::tokenizer::load_tokenizer(&location)?.tokenizer;
        let (train, eval) = super::records::load_splits(pipeline, ds)?;
        let pad_id = tokenizer.pad_id().or(tokenizer.eos_id()).unwrap_or(0) as i64;
        let eval_batch_size = pipeline
            .evaluate
            .as_ref()
            .map(|e| e.batch_size)
            .unwrap_or(pipeline.train.batch_size) as usize;
        let kind = match &pipeline.model.head {
            p::Head::CausalLm => {
                let block = ds.preprocess.block_size as usize;
                let pack = |exs: &[Example]| -> Result<Vec<Vec<i64>>, TrainError> {
                    pack_blocks(&tokenizer, exs, block)
                };
                let (train, eval) = (pack(&train)?, pack(&eval)?);
                if train.is_empty() {
                    return Err(TrainError::Other(format!(
                        "dataset `{}` packs into no block of {block} tokens: give it more text or lower block_size",
                        ds.name
                    )));
                }
                Kind::CausalLm { train, eval }
            }
            p::Head::SequenceClassification { classes } => {
                let labels = label_vocabulary(classes, &train, &ds.name)?;
                for (split, exs) in [("training", &train), ("evaluation", &eval)] {
                    if let Some(bad) = exs
                        .iter()
                        .find(|e| e.label.as_ref().is_none_or(|l| !labels.contains(l)))
                    {
                        return Err(TrainError::Other(format!(
                            "dataset `{}`: a {split} example has label {:?}, which is not among the {} classes ({})",
                            ds.name,
                            bad.label,
                            labels.len(),
                            labels.join(", ")
                        )));
                    }
                }
                Kind::Classification {
                    train,
                    eval,
                    labels,
                    max_length: ds.preprocess.max_length as usize,
                    truncate_left: ds.preprocess.truncation == p::Side::Left,
                }
            }
            p::Head::Embedding { .. } => {
                return Err(TrainError::Other(
                    "embedding heads do not train in this version".into(),
                ));
            }
        };
        let me = Batches {
            kind,
            tokenizer,
            batch_size: pipeline.train.batch_size as usize,
            eval_batch_size: eval_batch_size.max(1),
            seed: pipeline.train.seed,
            pad_id,
            shard: (0, 1),
        };
        Ok(me)
    }

    pub fn num_labels(&self) -> usize {
        match &self.kind {
            Kind::Classification { labels, .. } => labels.len(),
            Kind::CausalLm { .. } => 0,
        }
    }

    pub fn labels(&self) -> &[String] {
        match &self.kind {
            Kind::Classification { labels, .. } => labels,
            Kind::CausalLm { .. } => &[],
        }
    }

    fn train_len(&self) -> usize {
        match &self.kind {
            Kind::Classification { train, .. } => train.len(),
            Kind::CausalLm { train, .. } => train.len(),
        }
    }

    pub fn eval_len(&self) -> usize {
        match &self.kind {
            Kind::Classification { eval, .. } => eval.len(),
            Kind::CausalLm { eval, .. } => eval.len(),
        }
    }

    pub fn train_examples(&self) -> usize {
        self.train_len()
    }

    /// Optimiser steps per epoch (the last partial batch of an epoch is dropped).
    pub fn steps_per_epoch(&self, batch_size: u32, grad_accum: u32) -> u64 {
        (self.train_len() / (batch_size.max(1) as usize * grad_accum.max(1) as usize)).max(1) as u64
    }

    /// Accuracy of always predicting the most frequent training label, on the evaluation split.
    pub fn majority_baseline(&self) -> Option<f64> {
        let Kind::Classification { train, eval, .. } = &self.kind else {
            return None;
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in train {
            *counts.entry(e.label.as_deref().unwrap_or("")).or_default() += 1;
        }
        let top = counts.into_iter().max_by_key(|&(_, c)| c)?.0;
        (!eval.is_empty()).then(|| {
            eval.iter()
                .filter(|e| e.label.as_deref() == Some(top))
                .count() as f64
                / eval.len() as f64
        })
    }

    /// Data parallelism: from now on this process takes part `rank` of `world` of every
    /// training batch (and every `world`-th evaluation batch). The seeded order is the
    /// single-process one; each global batch is cut into contiguous, near-equal parts.
    pub fn set_shard(&mut self, rank: usize, world: usize) -> Result<(), TrainError> {
        check_batch_splits(self.batch_size.min(self.train_len()), world)?;
        self.shard = (rank, world);
        Ok(())
    }

    /// The next training batch (this process's part of it); advances `pos`, starting a new
    /// seeded permutation each epoch.
    pub fn next_train(
        &self,
        pos: &mut DataPosition,
        device: Device,
    ) -> Result<TensorBatch, TrainError> {
        let n = self.train_len();
        let bs = self.batch_size.min(n).max(1);
        if pos.examples_consumed as usize + bs > n {
            pos.epoch += 1;
            pos.examples_consumed = 0;
        }
        let perm = crate::rng::RngStreams::new(self.seed).epoch_permutation(pos.epoch, n);
        let at = pos.examples_consumed as usize;
        let idx = &perm[at..at + bs];
        pos.examples_consumed += bs as u64;
        let (rank, world) = self.shard;
        let mine = &idx[shard_range(bs, rank, world)];
        let mut batch = self.batch(mine, true, device)?;
        batch.share = mine.len() as f64 / bs as f64;
        Ok(batch)
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
        let n = self.eval_len();
        let step = self.eval_batch_size;
        (0..n)
            .step_by(step)
            .skip(rank)
            .step_by(world.max(1))
            .map(move |start| {
                let idx: Vec<usize> = (start..(start + self.eval_batch_size).min(n)).collect();
                self.batch(&idx, false, device)
            })
    }

    fn batch(&self, idx: &[usize], train: bool, device: Device) -> Result<TensorBatch, TrainError> {
        match &self.kind {
            Kind::CausalLm { train: tr, eval } => {
                let blocks = if train { tr } else { eval };
                let t = blocks[idx[0]].len() as i64 - 1;
                let mut ids = Vec::with_capacity(idx.len() * t as usize);
                let mut targets = Vec::with_capacity(idx.len() * t as usize);
                for &i in idx {
                    let b = &blocks[i];
                    ids.extend_from_slice(&b[..t as usize]);
                    targets.extend_from_slice(&b[1..]);
                }
                let b = idx.len() as i64;
                Ok(TensorBatch {
                    input_ids: Tensor::from_slice(&ids).view([b, t]).to_device(device),
                    attention_mask: Tensor::ones([b, t], (tch::Kind::Int64, device)),
                    labels: Tensor::from_slice(&targets).view([b, t]).to_device(device),
                    segments: None,
                    tokens: b * t,
                    share: 1.0,
                })
            }
            Kind::Classification {
                train: tr,
                eval,
                labels,
                max_length,
                truncate_left,
            } => {
                let exs = if train { tr } else { eval };
                let mut seqs = Vec::with_capacity(idx.len());
                let mut ys = Vec::with_capacity(idx.len());
                for &i in idx {
                    let e = &exs[i];
                    let enc = match &e.pair {
                        Some(pair) => self.tokenizer.encode_pair(&e.text, pair, true)?,
                        None => self.tokenizer.encode(&e.text, true)?,
                    };
                    seqs.push(truncate(enc.ids, *max_length, *truncate_left));
                    let label = e.label.as_deref().unwrap_or_default();
                    ys.push(labels.iter().position(|l| l == label).unwrap_or(0) as i64);
                }
                let t = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
                let b = seqs.len();
                let mut ids = vec![self.pad_id; b * t];
                let mut mask = vec![0i64; b * t];
                let mut tokens = 0;
                for (r, s) in seqs.iter().enumerate() {
                    for (c, &id) in s.iter().enumerate() {
                        ids[r * t + c] = id as i64;
                        mask[r * t + c] = 1;
                    }
                    tokens += s.len() as i64;
                }
                let (b, t) = (b as i64, t as i64);
                Ok(TensorBatch {
                    input_ids: Tensor::from_slice(&ids).view([b, t]).to_device(device),
                    attention_mask: Tensor::from_slice(&mask).view([b, t]).to_device(device),
                    labels: Tensor::from_slice(&ys).to_device(device),
                    segments: None,
                    tokens,
                    share: 1.0,
                })
            }
        }
    }
}

/// Keep `max` tokens, the special first/last tokens included: cut from the middle-facing side.
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

fn truncate(mut ids: Vec<u32>, max: usize, left: bool) -> Vec<u32> {
    if ids.len() <= max || max < 2 {
        return ids;
    }
    let last = *ids.last().expect("non-empty");
    if left {
        let first = ids[0];
        let keep = ids.split_off(ids.len() - (max - 1));
        let mut v = vec![first];
        v.extend(keep);
        v
    } else {
        ids.truncate(max - 1);
        ids.push(last);
        ids
    }
}

fn label_vocabulary(
    classes: &p::Classes,
    train: &[Example],
    dataset: &str,
) -> Result<Vec<String>, TrainError> {
    match classes {
        p::Classes::Names { names } => Ok(names.clone()),
        p::Classes::FromData => {
            let mut set: Vec<String> = train.iter().filter_map(|e| e.label.clone()).collect();
            set.sort();
            set.dedup();
            if set.len() < 2 {
                return Err(TrainError::Other(format!(
                    "dataset `{dataset}` has {} distinct label(s) in its training split: classification needs at least 2 \
                     (check the label field and label_regex)",
                    set.len()
                )));
            }
            Ok(set)
        }
    }
}

/// Tokenise documents, join them with EOS and cut into blocks of `block + 1` tokens that
/// overlap by one (the last input token's target is the next block's first token).
///
/// When the tokenizer starts every text with BOS (Llama, Gemma), each block starts with BOS
/// followed by `block` tokens of the stream: such models were pre-trained with BOS in the
/// first position, and without it their predictions collapse (Gemma 3 270M's perplexity on
/// Shakespeare goes from about 30 to about 180 in transformers). The BOS is never a target.
fn pack_blocks(
    tok: &TextTokenizer,
    exs: &[Example],
    block: usize,
) -> Result<Vec<Vec<i64>>, TrainError> {
    let eos = tok.eos_id().map(|e| e as i64);
    let bos = block_prefix(tok)?;
    let mut stream: Vec<i64> = Vec::new();
    for e in exs {
        stream.extend(tok.encode(&e.text, false)?.ids.iter().map(|&i| i as i64));
        if let Some(eos) = eos {
            stream.push(eos);
        }
    }
    let mut blocks = Vec::new();
    let mut start = 0;
    match bos {
        None => {
            while start + block < stream.len() {
                blocks.push(stream[start..start + block + 1].to_vec());
                start += block;
            }
        }
        Some(bos) => {
            while start + block <= stream.len() {
                let mut b = Vec::with_capacity(block + 1);
                b.push(bos);
                b.extend_from_slice(&stream[start..start + block]);
                blocks.push(b);
                start += block;
            }
        }
    }
    Ok(blocks)
}

/// The BOS id when the tokenizer puts one before every text it encodes with special tokens.
fn block_prefix(tok: &TextTokenizer) -> Result<Option<i64>, TrainError> {
    let Some(bos) = tok.bos_id() else {
        return Ok(None);
    };
    let with = tok.encode("a", true)?.ids;
    let without = tok.encode("a", false)?.ids;
    Ok((with.first() == Some(&bos) && without.first() != Some(&bos)).then_some(bos as i64))
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

    /// A SentencePiece tokenizer over single letters; `add_bos` as given.
    fn letters(add_bos: bool) -> TextTokenizer {
        let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "\u{2581}"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        tokens.extend(('a'..='z').map(String::from));
        let mut types = vec![2, 3, 3];
        types.resize(tokens.len(), 1);
        TextTokenizer::from_spm(ardpipe_data::SpmSpec {
            scores: vec![0.0; tokens.len()],
            tokens,
            merges: vec![],
            token_types: types,
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            pad: None,
            add_bos,
            add_eos: false,
            flavour: ardpipe_data::SpmFlavour::Gemma,
        })
        .unwrap()
    }

    #[test]
    fn lm_blocks_start_with_bos_when_the_tokenizer_adds_it() {
        let exs: Vec<Example> = ["abcde", "fgh"]
            .iter()
            .map(|t| Example {
                text: t.to_string(),
                pair: None,
                label: None,
            })
            .collect();
        // Stream: a b c d e </s> f g h </s> = ids 4..=8, 2, 9..=11, 2.
        let plain = pack_blocks(&letters(false), &exs, 4).unwrap();
        assert_eq!(plain, vec![vec![4, 5, 6, 7, 8], vec![8, 2, 9, 10, 11]]);
        // With BOS: every stream token is a target exactly once, each block sees BOS first.
        let with_bos = pack_blocks(&letters(true), &exs, 4).unwrap();
        assert_eq!(
            with_bos,
            vec![vec![1, 4, 5, 6, 7], vec![1, 8, 2, 9, 10]],
            "BOS, then `block` stream tokens"
        );
    }

    #[test]
    fn truncation_keeps_the_special_ends() {
        assert_eq!(
            truncate(vec![101, 1, 2, 3, 4, 102], 4, false),
            vec![101, 1, 2, 102]
        );
        assert_eq!(
            truncate(vec![101, 1, 2, 3, 4, 102], 4, true),
            vec![101, 3, 4, 102]
        );
        assert_eq!(truncate(vec![101, 1, 102], 4, false), vec![101, 1, 102]);
    }
}
