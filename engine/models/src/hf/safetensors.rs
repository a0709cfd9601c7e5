//! Memory-mapped safetensors checkpoints: one `model.safetensors`, shards listed by
//! `model.safetensors.index.json` (`weight_map`: tensor name → shard file), or, without either,
//! the folder's only `*.safetensors` file or a complete set of `NAME-0000i-of-0000n.safetensors`
//! shards.
//!
//! Every offset and size read from a file is checked against the file before it is used.

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
            return Self::open_files(dir, &[single]);
        }
        if index.exists() {
            return Self::open_index(dir, &index);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| ModelError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        match files.len() {
            0 => Err(ModelError::format(
                dir,
                format!(
                    "no weights: no *.safetensors file (and no {INDEX}) is in this folder \
                     (ardpipe reads safetensors; convert .bin checkpoints with transformers' \
                     `save_pretrained(..., safe_serialization=True)`)"
                ),
            )),
            1 => Self::open_files(dir, &files),
            _ => {
                check_shard_set(dir, &files)?;
                Self::open_files(dir, &files)
            }
        }
    }

    /// Open one safetensors file (e.g. an adapter's weights).
    pub fn open_file(path: &Path) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::open_files(dir, &[path.to_path_buf()])
    }

    /// Files whose tensors together form the checkpoint; a name in two of them is an error.
    fn open_files(dir: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut s = Self {
            dir: dir.to_path_buf(),
            shards: vec![],
            entries: BTreeMap::new(),
        };
        for f in files {
            s.add_shard(f, None)?;
        }
        Ok(s)
    }

    /// The stored dtype of a tensor, without reading it.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.entries.get(name).map(|e| e.dtype)
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
            // Shards sit beside the index: a name with a directory part (`../x`, `/etc/x`)
            // could make the loader read any file on the machine.
            let plain = Path::new(f).file_name().is_some_and(|n| n == f.as_str());
            if !plain || f == ".." {
                return Err(ModelError::format(
                    index,
                    format!(
                        "the index lists shard `{f}`, which is not a file name in this folder: \
                         shards must sit beside the index"
                    ),
                ));
            }
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
        check_header(&mmap, path)?;
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
            // read_metadata checked the offsets against the file; checked again here so that
            // a slice of the map can never be out of bounds whatever that crate accepts.
            let (s, e) = info.data_offsets;
            let range = base
                .checked_add(s)
                .zip(base.checked_add(e))
                .filter(|&(start, end)| start <= end && end <= mmap.len());
            let Some((start, end)) = range else {
                return Err(ModelError::format(
                    path,
                    format!(
                        "corrupt safetensors: tensor `{name}` has data offsets [{s}, {e}] \
                         outside the file's {} data bytes; re-fetch it",
                        mmap.len() - base
                    ),
                ));
            };
            if let Some(d) = info.shape.iter().find(|&&d| i64::try_from(d).is_err()) {
                return Err(ModelError::format(
                    path,
                    format!("corrupt safetensors: tensor `{name}` has a dimension of {d}"),
                ));
            }
            if let Some(prev) = self.entries.get(&name) {
                return Err(ModelError::format(
                    path,
                    format!(
                        "tensor `{name}` is also in {}: two files here hold the same weights \
                         (copies of one checkpoint?); keep one",
                        self.shards[prev.shard].path.display()
                    ),
                ));
            }
            self.entries.insert(
                name,
                Entry {
                    shard,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start,
                    end,
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

/// Refuse a header whose data offsets lie beyond the file before the `safetensors` crate reads
/// it: that crate adds the last offset to the header length unchecked, so a crafted header
/// overflows there (a panic in debug builds, a wrong bounds check in release builds).
/// Anything else wrong with the header is left to the crate's own errors.
pub fn check_header(bytes: &[u8], path: &Path) -> Result<()> {
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    else {
        return Ok(());
    };
    let Some(header) = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
    else {
        return Ok(());
    };
    let data_len = (bytes.len() - 8 - header.len()) as u64;
    // A name given twice: JSON maps keep one copy silently (the `safetensors` crate then
    // reports a wrong offset under another tensor's name), so name the repeated tensor here.
    if let Ok(HeaderKeys(keys)) = serde_json::from_slice::<HeaderKeys>(header) {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = keys.iter().find(|k| !seen.insert(k.as_str())) {
            return Err(ModelError::format(
                path,
                format!(
                    "corrupt safetensors: the header lists tensor `{dup}` twice; the file was \
                     damaged or badly written (re-fetch or re-save it)"
                ),
            ));
        }
    }
    let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(header)
    else {
        return Ok(());
    };
    for (name, info) in &map {
        let offsets = info.get("data_offsets").and_then(|o| o.as_array());
        for o in offsets.into_iter().flatten() {
            if let Some(o) = o.as_u64()
                && o > data_len
            {
                return Err(ModelError::format(
                    path,
                    format!(
                        "corrupt safetensors: tensor `{name}` has data offset {o} but the file \
                         holds {data_len} data bytes (a truncated download? re-fetch it)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The keys of a JSON object in file order, repeats kept (values skipped unread).
struct HeaderKeys(Vec<String>);

impl<'de> serde::Deserialize<'de> for HeaderKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = HeaderKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<HeaderKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(HeaderKeys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Several `*.safetensors` files without an index load only as one complete set of shards named
/// as `save_pretrained` names them (`STEM-0000i-of-0000n.safetensors`, i = 1..=n).
fn check_shard_set(dir: &Path, files: &[PathBuf]) -> Result<()> {
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let ambiguous = || {
        ModelError::format(
            dir,
            format!(
                "{} *.safetensors files ({}) and no {SINGLE} or {INDEX}: ardpipe cannot tell \
                 which hold this model. Keep only the model's file, or its complete set of \
                 shards named `model-00001-of-0000N.safetensors` …, or add the index",
                names.len(),
                names.join(", ")
            ),
        )
    };
    // (stem, i, n) of `STEM-IIIII-of-NNNNN.safetensors`.
    let parse = |name: &str| -> Option<(String, usize, usize)> {
        let rest = name.strip_suffix(".safetensors")?;
        let (rest, n) = rest.rsplit_once("-of-")?;
        let (stem, i) = rest.rsplit_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(i) && digits(n)).then_some(())?;
        Some((stem.to_string(), i.parse().ok()?, n.parse().ok()?))
    };
    let parsed: Vec<(String, usize, usize)> = names
        .iter()
        .map(|n| parse(n))
        .collect::<Option<_>>()
        .ok_or_else(ambiguous)?;
    let (stem, _, total) = parsed[0].clone();
    if parsed.iter().any(|(s, _, n)| *s != stem || *n != total) {
        return Err(ambiguous());
    }
    let have: std::collections::BTreeSet<usize> = parsed.iter().map(|p| p.1).collect();
    if have.len() != parsed.len() || have.iter().any(|&i| i == 0 || i > total) {
        return Err(ambiguous());
    }
    if let Some(gap) = (1..=total).find(|i| !have.contains(i)) {
        let width = names[0]
            .rsplit_once("-of-")
            .map_or(5, |(_, n)| n.len() - ".safetensors".len());
        return Err(ModelError::format(
            dir,
            format!(
                "shard {gap} of {total} is missing: copy `{stem}-{gap:0width$}-of-{total:0width$}.safetensors` \
                 into the folder (an interrupted download?)"
            ),
        ));
    }
    Ok(())
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
