//! A minimal GGUF header reader for the tests: the real SmolLM2 GGUF's tokenizer metadata and
//! chat template (the full GGUF loader lives in ardpipe-models, which this crate must not depend
//! on).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};

use ardpipe_data::BpeSpec;
use ardpipe_data::chat::ChatTemplate;

#[derive(Debug)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    Ints(Vec<i64>),
    Other,
}

struct Reader<R: Read>(R);

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.0.read_exact(&mut b).unwrap();
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        let mut b = vec![0u8; n];
        self.0.read_exact(&mut b).unwrap();
        String::from_utf8(b).unwrap()
    }
    /// Scalars by GGUF type code; integers widened to i64, floats skipped.
    fn scalar(&mut self, ty: u32) -> Value {
        match ty {
            0 => Value::Int(self.bytes::<1>()[0] as i64),
            1 => Value::Int(self.bytes::<1>()[0] as i8 as i64),
            2 => Value::Int(u16::from_le_bytes(self.bytes()) as i64),
            3 => Value::Int(i16::from_le_bytes(self.bytes()) as i64),
            4 => Value::Int(self.u32() as i64),
            5 => Value::Int(i32::from_le_bytes(self.bytes()) as i64),
            6 => {
                self.bytes::<4>();
                Value::Other
            }
            7 => Value::Bool(self.bytes::<1>()[0] != 0),
            8 => Value::Str(self.string()),
            10 => Value::Int(self.u64() as i64),
            11 => Value::Int(i64::from_le_bytes(self.bytes())),
            12 => {
                self.bytes::<8>();
                Value::Other
            }
            t => panic!("unexpected GGUF value type {t}"),
        }
    }
    fn value(&mut self, ty: u32) -> Value {
        if ty != 9 {
            return self.scalar(ty);
        }
        let item = self.u32();
        let n = self.u64() as usize;
        let items: Vec<Value> = (0..n).map(|_| self.scalar(item)).collect();
        match item {
            8 => Value::Strs(
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::Str(s) => s,
                        _ => unreachable!(),
                    })
                    .collect(),
            ),
            _ => Value::Ints(
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::Int(i) => i,
                        _ => 0,
                    })
                    .collect(),
            ),
        }
    }
}

/// The key/value metadata of a GGUF file's header.
pub fn metadata(path: &std::path::Path) -> HashMap<String, Value> {
    let mut r = Reader(BufReader::new(std::fs::File::open(path).unwrap()));
    assert_eq!(&r.bytes::<4>(), b"GGUF");
    assert_eq!(r.u32(), 3);
    let _n_tensors = r.u64();
    let n_kv = r.u64();
    let mut kv = HashMap::new();
    for _ in 0..n_kv {
        let key = r.string();
        let ty = r.u32();
        kv.insert(key, r.value(ty));
    }
    kv
}

pub fn smollm_gguf() -> std::path::PathBuf {
    super::asset("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The tokenizer spec of the real SmolLM2 GGUF.
pub fn smollm_spec() -> BpeSpec {
    spec_of(&metadata(&smollm_gguf()))
}

/// The real SmolLM2 GGUF's tokenizer spec and its chat template (`tokenizer.chat_template`, with
/// the named special tokens as the template sees them).
pub fn smollm_spec_and_template() -> (BpeSpec, ChatTemplate) {
    let kv = metadata(&smollm_gguf());
    let spec = spec_of(&kv);
    let Some(Value::Str(text)) = kv.get("tokenizer.chat_template") else {
        panic!("the SmolLM2 GGUF has no tokenizer.chat_template");
    };
    let mut special = BTreeMap::new();
    for (name, id) in [
        ("bos_token", spec.bos),
        ("eos_token", spec.eos),
        ("unk_token", spec.unk),
        ("pad_token", spec.pad),
    ] {
        if let Some(id) = id {
            special.insert(name.to_string(), spec.tokens[id as usize].clone());
        }
    }
    let template = ChatTemplate::new(
        text.clone(),
        format!(
            "GGUF `tokenizer.chat_template` of {}",
            smollm_gguf().display()
        ),
        special,
    )
    .unwrap();
    (spec, template)
}

fn spec_of(kv: &HashMap<String, Value>) -> BpeSpec {
    let id = |k: &str| match kv.get(k) {
        Some(Value::Int(i)) => Some(*i as u32),
        _ => None,
    };
    let take_strs = |k: &str| match kv.get(k) {
        Some(Value::Strs(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    BpeSpec {
        tokens: take_strs("tokenizer.ggml.tokens"),
        merges: take_strs("tokenizer.ggml.merges"),
        token_types: match kv.get("tokenizer.ggml.token_type") {
            Some(Value::Ints(v)) => v.iter().map(|&t| t as i32).collect(),
            other => panic!("token_type: {other:?}"),
        },
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        unk: id("tokenizer.ggml.unknown_token_id"),
        pad: id("tokenizer.ggml.padding_token_id"),
        pre: match kv.get("tokenizer.ggml.pre") {
            Some(Value::Str(s)) => s.clone(),
            other => panic!("pre: {other:?}"),
        },
        add_bos: matches!(
            kv.get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        ),
        add_eos: matches!(
            kv.get("tokenizer.ggml.add_eos_token"),
            Some(Value::Bool(true))
        ),
    }
}
