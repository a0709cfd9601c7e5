//! A dataset with `format = plugin(NAME, ...)`: records streamed from a loader plugin become
//! engine/data records through the dataset's fields, then the same clean-up, label regex,
//! `max_rows` and bad-row policy as rows of a built-in format (engine/data's reader). A plugin
//! stream cannot seek, so its records are held in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ardpipe_data::{
    DataError, DatasetReader, DatasetSpec, ErrorKind, Origin, Record, RecordStore, SkipReport,
};
use ardpipe_dsl::pipeline as p;
use ardpipe_plugin_host::{Kind, PluginRecord};

use super::TrainError;
use super::plugins::{self, Site};

/// Streams every record of the dataset's loader plugin through the dataset's reader. The
/// plugin gets the pipeline's options, the dataset's `path` as its `path` option, and the
/// pipeline's seed.
pub(super) fn read(
    pipeline: &p::Pipeline,
    ds: &p::Dataset,
    plugin: &str,
    options: &BTreeMap<String, p::OptionValue>,
    path: Option<&PathBuf>,
    spec: &DatasetSpec,
) -> Result<(RecordStore, SkipReport), TrainError> {
    let site = Site::Dataset {
        name: ds.name.clone(),
    };
    let loader = plugins::load(&pipeline.plugins, plugin, Kind::Loader, &site)?;
    let options = plugins::options_json(options, path.map(PathBuf::as_path), &site)?;
    let stream = loader
        .open_loader(&options, pipeline.seed)
        .map_err(|e| plugins::failed(&site, e))?;
    let name = loader.info().name.clone();
    let source_name: Arc<Path> = Arc::from(Path::new(&format!("plugin `{name}`")));
    // Plugin records as engine/data records (a missing field is a bad row for the policy).
    let mut raw = Vec::new();
    for (n, r) in stream.enumerate() {
        let r = r.map_err(|e| plugins::failed(&site, e))?;
        raw.push(record(&r, &ds.fields, n + 1, &source_name));
    }
    let mut reader =
        DatasetReader::from_source(Box::new(raw.into_iter()), &spec.preprocess, spec.on_error)?
            .with_max_skipped(spec.max_skipped);
    let kept = reader
        .by_ref()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Other(format!("dataset `{}`: {e}", ds.name)))?;
    let report = reader.report().clone();
    tracing::info!(
        "dataset `{}`: {} records from plugin `{name}` {} ({})",
        ds.name,
        kept.len() + report.skipped,
        loader.info().version,
        loader.info().path.display()
    );
    if kept.is_empty() {
        return Err(TrainError::Other(format!(
            "dataset `{}` has no usable examples from plugin `{name}`",
            ds.name
        )));
    }
    Ok((RecordStore::in_memory(kept), report))
}

/// A record's field by the name a dataset's `text`, `text_pair` or `label` gives: the record's
/// own text, pair and label under those names, else one of its extra fields.
fn field<'r>(record: &'r PluginRecord, name: &str) -> Option<&'r str> {
    match name {
        "text" => Some(&record.text),
        "text_pair" => record.text_pair.as_deref(),
        "label" => record.label.as_deref(),
        other => record.extra.get(other).map(String::as_str),
    }
}

fn named<'r>(record: &'r PluginRecord, name: &str, what: &str) -> Result<&'r str, String> {
    field(record, name).ok_or_else(|| {
        let mut have = vec!["text"];
        have.extend(record.text_pair.as_ref().map(|_| "text_pair"));
        have.extend(record.label.as_ref().map(|_| "label"));
        have.extend(record.extra.keys().map(String::as_str));
        format!(
            "the record has no {what} field `{name}` (its fields are {})",
            have.join(", ")
        )
    })
}

/// A plugin record as an engine/data record: the dataset's `text`, `text_pair` and `label`
/// fields by name; a missing one is a bad row at the record.
fn record(
    r: &PluginRecord,
    fields: &p::Fields,
    n: usize,
    source: &Arc<Path>,
) -> Result<Record, DataError> {
    // Where it came from: the file and line the plugin names, else its number in the stream.
    let origin = match (
        r.extra.get("file"),
        r.extra.get("line").and_then(|l| l.parse().ok()),
    ) {
        (Some(file), Some(line)) => Origin {
            file: Arc::from(Path::new(file)),
            line,
        },
        _ => Origin {
            file: source.clone(),
            line: n as u64,
        },
    };
    let bad = |why: String| {
        DataError::new(ErrorKind::BadRow, why)
            .at(&origin.file, origin.line)
            .with_help(
                "name one of the record's fields in the dataset's `text`, `text_pair` or `label`",
            )
    };
    let text = named(r, fields.text.as_deref().unwrap_or("text"), "text").map_err(bad)?;
    let mut rec = Record::new(text, origin.clone());
    rec.label = match fields.label.as_deref() {
        Some(key) => Some(named(r, key, "label").map_err(bad)?.to_string()),
        None => r.label.clone(),
    };
    rec.text_pair = match fields.text_pair.as_deref() {
        Some(key) => Some(named(r, key, "text_pair").map_err(bad)?.to_string()),
        None => r.text_pair.clone(),
    };
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin_record() -> PluginRecord {
        let mut r = PluginRecord {
            text: "  Look   before\nyou leap. ".into(),
            label: Some("wisdom-7".into()),
            ..Default::default()
        };
        r.extra.insert("file".into(), "/f/wisdom".into());
        r.extra.insert("line".into(), "3".into());
        r
    }

    fn fields() -> p::Fields {
        p::Fields {
            text: None,
            text_pair: None,
            label: None,
            label_regex: None,
            prompt: None,
            completion: None,
            messages: None,
            image: None,
        }
    }

    fn source() -> Arc<Path> {
        Arc::from(Path::new("plugin `fortunes`"))
    }

    #[test]
    fn records_map_through_the_dataset_fields_at_the_plugin_location() {
        let r = record(&plugin_record(), &fields(), 4, &source()).unwrap();
        assert_eq!(r.text, "  Look   before\nyou leap. ");
        assert_eq!(r.label.as_deref(), Some("wisdom-7"));
        assert_eq!(r.origin.to_string(), "/f/wisdom:3");
        // A field named in the dataset may be one of the record's extras.
        let f = p::Fields {
            label: Some("file".into()),
            ..fields()
        };
        let r = record(&plugin_record(), &f, 4, &source()).unwrap();
        assert_eq!(r.label.as_deref(), Some("/f/wisdom"));
        // Without a file and line, the record's number in the stream locates it.
        let mut bare = plugin_record();
        bare.extra.clear();
        let r = record(&bare, &fields(), 4, &source()).unwrap();
        assert_eq!(r.origin.to_string(), "plugin `fortunes`:4");
    }

    #[test]
    fn a_missing_field_is_a_bad_row_naming_the_fields_there_are() {
        let f = p::Fields {
            text_pair: Some("answer".into()),
            ..fields()
        };
        let e = record(&plugin_record(), &f, 4, &source()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRow);
        assert!(
            e.to_string()
                .contains("the record has no text_pair field `answer` (its fields are text, label, file, line)"),
            "{e}"
        );
        assert!(e.to_string().contains("/f/wisdom:3"), "{e}");
    }
}
