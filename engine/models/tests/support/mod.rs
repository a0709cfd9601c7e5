//! Helpers shared by the integration tests that compare ardpipe with its Python peer
//! (transformers, peft and the gguf package in the venv scripts/setup.sh builds). Each test
//! binary uses a part of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::Tensor;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The peer's python (`ARDPIPE_PEER_PYTHON`, else the checkout's `.ardpipe/peer-venv`); a
/// missing peer fails the test with the fix, never skips it.
pub fn peer_python() -> PathBuf {
    let p = std::env::var_os("ARDPIPE_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".ardpipe/peer-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: the Python peer venv comes from the README's first command (scripts/setup.sh)",
        p.display()
    );
    p
}

/// A peer script under engine/models/tests/peer/, offline and quiet, ready for its arguments.
pub fn peer_command(script: &str) -> Command {
    let mut c = Command::new(peer_python());
    c.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peer")
            .join(script),
    )
    .env("HF_HUB_OFFLINE", "1")
    .env("TRANSFORMERS_VERBOSITY", "error")
    .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    .env("TQDM_DISABLE", "1");
    c
}

/// Run a peer command to the end; a failing peer fails the test with its stderr.
pub fn run_peer(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the peer {:?} failed:\n{}",
        cmd.get_args().next().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An empty scratch folder for this process.
pub fn scratch(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ardpipe-{tag}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A JSON file's value.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A JSON list of rows of integers as a 2-D int64 tensor.
pub fn tensor_i64(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<i64>> = serde_json::from_value(v.clone()).unwrap();
    let n = rows.len() as i64;
    Tensor::from_slice(&rows.concat()).reshape([n, -1])
}

/// A JSON list of rows of numbers as a 2-D f32 tensor.
pub fn matrix(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let flat: Vec<f32> = rows.concat();
    Tensor::from_slice(&flat).reshape([rows.len() as i64, -1])
}

/// Named tensors as a checkpoint (what a test builds in memory instead of a file).
pub struct Tensors(pub std::collections::BTreeMap<String, Tensor>);

impl ardpipe_models::weights::TensorSource for Tensors {
    fn describe(&self) -> String {
        "random tensors".into()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.0.get(name).map(Tensor::size)
    }
    fn read(&self, name: &str) -> ardpipe_models::Result<Tensor> {
        Ok(self.0[name].copy())
    }
}

/// A Llama of seeded random weights for `c` (1/√fan-in linears, norms near 1, an LM head when
/// untied), stored as `precision` says and quantised by `scheme`, with LoRA (r = 2,
/// lora_alpha = 4) on every linear and seeded factors (B ≠ 0, so every factor gets a gradient).
pub fn lora_llama(
    c: ardpipe_models::arch::LlamaConfig,
    seed: u64,
    precision: ardpipe_models::Precision,
    scheme: Option<ardpipe_adapters::ops::QuantScheme>,
) -> ardpipe_models::Result<ardpipe_models::arch::Llama> {
    use ardpipe_models::arch::layers::seeded_normal;
    let (d, vocab) = (c.hidden_size as i64, c.vocab_size as i64);
    let mut seed = seed;
    let mut rand = |shape: &[i64], s: f64| {
        seed += 1;
        seeded_normal(shape, s, seed)
    };
    let mut t = std::collections::BTreeMap::new();
    t.insert("model.embed_tokens.weight".into(), rand(&[vocab, d], 1.0));
    for m in c.modules() {
        let (o, i) = (m.d_out as i64, m.d_in as i64);
        t.insert(
            format!("{}.weight", m.path),
            rand(&[o, i], 1.0 / (i as f64).sqrt()),
        );
    }
    for l in 0..c.num_hidden_layers {
        for n in ["input_layernorm", "post_attention_layernorm"] {
            t.insert(
                format!("model.layers.{l}.{n}.weight"),
                rand(&[d], 0.1) + 1.0,
            );
        }
    }
    t.insert("model.norm.weight".into(), rand(&[d], 0.1) + 1.0);
    if !c.tie_word_embeddings {
        t.insert("lm_head.weight".into(), rand(&[vocab, d], 1.0));
    }
    let src = Tensors(t);
    let mut w = ardpipe_models::weights::WeightLoader::new(
        &src,
        "LlamaForCausalLM",
        tch::Device::Cpu,
        precision.storage.kind(),
    )
    .quantizing(scheme);
    let mut model = ardpipe_models::arch::Llama::load(c, &mut w, tch::Device::Cpu, precision)?;
    let lora = ardpipe_adapters::MethodConfig::Lora(ardpipe_adapters::LoraConfig {
        r: 2,
        lora_alpha: 4.0,
        dropout: 0.0,
    });
    for l in model.linears_mut() {
        ardpipe_adapters::attach(l, &lora).unwrap();
    }
    tch::no_grad(|| {
        for (i, (_, p, _)) in model
            .linears()
            .iter()
            .flat_map(|l| l.trainable())
            .enumerate()
        {
            let mut p = p;
            p.copy_(&seeded_normal(&p.size(), 0.3, 1000 + i as u64));
        }
    });
    Ok(model)
}
