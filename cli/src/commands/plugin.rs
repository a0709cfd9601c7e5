//! `ardpipe plugin inspect PATH`: what a plugin library says about itself, or why it cannot be used.

use std::path::Path;

use ardpipe_plugin_host::{PluginInfo, load};

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
