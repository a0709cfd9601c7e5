//! Adapters that attach to the linear layers of a base model.
//!
//! The contract between models and adapters is [`AdaptableLinear`]: every linear an adapter
//! may target is one of these, addressed by its Hugging Face module path and carrying its
//! head structure, so placement (which modules, layers, heads) and the per-head ARD-LoRA
//! units can be resolved without knowing the architecture.

pub mod linear;

pub use linear::{AdaptableLinear, BaseLinear, HeadAxis, HeadLayout, LinearAdapter};
