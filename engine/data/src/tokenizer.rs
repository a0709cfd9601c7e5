//! A thin wrapper over Hugging Face `tokenizers`: loads a `tokenizer.json`, or rebuilds a byte-level
//! BPE tokenizer from the metadata a GGUF file carries, and exposes only what ardpipe needs.
//!
//! Padding and truncation are always off in the wrapped tokenizer (MiniLM's
//! `tokenizer.json` pads everything to 128, which silently ruins unmasked pooling). Batching does
//! its own dynamic padding; truncation is opt-in through [`TextTokenizer::with_truncation`].

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{
    AddedToken, PreTokenizerWrapper, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

use crate::error::DataError;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Byte-level BPE as GGUF metadata describes it (`tokenizer.ggml.*`).
#[derive(Debug, Clone, Default)]
pub struct BpeSpec {
    /// `tokenizer.ggml.tokens`: token text by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges`: `"a b"` strings, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 3 control (special), 4 user-defined, …
    /// Empty means "all normal".
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.pre`, the pre-tokenizer flavour, e.g. `smollm`.
    pub pre: String,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
}

/// Token ids of one encoded text (or text pair), with the segment ids BERT-style models need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// Which end of an over-long sequence to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationSide {
    Left,
    #[default]
    Right,
}

/// Pre-tokenizer flavours that are "split digits one by one, then GPT-2 byte-level regex".
const DIGITS_THEN_BYTE_LEVEL: &[&str] = &["smollm", "starcoder", "refact"];
/// Flavours that are the plain GPT-2 byte-level regex.
const BYTE_LEVEL_ONLY: &[&str] = &["gpt2"];

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    unk: Option<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .finish()
    }
}

impl TextTokenizer {
    /// Load a Hugging Face `tokenizer.json`. Padding and truncation are switched off.
    pub fn from_file(path: &Path) -> Result<Self, DataError> {
        if !path.exists() {
            return Err(DataError::tokenizer("tokenizer file not found")
                .in_file(path)
                .with_help(
                    "a Hugging Face model folder needs its tokenizer.json next to config.json",
                ));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| {
            DataError::tokenizer(format!("cannot load tokenizer: {e}"))
                .in_file(path)
                .with_help("the file must be a Hugging Face tokenizer.json (tokenizers format)")
        })?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| DataError::tokenizer(format!("cannot disable truncation: {e}")))?;

        let bos = find_first(
            &inner,
            &["<s>", "<|begin_of_text|>", "<|im_start|>", "[CLS]"],
        );
        let eos = find_first(&inner, &["</s>", "<|end_of_text|>", "<|im_end|>", "[SEP]"]);
        let pad = find_first(&inner, &["[PAD]", "<pad>", "<|pad|>"]);
        let unk = find_first(&inner, &["[UNK]", "<unk>"]);
        let mut tok = Self {
            inner,
            bos,
            eos,
            pad,
            unk,
        };
        // tokenizer_config.json (next to tokenizer.json) names the real bos/eos/pad when present.
        if let Some(dir) = path.parent() {
            tok.apply_tokenizer_config(&dir.join("tokenizer_config.json"));
        }
        Ok(tok)
    }

    /// Rebuild a GGUF model's byte-level BPE tokenizer from its metadata.
    ///
    /// Pre-tokenizer Digits(individual) then ByteLevel(add_prefix_space = false, regex) for the
    /// `smollm` family, ByteLevel decoder; control tokens (type 3) are special tokens, so they are
    /// matched as a whole in text and dropped by `decode(.., skip_special_tokens = true)`.
    pub fn from_bpe(spec: BpeSpec) -> Result<Self, DataError> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(DataError::tokenizer("the BPE vocabulary is empty")
                .with_help("tokenizer.ggml.tokens must list every token"));
        }
        if !spec.token_types.is_empty() && spec.token_types.len() != n {
            return Err(DataError::tokenizer(format!(
                "{} token types for {n} tokens",
                spec.token_types.len()
            ))
            .with_help("tokenizer.ggml.token_type must have one entry per token"));
        }
        for (what, id) in [
            ("bos", spec.bos),
            ("eos", spec.eos),
            ("unk", spec.unk),
            ("pad", spec.pad),
        ] {
            if let Some(id) = id
                && id as usize >= n
            {
                return Err(DataError::tokenizer(format!(
                    "{what} token id {id} is outside the vocabulary of {n} tokens"
                ))
                .with_help("the GGUF metadata is inconsistent; re-convert the model"));
            }
        }

        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(n);
        for (id, tok) in spec.tokens.iter().enumerate() {
            // A duplicate would silently shadow an id; llama.cpp files never have one.
            if vocab.insert(tok.clone(), id as u32).is_some() {
                return Err(DataError::tokenizer(format!(
                    "token {tok:?} appears twice in the vocabulary (again at id {id})"
                ))
                .with_help("the GGUF metadata is inconsistent; re-convert the model"));
            }
        }
        let mut merges = Vec::with_capacity(spec.merges.len());
        for (i, m) in spec.merges.iter().enumerate() {
            let Some((a, b)) = m.split_once(' ') else {
                return Err(DataError::tokenizer(format!(
                    "merge #{i} {m:?} is not two tokens separated by a space"
                ))
                .with_help("tokenizer.ggml.merges entries look like \"Ġ t\""));
            };
            merges.push((a.to_string(), b.to_string()));
        }
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges);
        if let Some(unk) = spec.unk {
            builder = builder.unk_token(spec.tokens[unk as usize].clone());
        }
        let bpe = builder
            .build()
            .map_err(|e| DataError::tokenizer(format!("cannot build the BPE model: {e}")))?;

        let byte_level = ByteLevel::new(false, true, true);
        let pre: PreTokenizerWrapper = if DIGITS_THEN_BYTE_LEVEL.contains(&spec.pre.as_str()) {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        } else if BYTE_LEVEL_ONLY.contains(&spec.pre.as_str()) {
            byte_level.into()
        } else {
            let known: Vec<_> = DIGITS_THEN_BYTE_LEVEL
                .iter()
                .chain(BYTE_LEVEL_ONLY)
                .copied()
                .collect();
            return Err(DataError::tokenizer(format!(
                "unsupported BPE pre-tokenizer `{}`",
                spec.pre
            ))
            .with_help(format!(
                "supported tokenizer.ggml.pre values: {}; for other models use the model's \
                 Hugging Face folder with its tokenizer.json",
                known.join(", ")
            )));
        };

        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let mut special = Vec::new();
        let mut user = Vec::new();
        for (id, ty) in spec.token_types.iter().enumerate() {
            let content = spec.tokens[id].clone();
            match *ty {
                TOKEN_TYPE_CONTROL => special.push(AddedToken::from(content, true)),
                TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(content, false)),
                _ => {}
            }
        }
        inner.add_special_tokens(&special);
        inner.add_tokens(&user);

        if spec.add_bos {
            let Some(bos) = spec.bos else {
                return Err(DataError::tokenizer(
                    "add_bos_token is set but the metadata names no bos token",
                )
                .with_help("set tokenizer.ggml.bos_token_id or clear add_bos_token"));
            };
            // Template token names must not contain spaces or ':', so use a neutral key.
            let bos_tok = SpecialToken::new(
                "BOS".into(),
                vec![bos],
                vec![spec.tokens[bos as usize].clone()],
            )
            .map_err(|e| DataError::tokenizer(format!("bos token: {e}")))?;
            let template = TemplateProcessing::builder()
                .try_single("BOS:0 $A:0")
                .and_then(|b| b.try_pair("BOS:0 $A:0 BOS:1 $B:1"))
                .map_err(|e| DataError::tokenizer(format!("bos template: {e}")))?
                .special_tokens(vec![bos_tok])
                .build()
                .map_err(|e| DataError::tokenizer(format!("bos template: {e}")))?;
            inner.with_post_processor(Some(template));
        }

        Ok(Self {
            inner,
            bos: spec.bos,
            eos: spec.eos,
            pad: spec.pad,
            unk: spec.unk,
        })
    }

    /// A copy that truncates encodings to `max_length` tokens (special tokens included), cutting
    /// the `side` end; pairs lose tokens from the longer text first.
    pub fn with_truncation(
        &self,
        max_length: usize,
        side: TruncationSide,
    ) -> Result<Self, DataError> {
        let specials = self
            .inner
            .get_post_processor()
            .map(|p| tokenizers::PostProcessor::added_tokens(p, true))
            .unwrap_or(0);
        if max_length <= specials {
            return Err(DataError::config(format!(
                "max_length {max_length} leaves no room for text: this tokenizer adds up to \
                 {specials} special tokens"
            ))
            .with_help(format!("use a max_length above {specials}")));
        }
        let mut copy = self.clone();
        copy.inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: match side {
                    TruncationSide::Left => TruncationDirection::Left,
                    TruncationSide::Right => TruncationDirection::Right,
                },
            }))
            .map_err(|e| DataError::config(format!("truncation: {e}")))?;
        Ok(copy)
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoding, DataError> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| DataError::tokenizer(format!("cannot encode text: {e}")))?;
        Ok(convert(&enc))
    }

    pub fn encode_pair(
        &self,
        a: &str,
        b: &str,
        add_special_tokens: bool,
    ) -> Result<Encoding, DataError> {
        let enc = self
            .inner
            .encode((a, b), add_special_tokens)
            .map_err(|e| DataError::tokenizer(format!("cannot encode text pair: {e}")))?;
        Ok(convert(&enc))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, DataError> {
        let size = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= size) {
            return Err(DataError::tokenizer(format!(
                "token id {bad} is outside the vocabulary of {size} tokens"
            ))
            .with_help("the ids come from a different model or tokenizer"));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| DataError::tokenizer(format!("cannot decode: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included (an embedding table needs at least this many rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    /// Whether `id` is a special (control) token, e.g. to stop generation or to skip it in output.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    /// Override the special ids (e.g. from a model's config) when the file's guesses are wrong.
    pub fn set_special_ids(&mut self, bos: Option<u32>, eos: Option<u32>, pad: Option<u32>) {
        if bos.is_some() {
            self.bos = bos;
        }
        if eos.is_some() {
            self.eos = eos;
        }
        if pad.is_some() {
            self.pad = pad;
        }
    }

    fn apply_tokenizer_config(&mut self, path: &Path) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&text) else {
            return;
        };
        // Values are either a plain string or an AddedToken object with "content".
        let id_of = |key: &str| -> Option<u32> {
            let v = cfg.get(key)?;
            let s = v
                .as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            self.inner.token_to_id(s)
        };
        let (bos, eos, pad, unk) = (
            id_of("bos_token").or(id_of("cls_token")),
            id_of("eos_token").or(id_of("sep_token")),
            id_of("pad_token"),
            id_of("unk_token"),
        );
        self.set_special_ids(bos, eos, pad);
        if unk.is_some() {
            self.unk = unk;
        }
    }
}

fn find_first(tok: &Tokenizer, candidates: &[&str]) -> Option<u32> {
    candidates.iter().find_map(|c| tok.token_to_id(c))
}

fn convert(enc: &tokenizers::Encoding) -> Encoding {
    Encoding {
        ids: enc.get_ids().to_vec(),
        type_ids: enc.get_type_ids().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny byte-level vocabulary: 3 control tokens, the byte characters needed, and merges.
    /// `Ġ` is byte-level BPE's visible form of the space byte.
    fn tiny(pre: &str, add_bos: bool) -> TextTokenizer {
        let tokens: Vec<String> = [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "T",
            "h",
            "e",
            "Ġ",
            "c",
            "a",
            "t",
            "1",
            "2",
            "Th",
            "The",
            "Ġc",
            "Ġca",
            "Ġcat",
            "12",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let merges = ["T h", "Th e", "Ġ c", "Ġc a", "Ġca t", "1 2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut token_types = vec![1; tokens.len()];
        token_types[..3].fill(3);
        TextTokenizer::from_bpe(BpeSpec {
            tokens,
            merges,
            token_types,
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            pad: None,
            pre: pre.into(),
            add_bos,
        })
        .unwrap()
    }

    #[test]
    fn merges_apply_and_digits_split_one_by_one() {
        let tok = tiny("smollm", false);
        // "The", "Ġcat", "Ġ", then each digit alone: Digits(individual) runs before byte level,
        // so the "1 2" merge never applies.
        assert_eq!(
            tok.encode("The cat 12", true).unwrap().ids,
            [13, 16, 6, 10, 11]
        );
        // Plain GPT-2 splitting keeps " 12" together and the merge applies.
        let gpt2 = tiny("gpt2", false);
        assert_eq!(
            gpt2.encode("The cat 12", true).unwrap().ids,
            [13, 16, 6, 17]
        );
    }

    #[test]
    fn control_tokens_are_special() {
        let tok = tiny("smollm", false);
        let ids = tok
            .encode("<|im_start|>The cat<|im_end|>", true)
            .unwrap()
            .ids;
        assert_eq!(ids, [1, 13, 16, 2]);
        assert_eq!(tok.decode(&ids, true).unwrap(), "The cat");
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            "<|im_start|>The cat<|im_end|>"
        );
        assert!(tok.is_special(2) && !tok.is_special(13));
        assert_eq!(
            (tok.bos_id(), tok.eos_id(), tok.pad_id()),
            (Some(1), Some(2), None)
        );
        assert_eq!(tok.vocab_size(), 18);
        assert_eq!(tok.token_to_id("Ġcat"), Some(16));
        assert_eq!(tok.id_to_token(13).as_deref(), Some("The"));
    }

    #[test]
    fn add_bos_prepends_only_with_special_tokens() {
        let tok = tiny("smollm", true);
        assert_eq!(tok.encode("The", true).unwrap().ids, [1, 13]);
        assert_eq!(tok.encode("The", false).unwrap().ids, [13]);
        let pair = tok.encode_pair("The", " cat", true).unwrap();
        assert_eq!(pair.ids, [1, 13, 1, 16]);
        assert_eq!(pair.type_ids, [0, 0, 1, 1]);
    }

    #[test]
    fn bad_specs_are_errors_not_panics() {
        let base = BpeSpec {
            tokens: vec!["a".into(), "b".into(), "ab".into()],
            merges: vec!["a b".into()],
            pre: "smollm".into(),
            ..Default::default()
        };
        assert!(TextTokenizer::from_bpe(base.clone()).is_ok());

        let cases: Vec<(BpeSpec, &str)> = vec![
            (
                BpeSpec {
                    tokens: vec![],
                    ..base.clone()
                },
                "empty",
            ),
            (
                BpeSpec {
                    merges: vec!["ab".into()],
                    ..base.clone()
                },
                "merge #0",
            ),
            (
                BpeSpec {
                    token_types: vec![1],
                    ..base.clone()
                },
                "token types",
            ),
            (
                BpeSpec {
                    eos: Some(9),
                    ..base.clone()
                },
                "eos token id 9",
            ),
            (
                BpeSpec {
                    pre: "llama-bpe".into(),
                    ..base.clone()
                },
                "llama-bpe",
            ),
            (
                BpeSpec {
                    add_bos: true,
                    ..base.clone()
                },
                "bos",
            ),
            (
                BpeSpec {
                    tokens: vec!["a".into(), "a".into()],
                    ..base.clone()
                },
                "twice",
            ),
        ];
        for (spec, needle) in cases {
            let err = TextTokenizer::from_bpe(spec).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Tokenizer);
            assert!(err.to_string().contains(needle), "{needle}: {err}");
            assert!(err.help.is_some() || needle == "bos", "{err}");
        }
    }
}
