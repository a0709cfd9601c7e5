//! Dataset loaders, tokenisation and batching. Knows nothing of tensors: everything it produces
//! is plain Rust vectors with shapes, which the trainer turns into tensors.

pub mod error;
pub mod tokenizer;

pub use error::{DataError, ErrorKind};
pub use tokenizer::{BpeSpec, Encoding, TextTokenizer, TruncationSide};
