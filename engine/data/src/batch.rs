//! Classification batches: tokenised per batch (never the whole dataset), truncated to
//! `max_length`, padded to the longest row of the batch, with attention masks and label ids.

use crate::error::{DataError, ErrorKind};
use crate::labels::LabelVocab;
use crate::record::Record;
use crate::tokenizer::{TextTokenizer, TruncationSide};

/// Row-major `[batch, seq]` tensors as flat `i64` vectors, ready for `Tensor::from_slice(..).view(..)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassBatch {
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    /// One id per row; empty when the batcher has no label vocabulary (inference).
    pub labels: Vec<i64>,
    pub batch: usize,
    pub seq: usize,
}

impl ClassBatch {
    pub fn shape(&self) -> [usize; 2] {
        [self.batch, self.seq]
    }
}

#[derive(Debug, Clone)]
pub struct ClassificationBatcher {
    tokenizer: TextTokenizer,
    labels: Option<LabelVocab>,
    pad_id: i64,
    max_length: usize,
}

impl ClassificationBatcher {
    /// `labels = None` for inference batches. The pad id is the tokenizer's pad, else its eos
    /// (padding is masked, so any id works, but it must exist in the embedding table).
    pub fn new(
        tokenizer: &TextTokenizer,
        labels: Option<LabelVocab>,
        max_length: usize,
        side: TruncationSide,
    ) -> Result<Self, DataError> {
        let pad = tokenizer.pad_id().or(tokenizer.eos_id()).ok_or_else(|| {
            DataError::config("the tokenizer has neither a pad nor an eos token to pad with")
                .with_help("use a tokenizer that defines [PAD]/<pad> or an end-of-sequence token")
        })?;
        Ok(Self {
            tokenizer: tokenizer.with_truncation(max_length, side)?,
            labels,
            pad_id: pad as i64,
            max_length,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokenise and pad these records into one batch.
    pub fn batch(&self, records: &[&Record]) -> Result<ClassBatch, DataError> {
        if records.is_empty() {
            return Err(DataError::new(ErrorKind::Empty, "empty batch")
                .with_help("batches need at least one record"));
        }
        let mut encs = Vec::with_capacity(records.len());
        let mut labels = Vec::new();
        for r in records {
            let enc = match &r.text_pair {
                Some(b) => self.tokenizer.encode_pair(&r.text, b, true),
                None => self.tokenizer.encode(&r.text, true),
            }
            .map_err(|e| r.error(e))?;
            encs.push(enc);
            if let Some(vocab) = &self.labels {
                labels.push(vocab.encode(r)?);
            }
        }
        let seq = encs.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let n = records.len();
        let mut b = ClassBatch {
            input_ids: vec![self.pad_id; n * seq],
            attention_mask: vec![0; n * seq],
            token_type_ids: vec![0; n * seq],
            labels,
            batch: n,
            seq,
        };
        for (row, enc) in encs.iter().enumerate() {
            let o = row * seq;
            for (j, (&id, &ty)) in enc.ids.iter().zip(&enc.type_ids).enumerate() {
                b.input_ids[o + j] = id as i64;
                b.attention_mask[o + j] = 1;
                b.token_type_ids[o + j] = ty as i64;
            }
        }
        Ok(b)
    }
}
