//! A dataset with `format = plugin(NAME, ...)`: records streamed from a loader plugin become
//! examples through the dataset's fields, label regex, clean-up, `max_rows` and bad-row policy,
//! exactly as rows of a built-in format do.

use std::collections::BTreeMap;
use std::path::Path;

use ardpipe_dsl::pipeline as p;
use ardpipe_plugin_host::{Kind, PluginRecord};

use super::TrainError;
use super::batches::Example;
use super::plugins::{self, Site};
use super::records::{Prep, Sink};

/// The most examples a plugin's `size_hint` may reserve room for up front.
const MAX_RESERVE: u64 = 1 << 20;

/// Streams every record of the dataset's loader plugin into `sink`. The plugin gets the
/// pipeline's options, the dataset's `path` as its `path` option, and the pipeline's seed: the
/// records — and so the split carved from them — do not change when only `train.seed` does.
pub(super) fn read(
    pipeline: &p::Pipeline,
    ds: &p::Dataset,
    plugin: &str,
    options: &BTreeMap<String, p::OptionValue>,
    path: Option<&Path>,
    prep: &Prep,
    sink: &mut Sink,
) -> Result<(), TrainError> {
    let site = Site::Dataset {
        name: ds.name.clone(),
    };
    let loader = plugins::load(pipeline, plugin, Kind::Loader, &site)?;
    let options = plugins::options_json(options, path, &site)?;
    let mut stream = loader
        .open_loader(&options, pipeline.seed)
        .map_err(|e| plugins::failed(&site, e))?;
    let name = &loader.info().name;
    if loader.info().has_capability("size-hint") {
        let hint = stream
            .size_hint_records()
            .map_err(|e| plugins::failed(&site, e))?;
        if let Some(n) = hint {
            // Only a hint: never let it size an allocation beyond what a modest dataset needs.
            let wanted = ds.max_rows.map_or(n, |m| m.min(n)).min(MAX_RESERVE);
            sink.out.reserve(usize::try_from(wanted).unwrap_or(0));
        }
    }
    let mut records = 0usize;
    for record in stream.by_ref() {
        if sink.full() {
            break;
        }
        let record = record.map_err(|e| plugins::failed(&site, e))?;
        records += 1;
        match example(&record, &ds.fields, prep) {
            Ok(example) => sink.out.push(example),
            Err(why) => sink.bad(format!("{}: {why}", location(name, records, &record)))?,
        }
    }
    tracing::info!(
        "dataset `{}`: {records} records from plugin `{name}` {} ({})",
        ds.name,
        loader.info().version,
        loader.info().path.display()
    );
    Ok(())
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

fn example(record: &PluginRecord, fields: &p::Fields, prep: &Prep) -> Result<Example, String> {
    let text = prep.text(named(
        record,
        fields.text.as_deref().unwrap_or("text"),
        "text",
    )?);
    if text.is_empty() {
        return Err("the text is empty after preprocessing".into());
    }
    let label = match fields.label.as_deref() {
        Some(key) => Some(named(record, key, "label")?),
        None => record.label.as_deref(),
    };
    let pair = match fields.text_pair.as_deref() {
        Some(key) => Some(named(record, key, "text_pair")?),
        None => record.text_pair.as_deref(),
    };
    Ok(Example {
        text,
        pair: pair.map(|t| prep.text(t)),
        label: label.map(|l| prep.label(l)).transpose()?,
    })
}

/// Where a bad record came from: its file and line when the plugin says, else its number.
fn location(plugin: &str, n: usize, record: &PluginRecord) -> String {
    match (record.extra.get("file"), record.extra.get("line")) {
        (Some(file), Some(line)) => format!("{file}:{line} (record {n} from plugin `{plugin}`)"),
        _ => format!("record {n} from plugin `{plugin}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PluginRecord {
        let mut r = PluginRecord {
            text: "  Look   before\nyou leap. ".into(),
            label: Some("wisdom-7".into()),
            ..Default::default()
        };
        r.extra.insert("file".into(), "/f/wisdom".into());
        r.extra.insert("line".into(), "3".into());
        r
    }

    fn dataset(fields: p::Fields, label_regex: Option<&str>) -> p::Dataset {
        p::Dataset {
            name: "d".into(),
            source: p::Source::Plugin {
                plugin: "x".into(),
                path: None,
                options: BTreeMap::new(),
            },
            fields: p::Fields {
                label_regex: label_regex.map(str::to_string),
                ..fields
            },
            split: p::Split {
                validation: None,
                test: None,
                seed: 0,
            },
            preprocess: p::Preprocess {
                max_length: 8,
                truncation: p::Side::Right,
                strip: vec![],
                lowercase: true,
                block_size: 8,
                train_on: p::TrainOn::Completions,
                packing: false,
            },
            on_bad_row: p::BadRowPolicy::Fail,
            max_rows: None,
        }
    }

    fn no_fields() -> p::Fields {
        p::Fields {
            text: None,
            text_pair: None,
            label: None,
            label_regex: None,
            prompt: None,
            completion: None,
            messages: None,
        }
    }

    #[test]
    fn records_map_through_fields_regex_and_clean_up() {
        let ds = dataset(no_fields(), Some("^(.*)-[0-9]+$"));
        let prep = Prep::new(&ds).unwrap();
        let e = example(&record(), &ds.fields, &prep).unwrap();
        assert_eq!(e.text, "look before you leap.");
        assert_eq!(e.label.as_deref(), Some("wisdom"));
        assert_eq!(e.pair, None);

        // A field named in the dataset may be one of the record's extras.
        let fields = p::Fields {
            label: Some("file".into()),
            ..no_fields()
        };
        let ds = dataset(fields, None);
        let prep = Prep::new(&ds).unwrap();
        let e = example(&record(), &ds.fields, &prep).unwrap();
        assert_eq!(e.label.as_deref(), Some("/f/wisdom"));
    }

    #[test]
    fn a_missing_field_names_the_fields_there_are() {
        let fields = p::Fields {
            text_pair: Some("answer".into()),
            ..no_fields()
        };
        let ds = dataset(fields, None);
        let prep = Prep::new(&ds).unwrap();
        let why = example(&record(), &ds.fields, &prep).unwrap_err();
        assert_eq!(
            why,
            "the record has no text_pair field `answer` (its fields are text, label, file, line)"
        );
        assert_eq!(
            location("fortunes", 4, &record()),
            "/f/wisdom:3 (record 4 from plugin `fortunes`)"
        );
    }
}
