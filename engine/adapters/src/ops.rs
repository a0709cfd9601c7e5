//! Safe wrappers over csrc/ops.cpp: weight-only quantisation and the quantised linear with exact
//! input gradients, layer checkpointing (recompute in the backward pass) and fused AdamW.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use tch::{Kind, Tensor};
use torch_sys::C_tensor;

type RunFn = unsafe extern "C" fn(
    closure: *mut c_void,
    input: *mut C_tensor,
    output: *mut *mut C_tensor,
    err: *mut c_char,
    err_len: usize,
) -> c_int;
type DropFn = unsafe extern "C" fn(closure: *mut c_void);

unsafe extern "C" {
    fn ardpipe_quantize(
        w: *mut C_tensor,
        bits: i64,
        group: i64,
        q: *mut *mut C_tensor,
        scales: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn ardpipe_dequantize(
        q: *mut C_tensor,
        scales: *mut C_tensor,
        bits: i64,
        group: i64,
        dtype: c_int,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn ardpipe_quant_linear(
        x: *mut C_tensor,
        q: *mut C_tensor,
        scales: *mut C_tensor,
        bias: *mut C_tensor,
        bits: i64,
        group: i64,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn ardpipe_checkpoint(
        x: *mut C_tensor,
        closure: *mut c_void,
        run: RunFn,
        drop: DropFn,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn ardpipe_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        steps: *const *mut C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

const ERR_LEN: usize = 4096;

/// Call an entry point with an error buffer; its message on failure.
pub(crate) fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut err = vec![0u8; ERR_LEN];
    if f(err.as_mut_ptr().cast(), err.len()) == 0 {
        return Ok(());
    }
    let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    Err(String::from_utf8_lossy(&err[..end]).trim().to_string())
}

fn ptr(t: &Tensor) -> *mut C_tensor {
    t.as_ptr() as *mut C_tensor
}

/// A handle the C++ side allocated (`new at::Tensor`): tch frees it when dropped.
fn owned(p: *mut C_tensor) -> Tensor {
    // SAFETY: `p` is a fresh `at::Tensor*` from ops.cpp that nothing else owns.
    unsafe { Tensor::from_ptr(p) }
}

/// How a quantised weight is laid out (see csrc/ops.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuantScheme {
    /// Symmetric int8, one scale per output channel.
    Int8,
    /// Asymmetric 4-bit codes packed two per byte, an f16 step and minimum per `group` input
    /// columns (GGUF's Q4_1 layout: 5 bits a weight at groups of 32).
    Int4 { group: usize },
}

impl QuantScheme {
    /// As the pipeline spells it: `int8`, `int4 (groups of 32)`.
    pub fn name(self) -> String {
        match self {
            QuantScheme::Int8 => "int8".into(),
            QuantScheme::Int4 { group } => format!("int4 (groups of {group})"),
        }
    }

    fn bits_group(self) -> (i64, i64) {
        match self {
            QuantScheme::Int8 => (8, 0),
            QuantScheme::Int4 { group } => (4, group as i64),
        }
    }

    /// Why a `[d_out, d_in]` weight cannot take this scheme, if it cannot.
    pub fn refuses(self, d_in: usize) -> Option<String> {
        match self {
            QuantScheme::Int8 => None,
            QuantScheme::Int4 { group } if !d_in.is_multiple_of(group) => Some(format!(
                "its {d_in} input columns are not a whole number of int4 groups of {group}"
            )),
            QuantScheme::Int4 { .. } => None,
        }
    }

    /// Bytes one `[d_out, d_in]` weight takes: codes and scales (int8: an f32 scale per row;
    /// int4: an f16 step and minimum per group).
    pub fn bytes(self, d_out: usize, d_in: usize) -> usize {
        match self {
            QuantScheme::Int8 => d_out * d_in + 4 * d_out,
            QuantScheme::Int4 { group } => d_out * d_in / 2 + 4 * d_out * d_in.div_ceil(group),
        }
    }
}

/// A frozen weight stored quantised: `codes` and `scales` as csrc/ops.cpp lays them out.
#[derive(Debug)]
pub struct QuantizedWeight {
    pub scheme: QuantScheme,
    pub codes: Tensor,
    pub scales: Tensor,
    /// `[d_out, d_in]` of the dense weight.
    pub shape: [i64; 2],
    /// The dtype the dense weight had (what dequantising for export gives back).
    pub kind: Kind,
}

impl QuantizedWeight {
    /// Quantise a dense `[d_out, d_in]` weight.
    pub fn new(weight: &Tensor, scheme: QuantScheme) -> Result<Self, String> {
        let (d_out, d_in) = weight
            .size2()
            .map_err(|e| format!("a linear weight must be 2-D: {e}"))?;
        if let Some(why) = scheme.refuses(d_in as usize) {
            return Err(why);
        }
        let (bits, group) = scheme.bits_group();
        let (mut q, mut s) = (std::ptr::null_mut(), std::ptr::null_mut());
        call(|e, n| unsafe { ardpipe_quantize(ptr(weight), bits, group, &mut q, &mut s, e, n) })?;
        Ok(Self {
            scheme,
            codes: owned(q),
            scales: owned(s),
            shape: [d_out, d_in],
            kind: weight.kind(),
        })
    }

    /// The dense weight these codes stand for, in `kind`.
    pub fn dequantize(&self, kind: Kind) -> Tensor {
        let (bits, group) = self.scheme.bits_group();
        let mut out = std::ptr::null_mut();
        call(|e, n| unsafe {
            ardpipe_dequantize(
                ptr(&self.codes),
                ptr(&self.scales),
                bits,
                group,
                kind_code(kind),
                &mut out,
                e,
                n,
            )
        })
        .unwrap_or_else(|e| panic!("dequantising a weight this process quantised: {e}"));
        owned(out)
    }

    /// `x Wᵀ + b` with the dequantised weight, computed in autocast's dtype when it is on. The
    /// backward pass gives `x` its exact gradient `dY·W` and keeps no dense copy of `W`.
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let (bits, group) = self.scheme.bits_group();
        let mut out = std::ptr::null_mut();
        let b = bias.map_or(std::ptr::null_mut(), ptr);
        call(|e, n| unsafe {
            ardpipe_quant_linear(
                ptr(x),
                ptr(&self.codes),
                ptr(&self.scales),
                b,
                bits,
                group,
                &mut out,
                e,
                n,
            )
        })
        .unwrap_or_else(|e| panic!("quantised linear: {e}"));
        owned(out)
    }

    /// Bytes the codes and scales take.
    pub fn bytes(&self) -> usize {
        self.scheme
            .bytes(self.shape[0] as usize, self.shape[1] as usize)
    }
}

/// c10's ScalarType number of a floating kind.
fn kind_code(kind: Kind) -> c_int {
    match kind {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::Double => 7,
        Kind::BFloat16 => 15,
        other => panic!("not a floating dtype: {other:?}"),
    }
}

/// The layer function a checkpoint runs, in the forward pass and again in the backward pass.
type Layer = Box<dyn Fn(&Tensor) -> Tensor + Send>;

unsafe extern "C" fn run_layer(
    closure: *mut c_void,
    input: *mut C_tensor,
    output: *mut *mut C_tensor,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    // SAFETY: `closure` is the `Box<Layer>` `checkpoint` leaked; `input` a fresh handle.
    let f = unsafe { &*(closure as *const Layer) };
    let x = owned(input);
    match catch_unwind(AssertUnwindSafe(|| f(&x))) {
        Ok(y) => {
            let raw = y.as_ptr() as *mut C_tensor;
            std::mem::forget(y);
            // SAFETY: the C++ side takes the handle and deletes it.
            unsafe { *output = raw };
            0
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the layer panicked".into());
            let bytes = msg.as_bytes();
            let n = bytes.len().min(err_len.saturating_sub(1));
            // SAFETY: `err` has room for `err_len` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), err.cast::<u8>(), n);
                *err.add(n) = 0;
            }
            1
        }
    }
}

unsafe extern "C" fn drop_layer(closure: *mut c_void) {
    // SAFETY: the `Box<Layer>` `checkpoint` leaked, dropped once by the graph.
    drop(unsafe { Box::from_raw(closure as *mut Layer) });
}

/// `layer(x)` with gradient checkpointing: the forward pass keeps only `x`, and the backward
/// pass runs `layer` again, with the random streams and autocast state of the first run, to
/// backpropagate through it (gradients reach whatever parameters `layer` uses, as without
/// checkpointing). Without grad mode this is `layer(x)`.
///
/// `layer` must stay valid until the backward pass: it may hold raw pointers into a model that
/// the caller keeps alive and unchanged until then (the trainer's step does: the backward pass
/// comes before the optimiser or compaction touches a parameter).
pub fn checkpoint(x: &Tensor, layer: impl Fn(&Tensor) -> Tensor + Send + 'static) -> Tensor {
    let boxed: Box<Layer> = Box::new(Box::new(layer));
    let raw = Box::into_raw(boxed) as *mut c_void;
    let mut out = std::ptr::null_mut();
    let r = call(|e, n| unsafe {
        ardpipe_checkpoint(ptr(x), raw, run_layer, drop_layer, &mut out, e, n)
    });
    match r {
        Ok(()) => owned(out),
        Err(e) => panic!("checkpointed layer: {e}"),
    }
}

/// AdamW state of one parameter for [`fused_adamw`].
pub struct AdamWSlot<'a> {
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub exp_avg: &'a Tensor,
    pub exp_avg_sq: &'a Tensor,
    /// f32 scalar on the parameter's device: the step count, incremented by the call.
    pub step: &'a Tensor,
}

/// One AdamW step over many tensors in one kernel launch per device and dtype (PyTorch's
/// `_fused_adamw_`, the same update as `torch.optim.AdamW(fused=True)`).
pub fn fused_adamw(
    slots: &[AdamWSlot<'_>],
    lr: f64,
    betas: (f64, f64),
    weight_decay: f64,
    eps: f64,
) -> Result<(), String> {
    if slots.is_empty() {
        return Ok(());
    }
    fn list<'a>(
        slots: &[AdamWSlot<'a>],
        f: fn(&AdamWSlot<'a>) -> &'a Tensor,
    ) -> Vec<*mut C_tensor> {
        slots.iter().map(|s| ptr(f(s))).collect()
    }
    let (p, g, m, v, s) = (
        list(slots, |s| s.param),
        list(slots, |s| s.grad),
        list(slots, |s| s.exp_avg),
        list(slots, |s| s.exp_avg_sq),
        list(slots, |s| s.step),
    );
    call(|e, n| unsafe {
        ardpipe_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            slots.len(),
            lr,
            betas.0,
            betas.1,
            weight_decay,
            eps,
            e,
            n,
        )
    })
}
