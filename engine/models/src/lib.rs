//! Real pretrained models on libtorch: weight formats, tokenizers and architectures.

pub mod assets;
pub mod runtime;
