//! Hugging Face model folders: config.json, safetensors weights, tokenizer.json.

pub mod config;
pub mod export;
pub mod hub_cache;
pub mod safetensors;
