//! `ardpipe inspect run RUN_DIR`: what a run is and where it got to — manifest (pipeline hash,
//! Git commit, versions, status, resumptions), the last evaluation, the summary of a finished
//! run, its checkpoints and its export. Reads only the run's JSON files.

use std::path::Path;

use ardpipe_engine::rundir;
use serde_json::{Value, json};

use crate::args::Format;
use crate::exit::Code;

pub fn run(dir: &Path, format: Format) -> miette::Result<Code> {
    let manifest_path = dir.join(rundir::MANIFEST);
    if !manifest_path.is_file() {
        return Err(miette::miette!(
            help = "RUN_DIR is the folder `ardpipe run` printed when the run started",
            "{} is not a run directory (no {})",
            dir.display(),
            rundir::MANIFEST
        ));
    }
    let read = |p: &Path| -> miette::Result<Value> {
        rundir::read_json(p).map_err(|e| miette::miette!("{e}"))
    };
    let manifest = read(&manifest_path)?;
    let summary_path = dir.join("summary.json");
    let summary = if summary_path.is_file() {
        Some(read(&summary_path)?)
    } else {
        None
    };
    let records =
        rundir::read_jsonl(&dir.join(rundir::METRICS)).map_err(|e| miette::miette!("{e}"))?;
    let last_eval = records
        .iter()
        .rev()
        .find(|r| r.get("split").and_then(Value::as_str) == Some("eval"))
        .cloned();
    let last_step = records
        .iter()
        .filter_map(|r| r.get("step").and_then(Value::as_u64))
        .max();
    let latest = std::fs::read_to_string(dir.join(rundir::CHECKPOINTS).join("latest"))
        .ok()
        .map(|s| s.trim().to_string());
    let adapter = dir.join(rundir::ADAPTER);
    let adapter = adapter
        .join("adapter_config.json")
        .is_file()
        .then(|| adapter.display().to_string());
    let doc = json!({
        "run_dir": dir.display().to_string(),
        "manifest": manifest,
        "last_logged_step": last_step,
        "last_eval": last_eval,
        "latest_checkpoint": latest,
        "adapter": adapter,
        "summary": summary,
    });
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default()),
        Format::Yaml => print!("{}", serde_yaml::to_string(&doc).unwrap_or_default()),
        Format::Text => print!("{}", text(&doc)),
    }
    Ok(Code::Success)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn text(d: &Value) -> String {
    use std::fmt::Write;
    let m = &d["manifest"];
    let mut o = String::new();
    let _ = writeln!(o, "run        {}", s(&d["run_dir"]));
    let _ = writeln!(
        o,
        "pipeline   {} from {} (sha256 {})",
        s(&m["run_name"]),
        s(&m["pipeline_file"]),
        s(&m["pipeline_sha256"])
            .chars()
            .take(12)
            .collect::<String>()
    );
    let resumptions = m["resumptions"].as_array().map_or(0, Vec::len);
    let _ = writeln!(
        o,
        "status     {} (started {}, ended {}, resumed {resumptions} times)",
        s(&m["status"]),
        s(&m["started_at"]),
        s(&m["ended_at"])
    );
    if m["git"].is_object() {
        let dirty = if m["git"]["dirty"] == json!(true) {
            ", dirty"
        } else {
            ""
        };
        let _ = writeln!(o, "git        {}{dirty}", s(&m["git"]["commit"]));
    }
    let _ = writeln!(
        o,
        "versions   ardpipe {}, libtorch {}, device {}",
        s(&m["versions"]["ardpipe"]),
        s(&m["versions"]["libtorch"]),
        s(&m["device"])
    );
    if m["processes"].is_object() {
        let _ = writeln!(
            o,
            "processes  {} (data parallel, {})",
            s(&m["processes"]["world_size"]),
            s(&m["processes"]["backend"])
        );
    }
    let _ = writeln!(
        o,
        "progress   last logged step {}, latest checkpoint {}",
        s(&d["last_logged_step"]),
        s(&d["latest_checkpoint"])
    );
    if let Some(e) = d["last_eval"].as_object() {
        let metrics: Vec<String> = e
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "step" | "split" | "final" | "initial"))
            .map(|(k, v)| match v.as_f64() {
                Some(x) => format!("{k} {x:.4}"),
                None => format!("{k} {v}"),
            })
            .collect();
        let _ = writeln!(
            o,
            "last eval  step {}: {}",
            s(&e["step"]),
            metrics.join(", ")
        );
    }
    if let Some(sum) = d["summary"].as_object() {
        let _ = writeln!(
            o,
            "exported   {} of {} base parameters",
            s(&sum["exported_parameters"]),
            s(&sum["base_parameters"])
        );
        if let Some(r) = sum["mean_effective_rank"].as_f64() {
            let _ = writeln!(o, "mean rank  {r:.2}");
        }
    }
    let _ = writeln!(o, "adapter    {}", s(&d["adapter"]));
    o
}
