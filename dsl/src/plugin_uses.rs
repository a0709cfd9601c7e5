//! Where each `plugin(...)` use and its options are written. The checker cannot judge a
//! plugin's options (only the plugin can, when the run opens it); this keeps their places so a
//! plugin's complaint about an option is shown against the pipeline text like any other mistake.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ast::{Arg, Span};
use crate::diag::{Code, Diagnostics, Problem};
use crate::source::SourceMap;

/// Which use of a plugin: a dataset's `format`, or an entry of `evaluate.metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSite {
    Dataset {
        name: String,
    },
    /// Position in `evaluate.metrics`.
    Metric {
        index: usize,
    },
}

/// One `plugin(NAME, key = value, ...)` as written.
#[derive(Debug, Clone)]
pub struct PluginUse {
    pub site: PluginSite,
    pub plugin: String,
    /// The whole call.
    pub span: Span,
    /// Each option's key with the span of its value; a dataset's `path` is the plugin's `path`
    /// option, so its value's span is here too.
    pub options: Vec<(String, Span)>,
}

impl PluginUse {
    pub(crate) fn new(site: PluginSite, plugin: &str, span: Span, args: &[Arg]) -> PluginUse {
        PluginUse {
            site,
            plugin: plugin.to_string(),
            span,
            options: args
                .iter()
                .filter_map(|a| Some((a.name.as_ref()?.name.clone(), a.value.span)))
                .collect(),
        }
    }
}

/// Every plugin use of a checked pipeline and of each of its variants, with their sources.
#[derive(Debug, Clone, Default)]
pub struct PluginUses {
    pub(crate) base: Vec<PluginUse>,
    pub(crate) variants: BTreeMap<String, Vec<PluginUse>>,
    pub(crate) sources: Arc<SourceMap>,
}

impl PluginUses {
    /// The uses in the run `variant` (`None`: the pipeline without variants).
    pub fn uses(&self, variant: Option<&str>) -> &[PluginUse] {
        variant
            .and_then(|v| self.variants.get(v))
            .unwrap_or(&self.base)
    }

    /// A plugin's complaint shown at the option `key` it names (or at the `plugin(...)` call
    /// when that option is not written there, e.g. a default). `None` when the use is unknown.
    pub fn problem(
        &self,
        variant: Option<&str>,
        site: &PluginSite,
        key: Option<&str>,
        message: String,
        help: String,
    ) -> Option<Diagnostics> {
        let used = self.uses(variant).iter().find(|u| u.site == *site)?;
        let at_option = key.and_then(|k| used.options.iter().find(|(o, _)| o == k));
        let (span, label) = match at_option {
            Some((k, span)) => (*span, format!("plugin `{}` refused `{k}`", used.plugin)),
            None => (used.span, format!("plugin `{}` failed here", used.plugin)),
        };
        let problem = Problem::error(Code::PluginOption, span, message)
            .label(label)
            .help(help);
        Some(Diagnostics::new(vec![problem], self.sources.clone()))
    }
}
