//! Architectures in tch: the Llama family (causal LM) and the BERT family (encoders).

pub mod bert;
pub mod config;
pub mod layers;
pub mod llama;
pub mod seq_cls;

pub use bert::{Bert, EncoderHead};
pub use config::{ArchConfig, BertConfig, LlamaConfig, ModuleSpec};
pub use llama::{KvCache, Llama};
pub use seq_cls::{DecoderClassifier, SequenceClassifier};
