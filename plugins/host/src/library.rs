//! Opening a file as a plugin library: exists, is a shared library, loads, exports the entry symbol.
//! Libraries are never unloaded: a plugin's code and static data (its descriptor, its strings)
//! must stay valid for the rest of the process.

use std::io::Read;
use std::path::Path;

use ardpipe_plugin_sdk::abi::{ABI_VERSION, ArdHost, ArdPluginDescriptor};
use libloading::Library;

use crate::error::{ErrorKind, PluginError};

pub(crate) type EntryFn = unsafe extern "C" fn(host: *const ArdHost) -> *const ArdPluginDescriptor;

/// Other ABI versions probed for when `ardpipe_plugin_v1` is absent, so that a plugin built for a
/// newer (or pre-release) ABI gets "ABI mismatch, both versions named" instead of "not a plugin".
const OTHER_VERSIONS: std::ops::RangeInclusive<u32> = 0..=16;

/// Opens `path` and finds the entry symbol; `label` names the plugin in errors.
pub(crate) fn open(path: &Path, label: &str) -> Result<EntryFn, PluginError> {
    let fail = |kind| PluginError::new(label, path, kind);
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(ErrorKind::NotFound));
        }
        Err(e) => {
            return Err(fail(ErrorKind::LoadFailed {
                detail: format!("cannot read it: {e}"),
            }));
        }
    };
    if meta.is_dir() {
        return Err(fail(ErrorKind::NotSharedLibrary {
            detail: "it is a directory".into(),
        }));
    }
    if let Some(detail) = not_a_library(path) {
        return Err(fail(ErrorKind::NotSharedLibrary { detail }));
    }
    // SAFETY: loading runs the library's initialisers; that is the trust a user gives a plugin by
    // naming it. Everything after this point is checked before use.
    let library = match unsafe { Library::new(path) } {
        Ok(library) => &*Box::leak(Box::new(library)),
        Err(e) => {
            return Err(fail(ErrorKind::LoadFailed {
                detail: e.to_string(),
            }));
        }
    };
    // Never unwrap a symbol lookup: a missing symbol is the commonest bad plugin there is.
    let symbol = format!("ardpipe_plugin_v{ABI_VERSION}\0");
    // SAFETY: the symbol's type is fixed by the ABI; the library stays loaded forever.
    if let Ok(entry) = unsafe { library.get::<EntryFn>(symbol.as_bytes()) } {
        return Ok(*entry);
    }
    for version in OTHER_VERSIONS.filter(|v| *v != ABI_VERSION) {
        let other = format!("ardpipe_plugin_v{version}\0");
        // SAFETY: only checking presence; the symbol is never called.
        if unsafe { library.get::<*const ()>(other.as_bytes()) }.is_ok() {
            return Err(fail(ErrorKind::AbiMismatch {
                plugin_abi: version,
                host_abi: ABI_VERSION,
            }));
        }
    }
    Err(fail(ErrorKind::NoEntrySymbol))
}

/// `Some(why)` when the file's first bytes are no shared-library format we know (ELF, Mach-O, PE).
fn not_a_library(path: &Path) -> Option<String> {
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let head = &head[..n];
    let known: [&[u8]; 7] = [
        b"\x7fELF",
        &[0xfe, 0xed, 0xfa, 0xce],
        &[0xfe, 0xed, 0xfa, 0xcf],
        &[0xce, 0xfa, 0xed, 0xfe],
        &[0xcf, 0xfa, 0xed, 0xfe],
        &[0xca, 0xfe, 0xba, 0xbe],
        b"MZ",
    ];
    if known.iter().any(|magic| head.starts_with(magic)) {
        return None;
    }
    Some(if n == 0 {
        "the file is empty".to_string()
    } else if head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        format!(
            "it starts with the text {:?}, not a library header",
            String::from_utf8_lossy(head)
        )
    } else {
        format!("it starts with bytes {head:02x?}, not an ELF, Mach-O or PE header")
    })
}
