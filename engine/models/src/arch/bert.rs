//! The BERT family in tch (BERT, RoBERTa, XLM-RoBERTa): embeddings, post-LN encoder with exact
//! GELU, fused attention with a padding mask, and the heads ardpipe trains: masked-mean
//! embeddings and sequence classification laid out exactly like transformers'
//! `BertForSequenceClassification` (pooler → classifier) or `RobertaForSequenceClassification`
//! (`classifier.dense` → tanh → `classifier.out_proj`, no pooler). RoBERTa's positions start at
//! `pad_token_id + 1` and skip padding tokens (`create_position_ids_from_input_ids`).

use ardpipe_adapters::AdaptableLinear;
use tch::{Device, Kind, Tensor};

use super::config::{BertConfig, EncoderFamily};
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
    /// BERT: CLS → pooler.dense → tanh → dropout → classifier. RoBERTa: first token → dropout →
    /// classifier.dense → tanh → dropout → classifier.out_proj. The last linear is new, seeded,
    /// unless the checkpoint carries one with `num_labels` rows.
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
    /// Module-path prefix: `bert.` / `roberta.` inside a classification model (as transformers
    /// names it).
    pub prefix: String,
    pub head: EncoderHead,
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    pub token_type_embeddings: Tensor,
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
    /// Classification head only, trainable: the dense layer before tanh (BERT's `pooler.dense`
    /// from the checkpoint; RoBERTa's `classifier.dense`, the checkpoint's or new).
    pub pooler: Option<HeadLinear>,
    /// Classification head only: the output layer (BERT's `classifier`, RoBERTa's
    /// `classifier.out_proj`), new (or the checkpoint's, when it carries one that fits).
    pub classifier: Option<HeadLinear>,
    /// Whether the classifier came from the checkpoint (a fine-tuned model) or is new.
    pub classifier_from_checkpoint: bool,
    pub device: Device,
    pub precision: Precision,
}

impl Bert {
    /// Build from a weight source. `ckpt_prefix` is what the checkpoint's names start with
    /// (`bert.` / `roberta.` for a saved task model, empty for a bare encoder).
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
            EncoderHead::Classification { .. } => c.family.prefix(),
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
            w.adaptable(AdaptableLinear::new(
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
                // transformers' _init_weights for a new linear: normal(0, initializer_range), zero bias.
                let new_linear = |rows: i64, seed: u64| HeadLinear {
                    weight: trainable(
                        seeded_normal(&[rows, d], c.initializer_range, seed).to_device(device),
                    ),
                    bias: trainable(Tensor::zeros([rows], (Kind::Float, device))),
                };
                // The checkpoint's linear `name` when it has `rows` rows, else a new one.
                let fitting = |w: &mut WeightLoader<'_>,
                               name: &str,
                               rows: i64,
                               seed: u64|
                 -> Result<(HeadLinear, bool)> {
                    let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
                    if w.shape_of(&wn).as_deref() == Some(&[rows, d][..]) {
                        Ok((
                            HeadLinear {
                                weight: trainable(w.f32(&wn, &[rows, d])?),
                                bias: trainable(w.f32(&bn, &[rows])?),
                            },
                            true,
                        ))
                    } else {
                        w.ignore(&wn);
                        w.ignore(&bn);
                        Ok((new_linear(rows, seed), false))
                    }
                };
                let n_out = num_labels as i64;
                match c.family {
                    EncoderFamily::Bert => {
                        let pw = w.f32(&n("pooler.dense.weight"), &[d, d])?;
                        let pb = w.f32(&n("pooler.dense.bias"), &[d])?;
                        let pooler = HeadLinear {
                            weight: trainable(pw),
                            bias: trainable(pb),
                        };
                        let (classifier, from_ckpt) = fitting(w, "classifier", n_out, seed)?;
                        classifier_from_checkpoint = from_ckpt;
                        (Some(pooler), Some(classifier))
                    }
                    EncoderFamily::Roberta | EncoderFamily::XlmRoberta => {
                        // RobertaForSequenceClassification has no pooler: a base checkpoint's
                        // stays in the file, unused.
                        w.ignore(&n("pooler.dense.weight"));
                        w.ignore(&n("pooler.dense.bias"));
                        let (dense, _) = fitting(w, "classifier.dense", d, seed)?;
                        // A second stream for the second new linear, so the two differ.
                        let (out_proj, from_ckpt) = fitting(
                            w,
                            "classifier.out_proj",
                            n_out,
                            seed ^ 0xD1B5_4A32_D192_ED03,
                        )?;
                        classifier_from_checkpoint = from_ckpt;
                        (Some(dense), Some(out_proj))
                    }
                }
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

    /// The trainable head's module paths under transformers' names: BERT's
    /// `bert.pooler.dense` and `classifier`, RoBERTa's `classifier.dense` and `classifier.out_proj`.
    pub fn head_modules(&self) -> [String; 2] {
        match self.config.family {
            EncoderFamily::Bert => [format!("{}pooler.dense", self.prefix), "classifier".into()],
            EncoderFamily::Roberta | EncoderFamily::XlmRoberta => {
                ["classifier.dense".into(), "classifier.out_proj".into()]
            }
        }
    }

    /// The head's modules as PEFT's `modules_to_save` lists them: BERT's two linears, RoBERTa's
    /// whole `classifier` (PEFT refuses its sub-modules: it wraps `classifier` itself for SEQ_CLS).
    pub fn modules_to_save(&self) -> Vec<String> {
        match self.config.family {
            EncoderFamily::Bert => self.head_modules().to_vec(),
            EncoderFamily::Roberta | EncoderFamily::XlmRoberta => vec!["classifier".into()],
        }
    }

    /// The trainable head's tensors under transformers' names (what PEFT saves in
    /// `modules_to_save`): `{module}.weight` and `{module}.bias` of [`Bert::head_modules`].
    pub fn head_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        let [first, last] = self.head_modules();
        for (module, lin) in [(first, &self.pooler), (last, &self.classifier)] {
            if let Some(l) = lin {
                v.push((format!("{module}.weight"), l.weight.shallow_clone()));
                v.push((format!("{module}.bias"), l.bias.shallow_clone()));
            }
        }
        v
    }

    /// The most tokens one sequence may have: RoBERTa's positions start after the padding id.
    pub fn max_tokens(&self) -> usize {
        let c = &self.config;
        if c.family.roberta_positions() {
            // The config reader checked that pad_token_id + 1 is inside the table.
            c.max_position_embeddings
                .saturating_sub(c.pad_token_id.max(0) as usize + 1)
        } else {
            c.max_position_embeddings
        }
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
            v.push((format!("{}.weight", lin.path), lin.base.dense_weight()));
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
        if t as usize > self.max_tokens() {
            return Err(ModelError::Usage(format!(
                "{t} tokens exceed the model's {} positions: truncate the input",
                self.max_tokens()
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
        let positions = if c.family.roberta_positions() {
            // transformers' create_position_ids_from_input_ids: real tokens count from
            // pad_token_id + 1, padding tokens (by id) sit at pad_token_id.
            let real = ids.ne(c.pad_token_id).to_kind(Kind::Int64);
            real.cumsum(1, Kind::Int64) * &real + c.pad_token_id
        } else {
            Tensor::arange(t, (Kind::Int64, self.device))
        };
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
        let mut cls = h.select(1, 0);
        if self.config.family.roberta_positions() {
            // RobertaClassificationHead drops out the first token before its dense layer.
            cls = cls.dropout(self.config.classifier_dropout, train);
        }
        let pooled = cls.linear(&pooler.weight, Some(&pooler.bias)).tanh();
        let pooled = pooled.dropout(self.config.classifier_dropout, train);
        Ok(pooled
            .linear(&classifier.weight, Some(&classifier.bias))
            .to_kind(Kind::Float))
    }
}
