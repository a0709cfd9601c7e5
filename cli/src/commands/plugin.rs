//! `ardpipe plugin inspect PATH`: what a plugin library says about itself, or why it cannot be
//! used; and how a plugin's failure during `ardpipe run` is shown.

use std::path::Path;

use ardpipe_dsl::pipeline::Source;
use ardpipe_dsl::{Pipeline, PluginSite, PluginUses};
use ardpipe_engine::train::plugins::Site;
use ardpipe_plugin_host::{PluginError, PluginInfo, load};

use crate::args::PluginCommand;
use crate::exit::Code;

pub fn run(what: PluginCommand) -> miette::Result<Code> {
    match what {
        PluginCommand::Inspect { path } => inspect(&path),
    }
}

fn inspect(path: &Path) -> miette::Result<Code> {
    // PluginError is a miette Diagnostic: code, message naming the plugin, and help with the fix.
    let plugin = load(path).map_err(miette::Report::new)?;
    print!("{}", render(plugin.info()));
    Ok(Code::Success)
}

/// A plugin's error during `ardpipe run`: an option it refused is shown at that option in the pipeline text;
/// anything else (a panic, a failure while streaming) with the plugin's own code and fix.
pub fn run_failure(
    site: &Site,
    error: &PluginError,
    pipeline: &Pipeline,
    uses: Option<&PluginUses>,
    variant: Option<&str>,
) -> miette::Result<Code> {
    let message = format!("{site}: {error}");
    let help = missing_path_help(site, error, pipeline).unwrap_or_else(|| error.help());
    if let (Some(key), Some(uses)) = (error.key.as_deref(), uses) {
        let at = match site {
            Site::Dataset { name } => PluginSite::Dataset { name: name.clone() },
            Site::Metric { index, .. } => PluginSite::Metric { index: *index },
        };
        if let Some(d) = uses.problem(variant, &at, Some(key), message.clone(), help.clone()) {
            super::check::print_diagnostics(d);
            return Ok(Code::Failure);
        }
    }
    let diagnostic = miette::MietteDiagnostic::new(message)
        .with_code(error.code())
        .with_help(help);
    Err(miette::Report::new(diagnostic))
}

/// A loader refusing its `path` because nothing is there is most often an example asset that
/// is not installed: say so, as the built-in formats do.
fn missing_path_help(site: &Site, error: &PluginError, pipeline: &Pipeline) -> Option<String> {
    let Site::Dataset { name } = site else {
        return None;
    };
    let dataset = pipeline.datasets.iter().find(|d| &d.name == name)?;
    let Source::Plugin {
        path: Some(path), ..
    } = &dataset.source
    else {
        return None;
    };
    (error.key.as_deref() == Some("path") && !path.exists()).then(|| {
        format!(
            "{} does not exist: check the dataset's `path` (relative paths are relative to the \
             pipeline file; `${{assets}}` is the example-asset folder `python3 scripts/setup.py` \
             fills, and `ardpipe doctor` lists what is installed)",
            path.display()
        )
    })
}

fn render(info: &PluginInfo) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<13} {v}\n"));
    line("name", &info.name);
    line("version", &info.version);
    line("kind", &info.kind.to_string());
    line("abi", &info.abi_version.to_string());
    line("path", &info.path.display().to_string());
    if !info.description.is_empty() {
        line("description", &info.description);
    }
    let caps = if info.capabilities.is_empty() {
        "(none)".to_string()
    } else {
        info.capabilities.join(", ")
    };
    line("capabilities", &caps);
    if info.options.is_empty() {
        line("options", "(none)");
        return out;
    }
    out.push_str("options\n");
    let width = info.options.iter().map(|o| o.key.len()).max().unwrap_or(0);
    for o in &info.options {
        let mut facts = vec![o.kind.clone()];
        if o.required {
            facts.push("required".into());
        }
        if let Some(d) = &o.default {
            facts.push(format!("default {d}"));
        }
        let facts: Vec<&str> = facts
            .iter()
            .map(String::as_str)
            .filter(|f| !f.is_empty())
            .collect();
        out.push_str(&format!(
            "  {:<width$}  {}{}\n",
            o.key,
            facts.join(", "),
            if o.help.is_empty() {
                String::new()
            } else {
                format!(": {}", o.help)
            }
        ));
    }
    out
}
