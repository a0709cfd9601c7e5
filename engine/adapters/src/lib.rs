//! Adapters that attach to the linear layers of a base model.
//!
//! The contract between models and adapters is [`AdaptableLinear`]: every linear an adapter
//! may target is one of these, addressed by its Hugging Face module path and carrying its
//! head structure, so placement (which modules, layers, heads) and the per-head ARD-LoRA
//! units can be resolved without knowing the architecture.
//!
//! Methods: [`ard::ArdLora`] (the product's method), [`lora::Lora`], [`dora::Dora`],
//! [`adalora::AdaLora`] with its [`adalora::RankAllocator`], and [`full::Full`]. Optimisers with
//! explicit state live in [`optim`]; PEFT export types in [`peft`].

pub mod adalora;
pub mod ard;
pub mod config;
pub mod dora;
pub mod error;
pub mod full;
mod init;
pub mod linear;
pub mod lora;
pub mod ops;
pub mod optim;
pub mod peft;
pub mod profile;

pub use config::{
    AdaLoraConfig, AlphaUpdate, ArdLoraConfig, DoraConfig, FullConfig, LoraConfig, MethodConfig,
    TvMode,
};
pub use error::{AdapterError, Result};
pub use linear::{AdaptableLinear, BaseLinear, HeadAxis, HeadLayout, LinearAdapter, ParamRole};

/// Attach the configured method to `linear` (replacing any adapter it had).
pub fn attach(linear: &mut AdaptableLinear, method: &MethodConfig) -> Result<()> {
    match method {
        MethodConfig::ArdLora(c) => ard::ArdLora::attach(linear, c),
        MethodConfig::Lora(c) => lora::Lora::attach(linear, c),
        MethodConfig::Dora(c) => dora::Dora::attach(linear, c),
        MethodConfig::Adalora(c) => adalora::AdaLora::attach(linear, c),
        MethodConfig::Full(c) => full::Full::attach(linear, c),
        MethodConfig::HeadOnly => Err(error::config_err(
            "method",
            format!(
                "`head_only` adapts no module, yet it was attached to `{}`",
                linear.path
            ),
            "attach no linear for a `head_only` adapter: only the task head trains",
        )),
    }
}
