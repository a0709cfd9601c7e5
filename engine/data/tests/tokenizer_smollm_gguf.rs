//! `from_bpe` on the real SmolLM2 vocabulary: the GGUF's tokenizer metadata is read here by a
//! minimal header reader (the full GGUF loader lives in ardpipe-models, which this crate must not
//! depend on), and the golden ids (those of "The capital of France is" that
//! engine/models/tests/golden_smollm2.rs feeds the model) must come out.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Read};

use ardpipe_data::{BpeSpec, TextTokenizer};

#[derive(Debug)]
enum Value {
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

fn smollm_spec() -> BpeSpec {
    let path = common::asset("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf");
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

#[test]
fn smollm2_golden_ids_and_round_trip() {
    let spec = smollm_spec();
    assert_eq!(spec.pre, "smollm");
    assert_eq!(spec.tokens.len(), 49_152);
    assert_eq!(spec.merges.len(), 48_900);
    let tok = TextTokenizer::from_bpe(spec).unwrap();
    assert_eq!(tok.vocab_size(), 49_152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));

    let ids = tok.encode("The capital of France is", true).unwrap().ids;
    assert_eq!(ids, [504, 3575, 282, 4649, 314]);
    assert_eq!(tok.id_to_token(7042).as_deref(), Some("ĠParis"));

    let chat = "<|im_start|>user\nWhat is 12 + 345?<|im_end|>\n";
    let ids = tok.encode(chat, true).unwrap().ids;
    assert_eq!(ids[0], 1, "control tokens must be matched whole");
    assert_eq!(*ids.iter().rev().nth(1).unwrap(), 2);
    assert_eq!(tok.decode(&ids, false).unwrap(), chat);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nWhat is 12 + 345?\n");
    // Digits are split one by one before byte-level BPE.
    let digits = tok.encode("345", false).unwrap().ids;
    assert_eq!(digits.len(), 3);
    // Non-ASCII text survives the byte-level round trip.
    let text = "Ça coûte 3€ — naïve café";
    let ids = tok.encode(text, false).unwrap().ids;
    assert_eq!(tok.decode(&ids, true).unwrap(), text);
}
