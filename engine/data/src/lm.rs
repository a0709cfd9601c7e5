//! Language-model packing: documents are tokenised one at a time, joined with EOS and cut into
//! fixed blocks of `block_size` tokens, streaming (only the current document and one block are in
//! memory). The trainer shifts: it predicts `labels[t + 1]` from `input_ids[..=t]`.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, ErrorKind};
use crate::record::Record;
use crate::tokenizer::TextTokenizer;

/// Label value that the loss ignores (PyTorch's `ignore_index` default).
pub const IGNORE_INDEX: i64 = -100;

/// What to do with the tokens left after the last full block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastBlock {
    /// Drop them (the usual choice: every block is full, no padding to mask).
    #[default]
    Drop,
    /// Pad the last block to `block_size`; padded positions have mask 0 and label -100.
    Pad,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmBlock {
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding (only the padded last block has zeros).
    pub attention_mask: Vec<i64>,
}

impl LmBlock {
    /// Targets before the shift: the ids, with padding set to [`IGNORE_INDEX`].
    pub fn labels(&self) -> Vec<i64> {
        self.input_ids
            .iter()
            .zip(&self.attention_mask)
            .map(|(&id, &m)| if m == 1 { id } else { IGNORE_INDEX })
            .collect()
    }
}

/// A stack of blocks, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmBatch {
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    /// Unshifted targets with -100 at padding.
    pub labels: Vec<i64>,
    pub batch: usize,
    pub seq: usize,
}

impl LmBatch {
    pub fn stack(blocks: &[LmBlock]) -> Result<Self, DataError> {
        let Some(first) = blocks.first() else {
            return Err(DataError::new(ErrorKind::Empty, "empty LM batch")
                .with_help("batches need at least one block"));
        };
        let seq = first.input_ids.len();
        let mut b = LmBatch {
            input_ids: Vec::with_capacity(blocks.len() * seq),
            attention_mask: Vec::with_capacity(blocks.len() * seq),
            labels: Vec::with_capacity(blocks.len() * seq),
            batch: blocks.len(),
            seq,
        };
        for blk in blocks {
            if blk.input_ids.len() != seq {
                return Err(
                    DataError::config("LM blocks of different lengths in one batch")
                        .with_help("blocks from one packer all have block_size tokens"),
                );
            }
            b.input_ids.extend_from_slice(&blk.input_ids);
            b.attention_mask.extend_from_slice(&blk.attention_mask);
            b.labels.extend(blk.labels());
        }
        Ok(b)
    }
}

/// Streams [`LmBlock`]s from a stream of documents.
///
/// Packing is deterministic for a given document order, so a resumed run rebuilds the same
/// stream and skips the blocks it already trained on (`packer.skip(n)`), re-tokenising but never
/// holding the corpus. For shuffled LM training, feed documents in a [`crate::ShuffledOrder`]
/// (take an epoch's indices with `order.next_batch(docs.len(), false)` and map each to
/// `Ok(docs[i].clone())`): the blocks of that epoch then follow the shuffled document order.
pub struct LmPacker<I> {
    docs: I,
    tokenizer: TextTokenizer,
    block_size: usize,
    eos: u32,
    pad: u32,
    last: LastBlock,
    buf: Vec<u32>,
    /// Start of the unread part of `buf` (avoids shifting the buffer on every block).
    head: usize,
    exhausted: bool,
    failed: bool,
}

impl<I: Iterator<Item = Result<Record, DataError>>> LmPacker<I> {
    pub fn new(
        docs: I,
        tokenizer: &TextTokenizer,
        block_size: usize,
        last: LastBlock,
    ) -> Result<Self, DataError> {
        if block_size < 2 {
            return Err(DataError::config(format!(
                "block_size {block_size} is too small to predict anything"
            ))
            .with_help("use at least 2 (typically 128 to 2048)"));
        }
        let eos = tokenizer.eos_id().ok_or_else(|| {
            DataError::config("the tokenizer has no end-of-sequence token to join documents with")
                .with_help("use the model's own tokenizer; it names an eos token")
        })?;
        Ok(Self {
            docs,
            tokenizer: tokenizer.clone(),
            block_size,
            eos,
            pad: tokenizer.pad_id().unwrap_or(eos),
            last,
            buf: Vec::new(),
            head: 0,
            exhausted: false,
            failed: false,
        })
    }

    fn available(&self) -> usize {
        self.buf.len() - self.head
    }

    fn take_block(&mut self, n: usize) -> LmBlock {
        let mut input_ids: Vec<i64> = self.buf[self.head..self.head + n]
            .iter()
            .map(|&t| t as i64)
            .collect();
        self.head += n;
        let mut attention_mask = vec![1; n];
        input_ids.resize(self.block_size, self.pad as i64);
        attention_mask.resize(self.block_size, 0);
        // Compact once the consumed prefix dominates, so memory stays ~one document + one block.
        if self.head > self.block_size && self.head * 2 > self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        LmBlock {
            input_ids,
            attention_mask,
        }
    }
}

impl<I: Iterator<Item = Result<Record, DataError>>> Iterator for LmPacker<I> {
    type Item = Result<LmBlock, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.available() < self.block_size && !self.exhausted {
            match self.docs.next() {
                None => self.exhausted = true,
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                Some(Ok(doc)) => match self.tokenizer.encode(&doc.text, false) {
                    Ok(enc) => {
                        self.buf.extend_from_slice(&enc.ids);
                        self.buf.push(self.eos);
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(doc.error(e)));
                    }
                },
            }
        }
        let n = self.available();
        if n >= self.block_size {
            Some(Ok(self.take_block(self.block_size)))
        } else if n > 0 && self.last == LastBlock::Pad {
            Some(Ok(self.take_block(n)))
        } else {
            None
        }
    }
}
