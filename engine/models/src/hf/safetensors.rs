//! Memory-mapped safetensors checkpoints: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`weight_map`: tensor name → shard file).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::weights::TensorSource;

struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the shard's map.
    start: usize,
    end: usize,
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

pub struct SafetensorsSource {
    dir: PathBuf,
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
}

pub const SINGLE: &str = "model.safetensors";
pub const INDEX: &str = "model.safetensors.index.json";

#[derive(serde::Deserialize)]
struct Index {
    weight_map: HashMap<String, String>,
}

impl SafetensorsSource {
    /// Open the weights of a Hugging Face folder.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE);
        let index = dir.join(INDEX);
        if single.exists() {
            let mut s = Self {
                dir: dir.to_path_buf(),
                shards: vec![],
                entries: BTreeMap::new(),
            };
            s.add_shard(&single, None)?;
            return Ok(s);
        }
        if index.exists() {
            return Self::open_index(dir, &index);
        }
        Err(ModelError::format(
            dir,
            format!(
                "no weights: neither {SINGLE} nor {INDEX} is in this folder \
                 (ardpipe reads safetensors; convert .bin checkpoints with transformers' \
                 `save_pretrained(..., safe_serialization=True)`)"
            ),
        ))
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
        let idx: Index = serde_json::from_str(&text)
            .map_err(|e| ModelError::format(index, format!("not a safetensors index: {e}")))?;
        let mut s = Self {
            dir: dir.to_path_buf(),
            shards: vec![],
            entries: BTreeMap::new(),
        };
        let mut files: Vec<&String> = idx.weight_map.values().collect();
        files.sort();
        files.dedup();
        for f in files {
            let expected: Vec<&str> = idx
                .weight_map
                .iter()
                .filter(|(_, v)| *v == f)
                .map(|(k, _)| k.as_str())
                .collect();
            let p = dir.join(f);
            if !p.exists() {
                return Err(ModelError::format(
                    index,
                    format!(
                        "the index lists shard {f} (holding {} tensors, e.g. `{}`) but {} does not exist: \
                         copy the missing shard into the folder",
                        expected.len(),
                        expected[0],
                        p.display()
                    ),
                ));
            }
            s.add_shard(&p, Some(&expected))?;
        }
        Ok(s)
    }

    fn add_shard(&mut self, path: &Path, expected: Option<&[&str]>) -> Result<()> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: read-only map; checkpoints are not modified while loaded.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let (header_len, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| {
            ModelError::format(
                path,
                format!("not a valid safetensors file ({e}); a truncated download? re-fetch it"),
            )
        })?;
        let base = 8 + header_len;
        let shard = self.shards.len();
        for (name, info) in meta.tensors() {
            if let Some(exp) = expected
                && !exp.contains(&name.as_str())
            {
                // A tensor the index does not place in this shard: the index is authoritative.
                continue;
            }
            self.entries.insert(
                name,
                Entry {
                    shard,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: base + info.data_offsets.0,
                    end: base + info.data_offsets.1,
                },
            );
        }
        if let Some(exp) = expected {
            let missing: Vec<&&str> = exp
                .iter()
                .filter(|n| !self.entries.contains_key(**n))
                .collect();
            if let Some(first) = missing.first() {
                return Err(ModelError::format(
                    path,
                    format!(
                        "the index places {} tensors (e.g. `{first}`) in this shard but it does not hold them: \
                         the shard and the index come from different checkpoints",
                        missing.len()
                    ),
                ));
            }
        }
        self.shards.push(Shard {
            path: path.to_path_buf(),
            mmap,
        });
        Ok(())
    }
}

fn kind_of(d: Dtype) -> Option<Kind> {
    Some(match d {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

impl TensorSource for SafetensorsSource {
    fn describe(&self) -> String {
        if self.shards.len() == 1 {
            self.shards[0].path.display().to_string()
        } else {
            format!("{} ({} shards)", self.dir.display(), self.shards.len())
        }
    }

    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.entries
            .get(name)
            .map(|e| e.shape.iter().map(|&d| d as i64).collect())
    }

    fn read(&self, name: &str) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| {
            ModelError::Usage(format!("no tensor `{name}` in {}", self.describe()))
        })?;
        let shard = &self.shards[e.shard];
        let kind = kind_of(e.dtype).ok_or_else(|| {
            ModelError::format(
                &shard.path,
                format!(
                    "tensor `{name}` has dtype {:?}, which ardpipe cannot load",
                    e.dtype
                ),
            )
        })?;
        let shape: Vec<i64> = e.shape.iter().map(|&d| d as i64).collect();
        // from_data_size copies out of the map; only this one tensor is resident at a time.
        let t = Tensor::f_from_data_size(&shard.mmap[e.start..e.end], &shape, kind)?;
        Ok(
            if matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Double) {
                t.to_kind(Kind::Float)
            } else {
                t
            },
        )
    }
}
