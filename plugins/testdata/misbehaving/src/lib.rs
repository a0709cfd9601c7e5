//! A loader that misbehaves on demand, so the host's handling of panics and errors is tested
//! through a real `cdylib`: `{"panic_in": "open" | "next_batch" | "size_hint" | "close"}` panics
//! there; `{"fail_in": "next_batch"}` returns an error after the first batch; `{"records": N}`
//! streams N numbered records otherwise.

use ardpipe_plugin_sdk::{Describe, Loader, OptionSpec, Options, PluginError, Record, log_warn};

pub struct Misbehaving {
    panic_in: String,
    fail_in: String,
    next: u64,
    total: u64,
}

impl Describe for Misbehaving {
    const NAME: &'static str = "misbehaving";
    const VERSION: &'static str = "0.0.1";
    const DESCRIPTION: &'static str = "panics or fails where told to (host tests)";
    const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec::optional(
            "panic_in",
            "string",
            None,
            "open, next_batch, size_hint or close",
        ),
        OptionSpec::optional("fail_in", "string", None, "next_batch"),
        OptionSpec::optional("records", "integer", Some("5"), "records to stream"),
    ];
}

impl Loader for Misbehaving {
    fn open(options: &Options, _seed: u64) -> Result<Self, PluginError> {
        let panic_in = options.str("panic_in")?.unwrap_or_default().to_string();
        if panic_in == "open" {
            panic!("deliberate panic in open");
        }
        log_warn!("misbehaving plugin opened; it will misbehave in `{panic_in}`");
        Ok(Misbehaving {
            panic_in,
            fail_in: options.str("fail_in")?.unwrap_or_default().to_string(),
            next: 0,
            total: options.u64("records")?.unwrap_or(5),
        })
    }

    fn next_batch(&mut self, max_records: usize) -> Result<Vec<Record>, PluginError> {
        if self.panic_in == "next_batch" && self.next > 0 {
            let empty: Vec<u8> = Vec::new();
            // An index out of bounds, the commonest real panic.
            let _ = empty[self.next as usize];
        }
        if self.fail_in == "next_batch" && self.next > 0 {
            return Err(PluginError::new(format!(
                "record source went away after {} records",
                self.next
            )));
        }
        let end = (self.next + max_records as u64).min(self.total);
        let batch = (self.next..end)
            .map(|i| {
                Record::new(format!("record {i}")).with_label(if i % 2 == 0 {
                    "even"
                } else {
                    "odd"
                })
            })
            .collect();
        self.next = end;
        Ok(batch)
    }

    fn size_hint(&self) -> Option<u64> {
        if self.panic_in == "size_hint" {
            panic!("deliberate panic in size_hint");
        }
        Some(self.total)
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        if self.panic_in == "close" {
            panic!("deliberate panic in close");
        }
    }
}

ardpipe_plugin_sdk::export_plugin!(loader = Misbehaving);
