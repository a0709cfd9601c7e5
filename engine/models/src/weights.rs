//! Weight sources (safetensors folders, GGUF files) behind one interface keyed by Hugging Face
//! tensor names, and the loader that takes tensors from a source while filling a [`LoadReport`].

use std::collections::BTreeSet;

use ardpipe_adapters::AdaptableLinear;
use ardpipe_adapters::ops::QuantScheme;
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::report::{LoadReport, ShapeMismatch};

/// A checkpoint that yields tensors by Hugging Face name.
pub trait TensorSource {
    /// Where the weights come from, for messages.
    fn describe(&self) -> String;
    /// Every tensor name the checkpoint holds (Hugging Face names).
    fn names(&self) -> Vec<String>;
    /// The torch shape of a tensor, without reading its data.
    fn shape(&self, name: &str) -> Option<Vec<i64>>;
    /// Read one tensor as f32 on the CPU (dequantised / converted as needed).
    fn read(&self, name: &str) -> Result<Tensor>;
}

/// Takes tensors from a [`TensorSource`] for one architecture, recording the report.
///
/// Loading is two passes over the architecture's own build code: [`WeightLoader::shapes_only`]
/// compares every name and shape the config asks for with the checkpoint's, reading no data,
/// and only a clean report lets [`WeightLoader::new`] read. Placeholders (for what is missing or
/// mismatched) are zero-stride views, so a config that asks for huge tensors costs nothing
/// before its report refuses it.
pub struct WeightLoader<'a> {
    src: &'a dyn TensorSource,
    device: Device,
    storage: Kind,
    /// `model.quantize`: how adaptable linears' weights are stored once read.
    quantize: Option<QuantScheme>,
    /// False in the shapes-only pass.
    read: bool,
    taken: BTreeSet<String>,
    report: LoadReport,
}

impl<'a> WeightLoader<'a> {
    pub fn new(
        src: &'a dyn TensorSource,
        architecture: &str,
        device: Device,
        storage: Kind,
    ) -> Self {
        Self {
            src,
            device,
            storage,
            quantize: None,
            read: true,
            taken: BTreeSet::new(),
            report: LoadReport {
                source: src.describe(),
                architecture: architecture.to_string(),
                ..Default::default()
            },
        }
    }

    /// A pass that checks names and shapes only: every tensor is a placeholder.
    pub fn shapes_only(src: &'a dyn TensorSource, architecture: &str) -> Self {
        Self {
            read: false,
            ..Self::new(src, architecture, Device::Cpu, Kind::Float)
        }
    }

    /// Store every adaptable linear's weight quantised as it is read ([`Self::adaptable`]), so
    /// the dense model is never whole in memory.
    pub fn quantizing(mut self, scheme: Option<QuantScheme>) -> Self {
        self.quantize = scheme;
        self
    }

    /// A linear an adapter may target, its weight quantised when the load asks for it.
    pub fn adaptable(&self, mut linear: AdaptableLinear) -> Result<AdaptableLinear> {
        if let (Some(scheme), true) = (self.quantize, self.read) {
            linear.base.quantize(scheme).map_err(|why| {
                ModelError::Usage(format!(
                    "cannot quantise {} ({} × {}) as {}: {why}; choose another `quantize_group` \
                     or `quantize = int8`",
                    linear.path,
                    linear.base.d_out(),
                    linear.base.d_in(),
                    scheme.name(),
                ))
            })?;
        }
        Ok(linear)
    }

    pub fn shape_of(&self, name: &str) -> Option<Vec<i64>> {
        self.src.shape(name)
    }

    /// A frozen weight in the storage dtype. Records a miss or a mismatch and returns a
    /// placeholder so that loading continues and the report can list every problem at once.
    pub fn frozen(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.get(name, shape, self.storage)
    }

    /// A weight kept in f32 whatever the storage dtype (norms, biases: small, precision-sensitive).
    pub fn f32(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.get(name, shape, Kind::Float)
    }

    fn get(&mut self, name: &str, shape: &[i64], kind: Kind) -> Result<Tensor> {
        // One zero broadcast to the shape: no memory at the (unchecked) config's size.
        let placeholder = || Tensor::zeros([], (kind, Device::Cpu)).expand(shape, false);
        match self.src.shape(name) {
            None => {
                self.report.missing.push(name.to_string());
                Ok(placeholder())
            }
            Some(found) if found != shape => {
                self.taken.insert(name.to_string());
                self.report.mismatched.push(ShapeMismatch {
                    name: name.to_string(),
                    expected: shape.to_vec(),
                    found,
                });
                Ok(placeholder())
            }
            Some(_) if !self.read => {
                self.taken.insert(name.to_string());
                self.report.applied += 1;
                Ok(placeholder())
            }
            Some(_) => {
                self.taken.insert(name.to_string());
                self.report.applied += 1;
                let t = self.src.read(name)?;
                // Every weight built here is floating point: an integer or boolean tensor under
                // its name (a quantised export without its scales, a damaged header) would be
                // cast to float and load as garbage that runs with exit 0.
                if !t.is_floating_point() {
                    return Err(ModelError::format(
                        self.src.describe(),
                        format!(
                            "tensor `{name}` is stored as {:?}, not a floating-point type: it \
                             cannot be a model weight (a quantised file without its scales, or \
                             a damaged one); use the model's F32/F16/BF16 safetensors",
                            t.kind()
                        ),
                    ));
                }
                let t = t.to_kind(kind);
                // A NaN or an infinity in a weight (a damaged file, a corrupt quantisation scale)
                // would load fine and make every output NaN: refuse it here, naming the tensor.
                if t.is_floating_point() && t.isfinite().all().int64_value(&[]) == 0 {
                    return Err(ModelError::format(
                        self.src.describe(),
                        format!(
                            "tensor `{name}` holds NaN or infinite values (in {kind:?}): the file \
                             is damaged; re-fetch it"
                        ),
                    ));
                }
                Ok(t.to_device(self.device).set_requires_grad(false))
            }
        }
    }

    /// Mark a tensor as knowingly unused (buffers such as `position_ids`, heads we do not build).
    pub fn ignore(&mut self, name: &str) {
        self.taken.insert(name.to_string());
    }

    /// Finish: every tensor of the source must have been taken or ignored.
    /// `ignore_prefixes` lists parts of a checkpoint that this head does not use.
    pub fn finish(mut self, ignore_prefixes: &[&str]) -> Result<LoadReport> {
        for n in self.src.names() {
            if !self.taken.contains(&n) && !ignore_prefixes.iter().any(|p| n.starts_with(p)) {
                self.report.unexpected.push(n);
            }
        }
        if self.report.is_clean() {
            Ok(self.report)
        } else {
            Err(ModelError::Report(Box::new(self.report)))
        }
    }
}
