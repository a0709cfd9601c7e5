//! A growable K×K confusion matrix of counts, and the multi-class MCC computed from it.

use ardpipe_plugin_sdk::PluginError;

#[derive(Debug, Clone, Default)]
pub struct Confusion {
    k: usize,
    /// Fixed by the `num_classes` option or the first logits' width; otherwise grows with ids.
    fixed: bool,
    counts: Vec<u64>,
}

impl Confusion {
    pub fn new(classes: Option<usize>) -> Self {
        let k = classes.unwrap_or(0);
        Confusion {
            k,
            fixed: classes.is_some(),
            counts: vec![0; k * k],
        }
    }

    pub fn classes(&self) -> usize {
        self.k
    }

    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.k + predicted]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Logits say how many classes there are; every batch must agree.
    pub fn fix_width(&mut self, width: usize) -> Result<(), PluginError> {
        if self.fixed && self.k != width {
            return Err(PluginError::new(format!(
                "logits have {width} classes but the metric counts {} (from `num_classes` or an earlier batch)",
                self.k
            )));
        }
        self.grow(width);
        self.fixed = true;
        Ok(())
    }

    pub fn add(&mut self, truth: i64, predicted: i64) -> Result<(), PluginError> {
        let index = |v: i64, what: &str| {
            usize::try_from(v).ok().filter(|&i| !self.fixed || i < self.k).ok_or_else(|| {
                PluginError::new(format!(
                    "{what} class {v} is outside 0..{} (set `num_classes`, or check the label mapping)",
                    self.k
                ))
            })
        };
        let (t, p) = (index(truth, "true")?, index(predicted, "predicted")?);
        self.grow(t.max(p) + 1);
        self.counts[t * self.k + p] += 1;
        Ok(())
    }

    fn grow(&mut self, k: usize) {
        if k <= self.k {
            return;
        }
        let mut counts = vec![0; k * k];
        for t in 0..self.k {
            for p in 0..self.k {
                counts[t * k + p] = self.counts[t * self.k + p];
            }
        }
        self.k = k;
        self.counts = counts;
    }

    /// Gorodkin's R_K; 0 when undefined (a zero denominator).
    pub fn mcc(&self) -> f64 {
        let k = self.k;
        let s = self.total() as f64;
        let c: f64 = (0..k).map(|i| self.get(i, i) as f64).sum();
        let t: Vec<f64> = (0..k)
            .map(|i| (0..k).map(|j| self.get(i, j) as f64).sum())
            .collect();
        let p: Vec<f64> = (0..k)
            .map(|j| (0..k).map(|i| self.get(i, j) as f64).sum())
            .collect();
        let pt: f64 = p.iter().zip(&t).map(|(a, b)| a * b).sum();
        let pp: f64 = p.iter().map(|a| a * a).sum();
        let tt: f64 = t.iter().map(|a| a * a).sum();
        let denominator = ((s * s - pp) * (s * s - tt)).sqrt();
        if denominator == 0.0 {
            0.0
        } else {
            (c * s - pt) / denominator
        }
    }
}
