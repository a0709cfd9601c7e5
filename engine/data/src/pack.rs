//! Causal-LM batches, as flat row-major `[batch, seq]` vectors: `input_ids`, next-token `labels`
//! (already shifted: `labels[t]` is the target for `input_ids[t]`, [`IGNORE_INDEX`] where no loss
//! applies), `attention_mask` and `segments` (the example each token belongs to within its row,
//! 1, 2, …; 0 for padding; the model derives positions and a block-diagonal mask from them, so
//! packed examples never see each other).
//!
//! Two ways to form rows from [`SupervisedExample`]s, both deterministic functions of the order
//! they are given, so a resumed run recomputes the same batches:
//! - packing: [`plan_rows`] fills rows of `max_length` tokens greedily in order, and
//!   [`CausalRow::pack`] joins a row's examples;
//! - padding: one example per row, [`bucket_batches`] groups examples of similar length so that
//!   little is padded.
//!
//! [`crate::LmPacker`] cuts plain text into rows of the same type.

use crate::error::{DataError, ErrorKind};
use crate::sft::SupervisedExample;
use crate::shuffle::epoch_permutation;

/// Label value that the loss ignores (PyTorch's `ignore_index` default).
pub const IGNORE_INDEX: i64 = -100;

/// One row before padding: the ids, their next-token labels and the segment of each token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CausalRow {
    pub input_ids: Vec<i64>,
    pub labels: Vec<i64>,
    /// 1, 2, … per example in the row; 0 marks padding.
    pub segments: Vec<i64>,
}

impl CausalRow {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// The examples of one row, one after the other. Token `j` of an example is labelled with
    /// token `j + 1` when that one carries loss; the last token of each example has no label, so
    /// nothing is predicted across a boundary.
    pub fn pack(examples: &[&SupervisedExample]) -> Self {
        let n: usize = examples.iter().map(|e| e.len()).sum();
        let mut row = CausalRow {
            input_ids: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
            segments: Vec::with_capacity(n),
        };
        for (k, ex) in examples.iter().enumerate() {
            row.input_ids.extend(ex.ids.iter().map(|&t| t as i64));
            row.labels.extend(
                ex.ids
                    .iter()
                    .zip(&ex.loss_mask)
                    .skip(1)
                    .map(|(&t, &m)| if m { t as i64 } else { IGNORE_INDEX }),
            );
            if !ex.is_empty() {
                row.labels.push(IGNORE_INDEX);
            }
            row.segments
                .extend(std::iter::repeat_n(k as i64 + 1, ex.len()));
        }
        row
    }
}

/// A batch of rows, flat row-major `[batch, seq]`, ready for `Tensor::from_slice(..).view(..)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CausalBatch {
    pub input_ids: Vec<i64>,
    /// Next-token targets: `labels[t]` is what `input_ids[t]` should predict, -100 for none.
    pub labels: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// The example each token belongs to within its row (1, 2, …), 0 for padding.
    pub segments: Vec<i64>,
    pub batch: usize,
    pub seq: usize,
}

impl CausalBatch {
    pub fn shape(&self) -> [usize; 2] {
        [self.batch, self.seq]
    }

    /// Real (non-padding) tokens.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }

    /// Tokens with a label (what the loss averages over).
    pub fn targets(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Stack rows, padding each on the right to `seq` tokens (`None`: the longest row) with
    /// `pad_id` (masked, so any id in the embedding table works).
    pub fn from_rows(
        rows: &[CausalRow],
        seq: Option<usize>,
        pad_id: u32,
    ) -> Result<Self, DataError> {
        if rows.is_empty() {
            return Err(DataError::new(ErrorKind::Empty, "empty causal-LM batch")
                .with_help("batches need at least one row"));
        }
        let longest = rows.iter().map(CausalRow::len).max().unwrap_or(0);
        let seq = match seq {
            Some(s) if s < longest => {
                return Err(DataError::config(format!(
                    "a row of {longest} tokens does not fit a batch of {s} tokens per row"
                ))
                .with_help("rows are planned for max_length; pad to at least the longest row"));
            }
            Some(s) => s,
            None => longest,
        }
        .max(1);
        let n = rows.len();
        let mut b = CausalBatch {
            input_ids: vec![pad_id as i64; n * seq],
            labels: vec![IGNORE_INDEX; n * seq],
            attention_mask: vec![0; n * seq],
            segments: vec![0; n * seq],
            batch: n,
            seq,
        };
        for (r, row) in rows.iter().enumerate() {
            if row.labels.len() != row.len() || row.segments.len() != row.len() {
                return Err(DataError::config(
                    "a causal-LM row whose ids, labels and segments differ in length",
                ));
            }
            let o = r * seq;
            let k = row.len();
            b.input_ids[o..o + k].copy_from_slice(&row.input_ids);
            b.labels[o..o + k].copy_from_slice(&row.labels);
            b.segments[o..o + k].copy_from_slice(&row.segments);
            for (m, &s) in b.attention_mask[o..o + k].iter_mut().zip(&row.segments) {
                *m = i64::from(s != 0);
            }
        }
        Ok(b)
    }

    /// Packed rows: each row of `rows` (indices into `examples`, as [`plan_rows`] gives them)
    /// holds its examples one after the other; rows are padded to the longest one.
    pub fn packed(
        examples: &[SupervisedExample],
        rows: &[Vec<usize>],
        pad_id: u32,
    ) -> Result<Self, DataError> {
        let rows: Vec<CausalRow> = rows
            .iter()
            .map(|r| {
                let exs: Vec<&SupervisedExample> = r.iter().map(|&i| &examples[i]).collect();
                CausalRow::pack(&exs)
            })
            .collect();
        Self::from_rows(&rows, None, pad_id)
    }

    /// One example per row, padded to the longest of the batch.
    pub fn padded(examples: &[&SupervisedExample], pad_id: u32) -> Result<Self, DataError> {
        let rows: Vec<CausalRow> = examples
            .iter()
            .map(|e| CausalRow::pack(std::slice::from_ref(e)))
            .collect();
        Self::from_rows(&rows, None, pad_id)
    }
}

/// Greedy sequential packing: the examples, of `lengths` in the order given, fill rows of at
/// most `max_length` tokens; the next example joins the current row when it fits, else it starts
/// a new row. Returns positions in `lengths`, row by row. A pure function of its arguments, so a
/// resumed run recomputes the same rows. Examples must already be truncated to `max_length`.
pub fn plan_rows(lengths: &[usize], max_length: usize) -> Result<Vec<Vec<usize>>, DataError> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (i, &len) in lengths.iter().enumerate() {
        if len == 0 || len > max_length {
            return Err(DataError::config(format!(
                "example {i} has {len} tokens, which cannot be packed into rows of {max_length}"
            ))
            .with_help("truncate examples to max_length (and drop empty ones) before packing"));
        }
        match rows.last_mut() {
            Some(row) if used + len <= max_length => {
                row.push(i);
                used += len;
            }
            _ => {
                rows.push(vec![i]);
                used = len;
            }
        }
    }
    Ok(rows)
}

/// Batches of similar-length examples for padded batching: `order` (example indices, e.g. one
/// epoch's shuffled order) is cut into mega-batches of `50 × batch_size`, each sorted by length
/// (longest first; equal lengths keep their order), cut into batches of `batch_size`, and the
/// batches of the whole epoch are shuffled with `(seed, epoch)`, so that lengths do not decrease
/// through the epoch. `lengths[i]` is example `i`'s length. Deterministic; the last batch of a
/// mega-batch may be smaller.
pub fn bucket_batches(
    order: &[usize],
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    if batch_size == 0 {
        return Err(DataError::config("batch_size 0").with_help("use a batch size of at least 1"));
    }
    if let Some(&bad) = order.iter().find(|&&i| i >= lengths.len()) {
        return Err(DataError::config(format!(
            "example {bad} is in the order but only {} lengths are known",
            lengths.len()
        )));
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for mega in order.chunks(batch_size.saturating_mul(50)) {
        let mut sorted = mega.to_vec();
        sorted.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(sorted.chunks(batch_size).map(<[usize]>::to_vec));
    }
    let perm = epoch_permutation(batches.len(), seed ^ 0xB0C4_E75E_ED00_0001, epoch);
    let mut out = vec![Vec::new(); batches.len()];
    for (dst, &src) in perm.iter().enumerate() {
        out[dst] = std::mem::take(&mut batches[src]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32], mask: &[bool]) -> SupervisedExample {
        SupervisedExample {
            ids: ids.to_vec(),
            loss_mask: mask.to_vec(),
        }
    }

    #[test]
    fn packed_rows_shift_labels_within_each_example() {
        let a = ex(&[10, 11, 12], &[false, true, true]);
        let b = ex(&[20, 21], &[false, true]);
        let row = CausalRow::pack(&[&a, &b]);
        assert_eq!(row.input_ids, [10, 11, 12, 20, 21]);
        assert_eq!(row.labels, [11, 12, -100, 21, -100]);
        assert_eq!(row.segments, [1, 1, 1, 2, 2]);
        let batch = CausalBatch::from_rows(&[row, CausalRow::pack(&[&b])], None, 0).unwrap();
        assert_eq!(batch.shape(), [2, 5]);
        assert_eq!(batch.attention_mask, [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(batch.labels[5..], [21, -100, -100, -100, -100]);
        assert_eq!(batch.segments[5..], [1, 1, 0, 0, 0]);
        assert_eq!((batch.tokens(), batch.targets()), (7, 4));
    }

    #[test]
    fn plan_rows_is_greedy_and_refuses_long_examples() {
        assert_eq!(
            plan_rows(&[3, 4, 2, 5, 1, 1], 6).unwrap(),
            vec![vec![0], vec![1, 2], vec![3, 4], vec![5]]
        );
        assert!(plan_rows(&[7], 6).is_err());
        assert!(plan_rows(&[0], 6).is_err());
    }
}
