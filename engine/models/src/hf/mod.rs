//! Hugging Face model folders: config.json, safetensors weights, tokenizer.json.

pub mod config;
pub mod export;
pub mod safetensors;
