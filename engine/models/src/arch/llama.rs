//! The Llama family in tch: RMSNorm, RoPE (rotate-half), grouped-query attention through
//! libtorch's fused scaled-dot-product attention, SwiGLU, tied or untied LM head, causal and
//! padding masks, and a KV cache for generation — and the decoders built the same way
//! (Qwen2/2.5, Mistral, Qwen3, Gemma, Gemma 2, Gemma 3 text), whose differences are switches in
//! [`LlamaConfig`]: q/k/v bias, q/k norm, Gemma's `1 + w` norms, scaled embeddings, GeGLU,
//! sandwich norms, sliding-window attention per layer, attention and final logit soft-capping,
//! and a second RoPE for the sliding layers. The reference is transformers'
//! `models/<family>/modeling_<family>.py`.

use ardpipe_adapters::AdaptableLinear;
use ardpipe_adapters::ops::checkpoint;
use tch::{Device, Kind, Tensor};

use super::config::{Activation, LlamaConfig};
use super::layers::{RmsNorm, Rope, repeat_kv};
use crate::error::{ModelError, Result};
use crate::precision::{Precision, autocast};
use crate::weights::WeightLoader;

#[derive(Debug)]
pub struct LlamaLayer {
    pub q_proj: AdaptableLinear,
    pub k_proj: AdaptableLinear,
    pub v_proj: AdaptableLinear,
    pub o_proj: AdaptableLinear,
    pub gate_proj: AdaptableLinear,
    pub up_proj: AdaptableLinear,
    pub down_proj: AdaptableLinear,
    pub input_layernorm: RmsNorm,
    /// Before the MLP, or with sandwich norms (Gemma 2/3) on the attention output.
    pub post_attention_layernorm: RmsNorm,
    /// Per-head norms of queries and keys (`self_attn.q_norm`/`k_norm`), when the config has them.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    /// Sandwich norms (Gemma 2/3): before and after the MLP.
    pub pre_feedforward_layernorm: Option<RmsNorm>,
    pub post_feedforward_layernorm: Option<RmsNorm>,
}

/// A Llama-family causal LM (`LlamaForCausalLM`).
#[derive(Debug)]
pub struct Llama {
    pub config: LlamaConfig,
    pub embed_tokens: Tensor,
    pub layers: Vec<LlamaLayer>,
    pub norm: RmsNorm,
    /// `None` when tied to `embed_tokens`.
    pub lm_head: Option<Tensor>,
    rope: Rope,
    /// The sliding layers' RoPE when its base differs (Gemma 3's local base).
    rope_local: Option<Rope>,
    pub device: Device,
    pub precision: Precision,
    /// What every weight and module name of the decoder starts with: `model.` for a causal LM,
    /// `model.language_model.` inside a vision-language model (the LM head is `lm_head`).
    pub prefix: String,
    /// `train.checkpointing = layers`: training forward passes keep only each layer's input
    /// and recompute the layer in the backward pass.
    pub checkpointing: bool,
}

/// What every decoder layer of one forward pass reads besides the residual stream: rotary
/// tables (and the sliding layers' own), the attention masks, the batch shape and the cache's
/// length.
struct LayerInputs {
    cos: Tensor,
    sin: Tensor,
    local: Option<(Tensor, Tensor)>,
    full_mask: Option<Tensor>,
    sliding_mask: Option<Tensor>,
    b: i64,
    t: i64,
    past: i64,
}

impl LayerInputs {
    fn shallow_clone(&self) -> Self {
        let opt = |t: &Option<Tensor>| t.as_ref().map(Tensor::shallow_clone);
        LayerInputs {
            cos: self.cos.shallow_clone(),
            sin: self.sin.shallow_clone(),
            local: self
                .local
                .as_ref()
                .map(|(c, s)| (c.shallow_clone(), s.shallow_clone())),
            full_mask: opt(&self.full_mask),
            sliding_mask: opt(&self.sliding_mask),
            ..*self
        }
    }
}

/// Keys and values of earlier positions, per layer: `[b, kv_heads, t, head_dim]`.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    pub fn len(&self) -> i64 {
        self.layers.first().map(|(k, _)| k.size()[2]).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Llama {
    /// Build from a weight source; the loader records missing/mismatched tensors.
    pub fn load(
        config: LlamaConfig,
        w: &mut WeightLoader<'_>,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        Self::load_at(config, w, device, precision, "model.")
    }

    /// [`Llama::load`] with the decoder's tensors and modules under `prefix` instead of
    /// `model.` (a vision-language model's `model.language_model.`).
    pub fn load_at(
        config: LlamaConfig,
        w: &mut WeightLoader<'_>,
        device: Device,
        precision: Precision,
        prefix: &str,
    ) -> Result<Self> {
        let c = &config;
        let named = |name: &str| format!("{prefix}{name}");
        let d = c.hidden_size as i64;
        let specs = c.modules_at(prefix);
        let mut specs = specs.into_iter();
        let mut linear = |w: &mut WeightLoader<'_>| -> Result<AdaptableLinear> {
            let s = specs.next().expect("one spec per linear, in build order");
            let weight = w.frozen(
                &format!("{}.weight", s.path),
                &[s.d_out as i64, s.d_in as i64],
            )?;
            let bias = if s.bias {
                Some(w.f32(&format!("{}.bias", s.path), &[s.d_out as i64])?)
            } else {
                None
            };
            w.adaptable(AdaptableLinear::new(s.path, weight, bias, s.heads))
        };
        let norm_of = |w: &mut WeightLoader<'_>, name: &str, dim: i64| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: w.f32(name, &[dim])?,
                eps: c.rms_norm_eps,
                unit_offset: c.norm_unit_offset,
            })
        };
        let norm = |w: &mut WeightLoader<'_>, name: &str| norm_of(w, name, d);
        let hd = c.head_dim as i64;
        let embed_tokens = w.frozen(&named("embed_tokens.weight"), &[c.vocab_size as i64, d])?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = named(&format!("layers.{l}"));
            let (q_norm, k_norm) = if c.qk_norm {
                (
                    Some(norm_of(w, &format!("{p}.self_attn.q_norm.weight"), hd)?),
                    Some(norm_of(w, &format!("{p}.self_attn.k_norm.weight"), hd)?),
                )
            } else {
                (None, None)
            };
            let (pre_feedforward_layernorm, post_feedforward_layernorm) = if c.sandwich_norms {
                (
                    Some(norm(w, &format!("{p}.pre_feedforward_layernorm.weight"))?),
                    Some(norm(w, &format!("{p}.post_feedforward_layernorm.weight"))?),
                )
            } else {
                (None, None)
            };
            layers.push(LlamaLayer {
                q_proj: linear(w)?,
                k_proj: linear(w)?,
                v_proj: linear(w)?,
                o_proj: linear(w)?,
                gate_proj: linear(w)?,
                up_proj: linear(w)?,
                down_proj: linear(w)?,
                input_layernorm: norm(w, &format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: norm(w, &format!("{p}.post_attention_layernorm.weight"))?,
                q_norm,
                k_norm,
                pre_feedforward_layernorm,
                post_feedforward_layernorm,
            });
        }
        let norm = norm(w, &named("norm.weight"))?;
        let lm_head = if c.tie_word_embeddings {
            // Some tied checkpoints still carry a copy of the head; it is the same tensor.
            w.ignore("lm_head.weight");
            None
        } else {
            Some(w.frozen("lm_head.weight", &[c.vocab_size as i64, d])?)
        };
        w.ignore(&named("rotary_emb.inv_freq"));
        for l in 0..c.num_hidden_layers {
            w.ignore(&named(&format!("layers.{l}.self_attn.rotary_emb.inv_freq")));
        }
        let rope_local = c
            .rope_local_theta
            .map(|theta| Rope::new(c.head_dim, theta, c.rope_local_scaling.as_ref(), device));
        Ok(Self {
            rope: Rope::new(c.head_dim, c.rope_theta, c.rope_scaling.as_ref(), device),
            rope_local,
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            device,
            precision,
            prefix: prefix.to_string(),
            checkpointing: false,
        })
    }

    /// Every adaptable linear, in layer order (q, k, v, o, gate, up, down).
    pub fn linears(&self) -> Vec<&AdaptableLinear> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    &l.q_proj,
                    &l.k_proj,
                    &l.v_proj,
                    &l.o_proj,
                    &l.gate_proj,
                    &l.up_proj,
                    &l.down_proj,
                ]
            })
            .collect()
    }

    pub fn linears_mut(&mut self) -> Vec<&mut AdaptableLinear> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.q_proj,
                    &mut l.k_proj,
                    &mut l.v_proj,
                    &mut l.o_proj,
                    &mut l.gate_proj,
                    &mut l.up_proj,
                    &mut l.down_proj,
                ]
            })
            .collect()
    }

    /// All base weights by Hugging Face name (for full fine-tuning and merging).
    pub fn base_parameters(&self) -> Vec<(String, Tensor)> {
        let p = &self.prefix;
        let mut v = vec![(
            format!("{p}embed_tokens.weight"),
            self.embed_tokens.shallow_clone(),
        )];
        for (i, l) in self.layers.iter().enumerate() {
            v.push((
                format!("{p}layers.{i}.input_layernorm.weight"),
                l.input_layernorm.weight.shallow_clone(),
            ));
            v.push((
                format!("{p}layers.{i}.post_attention_layernorm.weight"),
                l.post_attention_layernorm.weight.shallow_clone(),
            ));
            for (name, n) in [
                ("self_attn.q_norm", &l.q_norm),
                ("self_attn.k_norm", &l.k_norm),
                ("pre_feedforward_layernorm", &l.pre_feedforward_layernorm),
                ("post_feedforward_layernorm", &l.post_feedforward_layernorm),
            ] {
                if let Some(n) = n {
                    v.push((
                        format!("{p}layers.{i}.{name}.weight"),
                        n.weight.shallow_clone(),
                    ));
                }
            }
        }
        for lin in self.linears() {
            v.push((format!("{}.weight", lin.path), lin.base.dense_weight()));
            if let Some(b) = &lin.base.bias {
                v.push((format!("{}.bias", lin.path), b.shallow_clone()));
            }
        }
        v.push((format!("{p}norm.weight"), self.norm.weight.shallow_clone()));
        if let Some(h) = &self.lm_head {
            v.push(("lm_head.weight".into(), h.shallow_clone()));
        }
        v
    }

    /// Causal LM logits `[b, t, vocab]` (f32) for token ids `[b, t]`. `attention_mask`
    /// (`[b, t]`, 1 = token, 0 = padding) masks padded keys; positions count real tokens.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let _ac = autocast(self.device, self.precision.autocast);
        let h = self.last_hidden_state(input_ids, attention_mask, train)?;
        Ok(self.head(&h))
    }

    /// Causal LM logits `[b, t, vocab]` (f32) for rows that each pack several examples.
    /// `segments` (`[b, t]` int64) says which example of its row each token belongs to: 1, 2,
    /// … in order, each example's tokens contiguous, 0 = padding (anywhere). A token attends
    /// only to earlier tokens of its own example (sliding windows count within it), and
    /// positions restart at 0 at each example's first token, so every example's logits are
    /// those it gets alone — as sample packing with per-example `position_ids` computes them.
    /// Padding positions get logits that mean nothing (each sees only itself).
    pub fn forward_packed(
        &self,
        input_ids: &Tensor,
        segments: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let _ac = autocast(self.device, self.precision.autocast);
        let h = self.packed_hidden_state(input_ids, segments, train)?;
        Ok(self.head(&h))
    }

    /// The final hidden states [`Llama::forward_packed`] applies the head to (same masks and
    /// positions), for a loss that applies the head itself ([`Llama::lm_loss`]).
    pub fn packed_hidden_state(
        &self,
        input_ids: &Tensor,
        segments: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        self.check_ids(input_ids)?;
        let segments = self.check_segments(input_ids, segments)?;
        let _ac = autocast(self.device, self.precision.autocast);
        self.hidden(input_ids, None, Some(&segments), None, train)
    }

    /// The mean next-token cross-entropy of `labels` (`[b, t]`, aligned with `h`'s positions,
    /// −100 ignored) under this model's head applied to the final hidden states `h`, without
    /// the `[b, t, vocab]` logits: [`crate::lm_loss::fused_linear_cross_entropy`], computing
    /// each chunk as [`Llama::head`] does (this model's autocast, final soft-capping). Its
    /// gradient reaches `h` (the head itself is frozen).
    pub fn lm_loss(&self, h: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let _ac = autocast(self.device, self.precision.autocast);
        let w = self.head_weight();
        crate::lm_loss::fused_linear_cross_entropy(
            h,
            w,
            labels,
            self.config.final_logit_softcapping,
            crate::lm_loss::chunk_rows_for(w.size()[0]),
        )
    }

    /// Final hidden states `[b, t, hidden]` after the last norm (transformers'
    /// `last_hidden_state`, what a sequence-classification `score` reads), in the compute dtype.
    pub fn last_hidden_state(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        self.check_ids(input_ids)?;
        let _ac = autocast(self.device, self.precision.autocast);
        self.hidden(input_ids, attention_mask, None, None, train)
    }

    /// One decoding step with a cache: logits `[b, t, vocab]` of the new tokens.
    pub fn forward_cached(&self, input_ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.check_ids(input_ids)?;
        let _g = tch::no_grad_guard();
        let _ac = autocast(self.device, self.precision.autocast);
        let h = self.hidden(input_ids, None, None, Some(cache), false)?;
        Ok(self.head(&h))
    }

    pub(crate) fn check_ids(&self, ids: &Tensor) -> Result<()> {
        if ids.dim() != 2 || ids.kind() != Kind::Int64 {
            return Err(ModelError::Usage(format!(
                "input ids must be an int64 [batch, tokens] tensor, got {:?} {:?}",
                ids.kind(),
                ids.size()
            )));
        }
        if ids.numel() > 0 {
            let max = ids.max().int64_value(&[]);
            let min = ids.min().int64_value(&[]);
            if min < 0 || max >= self.config.vocab_size as i64 {
                return Err(ModelError::Usage(format!(
                    "token id {} is outside the vocabulary of {} (tokenizer and model do not match?)",
                    if min < 0 { min } else { max },
                    self.config.vocab_size
                )));
            }
        }
        Ok(())
    }

    /// Segment ids on the model's device, checked: `[b, t]` like the ids, int64, and per row
    /// each example's ids 1, 2, … starting once, in increasing order (0 = padding). One host
    /// read for the whole batch.
    fn check_segments(&self, ids: &Tensor, segments: &Tensor) -> Result<Tensor> {
        if segments.kind() != Kind::Int64 || segments.size() != ids.size() {
            return Err(ModelError::Usage(format!(
                "packed segments must be an int64 tensor shaped like the ids {:?}, got {:?} {:?}",
                ids.size(),
                segments.kind(),
                segments.size()
            )));
        }
        let s = segments.to_device(self.device);
        let t = s.size()[1];
        if s.numel() == 0 {
            return Ok(s);
        }
        // An example starts where a non-zero id differs from the token before it; it must be
        // larger than every id earlier in the row (so no example is split or repeated).
        let prev = s.narrow(1, 0, t - 1).constant_pad_nd([1, 0]);
        let before_max = s.cummax(1).0.narrow(1, 0, t - 1).constant_pad_nd([1, 0]);
        let starts = s.gt(0).logical_and(&s.ne_tensor(&prev));
        let bad = s
            .lt(0)
            .logical_or(&starts.logical_and(&s.le_tensor(&before_max)));
        if bad.any().int64_value(&[]) != 0 {
            let at = bad.flatten(0, 1).nonzero().int64_value(&[0, 0]);
            let (row, pos) = (at / t, at % t);
            let row_ids = Vec::<i64>::try_from(s.get(row).to_device(Device::Cpu))?;
            return Err(ModelError::Usage(format!(
                "packed segments, row {row} position {pos}: segment id {} {}; a row's examples \
                 are numbered 1, 2, … in order, each one's tokens contiguous, 0 for padding \
                 (row {row}: {row_ids:?})",
                row_ids[pos as usize],
                if row_ids[pos as usize] < 0 {
                    "is negative"
                } else {
                    "starts again or after a larger id"
                }
            )));
        }
        Ok(s)
    }

    /// The LM head's weight `[vocab, hidden]`: `lm_head`, or the embeddings when tied.
    pub fn head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// Logits (f32) of final hidden states `h`, soft-capped when the config says so. Public so
    /// that a test can compare [`Llama::lm_loss`] with the cross-entropy of these logits.
    pub fn head(&self, h: &Tensor) -> Tensor {
        let logits = h
            .linear::<Tensor>(self.head_weight(), None)
            .to_kind(Kind::Float);
        match self.config.final_logit_softcapping {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// Boolean attention mask `[t, s]`, or `[b, 1, t, s]` with `keys` (`[b, s]`, true = a real
    /// token), for queries at `past..past + t` over keys `0..past + t`; true = may attend.
    /// Causal, within `window` keys (the query itself included) when given. A padded query
    /// row with no visible key would give NaN, so every query sees itself.
    fn bool_mask(&self, keys: Option<&Tensor>, t: i64, past: i64, window: Option<usize>) -> Tensor {
        let s = past + t;
        let ones = || Tensor::ones([t, s], (Kind::Bool, self.device));
        let mut m = ones().tril(past);
        if let Some(w) = window {
            // transformers' sliding window: kv_idx > q_idx - window.
            m = m.logical_and(&ones().triu(past - w as i64 + 1));
        }
        match keys {
            Some(k) => {
                let b = k.size()[0];
                let diag = ones().tril(past).triu(past);
                m.logical_and(&k.view([b, 1, 1, s])).logical_or(&diag)
            }
            None => m,
        }
    }

    /// The bidirectional block of a prefix-LM, `[b, 1, t, t]`: query and key both among the
    /// row's first `prefix[i]` tokens, and the key a real token (`keys`, `[b, t]`).
    fn prefix_block(&self, prefix: &Tensor, t: i64, keys: Option<&Tensor>) -> Tensor {
        let b = prefix.size()[0];
        let idx = Tensor::arange(t, (Kind::Int64, self.device));
        let inside = idx
            .unsqueeze(0)
            .lt_tensor(&prefix.to_device(self.device).unsqueeze(1));
        let block = inside
            .view([b, 1, t, 1])
            .logical_and(&inside.view([b, 1, 1, t]));
        match keys {
            Some(k) => block.logical_and(&k.view([b, 1, 1, t])),
            None => block,
        }
    }

    /// Boolean attention mask `[b, 1, t, t]` for packed rows (`segments` as
    /// [`Llama::forward_packed`] takes them, on the device): causal, within the query's own
    /// example, within `window` keys when given (distances within an example are distances in
    /// the row). A padding query sees only itself.
    fn packed_mask(&self, segments: &Tensor, window: Option<usize>) -> Tensor {
        let (b, t) = segments.size2().expect("checked [b, t] segments");
        let causal = self.bool_mask(None, t, 0, window);
        let same = segments
            .view([b, 1, t, 1])
            .eq_tensor(&segments.view([b, 1, 1, t]));
        let real_key = segments.gt(0).view([b, 1, 1, t]);
        let diag = Tensor::eye(t, (Kind::Bool, self.device));
        causal
            .logical_and(&same)
            .logical_and(&real_key)
            .logical_or(&diag)
    }

    /// Positions `[b, t]` that restart at 0 at each example's first token (0 on padding):
    /// the index minus the index of the example's start, carried forward by a running max.
    fn packed_positions(segments: &Tensor) -> Tensor {
        let (b, t) = segments.size2().expect("checked [b, t] segments");
        if t == 0 {
            return segments.zeros_like();
        }
        let idx = Tensor::arange(t, (Kind::Int64, segments.device()))
            .unsqueeze(0)
            .expand([b, t], false);
        let prev = segments.narrow(1, 0, t - 1).constant_pad_nd([1, 0]);
        let starts = segments.ne_tensor(&prev);
        let start_idx = idx.where_self(&starts, &idx.zeros_like()).cummax(1).0;
        (&idx - start_idx).masked_fill(&segments.eq(0), 0)
    }

    /// Token embeddings `[b, t, hidden]` in f32 (scaled for the Gemma families).
    pub(crate) fn embed(&self, ids: &Tensor) -> Tensor {
        let embedded = Tensor::embedding(
            &self.embed_tokens,
            &ids.to_device(self.device),
            -1,
            false,
            false,
        );
        let embedded = if self.config.scale_embeddings {
            // transformers multiplies by sqrt(hidden) rounded to the embedding's dtype.
            let kind = self.embed_tokens.kind();
            let normalizer = Tensor::from((self.config.hidden_size as f64).sqrt())
                .to_kind(kind)
                .to_device(self.device);
            embedded * normalizer
        } else {
            embedded
        };
        embedded.to_kind(Kind::Float)
    }

    fn hidden(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        segments: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        self.hidden_from(self.embed(ids), mask, segments, None, cache, train)
    }

    /// Final hidden states for input embeddings `x` (`[b, t, hidden]`, f32). `prefix` (`[b]`
    /// int64, on the device) makes each row's first `prefix[i]` tokens attend to each other
    /// both ways (a prefix-LM: PaliGemma's image and prompt), the rest causally; only without
    /// a cache (a prefix is a prefill).
    pub(crate) fn hidden_from(
        &self,
        x: Tensor,
        mask: Option<&Tensor>,
        segments: Option<&Tensor>,
        prefix: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.size3()?;
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let mask = mask.map(|m| m.to_device(self.device).to_kind(Kind::Bool));
        if let Some(m) = &mask
            && m.size() != [b, t]
        {
            return Err(ModelError::Usage(format!(
                "attention mask {:?} does not match the ids [{b}, {t}]",
                m.size()
            )));
        }
        let positions = match (&mask, segments) {
            (_, Some(s)) => Self::packed_positions(s),
            // Count real tokens, so left padding does not shift positions.
            (Some(m), None) => (m.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0),
            (None, None) => (Tensor::arange(t, (Kind::Int64, self.device)) + past)
                .unsqueeze(0)
                .expand([b, t], false),
        };
        let c = &self.config;
        let (cos, sin) = self.rope.cos_sin(&positions);
        let local = self.rope_local.as_ref().map(|r| r.cos_sin(&positions));
        // Boolean attention masks (true = may attend), only where the fused causal path cannot
        // do: padding, sliding windows, soft-capped scores (computed explicitly).
        let softcap = c.attn_logit_softcapping;
        // Packed rows always need one: attention stays within each example.
        let full_mask = match (&mask, softcap, segments, prefix) {
            (_, _, Some(s), _) => Some(self.packed_mask(s, None)),
            (None, None, None, None) => None,
            (m, _, None, _) => Some(self.bool_mask(m.as_ref(), t, past, None)),
        };
        let sliding_mask = c
            .sliding_window
            .filter(|_| (0..self.layers.len()).any(|l| c.layer_window(l).is_some()))
            .map(|w| match segments {
                Some(s) => self.packed_mask(s, Some(w)),
                None => self.bool_mask(mask.as_ref(), t, past, Some(w)),
            });
        let (full_mask, sliding_mask) = match prefix {
            Some(p) => {
                if past > 0 || segments.is_some() {
                    return Err(ModelError::Usage(
                        "a bidirectional prefix is for a whole sequence, not with a cache or \
                         packed rows"
                            .into(),
                    ));
                }
                let block = self.prefix_block(p, t, mask.as_ref());
                let or_block = |m: Tensor| {
                    let m = if m.dim() == 2 {
                        m.unsqueeze(0).unsqueeze(0)
                    } else {
                        m
                    };
                    m.logical_or(&block)
                };
                (full_mask.map(or_block), sliding_mask.map(or_block))
            }
            None => (full_mask, sliding_mask),
        };
        let inputs = LayerInputs {
            cos,
            sin,
            local,
            full_mask,
            sliding_mask,
            b,
            t,
            past,
        };
        let mut x = x;
        if let Some(cache) = cache.as_deref_mut()
            && cache.layers.is_empty()
        {
            cache.layers.reserve(self.layers.len());
        }
        if self.checkpointing && train && cache.is_none() {
            // Each layer keeps only its input; the backward pass runs it again. The closures
            // reach `self` through its address: the trainer backpropagates before anything
            // changes or drops the model (see `ardpipe_adapters::ops::checkpoint`).
            let me = self as *const Llama as usize;
            for i in 0..self.layers.len() {
                let inputs = inputs.shallow_clone();
                x = checkpoint(&x, move |x| {
                    // SAFETY: see above; `Llama` is not moved while a step's graph is alive.
                    let model = unsafe { &*(me as *const Llama) };
                    model.layer(i, x.shallow_clone(), &inputs, None, true)
                });
            }
        } else {
            for i in 0..self.layers.len() {
                x = self.layer(i, x, &inputs, cache.as_deref_mut(), train);
            }
        }
        Ok(self.norm.forward(&x))
    }

    /// Decoder layer `i` on the residual stream `x`: attention (with the cache, when given)
    /// and the MLP, each added back to `x`.
    fn layer(
        &self,
        i: usize,
        mut x: Tensor,
        inputs: &LayerInputs,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let c = &self.config;
        let l = &self.layers[i];
        let LayerInputs {
            cos,
            sin,
            local,
            full_mask,
            sliding_mask,
            b,
            t,
            past,
        } = inputs;
        let (b, t, past) = (*b, *t, *past);
        let softcap = c.attn_logit_softcapping;
        let scale = c.query_pre_attn_scalar.map(|_| c.attention_scale());
        let (nh, nkv, hd) = (
            c.num_attention_heads as i64,
            c.num_key_value_heads as i64,
            c.head_dim as i64,
        );
        let h = l.input_layernorm.forward(&x);
        let q = l
            .q_proj
            .forward(&h, train)
            .view([b, t, nh, hd])
            .transpose(1, 2);
        let k = l
            .k_proj
            .forward(&h, train)
            .view([b, t, nkv, hd])
            .transpose(1, 2);
        let v = l
            .v_proj
            .forward(&h, train)
            .view([b, t, nkv, hd])
            .transpose(1, 2);
        let (q, k) = match (&l.q_norm, &l.k_norm) {
            (Some(qn), Some(kn)) => (
                qn.forward(&q).to_kind(q.kind()),
                kn.forward(&k).to_kind(k.kind()),
            ),
            _ => (q, k),
        };
        let window = c.layer_window(i);
        let (cos, sin) = match (&local, window) {
            (Some((lc, ls)), Some(_)) => (lc, ls),
            _ => (cos, sin),
        };
        let q = Rope::apply(&q, cos, sin);
        let mut k = Rope::apply(&k, cos, sin);
        let mut v = v;
        if let Some(cache) = cache {
            if let Some((pk, pv)) = cache.layers.get(i) {
                k = Tensor::cat(&[pk, &k.to_kind(pk.kind())], 2);
                v = Tensor::cat(&[pv, &v.to_kind(pv.kind())], 2);
                cache.layers[i] = (k.shallow_clone(), v.shallow_clone());
            } else {
                cache.layers.push((k.shallow_clone(), v.shallow_clone()));
            }
        }
        // Fused attention: causal flag for plain batches; with a cache, new queries see all
        // cached keys (t == 1 while decoding, so no mask is needed either).
        let (q, k, v) = same_kind(q, k, v);
        let attn_mask = if window.is_some() {
            sliding_mask.as_ref()
        } else {
            full_mask.as_ref()
        };
        // Plain causal batches share the KV heads inside the kernel (`enable_gqa`): no
        // repeated copies of k and v to compute, save for backward and differentiate.
        let gqa = attn_mask.is_none() && past == 0;
        let (k, v) = if gqa {
            (k, v)
        } else {
            (repeat_kv(&k, nh / nkv), repeat_kv(&v, nh / nkv))
        };
        let a = match (attn_mask, softcap) {
            // Soft-capped scores (Gemma 2): cap·tanh(score/cap) before the mask and softmax,
            // as transformers' eager attention computes them.
            (m, Some(cap)) => {
                let m = m.expect("soft-capping builds both masks above");
                let scores = q.matmul(&k.transpose(-2, -1)) * c.attention_scale();
                let scores = (scores / cap).tanh() * cap;
                scores
                    .masked_fill(&m.logical_not(), f64::NEG_INFINITY)
                    .softmax(-1, Kind::Float)
                    .to_kind(v.kind())
                    .matmul(&v)
            }
            (Some(m), None) => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m), 0.0, false, scale, false)
            }
            (None, None) if past > 0 && t == 1 => Tensor::scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, false, scale, false,
            ),
            (None, None) if past > 0 => {
                let s = past + t;
                let m = Tensor::ones([t, s], (Kind::Bool, self.device)).tril(past);
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&m), 0.0, false, scale, false)
            }
            (None, None) => Tensor::scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, true, scale, gqa,
            ),
        };
        let a = a.transpose(1, 2).reshape([b, t, nh * hd]);
        // Out of place: the norms saved `x` for their backward pass, and an in-place add
        // would invalidate it as soon as anything upstream of `x` trains.
        let a = l.o_proj.forward(&a, train);
        let h = match (&l.pre_feedforward_layernorm, &l.post_feedforward_layernorm) {
            (Some(pre), Some(_)) => {
                x = x.g_add(&l.post_attention_layernorm.forward(&a));
                pre.forward(&x)
            }
            _ => {
                x = x.g_add(&a);
                l.post_attention_layernorm.forward(&x)
            }
        };
        let gate = l.gate_proj.forward(&h, train);
        let gate = match c.hidden_act {
            Activation::Silu => gate.silu(),
            Activation::GeluPytorchTanh => gate.gelu("tanh"),
        };
        let m = l
            .down_proj
            .forward(&(gate * l.up_proj.forward(&h, train)), train);
        let m = match &l.post_feedforward_layernorm {
            Some(post) => post.forward(&m),
            None => m,
        };
        x = x.g_add(&m);
        x
    }
}

/// sdpa wants one dtype; under autocast the projections may differ from cached keys.
fn same_kind(q: Tensor, k: Tensor, v: Tensor) -> (Tensor, Tensor, Tensor) {
    let kind = q.kind();
    let k = if k.kind() == kind { k } else { k.to_kind(kind) };
    let v = if v.kind() == kind { v } else { v.to_kind(kind) };
    (q, k, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positions restart at each example's first token. RoPE scores depend only on distances,
    /// so the packed-logits test (engine/models/tests/packed_attention.rs) cannot see absolute
    /// positions: they are checked here against a plain loop over each row.
    #[test]
    fn packed_positions_restart_per_example() {
        let rows: [&[i64]; 4] = [
            &[1, 1, 1, 2, 2, 3, 0, 0],
            &[0, 0, 1, 1, 1, 1, 1, 1],
            &[1, 0, 2, 2, 0, 4, 4, 4],
            &[1, 2, 3, 4, 5, 6, 7, 8],
        ];
        let t = rows[0].len() as i64;
        let seg = Tensor::from_slice(&rows.concat()).reshape([rows.len() as i64, t]);
        let got = Vec::<i64>::try_from(Llama::packed_positions(&seg).flatten(0, 1)).unwrap();
        let mut want = vec![];
        for row in rows {
            let mut pos = 0;
            for (j, &s) in row.iter().enumerate() {
                pos = if j > 0 && row[j - 1] == s { pos + 1 } else { 0 };
                want.push(if s == 0 { 0 } else { pos });
            }
        }
        assert_eq!(got, want);
        assert_eq!(&got[..8], &[0, 1, 2, 0, 1, 0, 0, 0]);
    }
}
