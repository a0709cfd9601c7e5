//! The checker's vocabulary as data, for editors (`ardpipe lsp` completes and documents it):
//! which keys and nested blocks each block takes, and the words a key's value may be. Every list
//! here is the constant the checker itself passes to `Reader::finish` and `Reader::symbol`, so
//! what an editor offers is what `ardpipe check` accepts.

use super::{adapter, dataset, distributed, evaluate, model, train};

/// What one block takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockKeys {
    pub keys: Vec<&'static str>,
    pub blocks: Vec<&'static str>,
}

/// The top-level blocks (`pipeline`, `dataset`, …).
pub fn top_blocks() -> &'static [&'static str] {
    super::TOP_BLOCKS
}

/// Blocks written with a name (`dataset NAME { }`).
pub fn named_blocks() -> &'static [&'static str] {
    super::NAMED_BLOCKS
}

/// The keys and nested blocks of the block at `path`: block kinds from the top, without names
/// (`["adapter", "alpha"]`). A block inside a `variant` is read as the top-level block it
/// replaces. `method` is an adapter's method when known; without it an adapter offers the keys
/// of every method. `None` for a path the language does not have.
pub fn block_keys(path: &[&str], method: Option<&str>) -> Option<BlockKeys> {
    let path = match path {
        ["variant", rest @ ..] if !rest.is_empty() => rest,
        p => p,
    };
    let (keys, blocks): (Vec<&'static str>, Vec<&'static str>) = match path {
        [] => (Vec::new(), super::TOP_BLOCKS.to_vec()),
        ["pipeline"] => (super::PIPELINE_KEYS.to_vec(), Vec::new()),
        ["plugin"] => (super::PLUGIN_KEYS.to_vec(), Vec::new()),
        ["output"] => (super::OUTPUT_KEYS.to_vec(), Vec::new()),
        ["variant"] => (
            Vec::new(),
            super::TOP_BLOCKS
                .iter()
                .copied()
                .filter(|b| !matches!(*b, "variant" | "pipeline"))
                .collect(),
        ),
        ["dataset"] => (dataset::KEYS.to_vec(), dataset::BLOCKS.to_vec()),
        ["dataset", "split"] => (dataset::SPLIT_KEYS.to_vec(), Vec::new()),
        ["dataset", "preprocess"] => (dataset::PREPROCESS_KEYS.to_vec(), Vec::new()),
        ["model"] => (model::KEYS.to_vec(), Vec::new()),
        ["adapter"] => {
            let methods: Vec<&str> = match method {
                Some(m) if adapter::METHODS.contains(&m) => vec![m],
                _ => adapter::METHODS.to_vec(),
            };
            let mut keys = adapter::PLACEMENT.to_vec();
            let mut blocks = Vec::new();
            for m in methods {
                let (k, b) = adapter::keys_of(m);
                let new_keys: Vec<&str> = k.iter().copied().filter(|x| !keys.contains(x)).collect();
                keys.extend(new_keys);
                let new_blocks: Vec<&str> =
                    b.iter().copied().filter(|x| !blocks.contains(x)).collect();
                blocks.extend(new_blocks);
            }
            (keys, blocks)
        }
        ["adapter", "alpha"] => (adapter::ALPHA_KEYS.to_vec(), Vec::new()),
        ["adapter", "compaction"] => (adapter::COMPACTION_KEYS.to_vec(), Vec::new()),
        ["adapter", "regularize"] => (adapter::REGULARIZE_KEYS.to_vec(), Vec::new()),
        ["train"] => (train::KEYS.to_vec(), train::BLOCKS.to_vec()),
        ["train", "early_stopping"] => (train::EARLY_STOPPING_KEYS.to_vec(), Vec::new()),
        ["evaluate"] => (evaluate::KEYS.to_vec(), Vec::new()),
        ["distributed"] => (distributed::KEYS.to_vec(), Vec::new()),
        _ => return None,
    };
    Some(BlockKeys { keys, blocks })
}

/// The words `key` takes in the block at `path` (as for [`block_keys`]); empty when its value is
/// not one word out of a set.
pub fn key_values(path: &[&str], key: &str) -> &'static [&'static str] {
    let path = match path {
        ["variant", rest @ ..] if !rest.is_empty() => rest,
        p => p,
    };
    match (path, key) {
        (["output"], "export") => super::EXPORTS,
        (["dataset"], "format") => dataset::FORMATS,
        (["dataset"], "on_bad_row") => dataset::ON_BAD_ROW,
        (["dataset"], "mode") => dataset::TEXT_MODES,
        (["dataset", "preprocess"], "truncation") => dataset::TRUNCATIONS,
        (["dataset", "preprocess"], "train_on") => dataset::TRAIN_ON,
        (["model"], "format") => model::FORMATS,
        (["model"], "head") => model::HEADS,
        (["model"], "pooling") => model::POOLINGS,
        (["model"], "dtype") => model::DTYPES,
        (["model"], "quantize") => model::QUANTIZE,
        (["adapter"], "method") => adapter::METHODS,
        (["adapter", "alpha"], "update") => adapter::ALPHA_UPDATES,
        (["train"], "precision") => train::PRECISIONS,
        (["train"], "checkpointing") => train::CHECKPOINTING,
        (["train", "early_stopping"], "mode") => train::EARLY_MODES,
        (["train", "early_stopping"], "metric") => evaluate::METRICS,
        (["evaluate"], "split") => evaluate::SPLITS,
        (["evaluate"], "metrics") => evaluate::METRICS,
        (["distributed"], "backend") => distributed::BACKENDS,
        _ => &[],
    }
}

/// Every block path the language has, each with its keys (an adapter's for every method).
pub fn all_blocks() -> Vec<(Vec<&'static str>, BlockKeys)> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<&'static str>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let Some(k) = block_keys(&path, None) else {
            continue;
        };
        for b in &k.blocks {
            // `variant` holds the top-level blocks again: they are listed once, at the top.
            if path.first() != Some(&"variant") {
                let mut p = path.clone();
                p.push(b);
                todo.push(p);
            }
        }
        out.push((path, k));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_the_language_is_listed() {
        let paths: Vec<String> = all_blocks().iter().map(|(p, _)| p.join(".")).collect();
        for want in [
            "",
            "pipeline",
            "dataset.split",
            "dataset.preprocess",
            "adapter.alpha",
            "adapter.regularize",
            "train.early_stopping",
            "variant",
        ] {
            assert!(paths.contains(&want.to_string()), "{want} in {paths:?}");
        }
        let lora = block_keys(&["adapter"], Some("lora")).unwrap();
        assert!(lora.keys.contains(&"rank") && !lora.keys.contains(&"r0"));
        assert!(lora.blocks.is_empty());
        assert_eq!(
            block_keys(&["variant", "model"], None),
            block_keys(&["model"], None)
        );
        assert_eq!(
            key_values(&["model"], "quantize"),
            &["none", "int8", "int4"]
        );
    }
}
