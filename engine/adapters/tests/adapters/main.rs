//! Unit tests of the adapters and optimisers on small seeded random tensors (CPU).

mod adalora;
mod ard;
mod ard_update;
mod common;
mod dora;
mod lora_full;
mod optim;
