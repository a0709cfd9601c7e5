//! A thin wrapper over Hugging Face `tokenizers`: loads a `tokenizer.json`, or rebuilds the
//! tokenizer a GGUF file's metadata describes (byte-level BPE, or SentencePiece as a BPE with byte
//! fallback) the way transformers' GGUF integration does, and exposes only what ardpipe needs.
//!
//! Padding and truncation are always off in the wrapped tokenizer (MiniLM's
//! `tokenizer.json` pads everything to 128, which silently ruins unmasked pooling). Batching does
//! its own dynamic padding; truncation is opt-in through [`TextTokenizer::with_truncation`].

use std::path::Path;

use std::collections::HashMap;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{
    AddedToken, Model, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::DataError;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// SentencePiece's word-boundary mark, `▁` (U+2581).
const SPM_SPACE: char = '\u{2581}';

/// Byte-level BPE as GGUF metadata describes it (`tokenizer.ggml.model = gpt2`).
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
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: bool,
}

/// How a SentencePiece vocabulary splits words (transformers builds one per model family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpmFlavour {
    /// Llama 2, Mistral v0.1, …: `Metaspace` with a `▁` prepended to the text (the dummy
    /// prefix), merges ranked by the file's scores (transformers' `LlamaTokenizer`).
    #[default]
    Llama,
    /// Gemma 1–3: spaces become `▁` with no dummy prefix, tokens of plain spaces are respelled
    /// with `▁`, merges ranked by position in the vocabulary (transformers' `GemmaTokenizer`).
    Gemma,
}

/// A SentencePiece BPE vocabulary as GGUF metadata describes it (`tokenizer.ggml.model = llama`),
/// rebuilt the way transformers' GGUF integration does
/// (`transformers/integrations/gguf/gguf_tokenizer_mapping.py` in the peer venv): a BPE with
/// byte fallback (`<0x00>`..`<0xFF>` tokens) whose merges are derived from the vocabulary.
#[derive(Debug, Clone, Default)]
pub struct SpmSpec {
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`, one per token (the merge ranking of the Llama flavour).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.merges` when the file has them (then scores are not needed).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte. Empty means "all normal".
    pub token_types: Vec<i32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub flavour: SpmFlavour,
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

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
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
        let mut tok = Self {
            inner,
            bos,
            eos,
            pad,
        };
        // tokenizer_config.json (next to tokenizer.json) names the real bos/eos/pad when present.
        if let Some(dir) = path.parent() {
            tok.apply_tokenizer_config(&dir.join("tokenizer_config.json"));
        }
        Ok(tok)
    }

    /// Rebuild a GGUF model's byte-level BPE tokenizer from its metadata, as transformers'
    /// GGUF integration does (`transformers/integrations/gguf/gguf_tokenizer_mapping.py` in the
    /// peer venv): tokens outside the byte alphabet are respelled in it, `tokenizer.ggml.pre`
    /// picks the split regex, ByteLevel decoder; control tokens (type 3) and the bos/eos/unk/pad
    /// tokens are special (matched whole in text, dropped by `decode(.., true)`), user-defined
    /// ones (type 4) are matched whole but kept in decoded text.
    pub fn from_bpe(spec: BpeSpec) -> Result<Self, DataError> {
        let n = spec.tokens.len();
        check_ids(
            n,
            &spec.token_types,
            [spec.bos, spec.eos, spec.unk, spec.pad],
        )?;
        let alphabet = ByteLevel::alphabet();
        let spelling = byte_spelling();
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(n);
        for (id, tok) in spec.tokens.iter().enumerate() {
            let spelled = if tok.chars().all(|c| alphabet.contains(&c)) {
                tok.clone()
            } else {
                tok.bytes().map(|b| spelling[b as usize]).collect()
            };
            // A duplicate would silently shadow an id; llama.cpp files never have one.
            if vocab.insert(spelled, id as u32).is_some() {
                return Err(DataError::tokenizer(format!(
                    "token {tok:?} appears twice in the vocabulary (again at id {id})"
                ))
                .with_help("the GGUF metadata is inconsistent; re-convert the model"));
            }
        }
        let merges = split_merges(&spec.merges)?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| DataError::tokenizer(format!("cannot build the BPE model: {e}")))?;

        let pre = bpe_pre_tokenizer(&spec.pre)?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // A control token written with characters outside the byte alphabet is a llama.cpp
        // mislabel that transformers leaves out; so does ardpipe.
        let is_spelled = |t: &str| t.chars().all(|c| alphabet.contains(&c));
        finish(
            inner,
            Specials {
                tokens: &spec.tokens,
                token_types: &spec.token_types,
                control_ok: &is_spelled,
                named: [spec.bos, spec.eos, spec.unk, spec.pad],
                extra_named: None,
                add_bos: spec.add_bos,
                add_eos: spec.add_eos,
            },
        )
    }

    /// Rebuild a GGUF model's SentencePiece tokenizer (`tokenizer.ggml.model = llama`) from its
    /// metadata, as transformers' GGUF integration does: a BPE with byte fallback whose merges
    /// come from the file or, when it has none, from every split of every token into two
    /// tokens, ranked by the token's score (Llama) or position (Gemma).
    pub fn from_spm(spec: SpmSpec) -> Result<Self, DataError> {
        let n = spec.tokens.len();
        check_ids(
            n,
            &spec.token_types,
            [spec.bos, spec.eos, spec.unk, spec.pad],
        )?;
        let tokens: Vec<String> = match spec.flavour {
            SpmFlavour::Llama => spec.tokens.clone(),
            // Gemma files store a token of two or more spaces as real spaces; its merges and
            // its pre-tokenized text spell them `▁`.
            SpmFlavour::Gemma => spec
                .tokens
                .iter()
                .map(|t| {
                    if t.contains(' ') && t.trim().is_empty() {
                        SPM_SPACE.to_string().repeat(t.chars().count())
                    } else {
                        t.clone()
                    }
                })
                .collect(),
        };
        // Later duplicates win, as in the Python dicts transformers builds.
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(n);
        for (id, tok) in tokens.iter().enumerate() {
            vocab.insert(tok.clone(), id as u32);
        }
        let merges = if !spec.merges.is_empty() {
            split_merges(&spec.merges)?
        } else {
            let rank: Vec<f64> = match spec.flavour {
                SpmFlavour::Llama => {
                    if spec.scores.len() != n {
                        return Err(DataError::tokenizer(format!(
                            "{} scores for {n} tokens and no merges",
                            spec.scores.len()
                        ))
                        .with_help(
                            "a SentencePiece GGUF needs tokenizer.ggml.scores (one per token) to \
                             rank its merges; re-convert the model",
                        ));
                    }
                    spec.scores.iter().map(|&s| s as f64).collect()
                }
                SpmFlavour::Gemma => (0..n).map(|i| -(i as f64)).collect(),
            };
            merges_from_vocab(&tokens, &vocab, &rank)
        };
        let mut builder = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .fuse_unk(true)
            .byte_fallback(true);
        if spec.flavour == SpmFlavour::Gemma && tokens.iter().any(|t| t == "<unk>") {
            builder = builder.unk_token("<unk>".into());
        }
        let bpe = builder
            .build()
            .map_err(|e| DataError::tokenizer(format!("cannot build the BPE model: {e}")))?;

        let mut inner = Tokenizer::new(bpe);
        let mut decoders: Vec<DecoderWrapper> = vec![
            Replace::new(SPM_SPACE.to_string(), " ")
                .map_err(|e| DataError::tokenizer(format!("decoder: {e}")))?
                .into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ];
        match spec.flavour {
            SpmFlavour::Llama => {
                inner.with_pre_tokenizer(Some(Metaspace::new(
                    SPM_SPACE,
                    PrependScheme::First,
                    false,
                )));
                decoders.push(Strip::new(' ', 1, 0).into());
            }
            SpmFlavour::Gemma => {
                inner.with_normalizer(Some(
                    Replace::new(" ", SPM_SPACE.to_string())
                        .map_err(|e| DataError::tokenizer(format!("normalizer: {e}")))?,
                ));
                inner.with_pre_tokenizer(Some(
                    Split::new(
                        SplitPattern::String(" ".into()),
                        SplitDelimiterBehavior::MergedWithPrevious,
                        false,
                    )
                    .map_err(|e| DataError::tokenizer(format!("pre-tokenizer: {e}")))?,
                ));
            }
        }
        inner.with_decoder(Some(DecoderSequence::new(decoders)));
        finish(
            inner,
            Specials {
                tokens: &spec.tokens,
                token_types: &spec.token_types,
                control_ok: &|_| true,
                named: [spec.bos, spec.eos, spec.unk, spec.pad],
                // GemmaTokenizer's mask token is `<mask>` unless told otherwise.
                extra_named: (spec.flavour == SpmFlavour::Gemma).then_some("<mask>"),
                add_bos: spec.add_bos,
                add_eos: spec.add_eos,
            },
        )
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
        // `id_to_token` per id: `vocab_size` builds the whole vocabulary map on every call.
        if let Some(bad) = ids.iter().find(|&&i| self.inner.id_to_token(i).is_none()) {
            return Err(DataError::tokenizer(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.vocab_size()
            ))
            .with_help("the ids come from a different model or tokenizer"));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| DataError::tokenizer(format!("cannot decode: {e}")))
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text (what `tokenizers` and transformers
    /// load), e.g. for a folder exported from a GGUF model.
    pub fn to_json(&self) -> Result<String, DataError> {
        self.inner
            .to_string(true)
            .map_err(|e| DataError::tokenizer(format!("cannot serialise the tokenizer: {e}")))
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
        let (bos, eos, pad) = (
            id_of("bos_token").or(id_of("cls_token")),
            id_of("eos_token").or(id_of("sep_token")),
            id_of("pad_token"),
        );
        self.set_special_ids(bos, eos, pad);
    }
}

/// Every id the metadata names lies in the vocabulary, and the token types (when given) cover it.
fn check_ids(n: usize, token_types: &[i32], ids: [Option<u32>; 4]) -> Result<(), DataError> {
    if n == 0 {
        return Err(DataError::tokenizer("the vocabulary is empty")
            .with_help("tokenizer.ggml.tokens must list every token"));
    }
    if !token_types.is_empty() && token_types.len() != n {
        return Err(DataError::tokenizer(format!(
            "{} token types for {n} tokens",
            token_types.len()
        ))
        .with_help("tokenizer.ggml.token_type must have one entry per token"));
    }
    for (what, id) in ["bos", "eos", "unk", "pad"].into_iter().zip(ids) {
        if let Some(id) = id
            && id as usize >= n
        {
            return Err(DataError::tokenizer(format!(
                "{what} token id {id} is outside the vocabulary of {n} tokens"
            ))
            .with_help("the GGUF metadata is inconsistent; re-convert the model"));
        }
    }
    Ok(())
}

/// GPT-2's visible spelling of each byte (`bytes_to_unicode`).
fn byte_spelling() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u32 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        out[b as usize] = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\0')
        };
    }
    out
}

fn split_merges(merges: &[String]) -> Result<Vec<(String, String)>, DataError> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    DataError::tokenizer(format!(
                        "merge #{i} {m:?} is not two tokens separated by a space"
                    ))
                    .with_help("tokenizer.ggml.merges entries look like \"Ġ t\"")
                })
        })
        .collect()
}

/// The split regexes of transformers' GGUF integration, by `tokenizer.ggml.pre`
/// (`GGUF_PRE_TOKENIZER_SPLITS` in `transformers/integrations/gguf/gguf_tokenizer_mapping.py`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SPLITS: &[(&str, &str)] = &[
    ("llama3", LLAMA3_SPLIT),
    ("llama-v3", LLAMA3_SPLIT),
    ("llama-bpe", LLAMA3_SPLIT),
    ("falcon3", LLAMA3_SPLIT),
    ("pixtral", LLAMA3_SPLIT),
    ("dbrx", LLAMA3_SPLIT),
    ("smaug-bpe", LLAMA3_SPLIT),
    ("tekken", TEKKEN_SPLIT),
    ("qwen2", QWEN2_SPLIT),
    ("deepseek-r1-qwen", QWEN2_SPLIT),
    ("megrez", QWEN2_SPLIT),
    ("gpt-4o", GPT4O_SPLIT),
    ("llama4", GPT4O_SPLIT),
];
/// Flavours that split digits one by one, then apply the GPT-2 byte-level regex (the SmolLM,
/// StarCoder and Refact models' own `tokenizer.json`, and llama.cpp's reading of them).
const DIGITS_THEN_BYTE_LEVEL: &[&str] = &["smollm", "starcoder", "refact"];
/// Flavours that are the plain GPT-2 byte-level regex.
const BYTE_LEVEL_ONLY: &[&str] = &["gpt2"];

/// The `tokenizer.ggml.pre` names ardpipe rebuilds.
pub fn supported_bpe_pre_tokenizers() -> Vec<&'static str> {
    SPLITS
        .iter()
        .map(|(n, _)| *n)
        .chain(DIGITS_THEN_BYTE_LEVEL.iter().copied())
        .chain(BYTE_LEVEL_ONLY.iter().copied())
        .collect()
}

fn bpe_pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, DataError> {
    if let Some((_, regex)) = SPLITS.iter().find(|(n, _)| *n == pre) {
        let split = Split::new(
            SplitPattern::Regex((*regex).into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| DataError::tokenizer(format!("pre-tokenizer `{pre}`: {e}")))?;
        return Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ])
        .into());
    }
    let byte_level = ByteLevel::new(false, true, true);
    if DIGITS_THEN_BYTE_LEVEL.contains(&pre) {
        Ok(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into())
    } else if BYTE_LEVEL_ONLY.contains(&pre) {
        Ok(byte_level.into())
    } else {
        Err(
            DataError::tokenizer(format!("unsupported BPE pre-tokenizer `{pre}`")).with_help(
                format!(
                    "supported tokenizer.ggml.pre values: {}; for other models use the model's \
                     Hugging Face folder with its tokenizer.json",
                    supported_bpe_pre_tokenizers().join(", ")
                ),
            ),
        )
    }
}

/// transformers' `generate_merges` (`transformers/tokenization_utils_base.py`): every split of
/// every token into two tokens of the vocabulary, ordered by the token's rank (highest first),
/// then the longer left and right parts; within one token by the parts' ids. Stable like
/// Python's `sorted`. `rank[i]` belongs to `tokens[i]`; for a repeated token the first position
/// orders it and the last rank counts, as in a Python dict.
fn merges_from_vocab(
    tokens: &[String],
    vocab: &tokenizers::models::bpe::Vocab,
    rank: &[f64],
) -> Vec<(String, String)> {
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut last_rank: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (t, &r) in tokens.iter().zip(rank) {
        if last_rank.insert(t.as_str(), r).is_none() {
            order.push(t);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for merge in order {
        let score = last_rank[merge];
        let mut local: Vec<(&str, &str, f64)> = merge
            .char_indices()
            .skip(1)
            .map(|(at, _)| merge.split_at(at))
            .filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r))
            .map(|(l, r)| (l, r, score))
            .collect();
        local.sort_by_key(|(l, r, _)| (vocab[*l], vocab[*r]));
        merges.extend(local);
    }
    merges.sort_by(|a, b| {
        let key = |m: &(&str, &str, f64)| (m.2, m.0.chars().count(), m.1.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.partial_cmp(&ka.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(kb.1.cmp(&ka.1))
            .then(kb.2.cmp(&ka.2))
    });
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

/// Which tokens of a GGUF vocabulary are added tokens, and what the post-processor adds.
struct Specials<'a> {
    tokens: &'a [String],
    token_types: &'a [i32],
    /// Whether a control token may become a special token.
    control_ok: &'a dyn Fn(&str) -> bool,
    /// bos, eos, unk, pad.
    named: [Option<u32>; 4],
    /// A special token the tokenizer class names by default, when the vocabulary has it.
    extra_named: Option<&'a str>,
    add_bos: bool,
    add_eos: bool,
}

/// Added tokens as transformers adds them: control tokens special, user-defined tokens (when the
/// vocabulary has them) plain, then the named special tokens not yet added; both never
/// normalised. Then the bos/eos post-processor.
fn finish(mut inner: Tokenizer, s: Specials<'_>) -> Result<TextTokenizer, DataError> {
    // The named special tokens: transformers skips them when decoding, whatever their type.
    let named: Vec<String> = s
        .named
        .iter()
        .flatten()
        .map(|&id| s.tokens[id as usize].clone())
        .chain(
            s.extra_named
                .filter(|t| s.tokens.iter().any(|x| x == t))
                .map(str::to_string),
        )
        .filter(|t| inner.get_model().token_to_id(t).is_some())
        .collect();
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (id, ty) in s.token_types.iter().enumerate() {
        let content = &s.tokens[id];
        match *ty {
            TOKEN_TYPE_CONTROL if (s.control_ok)(content) => {
                special.push(AddedToken::from(content.clone(), true))
            }
            TOKEN_TYPE_USER_DEFINED if inner.get_model().token_to_id(content).is_some() => {
                if named.contains(content) {
                    special.push(AddedToken::from(content.clone(), true))
                } else {
                    user.push(AddedToken::from(content.clone(), false).normalized(false))
                }
            }
            _ => {}
        }
    }
    inner.add_special_tokens(&special);
    inner.add_tokens(&user);
    let added: std::collections::HashSet<String> = inner
        .get_added_tokens_decoder()
        .values()
        .map(|t| t.content.clone())
        .collect();
    let named = named
        .into_iter()
        .filter(|t| !added.contains(t))
        .map(|t| AddedToken::from(t, true))
        .collect::<Vec<_>>();
    inner.add_special_tokens(&named);

    let [bos, eos, _unk, pad] = s.named;
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Vec::new();
    for (key, want, id, what) in [
        ("BOS", s.add_bos, bos, "bos"),
        ("EOS", s.add_eos, eos, "eos"),
    ] {
        if !want {
            continue;
        }
        let Some(id) = id else {
            return Err(DataError::tokenizer(format!(
                "add_{what}_token is set but the metadata names no {what} token"
            ))
            .with_help(format!(
                "set tokenizer.ggml.{what}_token_id or clear tokenizer.ggml.add_{what}_token"
            )));
        };
        // Template token names must not contain spaces or ':', so use a neutral key.
        specials.push(
            SpecialToken::new(key.into(), vec![id], vec![s.tokens[id as usize].clone()])
                .map_err(|e| DataError::tokenizer(format!("{what} token: {e}")))?,
        );
    }
    if !specials.is_empty() {
        let (b, e) = (s.add_bos, s.add_eos);
        let part = |seq: &str, ty: u32| {
            let mut v = Vec::new();
            if b {
                v.push(format!("BOS:{ty}"));
            }
            v.push(format!("${seq}:{ty}"));
            if e {
                v.push(format!("EOS:{ty}"));
            }
            v
        };
        single.extend(part("A", 0));
        pair.extend(part("A", 0));
        pair.extend(part("B", 1));
        let template = TemplateProcessing::builder()
            .try_single(single.join(" "))
            .and_then(|t| t.try_pair(pair.join(" ")))
            .map_err(|e| DataError::tokenizer(format!("bos/eos template: {e}")))?
            .special_tokens(specials)
            .build()
            .map_err(|e| DataError::tokenizer(format!("bos/eos template: {e}")))?;
        inner.with_post_processor(Some(template));
    }
    Ok(TextTokenizer {
        inner,
        bos,
        eos,
        pad,
    })
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
            add_eos: false,
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
                    pre: "deepseek-llm".into(),
                    ..base.clone()
                },
                "deepseek-llm",
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
