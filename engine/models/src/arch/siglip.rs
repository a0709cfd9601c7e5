//! SigLIP's vision tower as PaliGemma uses it (transformers' `SiglipVisionModel`'s last hidden
//! state): a patch embedding (a convolution with stride = kernel = patch), learned absolute
//! positions, pre-norm encoder layers (LayerNorm → multi-head attention over every patch →
//! residual; LayerNorm → fc1 → GELU (tanh) → fc2 → residual), a final LayerNorm. The attention
//! and MLP linears are [`AdaptableLinear`]s with head layouts, so adapters take them per head
//! like a decoder's. The reference is transformers' `models/siglip/modeling_siglip.py`.

use ardpipe_adapters::AdaptableLinear;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use ardpipe_adapters::{HeadAxis, HeadLayout};

use super::config::ModuleSpec;
use super::layers::LayerNorm;
use crate::error::Result;
use crate::weights::WeightLoader;

/// The tower's shape (config.json's `vision_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub layer_norm_eps: f64,
}

impl SiglipVisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Patches per image: `(image_size / patch_size)²`, the image tokens PaliGemma inserts.
    pub fn num_patches(&self) -> usize {
        let side = self.image_size / self.patch_size.max(1);
        side * side
    }

    /// Every adaptable linear under `prefix` (e.g. `model.vision_tower.`), in build order.
    pub fn modules(&self, prefix: &str) -> Vec<ModuleSpec> {
        let (d, f, h, hd) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_attention_heads,
            self.head_dim(),
        );
        let mut v = Vec::new();
        for l in 0..self.num_hidden_layers {
            let m = |sub: &str, name: &str, d_out, d_in, heads| ModuleSpec {
                path: format!("{prefix}encoder.layers.{l}.{sub}.{name}"),
                name: name.into(),
                layer: l,
                d_out,
                d_in,
                bias: true,
                heads,
            };
            let out = HeadLayout {
                axis: HeadAxis::Output,
                n_heads: h,
                head_dim: hd,
            };
            v.push(m("self_attn", "q_proj", d, d, out));
            v.push(m("self_attn", "k_proj", d, d, out));
            v.push(m("self_attn", "v_proj", d, d, out));
            v.push(m(
                "self_attn",
                "out_proj",
                d,
                d,
                HeadLayout {
                    axis: HeadAxis::Input,
                    n_heads: h,
                    head_dim: hd,
                },
            ));
            v.push(m("mlp", "fc1", f, d, HeadLayout::headless(f)));
            v.push(m("mlp", "fc2", d, f, HeadLayout::headless(d)));
        }
        v
    }

    /// Parameters: patch embedding, positions, layers, post-layernorm.
    pub fn parameter_count(&self) -> usize {
        let (d, c, p) = (self.hidden_size, self.num_channels, self.patch_size);
        let linears: usize = self
            .modules("")
            .iter()
            .map(|m| m.d_out * m.d_in + m.d_out)
            .sum();
        let norms = (2 * self.num_hidden_layers + 1) * 2 * d;
        linears + norms + d * c * p * p + d + self.num_patches() * d
    }
}

#[derive(Debug)]
pub struct SiglipLayer {
    pub layer_norm1: LayerNorm,
    pub q_proj: AdaptableLinear,
    pub k_proj: AdaptableLinear,
    pub v_proj: AdaptableLinear,
    pub out_proj: AdaptableLinear,
    pub layer_norm2: LayerNorm,
    pub fc1: AdaptableLinear,
    pub fc2: AdaptableLinear,
}

/// The vision tower.
#[derive(Debug)]
pub struct SiglipVision {
    pub config: SiglipVisionConfig,
    /// `[hidden, channels, patch, patch]` and `[hidden]`.
    pub patch_weight: Tensor,
    pub patch_bias: Tensor,
    /// `[patches, hidden]`.
    pub position_embedding: Tensor,
    pub layers: Vec<SiglipLayer>,
    pub post_layernorm: LayerNorm,
    /// `model.vision_tower.`: what its tensor and module names start with.
    pub prefix: String,
}

impl SiglipVision {
    pub fn load(
        config: SiglipVisionConfig,
        w: &mut WeightLoader<'_>,
        prefix: &str,
    ) -> Result<Self> {
        let c = &config;
        let d = c.hidden_size as i64;
        let mut specs = c.modules(prefix).into_iter();
        let mut linear = |w: &mut WeightLoader<'_>| -> Result<AdaptableLinear> {
            let s = specs.next().expect("one spec per linear, in build order");
            let weight = w.frozen(
                &format!("{}.weight", s.path),
                &[s.d_out as i64, s.d_in as i64],
            )?;
            let bias = w.f32(&format!("{}.bias", s.path), &[s.d_out as i64])?;
            w.adaptable(AdaptableLinear::new(s.path, weight, Some(bias), s.heads))
        };
        let ln = |w: &mut WeightLoader<'_>, name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: w.f32(&format!("{prefix}{name}.weight"), &[d])?,
                bias: w.f32(&format!("{prefix}{name}.bias"), &[d])?,
                eps: c.layer_norm_eps,
            })
        };
        let p = c.patch_size as i64;
        let patch_weight = w.frozen(
            &format!("{prefix}embeddings.patch_embedding.weight"),
            &[d, c.num_channels as i64, p, p],
        )?;
        let patch_bias = w.f32(&format!("{prefix}embeddings.patch_embedding.bias"), &[d])?;
        let position_embedding = w.frozen(
            &format!("{prefix}embeddings.position_embedding.weight"),
            &[c.num_patches() as i64, d],
        )?;
        w.ignore(&format!("{prefix}embeddings.position_ids"));
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let at = format!("encoder.layers.{l}");
            layers.push(SiglipLayer {
                layer_norm1: ln(w, &format!("{at}.layer_norm1"))?,
                q_proj: linear(w)?,
                k_proj: linear(w)?,
                v_proj: linear(w)?,
                out_proj: linear(w)?,
                layer_norm2: ln(w, &format!("{at}.layer_norm2"))?,
                fc1: linear(w)?,
                fc2: linear(w)?,
            });
        }
        let post_layernorm = ln(w, "post_layernorm")?;
        Ok(Self {
            config,
            patch_weight,
            patch_bias,
            position_embedding,
            layers,
            post_layernorm,
            prefix: prefix.to_string(),
        })
    }

    pub fn linears(&self) -> Vec<&AdaptableLinear> {
        self.layers
            .iter()
            .flat_map(|l| [&l.q_proj, &l.k_proj, &l.v_proj, &l.out_proj, &l.fc1, &l.fc2])
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
                    &mut l.out_proj,
                    &mut l.fc1,
                    &mut l.fc2,
                ]
            })
            .collect()
    }

    /// The weights that are not adaptable linears, by Hugging Face name.
    pub fn other_parameters(&self) -> Vec<(String, Tensor)> {
        let p = &self.prefix;
        let mut v = vec![
            (
                format!("{p}embeddings.patch_embedding.weight"),
                self.patch_weight.shallow_clone(),
            ),
            (
                format!("{p}embeddings.patch_embedding.bias"),
                self.patch_bias.shallow_clone(),
            ),
            (
                format!("{p}embeddings.position_embedding.weight"),
                self.position_embedding.shallow_clone(),
            ),
        ];
        let mut ln = |name: String, n: &LayerNorm| {
            v.push((format!("{name}.weight"), n.weight.shallow_clone()));
            v.push((format!("{name}.bias"), n.bias.shallow_clone()));
        };
        for (i, l) in self.layers.iter().enumerate() {
            ln(format!("{p}encoder.layers.{i}.layer_norm1"), &l.layer_norm1);
            ln(format!("{p}encoder.layers.{i}.layer_norm2"), &l.layer_norm2);
        }
        ln(format!("{p}post_layernorm"), &self.post_layernorm);
        v
    }

    /// Patch features `[b, patches, hidden]` for `pixel_values` `[b, channels, side, side]`
    /// (the processor's output: `image_size` square, normalised).
    pub fn forward(&self, pixel_values: &Tensor, train: bool) -> Tensor {
        let c = &self.config;
        let kind = self.patch_weight.kind();
        let p = c.patch_size as i64;
        let x = pixel_values
            .to_device(self.patch_weight.device())
            .to_kind(kind);
        let x = x.conv2d(
            &self.patch_weight,
            Some(&self.patch_bias.to_kind(kind)),
            [p, p],
            [0, 0],
            [1, 1],
            1,
        );
        // [b, d, gh, gw] → [b, patches, d], patches row by row.
        let x = x.flatten(2, 3).transpose(1, 2);
        let mut x = (x + &self.position_embedding).to_kind(Kind::Float);
        let (b, n, _) = x.size3().expect("[b, patches, hidden]");
        let (h, hd) = (c.num_attention_heads as i64, c.head_dim() as i64);
        let heads = |t: Tensor| t.view([b, n, h, hd]).transpose(1, 2);
        for l in &self.layers {
            let y = l.layer_norm1.forward(&x);
            let q = heads(l.q_proj.forward(&y, train));
            let k = heads(l.k_proj.forward(&y, train));
            let v = heads(l.v_proj.forward(&y, train));
            let kind = q.kind();
            let a = Tensor::scaled_dot_product_attention::<Tensor>(
                &q,
                &k.to_kind(kind),
                &v.to_kind(kind),
                None,
                0.0,
                false,
                None,
                false,
            );
            let a = a.transpose(1, 2).reshape([b, n, h * hd]);
            x = x.g_add(&l.out_proj.forward(&a, train));
            let y = l.layer_norm2.forward(&x);
            let m = l.fc1.forward(&y, train).gelu("tanh");
            x = x.g_add(&l.fc2.forward(&m, train));
        }
        self.post_layernorm.forward(&x)
    }
}
