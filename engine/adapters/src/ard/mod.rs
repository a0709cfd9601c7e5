//! ARD-LoRA as docs/LANGUAGE.md (`method = ard_lora`) defines it: per-head units, a soft rank
//! mask driven by learnable α, and ΔW_u = (s / r0) · B_u · diag(m_u) · A_u with m_{u,i} = clamp(r0·α_u − (i−1), 0, 1).
//!
//! Storage is batched over the units of one linear: A `[U, R, d_in_u]`, B `[U, d_out_u, R]`,
//! α `[U]`, so the forward is two large matmuls (one dense, one block-diagonal) instead of a loop
//! of tiny per-head ones. R is the largest per-unit capacity; each unit u also has its own
//! capacity `cap_u ≤ R` that bounds α_u (α_u ≤ cap_u / r0), so rows past it stay masked.

mod compact;
mod fold;
mod regulariser;

pub use compact::{CompactionReport, Resized, compact_linears};
pub use regulariser::{ArdRegulariser, RegTerms};

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::config::ArdLoraConfig;
use crate::error::{Result, module_err, state_err};
use crate::init::{adapter_kind, in_kind, kaiming_uniform_a_sqrt5, maybe_dropout, zeros_param};
use crate::linear::{AdaptableLinear, BaseLinear, HeadAxis, LinearAdapter, ParamRole};
use crate::lora::add_delta;
use crate::peft::PeftModule;

/// Where one unit sits in the model: what the TV term and the rank map need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitInfo {
    /// Module path, e.g. `model.layers.3.self_attn.q_proj`.
    pub module: String,
    /// The path with its layer index replaced by `*` (`model.layers.*.self_attn.q_proj`).
    pub kind: String,
    pub layer: Option<usize>,
    /// Head (or group) index within the module.
    pub head: usize,
    pub d_in: usize,
    pub d_out: usize,
}

/// α telemetry of one unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitTelemetry {
    pub module: String,
    pub kind: String,
    pub layer: Option<usize>,
    pub head: usize,
    pub alpha: f64,
    /// max(1, round(r0·α)).
    pub effective_rank: usize,
    /// Rows currently allocated to the unit (shrinks with compaction).
    pub capacity: usize,
}

/// How the per-unit (block-diagonal) product is computed; both give the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStrategy {
    /// One `bmm` over the units (fewest FLOPs; transposes the activations).
    Batched,
    /// One dense matmul with a block-diagonal weight built from the blocks (U× the FLOPs of
    /// that side, but no activation copies: wins when blocks are small).
    Dense,
}

#[derive(Debug)]
pub struct ArdLora {
    path: String,
    kind_name: String,
    layer: Option<usize>,
    axis: HeadAxis,
    n_units: i64,
    d_in_u: i64,
    d_out_u: i64,
    d_in: i64,
    d_out: i64,
    cfg: ArdLoraConfig,
    a: Tensor,
    b: Tensor,
    alpha: Tensor,
    /// Per-unit upper bound of α: min(α_max, cap_u / r0).
    alpha_hi: Tensor,
    caps: Vec<usize>,
    /// 0..R as the adapter's kind, for the mask.
    row_index: Tensor,
    kind: Kind,
    merged: bool,
    strategy: BlockStrategy,
}

/// `(layer, kind)` from a module path: the first all-digit segment is the layer index.
pub fn layer_and_kind(path: &str) -> (Option<usize>, String) {
    let mut layer = None;
    let parts: Vec<String> = path
        .split('.')
        .map(|seg| {
            if layer.is_none() && !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                layer = seg.parse().ok();
                "*".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    (layer, parts.join("."))
}

impl ArdLora {
    pub fn new(linear: &AdaptableLinear, cfg: &ArdLoraConfig) -> Result<Self> {
        cfg.validate()?;
        let (d_out, d_in) = (linear.base.d_out() as i64, linear.base.d_in() as i64);
        let h = linear.heads;
        let (n_units, d_in_u, d_out_u) = match h.axis {
            HeadAxis::Output => {
                if h.n_heads == 0 || h.n_heads * h.head_dim != d_out as usize {
                    return Err(module_err(
                        &linear.path,
                        format!("{} heads × {} rows ≠ d_out {d_out}", h.n_heads, h.head_dim),
                        "the model's head layout for this linear is wrong; report it with the model config",
                    ));
                }
                (h.n_heads as i64, d_in, h.head_dim as i64)
            }
            HeadAxis::Input => {
                if h.n_heads == 0 || h.n_heads * h.head_dim != d_in as usize {
                    return Err(module_err(
                        &linear.path,
                        format!("{} heads × {} columns ≠ d_in {d_in}", h.n_heads, h.head_dim),
                        "the model's head layout for this linear is wrong; report it with the model config",
                    ));
                }
                (h.n_heads as i64, h.head_dim as i64, d_out)
            }
            HeadAxis::None => {
                let g = cfg.groups as i64;
                if d_out % g != 0 {
                    return Err(module_err(
                        &linear.path,
                        format!("groups = {g} does not divide d_out = {d_out}"),
                        "choose a number of groups that divides the output size (1 always does)",
                    ));
                }
                (g, d_in, d_out / g)
            }
        };
        let kind = adapter_kind(linear.base.weight.kind());
        let dev = linear.base.weight.device();
        let r = cfg.r_max() as i64;
        let (layer, kind_name) = layer_and_kind(&linear.path);
        let alpha0 = cfg.alpha_init.clamp(cfg.alpha_min, cfg.alpha_max);
        let alpha = (Tensor::ones([n_units], (kind, dev)) * alpha0).set_requires_grad(true);
        let caps = vec![r as usize; n_units as usize];
        let mut me = Self {
            path: linear.path.clone(),
            kind_name,
            layer,
            axis: h.axis,
            n_units,
            d_in_u,
            d_out_u,
            d_in,
            d_out,
            cfg: cfg.clone(),
            a: kaiming_uniform_a_sqrt5(&[n_units, r, d_in_u], kind, dev),
            b: zeros_param(&[n_units, d_out_u, r], kind, dev),
            alpha,
            alpha_hi: Tensor::zeros([n_units], (kind, dev)),
            caps,
            row_index: Tensor::arange(r, (kind, dev)),
            kind,
            merged: false,
            strategy: BlockStrategy::Batched,
        };
        me.refresh_bounds();
        Ok(me)
    }

    pub fn attach(linear: &mut AdaptableLinear, cfg: &ArdLoraConfig) -> Result<()> {
        let a = Self::new(linear, cfg)?;
        linear.adapter = Some(Box::new(a));
        Ok(())
    }

    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn config(&self) -> &ArdLoraConfig {
        &self.cfg
    }
    pub fn n_units(&self) -> usize {
        self.n_units as usize
    }
    /// α `[U]` (the trainable tensor itself).
    pub fn alpha(&self) -> &Tensor {
        &self.alpha
    }
    pub fn a(&self) -> &Tensor {
        &self.a
    }
    pub fn b(&self) -> &Tensor {
        &self.b
    }
    /// Allocated rows per unit (R, the storage width).
    pub fn allocated_rank(&self) -> usize {
        self.a.size()[1] as usize
    }
    pub fn capacities(&self) -> &[usize] {
        &self.caps
    }
    pub fn set_block_strategy(&mut self, s: BlockStrategy) {
        self.strategy = s;
    }

    /// Set α (e.g. in tests, or when restoring), then project into its bounds.
    pub fn set_alpha(&mut self, values: &Tensor) {
        tch::no_grad(|| {
            self.alpha
                .copy_(&values.to_kind(self.kind).to_device(self.alpha.device()));
        });
        self.project_alpha();
    }

    pub fn units(&self) -> Vec<UnitInfo> {
        (0..self.n_units as usize)
            .map(|head| UnitInfo {
                module: self.path.clone(),
                kind: self.kind_name.clone(),
                layer: self.layer,
                head,
                d_in: self.d_in_u as usize,
                d_out: self.d_out_u as usize,
            })
            .collect()
    }

    /// α ← α − `shift` (the regulariser's proximal step), then back inside its bounds.
    pub fn shift_alpha(&mut self, shift: &Tensor) {
        tch::no_grad(|| {
            let _ = self.alpha.g_sub_(&shift.to_kind(self.kind));
        });
        self.project_alpha();
    }

    /// Keep α inside [α_min, min(α_max, cap_u / r0)]; call after every optimiser step.
    pub fn project_alpha(&mut self) {
        let lo = self.cfg.alpha_min;
        tch::no_grad(|| {
            let c = self.alpha.clamp_min(lo).minimum(&self.alpha_hi);
            self.alpha.copy_(&c);
        });
    }

    fn refresh_bounds(&mut self) {
        let r0 = self.cfg.r0 as f64;
        let hi: Vec<f64> = self
            .caps
            .iter()
            .map(|&c| (c as f64 / r0).min(self.cfg.alpha_max))
            .collect();
        self.alpha_hi = Tensor::from_slice(&hi)
            .to_kind(self.kind)
            .to_device(self.alpha.device());
        self.row_index = Tensor::arange(self.a.size()[1], (self.kind, self.a.device()));
    }

    /// Rebuild from checkpoint tensors, compacted widths included.
    fn restore(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let get = |n: &str| {
            tensors
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| {
                    state_err(&format!("{}.{n}", self.path), "missing from the checkpoint")
                })
        };
        let (a, b, alpha, caps) = (
            get("lora_A")?,
            get("lora_B")?,
            get("alpha")?,
            get("capacity")?,
        );
        let caps = Vec::<i64>::try_from(&caps.to_kind(Kind::Int64)).unwrap_or_default();
        let (u, r) = (self.n_units, a.size().get(1).copied().unwrap_or(0));
        let ok = a.size() == [u, r, self.d_in_u]
            && b.size() == [u, self.d_out_u, r]
            && alpha.size() == [u]
            && caps.len() == u as usize
            && caps.iter().all(|&c| c >= 1 && c <= r)
            && r <= self.cfg.r_max() as i64;
        if !ok {
            return Err(state_err(
                &self.path,
                format!(
                    "checkpoint shapes A {:?}, B {:?}, α {:?}, {} capacities do not fit {u} units of {}×{} with r_max {}: the adapter configuration changed",
                    a.size(),
                    b.size(),
                    alpha.size(),
                    caps.len(),
                    self.d_out_u,
                    self.d_in_u,
                    self.cfg.r_max()
                ),
            ));
        }
        let dev = self.a.device();
        let leaf = |t: &Tensor| {
            t.detach()
                .to_kind(self.kind)
                .to_device(dev)
                .contiguous()
                .copy()
                .set_requires_grad(true)
        };
        self.a = leaf(&a);
        self.b = leaf(&b);
        self.alpha = leaf(&alpha);
        self.caps = caps.into_iter().map(|c| c as usize).collect();
        self.refresh_bounds();
        Ok(())
    }

    /// The soft rank mask m `[U, R]`; differentiable in α.
    pub fn mask(&self) -> Tensor {
        (self.alpha.unsqueeze(1) * self.cfg.r0 as f64 - self.row_index.unsqueeze(0)).clamp(0.0, 1.0)
    }

    /// B with the mask and s/r0 folded in, `[U, d_out_u, R]`: parameter-sized work, so the
    /// activations never see the mask.
    fn b_effective(&self) -> Tensor {
        let ms = self.mask() * (self.cfg.scale / self.cfg.r0 as f64);
        &self.b * ms.unsqueeze(1)
    }

    /// Per-unit product: x `[N, U, k]`, w `[U, m, k]` → `[N, U, m]`.
    fn block(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let (n, u, k) = (x.size()[0], self.n_units, x.size()[2]);
        let m = w.size()[1];
        if u == 1 {
            return x.view([n, k]).matmul(&w.select(0, 0).tr()).view([n, 1, m]);
        }
        match self.strategy {
            BlockStrategy::Batched => x.transpose(0, 1).bmm(&w.transpose(1, 2)).transpose(0, 1),
            BlockStrategy::Dense => {
                let eye = Tensor::eye(u, (w.kind(), w.device())).view([u, 1, u, 1]);
                let wbd = (w.unsqueeze(2) * eye).reshape([u * m, u * k]);
                x.reshape([n, u * k]).matmul(&wbd.tr()).view([n, u, m])
            }
        }
    }

    /// The adapter branch ΔW x for `x` `[N, d_in]` (already in the adapter's kind).
    fn branch(&self, x: &Tensor) -> Tensor {
        let n = x.size()[0];
        let (u, r) = (self.n_units, self.a.size()[1]);
        let b_eff = self.b_effective();
        match self.axis {
            HeadAxis::Output | HeadAxis::None => {
                let z = x.matmul(&self.a.view([u * r, self.d_in]).tr());
                self.block(&z.view([n, u, r]), &b_eff)
                    .reshape([n, self.d_out])
            }
            HeadAxis::Input => {
                let z = self.block(&x.view([n, u, self.d_in_u]), &self.a);
                let b_cat = b_eff.permute([1, 0, 2]).reshape([self.d_out, u * r]);
                z.reshape([n, u * r]).matmul(&b_cat.tr())
            }
        }
    }

    /// α of every unit, one host transfer.
    pub fn alpha_values(&self) -> Vec<f64> {
        Vec::<f64>::try_from(
            &self
                .alpha
                .detach()
                .to_kind(Kind::Double)
                .to_device(tch::Device::Cpu),
        )
        .unwrap_or_default()
    }

    pub fn effective_ranks(&self) -> Vec<usize> {
        let r0 = self.cfg.r0 as f64;
        self.alpha_values()
            .iter()
            .map(|a| ((r0 * a).round() as usize).max(1))
            .collect()
    }

    pub fn telemetry(&self) -> Vec<UnitTelemetry> {
        let r0 = self.cfg.r0 as f64;
        self.alpha_values()
            .into_iter()
            .enumerate()
            .map(|(head, alpha)| UnitTelemetry {
                module: self.path.clone(),
                kind: self.kind_name.clone(),
                layer: self.layer,
                head,
                alpha,
                effective_rank: ((r0 * alpha).round() as usize).max(1),
                capacity: self.caps[head],
            })
            .collect()
    }

    /// Trainable parameters as stored now (A, B at the allocated width, and α).
    pub fn param_count_allocated(&self) -> usize {
        self.a.numel() + self.b.numel() + self.alpha.numel()
    }

    /// Parameters of the units' live rows (ceil(r0·α_u) each, none at α_u = 0): what the
    /// exported adapter holds, without the zeros of its block-diagonal layout.
    pub fn param_count_exported(&self) -> usize {
        let per_row = (self.d_in_u + self.d_out_u) as usize;
        self.live_rows().iter().map(|&n| n as usize * per_row).sum()
    }
}

impl LinearAdapter for ArdLora {
    fn forward(&self, base: &BaseLinear, x: &Tensor, train: bool) -> Tensor {
        let y = base.forward(x);
        let mut shape = x.size();
        let xd = maybe_dropout(&in_kind(x, self.kind), self.cfg.dropout, train);
        let d = self.branch(&xd.reshape([-1, self.d_in]));
        *shape.last_mut().expect("input has a feature axis") = self.d_out;
        // In the base output's dtype, as PEFT adds `lora_B(lora_A(x))` to it: 16-bit under
        // autocast. Adding in the input's f32 would make every activation after it f32.
        let kind = y.kind();
        y + d.view(shape.as_slice()).to_kind(kind)
    }

    fn delta_weight(&self, _base: &BaseLinear) -> Tensor {
        let b_eff = self.b_effective();
        // Per unit: [d_out_u, R] @ [R, d_in_u].
        let per_unit = b_eff.bmm(&self.a);
        match self.axis {
            HeadAxis::Output | HeadAxis::None => per_unit.reshape([self.d_out, self.d_in]),
            HeadAxis::Input => per_unit.permute([1, 0, 2]).reshape([self.d_out, self.d_in]),
        }
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        vec![
            ("lora_A".into(), self.a.shallow_clone()),
            ("lora_B".into(), self.b.shallow_clone()),
            ("alpha".into(), self.alpha.shallow_clone()),
        ]
    }
    fn method(&self) -> &'static str {
        "ard_lora"
    }
    fn exported_parameters(&self) -> usize {
        self.param_count_exported()
    }
    fn param_role(&self, name: &str) -> ParamRole {
        if name == "alpha" {
            ParamRole::Alpha
        } else {
            ParamRole::Weight
        }
    }
    fn is_merged(&self) -> bool {
        self.merged
    }
    fn merge(&mut self, base: &mut BaseLinear) -> Result<()> {
        add_delta(base, &self.delta_weight(base), 1.0);
        self.merged = true;
        Ok(())
    }
    fn unmerge(&mut self, base: &mut BaseLinear) -> Result<()> {
        add_delta(base, &self.delta_weight(base), -1.0);
        self.merged = false;
        Ok(())
    }
    fn peft_export(&self, _base: &BaseLinear) -> Result<PeftModule> {
        Ok(self.fold_to_peft())
    }
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let caps: Vec<i64> = self.caps.iter().map(|&c| c as i64).collect();
        let mut v = self.trainable();
        v.push(("capacity".into(), Tensor::from_slice(&caps)));
        v
    }
    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        self.restore(tensors)
    }
    fn as_ard(&self) -> Option<&ArdLora> {
        Some(self)
    }
    fn as_ard_mut(&mut self) -> Option<&mut ArdLora> {
        Some(self)
    }
}
