//! Storage dtype of frozen weights, mixed-precision compute (autocast) and devices.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::error::{ModelError, Result};

/// The dtype frozen base weights are kept in (norms stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl StorageDtype {
    pub fn kind(self) -> Kind {
        match self {
            StorageDtype::F32 => Kind::Float,
            StorageDtype::Bf16 => Kind::BFloat16,
            StorageDtype::F16 => Kind::Half,
        }
    }
}

impl FromStr for StorageDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "float16" => Ok(Self::F16),
            _ => Err(format!("unknown dtype `{s}` (expected f32, bf16 or f16)")),
        }
    }
}

/// How a model computes: the storage dtype of frozen weights and an optional autocast dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Precision {
    pub storage: StorageDtype,
    /// `Some(Bf16)`: matmuls run in bf16 under libtorch's autocast, reductions stay f32.
    pub autocast: Option<StorageDtype>,
}

impl Default for Precision {
    fn default() -> Self {
        Self::F32
    }
}

impl Precision {
    pub const F32: Precision = Precision {
        storage: StorageDtype::F32,
        autocast: None,
    };
    /// bf16 weights and bf16 autocast: half the memory, bf16 matmuls (fast with avx512_bf16/AMX).
    pub const BF16: Precision = Precision {
        storage: StorageDtype::Bf16,
        autocast: Some(StorageDtype::Bf16),
    };

    /// Reduced-precision storage needs autocast: an f32 activation cannot meet a bf16 weight.
    pub fn validate(&self) -> Result<()> {
        if self.storage != StorageDtype::F32 && self.autocast.is_none() {
            return Err(ModelError::Usage(format!(
                "storage dtype {:?} needs autocast (f32 activations cannot multiply {:?} weights): \
                 turn on bf16 autocast or store weights in f32",
                self.storage, self.storage
            )));
        }
        if self.autocast == Some(StorageDtype::F32) {
            return Err(ModelError::Usage(
                "autocast to f32 is no autocast: leave autocast off".into(),
            ));
        }
        Ok(())
    }
}

/// Parse `cpu`, `cuda` or `cuda:N`, loading the CUDA backend when asked for.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ if s == "cuda" || s.starts_with("cuda:") => {
            let idx: usize = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n.parse().map_err(|_| {
                    ModelError::Usage(format!("bad device `{s}` (cuda:N expected)"))
                })?,
            };
            crate::runtime::enable_cuda().map_err(ModelError::Usage)?;
            let n = tch::Cuda::device_count() as usize;
            if idx >= n {
                return Err(ModelError::Usage(format!(
                    "device {s} does not exist: {n} CUDA device(s) visible"
                )));
            }
            Ok(Device::Cuda(idx))
        }
        _ => Err(ModelError::Usage(format!(
            "unknown device `{s}` (expected cpu, cuda or cuda:N)"
        ))),
    }
}

/// Whether this CPU multiplies bf16 natively (avx512_bf16 or AMX); without it bf16 still works
/// but is emulated and slower than f32.
pub fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines().filter(|l| l.starts_with("flags")).any(|l| {
                l.split_whitespace()
                    .any(|f| f == "avx512_bf16" || f == "amx_bf16")
            })
        })
        .unwrap_or(false)
}

unsafe extern "C" {
    fn ardpipe_autocast_set(device: i32, enabled: i32, dtype: i32) -> i32;
    fn ardpipe_autocast_enabled(device: i32) -> i32;
    fn ardpipe_autocast_enter() -> i32;
    fn ardpipe_autocast_exit() -> i32;
}

/// An autocast region: libtorch's autocast is on for the device until the guard drops.
pub struct AutocastGuard {
    device: i32,
    previous: bool,
}

fn scalar_type(kind: Kind) -> i32 {
    match kind {
        Kind::Half => 5,
        Kind::BFloat16 => 15,
        _ => 6,
    }
}

/// Enter autocast for `device` with `dtype`; `None` returns a guard that does nothing.
pub fn autocast(device: Device, dtype: Option<StorageDtype>) -> Option<AutocastGuard> {
    let dtype = dtype?;
    let dev = if device.is_cuda() { 1 } else { 0 };
    // SAFETY: plain C functions over libtorch's thread-local autocast state; they catch all
    // C++ exceptions and report -1.
    let prev = unsafe { ardpipe_autocast_set(dev, 1, scalar_type(dtype.kind())) };
    unsafe { ardpipe_autocast_enter() };
    Some(AutocastGuard {
        device: dev,
        previous: prev == 1,
    })
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in `autocast`.
        unsafe {
            ardpipe_autocast_exit();
            ardpipe_autocast_set(self.device, self.previous as i32, 15);
        }
    }
}

/// Whether autocast is on for the CPU right now (for tests and diagnostics).
pub fn cpu_autocast_enabled() -> bool {
    // SAFETY: a read of libtorch's thread-local autocast state.
    unsafe { ardpipe_autocast_enabled(0) == 1 }
}
