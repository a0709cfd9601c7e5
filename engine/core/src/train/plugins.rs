//! The pipeline's plugins inside a run: the library a `plugin NAME { ... }` block names, loaded
//! and checked to be the kind and ABI the pipeline expects, and the options handed to it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ardpipe_dsl::pipeline as p;
use ardpipe_plugin_host::{ABI_VERSION, Kind, Plugin, PluginError};

use super::TrainError;

/// Where in the pipeline a plugin is used, so its errors can point there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// `format = plugin(...)` of this dataset.
    Dataset { name: String },
    /// `plugin(...)` at this position of `evaluate.metrics`.
    Metric { index: usize, plugin: String },
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Dataset { name } => write!(f, "dataset `{name}`"),
            Site::Metric { plugin, .. } => write!(f, "evaluate metric `plugin({plugin})`"),
        }
    }
}

/// A plugin error, placed at its use in the pipeline.
pub fn failed(site: &Site, error: PluginError) -> TrainError {
    TrainError::Plugin {
        site: site.clone(),
        error: Box::new(error),
    }
}

/// Loads the plugin block `name` (of the pipeline's `plugins`) as a `kind` plugin.
pub fn load(
    plugins: &[p::Plugin],
    name: &str,
    kind: Kind,
    site: &Site,
) -> Result<&'static Plugin, TrainError> {
    // The checker refuses a pipeline naming an undeclared plugin; this guards a hand-edited
    // `pipeline.resolved.json` on `--resume`.
    let block = plugins.iter().find(|b| b.name == name).ok_or_else(|| {
        TrainError::Other(format!(
            "{site} uses plugin `{name}`, but the pipeline has no `plugin {name} {{ ... }}` block"
        ))
    })?;
    if block.abi != ABI_VERSION {
        return Err(TrainError::Other(format!(
            "plugin `{name}`: the pipeline was written for plugin ABI {}, but this ardpipe speaks ABI {ABI_VERSION}\n  \
             help: set `abi = {ABI_VERSION}` in the `plugin {name}` block if the library was built for it, or use an \
             ardpipe that speaks ABI {}",
            block.abi, block.abi
        )));
    }
    ardpipe_plugin_host::load_kind(&block.library, kind).map_err(|e| failed(site, e))
}

/// The options of a `plugin(NAME, key = value, ...)` as the JSON object plugins receive; a
/// dataset's `path` (already absolute) is added as the `path` option.
pub fn options_json(
    options: &BTreeMap<String, p::OptionValue>,
    path: Option<&Path>,
    site: &Site,
) -> Result<Vec<u8>, TrainError> {
    let mut object = serde_json::Map::new();
    for (key, value) in options {
        let value = serde_json::to_value(value)
            .map_err(|e| TrainError::Other(format!("{site}: option `{key}`: {e}")))?;
        object.insert(key.clone(), value);
    }
    if let Some(path) = path {
        if object.contains_key("path") {
            return Err(TrainError::Other(format!(
                "{site}: `path` is given twice, as the dataset's `path` and inside `plugin(...)`\n  \
                 help: keep the dataset's `path` (it is resolved relative to the pipeline file) and drop the option"
            )));
        }
        let text = path.to_str().ok_or_else(|| {
            TrainError::Other(format!(
                "{site}: the path {} is not valid UTF-8, which plugin options must be",
                path.display()
            ))
        })?;
        object.insert("path".into(), text.into());
    }
    serde_json::to_vec(&serde_json::Value::Object(object))
        .map_err(|e| TrainError::Other(format!("{site}: options: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_a_json_object_with_the_dataset_path() {
        let site = Site::Dataset { name: "d".into() };
        let mut options = BTreeMap::new();
        options.insert(
            "categories".to_string(),
            p::OptionValue::List(vec![p::OptionValue::String("art".into())]),
        );
        options.insert("limit".to_string(), p::OptionValue::Number(5.0));
        let bytes = options_json(&options, Some(Path::new("/data/fortunes")), &site).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"categories": ["art"], "limit": 5.0, "path": "/data/fortunes"})
        );

        options.insert("path".to_string(), p::OptionValue::String("x".into()));
        let e = options_json(&options, Some(Path::new("/d")), &site).unwrap_err();
        assert!(e.to_string().contains("`path` is given twice"), "{e}");
        assert!(options_json(&options, None, &site).is_ok());
    }
}
