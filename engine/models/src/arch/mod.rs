//! Architectures in tch: one decoder for the Llama, Qwen, Mistral and Gemma families (causal LM
//! and sequence classification) and the BERT family (BERT, RoBERTa, XLM-RoBERTa encoders).

pub mod bert;
pub mod config;
pub mod layers;
pub mod llama;
pub mod seq_cls;

pub use bert::{Bert, EncoderHead};
pub use config::{ArchConfig, BertConfig, LlamaConfig, ModuleSpec};
pub use llama::{KvCache, Llama};
pub use seq_cls::{DecoderClassifier, SequenceClassifier};
