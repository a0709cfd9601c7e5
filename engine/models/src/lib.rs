//! Real pretrained models on libtorch: weight formats, tokenizers and architectures.
//!
//! - [`model::describe`]: architecture facts and adaptable modules from config.json or GGUF
//!   metadata, without reading tensors (for the planner and `ardpipe inspect`).
//! - [`model::load_causal_lm`] / [`model::load_encoder`]: weights onto a device, in a precision,
//!   with a [`report::LoadReport`] that fails the load when anything does not fit.
//! - [`arch::Llama`] / [`arch::Bert`]: the forward passes; every adaptable linear is an
//!   [`ardpipe_adapters::AdaptableLinear`] addressed by its Hugging Face module path. `Llama`
//!   is the decoder of every family [`arch::config::DecoderFamily`] names (Llama, Qwen2/3,
//!   Mistral, Gemma 1–3), switched by its config's features; `Bert` also builds RoBERTa.
//! - [`families`]: the supported families, as the README's table shows them.

pub mod arch;
pub mod assets;
pub mod bench;
pub mod compose;
pub mod error;
pub mod families;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod lm_loss;
pub mod model;
pub mod precision;
pub mod report;
pub mod runtime;
pub mod text;
pub mod tokenizer;
pub mod weights;

pub use error::{ModelError, Result};
pub use model::{
    LoadOptions, ModelDescription, ModelLocation, describe, load_causal_lm,
    load_decoder_classifier, load_encoder, load_vision_lm, vision_processor,
};
pub use precision::{Precision, StorageDtype};
