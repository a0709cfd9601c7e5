//! The ardpipe plugin SDK: a versioned C ABI for data loaders and metrics.
