//! The GGUF container: header, metadata key/values and tensor infos over a memory map.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 n_tensors, u64 n_kv, the key/values,
//! the tensor infos, then the data section aligned to `general.alignment` (32 when absent).
//! Every read is bounds-checked: a truncated or corrupt file is an error naming the offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dequant::GgmlType;
use crate::error::{ModelError, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }
}

/// One tensor's entry in the GGUF tensor table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Torch order (outermost first): the reverse of GGUF's innermost-first dims.
    pub shape: Vec<usize>,
    pub ty: u32,
    /// Offset relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The number of values, or None when the dims' product does not fit a `usize` (a corrupt
    /// file: [`GgufFile::open`] refuses such tensors, so an opened file's tensors all have one).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

/// At most this many items in one metadata array. The largest real arrays are tokenizer
/// vocabularies and merge lists (a few hundred thousand entries); each item costs far more in
/// memory than its bytes in the file, so a corrupt count must be refused before it is read.
pub const MAX_ARRAY_ITEMS: usize = 1 << 24;

/// An opened GGUF file. Tensor data stays in the memory map until dequantised.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data_start: usize,
    mmap: Mmap,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(ModelError::format(
                self.path,
                format!(
                    "truncated GGUF: {what} needs {n} bytes at offset {} but the file has {} \
                     (an interrupted download? re-fetch it)",
                    self.pos,
                    self.buf.len()
                ),
            ));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        // Any count larger than the file cannot be real; refuse before allocating.
        if n > self.buf.len() as u64 {
            return Err(ModelError::format(
                self.path,
                format!(
                    "corrupt GGUF: {what} claims {n} entries at offset {}, more than the file's {} bytes",
                    self.pos - 8,
                    self.buf.len()
                ),
            ));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.len(what)?;
        let at = self.pos;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            ModelError::format(
                self.path,
                format!("corrupt GGUF: {what} at offset {at} is not UTF-8"),
            )
        })
    }
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value> {
        let what = format!("value of `{key}`");
        Ok(match ty {
            0 => Value::U8(self.u8(&what)?),
            1 => Value::I8(self.u8(&what)? as i8),
            2 => Value::U16(self.u16(&what)?),
            3 => Value::I16(self.u16(&what)? as i16),
            4 => Value::U32(self.u32(&what)?),
            5 => Value::I32(self.u32(&what)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(&what)?)),
            7 => Value::Bool(self.u8(&what)? != 0),
            8 => Value::String(self.string(&what)?),
            9 if depth == 0 => {
                let item_ty = self.u32(&what)?;
                let n = self.len(&what)?;
                if n > MAX_ARRAY_ITEMS {
                    return Err(ModelError::format(
                        self.path,
                        format!(
                            "corrupt GGUF: metadata `{key}` claims an array of {n} items at offset {}, \
                             more than the {MAX_ARRAY_ITEMS} any real model needs",
                            self.pos - 8
                        ),
                    ));
                }
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(item_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(self.u64(&what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(&what)?)),
            other => {
                return Err(ModelError::format(
                    self.path,
                    format!(
                        "corrupt GGUF: metadata `{key}` has value type {other} at offset {} \
                         (valid: 0-12, arrays not nested)",
                        self.pos - 4
                    ),
                ));
            }
        })
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only; ardpipe never writes model files while they are loaded.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        Self::parse(path, mmap)
    }

    fn parse(path: &Path, mmap: Mmap) -> Result<Self> {
        let mut c = Cursor {
            buf: &mmap,
            pos: 0,
            path,
        };
        let magic = c.take(4, "magic")?;
        if magic != b"GGUF" {
            return Err(ModelError::format(
                path,
                format!(
                    "not a GGUF file: it starts with {:?}, not `GGUF`",
                    String::from_utf8_lossy(magic)
                ),
            ));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::format(
                path,
                format!("GGUF version {version} is not supported (ardpipe reads versions 2 and 3)"),
            ));
        }
        let n_tensors = c.len("tensor count")?;
        let n_kv = c.len("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata type")?;
            let v = c.value(ty, &key, 0)?;
            // GGUF keys are unique (llama.cpp refuses a repeated one): keeping either copy would
            // silently pick one of two different models.
            if metadata.contains_key(&key) {
                return Err(ModelError::format(
                    path,
                    format!(
                        "corrupt GGUF: metadata key `{key}` appears twice; the file was damaged \
                         or badly edited (re-convert or re-fetch it)"
                    ),
                ));
            }
            metadata.insert(key, v);
        }
        // Capacity bounded: the count is only checked against the file size so far.
        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16));
        let mut names = std::collections::HashSet::new();
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            if !names.insert(name.clone()) {
                return Err(ModelError::format(
                    path,
                    format!(
                        "corrupt GGUF: tensor `{name}` is listed twice; the file was damaged or \
                         badly edited (re-convert or re-fetch it)"
                    ),
                ));
            }
            let n_dims = c.u32("tensor dims")? as usize;
            if n_dims == 0 || n_dims > 4 {
                return Err(ModelError::format(
                    path,
                    format!("corrupt GGUF: tensor `{name}` has {n_dims} dimensions (1-4 expected)"),
                ));
            }
            let mut shape = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                shape.push(c.len("tensor dim")?);
            }
            shape.reverse();
            let ty = c.u32("tensor type")?;
            let offset = c.u64("tensor offset")?;
            let info = TensorInfo {
                name,
                shape,
                ty,
                offset,
            };
            if info.numel().is_none() {
                return Err(ModelError::format(
                    path,
                    format!(
                        "corrupt GGUF: tensor `{}` has dims {:?}, whose product overflows \
                         (an interrupted download or a damaged file? re-fetch it)",
                        info.name, info.shape
                    ),
                ));
            }
            tensors.push(info);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a as usize,
                _ => {
                    return Err(ModelError::format(
                        path,
                        format!("corrupt GGUF: general.alignment is {v:?}, not a power of two"),
                    ));
                }
            },
        };
        let data_start = c
            .pos
            .div_ceil(alignment)
            .checked_mul(alignment)
            .ok_or_else(|| {
                ModelError::format(
                    path,
                    format!("corrupt GGUF: general.alignment {alignment} is too large"),
                )
            })?;
        let file = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_start,
            mmap,
        };
        // Check every tensor's extent now, so later reads cannot fail half-way through a load.
        // (Unsupported types are reported when a load asks for them, so inspect still works.)
        // An offset off the alignment or two tensors sharing bytes is a damaged file: read as
        // is, it would dequantise to finite garbage and generate nonsense with exit 0.
        let mut extents = Vec::with_capacity(file.tensors.len());
        for t in &file.tensors {
            if t.offset % alignment as u64 != 0 {
                return Err(ModelError::format(
                    path,
                    format!(
                        "corrupt GGUF: tensor `{}` has data offset {}, not a multiple of the \
                         file's alignment {alignment} (a damaged file? re-fetch it)",
                        t.name, t.offset
                    ),
                ));
            }
            if GgmlType::from_u32(t.ty).is_some() {
                let raw = file.raw(t)?;
                let start = t.offset;
                extents.push((start, start + raw.len() as u64, &t.name));
            }
        }
        extents.sort();
        for w in extents.windows(2) {
            let ((s1, e1, a), (s2, e2, b)) = (w[0], w[1]);
            if s2 < e1 {
                return Err(ModelError::format(
                    path,
                    format!(
                        "corrupt GGUF: tensors `{a}` (data bytes {s1}..{e1}) and `{b}` \
                         ({s2}..{e2}) share data bytes; the file was damaged or badly edited \
                         (re-fetch it)"
                    ),
                ));
            }
        }
        Ok(file)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw (still quantised) bytes of one tensor.
    pub fn raw(&self, t: &TensorInfo) -> Result<&[u8]> {
        let ty = GgmlType::from_u32(t.ty).ok_or_else(|| ModelError::UnsupportedTensorType {
            path: self.path.clone(),
            tensor: t.name.clone(),
            ty: t.ty,
            name: super::dequant::ggml_type_name(t.ty),
        })?;
        let n = t.numel().ok_or_else(|| {
            ModelError::format(
                &self.path,
                format!(
                    "corrupt GGUF: tensor `{}` has dims {:?}, whose product overflows",
                    t.name, t.shape
                ),
            )
        })?;
        let bytes = ty.byte_len(n).ok_or_else(|| {
            ModelError::format(
                &self.path,
                format!(
                    "tensor `{}` has {n} values, not a multiple of the {:?} block size {} \
                     (or too many to address)",
                    t.name,
                    ty,
                    ty.block_values()
                ),
            )
        })?;
        // Offsets come from the file: every sum is checked, so a corrupt offset or size is an
        // error naming the tensor, never an overflow.
        let start = (self.data_start as u64).checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(bytes as u64));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(ModelError::format(
                &self.path,
                format!(
                    "corrupt GGUF: tensor `{}` has data offset {} ({bytes} bytes), beyond any \
                     file (a damaged file? re-fetch it)",
                    t.name, t.offset
                ),
            ));
        };
        if end > self.mmap.len() as u64 {
            return Err(ModelError::format(
                &self.path,
                format!(
                    "truncated GGUF: tensor `{}` spans bytes {start}..{end} but the file has {} \
                     (an interrupted download? re-fetch it)",
                    t.name,
                    self.mmap.len()
                ),
            ));
        }
        Ok(&self.mmap[start as usize..end as usize])
    }

    /// One tensor dequantised to f32 values, in torch (row-major) order.
    /// A block with a non-finite scale (no quantiser writes one) is an error naming the tensor
    /// and the block.
    pub fn dequantise(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        let n = t.numel().unwrap_or(0);
        let mut out = vec![0f32; n];
        self.dequantise_into(t, &mut out)?;
        Ok(out)
    }

    /// [`GgufFile::dequantise`] into `out`, which must hold exactly the tensor's values (a
    /// tensor's own storage, so that a load copies nothing).
    pub fn dequantise_into(&self, t: &TensorInfo, out: &mut [f32]) -> Result<()> {
        let raw = self.raw(t)?;
        let ty = GgmlType::from_u32(t.ty).expect("checked by raw()");
        match ty.dequantise_into(raw, out) {
            Ok(()) => Ok(()),
            Err(Some(bad)) => Err(ModelError::format(
                &self.path,
                format!(
                    "corrupt GGUF: tensor `{}` ({}) block {} has scale {} = {}, not a finite \
                     number; the file was damaged (re-fetch or re-convert it)",
                    t.name,
                    ty.name(),
                    bad.block,
                    bad.field,
                    bad.value
                ),
            )),
            Err(None) => Err(ModelError::format(
                &self.path,
                format!(
                    "tensor `{}` ({}): {} bytes are not {} values in whole blocks of {}",
                    t.name,
                    ty.name(),
                    raw.len(),
                    out.len(),
                    ty.block_bytes()
                ),
            )),
        }
    }
}
