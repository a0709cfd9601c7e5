//! Architectures in tch: one decoder for the Llama, Qwen, Mistral and Gemma families (causal LM
//! and sequence classification), the BERT family (BERT, RoBERTa, XLM-RoBERTa encoders), and
//! PaliGemma (a SigLIP vision tower and a projector in front of any of those decoders).

pub mod bert;
pub mod config;
pub mod layers;
pub mod llama;
pub mod paligemma;
pub mod seq_cls;
pub mod siglip;

pub use bert::{Bert, EncoderHead};
pub use config::{ArchConfig, BertConfig, LlamaConfig, ModuleSpec};
pub use llama::{KvCache, Llama};
pub use paligemma::{PaliGemma, PaliGemmaConfig};
pub use seq_cls::{DecoderClassifier, SequenceClassifier};
