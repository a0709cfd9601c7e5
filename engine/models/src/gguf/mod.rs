//! GGUF files: the container, dequantisation, the per-architecture mapping to Hugging Face
//! decoders, the tokenizer metadata, and a writer for tests.

pub mod arch;
pub mod container;
pub mod dequant;
pub mod llama;
pub mod writer;

pub use arch::{GgufArch, GgufSource, decoder_config};
pub use container::{GgufFile, TensorInfo, Value};
pub use dequant::GgmlType;
