//! Metric plugins in an evaluation: every `plugin(NAME, ...)` of `evaluate.metrics` is created
//! once per evaluation with its options, fed each batch's predictions and labels, and finished
//! into named scalars. The plugin keeps running totals; ardpipe keeps no logits.

use std::collections::BTreeMap;

use ardpipe_dsl::pipeline as p;
use ardpipe_plugin_host::{Kind as PluginKind, MetricInstance, Predictions};
use tch::{Device, Kind, Tensor};

use super::TrainError;
use super::plugins::{self, Site};

/// What a plugin is fed per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// f32 logits `[b, classes]`.
    Logits,
    /// i64 predicted ids (the argmax): `[b]`, or `[b, t]` next tokens for a causal LM.
    Ids,
}

struct Live {
    /// Position in `evaluate.metrics`.
    index: usize,
    site: Site,
    /// Which of its scalars the pipeline asked for (`None`: all).
    want: Option<String>,
    feed: Feed,
    instance: MetricInstance,
}

/// The metric plugins of one evaluation.
pub(super) struct MetricPlugins {
    live: Vec<Live>,
}

/// A batch's predictions and labels copied to the host once, however many plugins read them.
struct HostBatch {
    logits: Option<(Vec<f32>, Vec<i64>)>,
    ids: Option<(Vec<i64>, Vec<i64>)>,
    labels: (Vec<i64>, Vec<i64>),
}

impl MetricPlugins {
    /// Creates every metric plugin the pipeline evaluates; with none, evaluation pays nothing.
    pub fn create(settings: &crate::plan::RunSettings) -> Result<MetricPlugins, TrainError> {
        let Some(evaluate) = &settings.evaluate else {
            return Ok(MetricPlugins { live: Vec::new() });
        };
        let causal_lm = matches!(settings.model.head, p::Head::CausalLm);
        let mut live = Vec::new();
        for (index, metric) in evaluate.metrics.iter().enumerate() {
            let p::Metric::Plugin {
                plugin,
                name,
                options,
            } = metric
            else {
                continue;
            };
            let site = Site::Metric {
                index,
                plugin: plugin.clone(),
            };
            let loaded = plugins::load(&settings.plugins, plugin, PluginKind::Metric, &site)?;
            let feed = feed(
                loaded.info().has_capability("logits"),
                loaded.info().has_capability("token-ids"),
                causal_lm,
            )
            .map_err(|why| TrainError::Other(format!("{site}: {why}")))?;
            let options = plugins::options_json(options, None, &site)?;
            let instance = loaded
                .create_metric(&options)
                .map_err(|e| plugins::failed(&site, e))?;
            live.push(Live {
                index,
                site,
                want: name.clone(),
                feed,
                instance,
            });
        }
        Ok(MetricPlugins { live })
    }

    /// Feeds one evaluation batch: `logits` `[b, classes]` or `[b, t, vocab]`, `labels` `[b]`
    /// or `[b, t]` (−100 marks positions to ignore).
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) -> Result<(), TrainError> {
        if self.live.is_empty() {
            return Ok(());
        }
        let wants = |feed| self.live.iter().any(|l| l.feed == feed);
        let host = HostBatch::copy(logits, labels, wants(Feed::Logits), wants(Feed::Ids))?;
        let (labels, labels_shape) = &host.labels;
        for live in &mut self.live {
            let predictions = match (live.feed, &host.logits, &host.ids) {
                (Feed::Logits, Some((data, shape)), _) => Predictions::Logits { data, shape },
                (Feed::Ids, _, Some((data, shape))) => Predictions::Ids { data, shape },
                _ => unreachable!("HostBatch::copy made what each plugin is fed"),
            };
            live.instance
                .update(predictions, labels, labels_shape)
                .map_err(|e| plugins::failed(&live.site, e))?;
        }
        Ok(())
    }

    /// Each plugin's scalars by its position in `evaluate.metrics`, only the one the pipeline
    /// named when it named one.
    pub fn finish(self) -> Result<BTreeMap<usize, Vec<(String, f64)>>, TrainError> {
        let mut out = BTreeMap::new();
        for live in self.live {
            let scalars = live
                .instance
                .finish()
                .map_err(|e| plugins::failed(&live.site, e))?;
            let scalars = match &live.want {
                None => scalars,
                Some(want) => {
                    let found: Vec<(String, f64)> =
                        scalars.iter().filter(|(n, _)| n == want).cloned().collect();
                    if found.is_empty() {
                        let names: Vec<&str> = scalars.iter().map(|(n, _)| n.as_str()).collect();
                        return Err(TrainError::Other(format!(
                            "{}: the pipeline asks for its metric `{want}`, but it reported {}\n  \
                             help: set `metric = ` to one of those, or drop it to keep them all",
                            live.site,
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        )));
                    }
                    found
                }
            };
            out.insert(live.index, scalars);
        }
        Ok(out)
    }
}

/// Logits where a plugin takes them and they are small (`[b, classes]`); predicted ids for a
/// causal LM, whose logits (`[b, t, vocabulary]`) would mean copying hundreds of MB per batch.
fn feed(logits: bool, ids: bool, causal_lm: bool) -> Result<Feed, String> {
    match (causal_lm, logits, ids) {
        (false, true, _) | (false, false, false) => Ok(Feed::Logits),
        (false, false, true) => Ok(Feed::Ids),
        (true, _, true) | (true, false, false) => Ok(Feed::Ids),
        (true, true, false) => Err(
            "this metric plugin takes logits only, but a causal LM's evaluation hands metric plugins \
             predicted token ids (its logits are [batch, tokens, vocabulary] per batch)\n  \
             help: give the plugin the `token-ids` capability and accept `Predictions::Ids`, or \
             use it with a classification model"
                .into(),
        ),
    }
}

/// Copies a tensor to host memory as a dense row-major vector with its shape.
fn to_host<T>(t: &Tensor, kind: Kind) -> Result<(Vec<T>, Vec<i64>), TrainError>
where
    Vec<T>: TryFrom<Tensor, Error = tch::TchError>,
{
    let t = t.to_kind(kind).to_device(Device::Cpu).contiguous();
    let shape = t.size();
    let data = Vec::<T>::try_from(t.view([-1]))?;
    Ok((data, shape))
}

impl HostBatch {
    fn copy(
        logits: &Tensor,
        labels: &Tensor,
        want_logits: bool,
        want_ids: bool,
    ) -> Result<HostBatch, TrainError> {
        Ok(HostBatch {
            logits: want_logits
                .then(|| to_host(logits, Kind::Float))
                .transpose()?,
            ids: want_ids
                .then(|| to_host(&logits.argmax(-1, false), Kind::Int64))
                .transpose()?,
            labels: to_host(labels, Kind::Int64)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_gets_logits_and_a_causal_lm_gets_ids() {
        assert_eq!(feed(true, true, false), Ok(Feed::Logits));
        assert_eq!(feed(true, false, false), Ok(Feed::Logits));
        assert_eq!(feed(false, false, false), Ok(Feed::Logits));
        assert_eq!(feed(false, true, false), Ok(Feed::Ids));
        assert_eq!(feed(true, true, true), Ok(Feed::Ids));
        assert_eq!(feed(false, false, true), Ok(Feed::Ids));
        assert!(feed(true, false, true).unwrap_err().contains("token-ids"));
    }

    #[test]
    fn host_copies_are_dense_with_their_shape() {
        // A transposed (non-contiguous) view must arrive row-major as it reads.
        let logits = Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2, 0.3, 0.7])
            .view([2, 3])
            .transpose(0, 1);
        let labels = Tensor::from_slice(&[1i64, 0, 1]);
        let host = HostBatch::copy(&logits, &labels, true, true).unwrap();
        assert_eq!(
            host.logits,
            Some((vec![0.1, 0.2, 0.9, 0.3, 0.8, 0.7], vec![3, 2]))
        );
        assert_eq!(host.ids, Some((vec![1, 0, 0], vec![3])));
        assert_eq!(host.labels, (vec![1, 0, 1], vec![3]));
        let host = HostBatch::copy(&logits, &labels, false, true).unwrap();
        assert!(host.logits.is_none());
    }
}
