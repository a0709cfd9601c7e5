//! GGUF files: the container, dequantisation, the Llama mapping, and a writer for tests.

pub mod container;
pub mod dequant;
pub mod llama;
pub mod writer;

pub use container::{GgufFile, TensorInfo, Value};
pub use dequant::GgmlType;
