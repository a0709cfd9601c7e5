//! The BERT family in tch: embeddings, post-LN encoder with exact GELU, fused attention with a
//! padding mask, and the heads ardpipe trains: masked-mean embeddings and sequence
//! classification laid out exactly like transformers' `BertForSequenceClassification`.

use ardpipe_adapters::AdaptableLinear;
use tch::{Device, Kind, Tensor};

use super::config::BertConfig;
use super::layers::{LayerNorm, seeded_normal};
use crate::error::{ModelError, Result};
use crate::precision::{Precision, autocast};
use crate::weights::WeightLoader;

#[derive(Debug)]
pub struct BertLayer {
    pub query: AdaptableLinear,
    pub key: AdaptableLinear,
    pub value: AdaptableLinear,
    pub attention_output: AdaptableLinear,
    pub attention_norm: LayerNorm,
    pub intermediate: AdaptableLinear,
    pub output: AdaptableLinear,
    pub output_norm: LayerNorm,
}

/// Which head the encoder carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderHead {
    /// Masked mean pooling, L2-normalised (sentence-transformers style).
    Embedding,
    /// CLS → pooler.dense → tanh → dropout → classifier; the classifier is new, seeded.
    Classification { num_labels: usize, seed: u64 },
}

/// A trainable linear of the classification head (pooler or classifier).
#[derive(Debug)]
pub struct HeadLinear {
    pub weight: Tensor,
    pub bias: Tensor,
}

#[derive(Debug)]
pub struct Bert {
    pub config: BertConfig,
    /// Module-path prefix: `bert.` inside a classification model (as transformers names it).
    pub prefix: String,
    pub head: EncoderHead,
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    pub token_type_embeddings: Tensor,
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
    /// Classification head only: from the checkpoint's pooler, trainable.
    pub pooler: Option<HeadLinear>,
    /// Classification head only: new (or the checkpoint's, when it carries one that fits).
    pub classifier: Option<HeadLinear>,
    /// Whether the classifier came from the checkpoint (a fine-tuned model) or is new.
    pub classifier_from_checkpoint: bool,
    pub device: Device,
    pub precision: Precision,
}

impl Bert {
    /// Build from a weight source. `ckpt_prefix` is what the checkpoint's names start with
    /// (`bert.` for a saved classification model, empty for a bare encoder).
    pub fn load(
        config: BertConfig,
        head: EncoderHead,
        ckpt_prefix: &str,
        w: &mut WeightLoader<'_>,
        device: Device,
        precision: Precision,
    ) -> Result<Self> {
        let c = &config;
        let d = c.hidden_size as i64;
        let prefix = match head {
            EncoderHead::Embedding => "",
            EncoderHead::Classification { .. } => "bert.",
        }
        .to_string();
        let n = |rel: &str| format!("{ckpt_prefix}{rel}");
        let ln = |w: &mut WeightLoader<'_>, rel: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: w.f32(&n(&format!("{rel}.weight")), &[d])?,
                bias: w.f32(&n(&format!("{rel}.bias")), &[d])?,
                eps: c.layer_norm_eps,
            })
        };
        let mut specs = c.modules("").into_iter();
        let mut linear = |w: &mut WeightLoader<'_>| -> Result<AdaptableLinear> {
            let s = specs.next().expect("one spec per linear, in build order");
            let shape = [s.d_out as i64, s.d_in as i64];
            let weight = w.frozen(&n(&format!("{}.weight", s.path)), &shape)?;
            let bias = w.f32(&n(&format!("{}.bias", s.path)), &[s.d_out as i64])?;
            Ok(AdaptableLinear::new(
                format!("{prefix}{}", s.path),
                weight,
                Some(bias),
                s.heads,
            ))
        };
        let word_embeddings = w.frozen(
            &n("embeddings.word_embeddings.weight"),
            &[c.vocab_size as i64, d],
        )?;
        let position_embeddings = w.frozen(
            &n("embeddings.position_embeddings.weight"),
            &[c.max_position_embeddings as i64, d],
        )?;
        let token_type_embeddings = w.frozen(
            &n("embeddings.token_type_embeddings.weight"),
            &[c.type_vocab_size as i64, d],
        )?;
        w.ignore(&n("embeddings.position_ids"));
        let embeddings_norm = ln(w, "embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let query = linear(w)?;
            let key = linear(w)?;
            let value = linear(w)?;
            let attention_output = linear(w)?;
            let attention_norm = ln(w, &format!("{p}.attention.output.LayerNorm"))?;
            let intermediate = linear(w)?;
            let output = linear(w)?;
            let output_norm = ln(w, &format!("{p}.output.LayerNorm"))?;
            layers.push(BertLayer {
                query,
                key,
                value,
                attention_output,
                attention_norm,
                intermediate,
                output,
                output_norm,
            });
        }
        let mut classifier_from_checkpoint = false;
        let (pooler, classifier) = match head {
            EncoderHead::Embedding => {
                // Mean pooling does not use the pooler; it stays in the file, unused.
                w.ignore(&n("pooler.dense.weight"));
                w.ignore(&n("pooler.dense.bias"));
                (None, None)
            }
            EncoderHead::Classification { num_labels, seed } => {
                if num_labels < 2 {
                    return Err(ModelError::Usage(format!(
                        "a classifier needs at least 2 labels, got {num_labels}"
                    )));
                }
                let trainable = |t: Tensor| t.to_kind(Kind::Float).set_requires_grad(true);
                let pw = w.f32(&n("pooler.dense.weight"), &[d, d])?;
                let pb = w.f32(&n("pooler.dense.bias"), &[d])?;
                let pooler = HeadLinear {
                    weight: trainable(pw),
                    bias: trainable(pb),
                };
                let shape = [num_labels as i64, d];
                let classifier = if w.shape_of("classifier.weight").as_deref() == Some(&shape[..]) {
                    classifier_from_checkpoint = true;
                    HeadLinear {
                        weight: trainable(w.f32("classifier.weight", &shape)?),
                        bias: trainable(w.f32("classifier.bias", &[num_labels as i64])?),
                    }
                } else {
                    // transformers' _init_weights: normal(0, initializer_range), zero bias.
                    w.ignore("classifier.weight");
                    w.ignore("classifier.bias");
                    HeadLinear {
                        weight: trainable(
                            seeded_normal(&shape, c.initializer_range, seed).to_device(device),
                        ),
                        bias: trainable(Tensor::zeros([num_labels as i64], (Kind::Float, device))),
                    }
                };
                (Some(pooler), Some(classifier))
            }
        };
        Ok(Self {
            config,
            prefix,
            head,
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_norm,
            layers,
            pooler,
            classifier,
            classifier_from_checkpoint,
            device,
            precision,
        })
    }

    pub fn linears(&self) -> Vec<&AdaptableLinear> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    &l.query,
                    &l.key,
                    &l.value,
                    &l.attention_output,
                    &l.intermediate,
                    &l.output,
                ]
            })
            .collect()
    }

    pub fn linears_mut(&mut self) -> Vec<&mut AdaptableLinear> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.query,
                    &mut l.key,
                    &mut l.value,
                    &mut l.attention_output,
                    &mut l.intermediate,
                    &mut l.output,
                ]
            })
            .collect()
    }

    /// The trainable head's tensors under transformers' names (what PEFT saves in
    /// `modules_to_save`): `bert.pooler.dense.{weight,bias}`, `classifier.{weight,bias}`.
    pub fn head_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if let Some(p) = &self.pooler {
            v.push((
                format!("{}pooler.dense.weight", self.prefix),
                p.weight.shallow_clone(),
            ));
            v.push((
                format!("{}pooler.dense.bias", self.prefix),
                p.bias.shallow_clone(),
            ));
        }
        if let Some(c) = &self.classifier {
            v.push(("classifier.weight".into(), c.weight.shallow_clone()));
            v.push(("classifier.bias".into(), c.bias.shallow_clone()));
        }
        v
    }

    /// All frozen base weights by module-path name (for full fine-tuning and merging).
    pub fn base_parameters(&self) -> Vec<(String, Tensor)> {
        let p = &self.prefix;
        let mut v = vec![
            (
                format!("{p}embeddings.word_embeddings.weight"),
                self.word_embeddings.shallow_clone(),
            ),
            (
                format!("{p}embeddings.position_embeddings.weight"),
                self.position_embeddings.shallow_clone(),
            ),
            (
                format!("{p}embeddings.token_type_embeddings.weight"),
                self.token_type_embeddings.shallow_clone(),
            ),
            (
                format!("{p}embeddings.LayerNorm.weight"),
                self.embeddings_norm.weight.shallow_clone(),
            ),
            (
                format!("{p}embeddings.LayerNorm.bias"),
                self.embeddings_norm.bias.shallow_clone(),
            ),
        ];
        for (i, l) in self.layers.iter().enumerate() {
            for (name, norm) in [
                ("attention.output.LayerNorm", &l.attention_norm),
                ("output.LayerNorm", &l.output_norm),
            ] {
                v.push((
                    format!("{p}encoder.layer.{i}.{name}.weight"),
                    norm.weight.shallow_clone(),
                ));
                v.push((
                    format!("{p}encoder.layer.{i}.{name}.bias"),
                    norm.bias.shallow_clone(),
                ));
            }
        }
        for lin in self.linears() {
            v.push((
                format!("{}.weight", lin.path),
                lin.base.weight.shallow_clone(),
            ));
            if let Some(b) = &lin.base.bias {
                v.push((format!("{}.bias", lin.path), b.shallow_clone()));
            }
        }
        v
    }

    fn check(&self, ids: &Tensor, mask: &Tensor) -> Result<(i64, i64)> {
        if ids.dim() != 2 || ids.kind() != Kind::Int64 {
            return Err(ModelError::Usage(format!(
                "input ids must be an int64 [batch, tokens] tensor, got {:?} {:?}",
                ids.kind(),
                ids.size()
            )));
        }
        let (b, t) = ids.size2()?;
        if mask.size() != [b, t] {
            return Err(ModelError::Usage(format!(
                "attention mask {:?} does not match the ids [{b}, {t}]",
                mask.size()
            )));
        }
        if t as usize > self.config.max_position_embeddings {
            return Err(ModelError::Usage(format!(
                "{t} tokens exceed the model's {} positions: truncate the input",
                self.config.max_position_embeddings
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
        Ok((b, t))
    }

    /// Final hidden states `[b, t, hidden]` (f32). `attention_mask`: 1 = token, 0 = padding.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t) = self.check(input_ids, attention_mask)?;
        let c = &self.config;
        let (nh, hd) = (c.num_attention_heads as i64, c.head_dim() as i64);
        let p_hidden = c.hidden_dropout_prob;
        let p_attn = if train {
            c.attention_probs_dropout_prob
        } else {
            0.0
        };
        let ids = input_ids.to_device(self.device);
        let keys = attention_mask
            .to_device(self.device)
            .to_kind(Kind::Bool)
            .view([b, 1, 1, t]);
        let positions = Tensor::arange(t, (Kind::Int64, self.device));
        let types = Tensor::zeros([b, t], (Kind::Int64, self.device));
        let lookup =
            |w: &Tensor, i: &Tensor| Tensor::embedding(w, i, -1, false, false).to_kind(Kind::Float);
        let emb = lookup(&self.word_embeddings, &ids)
            + lookup(&self.position_embeddings, &positions)
            + lookup(&self.token_type_embeddings, &types);
        let mut x = self.embeddings_norm.forward(&emb).dropout(p_hidden, train);
        for l in &self.layers {
            let heads = |y: Tensor| y.view([b, t, nh, hd]).transpose(1, 2);
            let q = heads(l.query.forward(&x, train));
            let k = heads(l.key.forward(&x, train));
            let v = heads(l.value.forward(&x, train));
            let a = Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                Some(&keys),
                p_attn,
                false,
                None,
                false,
            )
            .transpose(1, 2)
            .reshape([b, t, nh * hd]);
            let a = l
                .attention_output
                .forward(&a, train)
                .dropout(p_hidden, train);
            x = l.attention_norm.forward(&(a + &x));
            let h = l.intermediate.forward(&x, train).gelu("none");
            let h = l.output.forward(&h, train).dropout(p_hidden, train);
            x = l.output_norm.forward(&(h + &x));
        }
        Ok(x.to_kind(Kind::Float))
    }

    /// Masked mean pooling, L2-normalised: `[b, hidden]`.
    pub fn embed(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let _ac = autocast(self.device, self.precision.autocast);
        let h = self.encode(input_ids, attention_mask, false)?;
        let m = attention_mask
            .to_device(self.device)
            .to_kind(Kind::Float)
            .unsqueeze(-1);
        let summed = (&h * &m).sum_dim_intlist(1, false, Kind::Float);
        let counts = m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-9);
        let mean = summed / counts;
        let norm = mean.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        Ok(mean / norm)
    }

    /// Sequence-classification logits `[b, num_labels]` (f32).
    pub fn classify(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let (Some(pooler), Some(classifier)) = (&self.pooler, &self.classifier) else {
            return Err(ModelError::Usage(
                "this encoder was loaded with the embedding head; load it with a classification head to classify".into(),
            ));
        };
        let _ac = autocast(self.device, self.precision.autocast);
        let h = self.encode(input_ids, attention_mask, train)?;
        let cls = h.select(1, 0);
        let pooled = cls.linear(&pooler.weight, Some(&pooler.bias)).tanh();
        let pooled = pooled.dropout(self.config.classifier_dropout, train);
        Ok(pooled
            .linear(&classifier.weight, Some(&classifier.bias))
            .to_kind(Kind::Float))
    }
}
