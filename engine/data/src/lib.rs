//! Dataset loaders, tokenisation and batching. Knows nothing of tensors: everything it produces
//! is plain Rust vectors with shapes, which the trainer turns into tensors.
//!
//! The flow: [`DatasetSpec`] → [`DatasetReader`] (a built-in loader or any [`RecordSource`], with
//! preprocessing and the error policy) → [`Record`]s (or a [`RecordStore`] index of them) →
//! [`fraction_split`] / [`LabelVocab`] → [`epoch_permutation`] → [`ClassificationBatcher`] per
//! batch, [`LmPacker`] for raw text, or [`SupervisedEncoder`] and [`plan_rows`] /
//! [`bucket_batches`] for prompt/completion and chat data, [`VisionEncoder`] and
//! [`VisionBatch`] for image questions (PaliGemma).

pub mod batch;
pub mod chat;
pub mod error;
pub mod image;
pub mod labels;
pub mod lm;
pub mod loaders;
pub mod pack;
pub mod reader;
pub mod record;
pub mod sft;
pub mod shuffle;
pub mod spec;
pub mod split;
pub mod store;
pub mod tokenizer;
pub mod vision;

pub use batch::{ClassBatch, ClassificationBatcher};
pub use error::{DataError, ErrorKind};
pub use labels::LabelVocab;
pub use lm::{LastBlock, LmPacker, TextBlocks, bos_prefix};
pub use pack::{CausalBatch, CausalRow, IGNORE_INDEX, bucket_batches, plan_rows};
pub use reader::{DatasetReader, Loaded, SkipReport, collect, judge, load};
pub use record::{Origin, Record, RecordSource, Turns};
pub use sft::{
    Encoded, NoAnswerLeft, SupervisedEncoder, SupervisedExample, TrainOn, leading_specials,
};
pub use shuffle::{Rng, derive_seed, epoch_permutation};
pub use spec::RecordKind;
pub use spec::{DatasetSpec, FieldMap, Format, OnError, Preprocess, TextMode};
pub use split::{FractionSplit, fraction_split};
pub use store::RecordStore;
pub use tokenizer::{
    BpeSpec, Encoding, SpmFlavour, SpmSpec, TextTokenizer, TruncationSide,
    supported_bpe_pre_tokenizers,
};
pub use vision::{VisionBatch, VisionEncoder, VisionExample, class_prompt};
