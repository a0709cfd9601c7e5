//! Dataset loaders, tokenisation and batching. Knows nothing of tensors.
