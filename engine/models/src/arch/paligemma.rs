//! PaliGemma (`PaliGemmaForConditionalGeneration`): a SigLIP vision tower, a linear projector
//! into the decoder's embedding space, and a decoder of any family [`Llama`] builds (Gemma for
//! PaliGemma, Gemma 2 for PaliGemma-2; a composed model may use another).
//!
//! The input row is `num_image_tokens` image tokens, BOS, the prompt and `\n` (the prefix, which
//! attends to itself both ways), then the answer and EOS (causal). The image tokens' embeddings
//! are replaced by the projected patch features, which are not scaled by √hidden as the text
//! embeddings of the Gemma families are (transformers 5 scales inside the embedding module). An
//! image token id past the vocabulary (a decoder composed without one) reads embedding 0 before
//! being replaced, as transformers does. The reference is transformers'
//! `models/paligemma/modeling_paligemma.py`.

use ardpipe_adapters::{AdaptableLinear, HeadLayout};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::config::{LlamaConfig, ModuleSpec, check_dims, limits};
use super::llama::{KvCache, Llama};
use super::siglip::{SiglipVision, SiglipVisionConfig};
use crate::error::{ModelError, Result};
use crate::precision::{Precision, autocast};
use crate::weights::{TensorSource, WeightLoader};

/// What the module and tensor names of each part start with (transformers 5's module tree).
pub const VISION_PREFIX: &str = "model.vision_tower.";
pub const PROJECTOR: &str = "model.multi_modal_projector.linear";
pub const DECODER_PREFIX: &str = "model.language_model.";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaliGemmaConfig {
    pub vision: SiglipVisionConfig,
    pub text: LlamaConfig,
    /// The token the image features replace (`image_token_index`); may be past the vocabulary.
    pub image_token_id: u64,
}

impl PaliGemmaConfig {
    pub fn num_image_tokens(&self) -> usize {
        self.vision.num_patches()
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        use limits::*;
        let v = &self.vision;
        check_dims(&[
            (
                "vision_config.num_hidden_layers",
                v.num_hidden_layers,
                LAYERS,
            ),
            ("vision_config.hidden_size", v.hidden_size, HIDDEN),
            (
                "vision_config.intermediate_size",
                v.intermediate_size,
                INTERMEDIATE,
            ),
            (
                "vision_config.num_attention_heads",
                v.num_attention_heads,
                HEADS,
            ),
            ("vision_config.image_size", v.image_size, 1 << 14),
            ("vision_config.num_channels", v.num_channels, 16),
        ])?;
        let zero = [
            ("hidden_size", v.hidden_size),
            ("num_attention_heads", v.num_attention_heads),
            ("patch_size", v.patch_size),
            ("image_size", v.image_size),
            ("num_channels", v.num_channels),
        ]
        .into_iter()
        .find(|(_, n)| *n == 0);
        if let Some((key, _)) = zero {
            return Err(format!("vision_config.{key} is 0"));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(format!(
                "vision_config.hidden_size {} is not a multiple of num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}: SigLIP's patch \
                 grid would drop the edge",
                v.image_size, v.patch_size
            ));
        }
        self.text
            .validate()
            .map_err(|e| format!("text_config: {e}"))
    }

    /// Every adaptable linear: the vision tower's, the projector, the decoder's.
    pub fn modules(&self) -> Vec<ModuleSpec> {
        let mut v = self.vision.modules(VISION_PREFIX);
        let (d_out, d_in) = (self.text.hidden_size, self.vision.hidden_size);
        v.push(ModuleSpec {
            path: PROJECTOR.into(),
            name: "linear".into(),
            layer: 0,
            d_out,
            d_in,
            bias: true,
            heads: HeadLayout::headless(d_out),
        });
        v.extend(self.text.modules_at(DECODER_PREFIX));
        v
    }

    pub fn parameter_count(&self) -> usize {
        let projector = self.text.hidden_size * self.vision.hidden_size + self.text.hidden_size;
        self.vision.parameter_count() + projector + self.text.parameter_count()
    }
}

/// A checkpoint's tensors under the names of transformers 5's module tree, whatever layout
/// the file uses: transformers 5 saves `language_model.model.*` (and `language_model.lm_head`
/// when untied), `vision_tower.*`, `multi_modal_projector.*`; transformers 4 saved the tower
/// as `vision_tower.vision_model.*`; a file written from the module tree itself uses `model.*`.
pub struct PaliGemmaNames<'a> {
    inner: &'a dyn TensorSource,
    /// (module-tree name, file name), sorted by the former.
    names: Vec<(String, String)>,
}

impl<'a> PaliGemmaNames<'a> {
    pub fn new(inner: &'a dyn TensorSource) -> Self {
        let mut names: Vec<(String, String)> = inner
            .names()
            .into_iter()
            .map(|file| (Self::canonical(&file), file))
            .collect();
        names.sort();
        Self { inner, names }
    }

    /// The module-tree name of a file's tensor name.
    pub fn canonical(file: &str) -> String {
        let rules: [(&str, &str); 7] = [
            ("language_model.model.", DECODER_PREFIX),
            ("language_model.lm_head.", "lm_head."),
            ("language_model.", DECODER_PREFIX),
            ("vision_tower.vision_model.", VISION_PREFIX),
            ("vision_tower.", VISION_PREFIX),
            ("model.vision_tower.vision_model.", VISION_PREFIX),
            ("multi_modal_projector.", "model.multi_modal_projector."),
        ];
        for (from, to) in rules {
            if let Some(rest) = file.strip_prefix(from) {
                return format!("{to}{rest}");
            }
        }
        file.to_string()
    }

    fn file_name(&self, name: &str) -> Option<&str> {
        self.names
            .binary_search_by(|(c, _)| c.as_str().cmp(name))
            .ok()
            .map(|i| self.names[i].1.as_str())
    }
}

impl TensorSource for PaliGemmaNames<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn names(&self) -> Vec<String> {
        self.names.iter().map(|(c, _)| c.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.inner.shape(self.file_name(name)?)
    }
    fn read(&self, name: &str) -> Result<Tensor> {
        match self.file_name(name) {
            Some(f) => self.inner.read(f),
            None => Err(ModelError::Usage(format!("no tensor `{name}`"))),
        }
    }
}

/// The vision-language model.
#[derive(Debug)]
pub struct PaliGemma {
    pub config: PaliGemmaConfig,
    pub vision: SiglipVision,
    pub projector: AdaptableLinear,
    pub decoder: Llama,
}

impl PaliGemma {
    /// Build from a source named as [`PaliGemmaNames`] presents it.
    pub fn load(
        config: PaliGemmaConfig,
        w: &mut WeightLoader<'_>,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        let vision = SiglipVision::load(config.vision.clone(), w, VISION_PREFIX)?;
        // The pooling head of a SiglipVisionModel saved with `vision_use_head` is not part of
        // PaliGemma's computation (it reads the last hidden state).
        for n in [
            "probe",
            "attention.in_proj_weight",
            "attention.in_proj_bias",
        ] {
            w.ignore(&format!("{VISION_PREFIX}head.{n}"));
        }
        let (d_out, d_in) = (
            config.text.hidden_size as i64,
            config.vision.hidden_size as i64,
        );
        let weight = w.frozen(&format!("{PROJECTOR}.weight"), &[d_out, d_in])?;
        let bias = w.f32(&format!("{PROJECTOR}.bias"), &[d_out])?;
        let projector = AdaptableLinear::new(
            PROJECTOR,
            weight,
            Some(bias),
            HeadLayout::headless(d_out as usize),
        );
        let decoder = Llama::load_at(config.text.clone(), w, device, precision, DECODER_PREFIX)?;
        Ok(Self {
            config,
            vision,
            projector,
            decoder,
        })
    }

    /// Tensor name prefixes of a checkpoint that PaliGemma does not use.
    pub const UNUSED: &'static [&'static str] = &["model.vision_tower.head."];

    pub fn linears(&self) -> Vec<&AdaptableLinear> {
        let mut v = self.vision.linears();
        v.push(&self.projector);
        v.extend(self.decoder.linears());
        v
    }

    pub fn linears_mut(&mut self) -> Vec<&mut AdaptableLinear> {
        let mut v = self.vision.linears_mut();
        v.push(&mut self.projector);
        v.extend(self.decoder.linears_mut());
        v
    }

    /// Every base weight by transformers 5's module-tree name.
    pub fn base_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = self.vision.other_parameters();
        for lin in self.vision.linears().into_iter().chain([&self.projector]) {
            v.push((format!("{}.weight", lin.path), lin.base.dense_weight()));
            if let Some(b) = &lin.base.bias {
                v.push((format!("{}.bias", lin.path), b.shallow_clone()));
            }
        }
        v.extend(self.decoder.base_parameters());
        v
    }

    /// Projected image features `[b, image tokens, hidden]` (f32) for `pixel_values`
    /// `[b, channels, side, side]`.
    pub fn image_features(&self, pixel_values: &Tensor, train: bool) -> Result<Tensor> {
        let v = &self.config.vision;
        let want = [
            v.num_channels as i64,
            v.image_size as i64,
            v.image_size as i64,
        ];
        if pixel_values.dim() != 4 || pixel_values.size()[1..] != want {
            return Err(ModelError::Usage(format!(
                "pixel values must be [batch, {}, {}, {}] (the processor's output for this \
                 tower), got {:?}",
                want[0],
                want[1],
                want[2],
                pixel_values.size()
            )));
        }
        let f = self.vision.forward(pixel_values, train);
        Ok(self.projector.forward(&f, train).to_kind(Kind::Float))
    }

    /// The decoder's input embeddings: text embeddings with every image token's replaced, in
    /// order, by the image features (`num_image_tokens` per row, one image per row).
    fn inputs_embeds(&self, ids: &Tensor, pixel_values: &Tensor, train: bool) -> Result<Tensor> {
        let (b, _) = ids.size2()?;
        let ids = ids.to_device(self.decoder.device);
        let image = ids.eq(self.config.image_token_id as i64);
        let per_row = Vec::<i64>::try_from(image.sum_dim_intlist(1, false, Kind::Int64))?;
        let n = self.config.num_image_tokens() as i64;
        if let Some((row, got)) = per_row.iter().enumerate().find(|(_, c)| **c != n) {
            return Err(ModelError::Usage(format!(
                "row {row} has {got} image tokens (id {}); this model's image takes {n}",
                self.config.image_token_id
            )));
        }
        if pixel_values.size().first() != Some(&b) {
            return Err(ModelError::Usage(format!(
                "{} images for {b} rows: each row takes one",
                pixel_values.size().first().copied().unwrap_or(0)
            )));
        }
        let text_ids = ids.masked_fill(&image, 0);
        self.decoder.check_ids(&text_ids)?;
        let embeds = self.decoder.embed(&text_ids);
        let features = self.image_features(pixel_values, train)?;
        Ok(embeds.masked_scatter(&image.unsqueeze(-1).expand_as(&embeds), &features))
    }

    /// Logits `[b, t, vocab]` (f32). `attention_mask` `[b, t]` (1 = token); `prefix_len` `[b]`
    /// int64: each row's image + BOS + prompt tokens, which attend to each other both ways.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        pixel_values: &Tensor,
        attention_mask: Option<&Tensor>,
        prefix_len: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let _ac = autocast(self.decoder.device, self.decoder.precision.autocast);
        let h =
            self.last_hidden_state(input_ids, pixel_values, attention_mask, prefix_len, train)?;
        Ok(self.decoder.head(&h))
    }

    /// The decoder's final hidden states `[b, t, hidden]` that [`PaliGemma::forward`] applies
    /// the head to (same inputs, same prefix and mask), for a loss that applies the head
    /// itself ([`Llama::lm_loss`] on [`PaliGemma::decoder`]).
    pub fn last_hidden_state(
        &self,
        input_ids: &Tensor,
        pixel_values: &Tensor,
        attention_mask: Option<&Tensor>,
        prefix_len: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let _ac = autocast(self.decoder.device, self.decoder.precision.autocast);
        let x = self.inputs_embeds(input_ids, pixel_values, train)?;
        let prefix = prefix_len
            .to_device(self.decoder.device)
            .to_kind(Kind::Int64);
        self.decoder
            .hidden_from(x, attention_mask, None, Some(&prefix), None, train)
    }

    /// The prefill of generation: runs a prompt `input_ids` `[1, t]` (the image tokens, BOS,
    /// the question and `\n`, all of it the bidirectional prefix) with its image
    /// `pixel_values` `[1, channels, side, side]` into the empty `cache`, and returns the
    /// logits `[1, 1, vocab]` (f32) of its last position, which predict the first new token.
    /// Later tokens go through the decoder's [`Llama::forward_cached`]: each attends causally
    /// to the prompt and the tokens before it. Positions count from 0 here and from 1 in
    /// transformers; rotary embeddings see only their differences, so the logits agree.
    pub fn prefill(
        &self,
        input_ids: &Tensor,
        pixel_values: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.size2()?;
        if b != 1 || t == 0 {
            return Err(ModelError::Usage(format!(
                "a generation prompt is one non-empty row, got ids {:?}",
                input_ids.size()
            )));
        }
        if !cache.is_empty() {
            return Err(ModelError::Usage(
                "the prefill runs the whole prompt into an empty cache".into(),
            ));
        }
        let _g = tch::no_grad_guard();
        let _ac = autocast(self.decoder.device, self.decoder.precision.autocast);
        let x = self.inputs_embeds(input_ids, pixel_values, false)?;
        let prefix = Tensor::from_slice(&[t]).to_device(self.decoder.device);
        let h = self
            .decoder
            .hidden_from(x, None, None, Some(&prefix), Some(cache), false)?;
        Ok(self.decoder.head(&h.narrow(1, t - 1, 1)))
    }
}
