//! Language-model packing of plain text: documents are tokenised one at a time, joined with EOS
//! and cut into rows of `block_size` inputs with their next-token labels (a [`CausalRow`]),
//! streaming (only the current document and one block are in memory).
//!
//! The rows are those the trainer has always trained on: consecutive windows of the token stream,
//! each stream token a target exactly once. When the tokenizer puts BOS before the text it
//! encodes (SentencePiece models such as Gemma), every row starts with BOS followed by
//! `block_size - 1` stream tokens, and BOS is never a target: such models were pre-trained with
//! BOS in the first position, and without it their predictions collapse (Gemma 3 270M's
//! perplexity on Shakespeare goes from about 30 to about 180 in transformers). Without BOS a row
//! is `block_size` stream tokens predicting the next `block_size` (so consecutive rows share one
//! token: the last label of a row is the first input of the next).

use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::error::DataError;
use crate::pack::CausalRow;
use crate::record::Record;
use crate::sft::leading_specials;
use crate::store::RecordStore;
use crate::tokenizer::TextTokenizer;

/// What to do with the tokens left after the last full block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastBlock {
    /// Drop them (the usual choice: every block is full, no padding to mask).
    #[default]
    Drop,
    /// Keep them as a shorter last row, which [`crate::CausalBatch::from_rows`] pads (padding has
    /// mask 0 and label -100).
    Pad,
}

/// The BOS id when the tokenizer puts exactly BOS before every text it encodes with special
/// tokens (then every LM row starts with it).
pub fn bos_prefix(tokenizer: &TextTokenizer) -> Result<Option<u32>, DataError> {
    let Some(bos) = tokenizer.bos_id() else {
        return Ok(None);
    };
    Ok((leading_specials(tokenizer)? == [bos]).then_some(bos))
}

/// Streams LM rows ([`CausalRow`]s of `block_size` tokens, one segment each) from a stream of
/// documents; stack them with [`crate::CausalBatch::from_rows`].
///
/// Packing is deterministic for a given document order, so a resumed run rebuilds the same
/// stream and skips the rows it already trained on (`packer.skip(n)`), re-tokenising but never
/// holding the corpus. For shuffled LM training, feed an epoch's documents in the order of
/// [`crate::epoch_permutation`]: the rows of that epoch then follow the shuffled document order.
pub struct LmPacker<I> {
    docs: I,
    tokenizer: TextTokenizer,
    block_size: usize,
    eos: u32,
    bos: Option<u32>,
    last: LastBlock,
    /// The token stream read so far, from some point before `head`.
    buf: Vec<u32>,
    /// Where the next row's stream tokens start in `buf`.
    head: usize,
    exhausted: bool,
    done: bool,
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
            bos: bos_prefix(tokenizer)?,
            tokenizer: tokenizer.clone(),
            block_size,
            eos,
            last,
            buf: Vec::new(),
            head: 0,
            exhausted: false,
            done: false,
        })
    }

    fn available(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Stream tokens a full row needs from `head`: `block_size` labels, and without BOS one more
    /// token in front of them as the first input.
    fn needed(&self) -> usize {
        self.block_size + usize::from(self.bos.is_none())
    }

    /// The row over the stream tokens `buf[head..head + n]`, then advance by `block_size`.
    fn take_row(&mut self, n: usize) -> CausalRow {
        let row = window_row(&self.buf[self.head..self.head + n], self.bos);
        self.head += self.block_size;
        // Compact once the consumed prefix dominates, so memory stays ~one document + one block.
        if self.head > self.block_size && self.head * 2 > self.buf.len() {
            let cut = self.head.min(self.buf.len());
            self.buf.drain(..cut);
            self.head -= cut;
        }
        row
    }
}

impl<I: Iterator<Item = Result<Record, DataError>>> Iterator for LmPacker<I> {
    type Item = Result<CausalRow, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        while self.available() < self.needed() && !self.exhausted {
            match self.docs.next() {
                None => self.exhausted = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(doc)) => match self.tokenizer.encode(&doc.text, false) {
                    Ok(enc) => {
                        self.buf.extend_from_slice(&enc.ids);
                        self.buf.push(self.eos);
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(doc.error(e)));
                    }
                },
            }
        }
        let n = self.available();
        let needed = self.needed();
        if n >= needed {
            return Some(Ok(self.take_row(needed)));
        }
        self.done = true;
        // The tail: at least one label (and, without BOS, one input before it).
        let least = needed - self.block_size + 1;
        (self.last == LastBlock::Pad && n >= least).then(|| Ok(self.take_row(n)))
    }
}

/// The row over stream tokens `window` (what a row needs: `block_size` labels, and without BOS
/// one more token in front of them as the first input).
fn window_row(window: &[u32], bos: Option<u32>) -> CausalRow {
    let n = window.len();
    let (input_ids, labels): (Vec<i64>, Vec<i64>) = match bos {
        Some(bos) => (
            std::iter::once(bos)
                .chain(window[..n - 1].iter().copied())
                .map(i64::from)
                .collect(),
            window.iter().map(|&t| t as i64).collect(),
        ),
        None => (
            window[..n - 1].iter().map(|&t| t as i64).collect(),
            window[1..].iter().map(|&t| t as i64).collect(),
        ),
    };
    let segments = vec![1; input_ids.len()];
    CausalRow {
        input_ids,
        labels,
        segments,
    }
}

/// Tokens of records by record number, least recently used first out once over budget.
struct TokenCache {
    tokens: HashMap<usize, (Arc<Vec<u32>>, u64)>,
    by_use: BTreeMap<u64, usize>,
    held: usize,
    budget: usize,
    clock: u64,
}

impl TokenCache {
    fn get(&mut self, record: usize) -> Option<Arc<Vec<u32>>> {
        let (toks, used) = self.tokens.get_mut(&record)?;
        self.by_use.remove(used);
        self.clock += 1;
        *used = self.clock;
        self.by_use.insert(self.clock, record);
        Some(toks.clone())
    }

    fn put(&mut self, record: usize, toks: Arc<Vec<u32>>) {
        self.clock += 1;
        self.held += toks.len();
        self.tokens.insert(record, (toks, self.clock));
        self.by_use.insert(self.clock, record);
        while self.held > self.budget && self.tokens.len() > 1 {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((t, _)) = self.tokens.remove(&oldest) {
                self.held -= t.len();
            }
        }
    }
}

/// [`LmPacker`]'s rows (the same windows of the same token stream, [`LastBlock::Drop`]) by row
/// number, without holding the corpus: one pass over the records keeps where each row starts
/// (the record and the token offset in it, 8 bytes a row), and a row is rebuilt from the records
/// it spans when asked for. Tokenised records are kept up to a budget of tokens (least recently
/// used out first): a corpus within it is tokenised once, a larger one streams from the
/// [`RecordStore`] with flat memory.
pub struct TextBlocks {
    tokenizer: TextTokenizer,
    block_size: usize,
    eos: u32,
    bos: Option<u32>,
    starts: Vec<(u32, u32)>,
    cache: Mutex<TokenCache>,
}

impl TextBlocks {
    /// Index the rows of `store`'s texts; `cache_tokens` bounds the tokens kept in memory.
    pub fn index(
        store: &RecordStore,
        tokenizer: &TextTokenizer,
        block_size: usize,
        cache_tokens: usize,
    ) -> Result<Self, DataError> {
        // The same checks and constants as the streaming packer.
        let packer = LmPacker::new(std::iter::empty(), tokenizer, block_size, LastBlock::Drop)?;
        let mut me = TextBlocks {
            tokenizer: tokenizer.clone(),
            block_size,
            eos: packer.eos,
            bos: packer.bos,
            starts: Vec::new(),
            cache: Mutex::new(TokenCache {
                tokens: HashMap::new(),
                by_use: BTreeMap::new(),
                held: 0,
                budget: cache_tokens,
                clock: 0,
            }),
        };
        let too_many =
            || DataError::config("the dataset is too large to index by 32-bit positions");
        // `pos`: stream tokens before record `i`; `next`: where the next row starts.
        let (mut pos, mut next) = (0usize, 0usize);
        for i in 0..store.len() {
            let toks = me.tokens(store, i)?;
            let end = pos + toks.len();
            while next < end {
                me.starts.push((
                    u32::try_from(i).map_err(|_| too_many())?,
                    u32::try_from(next - pos).map_err(|_| too_many())?,
                ));
                next += block_size;
            }
            pos = end;
        }
        // Only full rows: `needed` stream tokens from the start.
        let needed = me.needed();
        me.starts.truncate(if pos >= needed {
            (pos - needed) / block_size + 1
        } else {
            0
        });
        Ok(me)
    }

    fn needed(&self) -> usize {
        self.block_size + usize::from(self.bos.is_none())
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Record `i`'s tokens followed by EOS, from the cache or tokenised now.
    fn tokens(&self, store: &RecordStore, i: usize) -> Result<Arc<Vec<u32>>, DataError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(i) {
            return Ok(t);
        }
        let doc = store.get(i)?;
        let mut toks = self
            .tokenizer
            .encode(&doc.text, false)
            .map_err(|e| doc.error(e))?
            .ids;
        toks.push(self.eos);
        let toks = Arc::new(toks);
        cache.put(i, toks.clone());
        Ok(toks)
    }

    /// Row `k`, as the `k`-th row [`LmPacker`] yields over the same records.
    pub fn row(&self, store: &RecordStore, k: usize) -> Result<CausalRow, DataError> {
        let &(record, offset) = self.starts.get(k).ok_or_else(|| {
            DataError::config(format!("row {k} is past the last of {} rows", self.len()))
        })?;
        let needed = self.needed();
        let mut window = Vec::with_capacity(needed);
        let (mut i, mut off) = (record as usize, offset as usize);
        while window.len() < needed {
            let toks = self.tokens(store, i)?;
            let take = (needed - window.len()).min(toks.len().saturating_sub(off));
            window.extend_from_slice(&toks[off..off + take]);
            (i, off) = (i + 1, 0);
        }
        Ok(window_row(&window, self.bos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use crate::tokenizer::{SpmFlavour, SpmSpec};

    /// A SentencePiece tokenizer over single letters; `add_bos` as given.
    fn letters(add_bos: bool) -> TextTokenizer {
        let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "\u{2581}"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        tokens.extend(('a'..='z').map(String::from));
        let mut types = vec![2, 3, 3];
        types.resize(tokens.len(), 1);
        TextTokenizer::from_spm(SpmSpec {
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
            flavour: SpmFlavour::Gemma,
        })
        .unwrap()
    }

    fn rows(tok: &TextTokenizer, block: usize, last: LastBlock) -> Vec<CausalRow> {
        let origin = Origin {
            file: std::path::Path::new("docs.txt").into(),
            line: 1,
        };
        let docs = ["abcde", "fgh"].map(|t| Ok(Record::new(t, origin.clone())));
        LmPacker::new(docs.into_iter(), tok, block, last)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The rows the trainer packed before (engine/core/src/train/batches.rs `pack_blocks`): a
    /// row is the window `[input_ids[0], labels..]` of the token stream.
    #[test]
    fn lm_rows_start_with_bos_when_the_tokenizer_adds_it() {
        let window = |r: &CausalRow| {
            let mut w = vec![r.input_ids[0]];
            w.extend(&r.labels);
            w
        };
        // Stream: a b c d e </s> f g h </s> = ids 4..=8, 2, 9..=11, 2.
        let plain = rows(&letters(false), 4, LastBlock::Drop);
        assert_eq!(
            plain.iter().map(window).collect::<Vec<_>>(),
            vec![vec![4, 5, 6, 7, 8], vec![8, 2, 9, 10, 11]]
        );
        assert_eq!(plain[1].input_ids, [8, 2, 9, 10]);
        // With BOS: every stream token is a target exactly once, each row sees BOS first.
        let with_bos = rows(&letters(true), 4, LastBlock::Drop);
        assert_eq!(
            with_bos.iter().map(window).collect::<Vec<_>>(),
            vec![vec![1, 4, 5, 6, 7], vec![1, 8, 2, 9, 10]],
            "BOS, then `block` stream tokens"
        );
        assert_eq!(with_bos[1].input_ids, [1, 8, 2, 9]);
        assert!(with_bos.iter().all(|r| r.segments == [1; 4]));
        // The tail, kept: BOS then the last two stream tokens, both targets.
        let tail = rows(&letters(true), 4, LastBlock::Pad);
        assert_eq!(tail.len(), 3);
        assert_eq!(
            (tail[2].input_ids.clone(), tail[2].labels.clone()),
            (vec![1, 11], vec![11, 2])
        );
        let tail = rows(&letters(false), 4, LastBlock::Pad);
        assert_eq!(
            (tail[2].input_ids.clone(), tail[2].labels.clone()),
            (vec![11], vec![2])
        );
    }

    /// Rows by number are the streaming packer's rows, whatever the cache keeps.
    #[test]
    fn text_blocks_by_number_are_the_packers_rows() {
        let origin = Origin {
            file: std::path::Path::new("docs.txt").into(),
            line: 1,
        };
        let texts = ["abcde", "fgh", "ijklmnopq", "r", "stuvwxyz", "ab"];
        let store = RecordStore::in_memory(
            texts
                .iter()
                .map(|t| Record::new(*t, origin.clone()))
                .collect(),
        );
        for add_bos in [false, true] {
            let tok = letters(add_bos);
            for block in [2, 3, 4, 7] {
                let docs = (0..store.len()).map(|i| store.get(i));
                let streamed: Vec<CausalRow> = LmPacker::new(docs, &tok, block, LastBlock::Drop)
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                // A cache of one record re-tokenises nearly every time; a big one never.
                for budget in [1, 1 << 20] {
                    let blocks = TextBlocks::index(&store, &tok, block, budget).unwrap();
                    assert_eq!(blocks.len(), streamed.len(), "bos {add_bos} block {block}");
                    for k in (0..blocks.len()).rev() {
                        assert_eq!(
                            blocks.row(&store, k).unwrap(),
                            streamed[k],
                            "bos {add_bos} block {block} row {k}"
                        );
                    }
                    assert!(blocks.row(&store, blocks.len()).is_err());
                }
            }
        }
    }
}
