//! Where a plugin named in a pipeline lives: its `path` relative to the pipeline file, or its name
//! looked up in the plugin search path.

use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, PluginError};

/// Folders to search by name, separated like PATH; searched before the per-user default folder.
pub const SEARCH_PATH_ENV: &str = "ARDPIPE_PLUGIN_PATH";

/// `$ARDPIPE_PLUGIN_PATH`, then `$XDG_DATA_HOME/ardpipe/plugins` (or `~/.local/share/ardpipe/plugins`).
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os(SEARCH_PATH_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(home) = data_home {
        dirs.push(home.join("ardpipe").join("plugins"));
    }
    dirs
}

/// The file names a plugin called `name` may have on this platform (cargo turns `-` into `_`).
pub fn library_file_names(name: &str) -> Vec<String> {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let mut names = Vec::new();
    for stem in [name.to_string(), name.replace('-', "_")] {
        for candidate in [format!("{prefix}{stem}{suffix}"), format!("{stem}{suffix}")] {
            if !names.contains(&candidate) {
                names.push(candidate);
            }
        }
    }
    names
}

/// Resolves a pipeline's plugin entry: an explicit `path` (relative to `pipeline_dir`) wins;
/// otherwise `name` is looked up in `search_path`, first match wins.
pub fn resolve(
    name: &str,
    path: Option<&Path>,
    pipeline_dir: &Path,
    search_path: &[PathBuf],
) -> Result<PathBuf, PluginError> {
    if let Some(path) = path {
        return Ok(if path.is_absolute() {
            path.to_path_buf()
        } else {
            pipeline_dir.join(path)
        });
    }
    let names = library_file_names(name);
    for dir in search_path {
        for file in &names {
            let candidate = dir.join(file);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(PluginError::new(
        name,
        PathBuf::from(names.first().cloned().unwrap_or_default()),
        ErrorKind::NotInSearchPath {
            searched: search_path.to_vec(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_is_relative_to_the_pipeline() {
        let p = resolve(
            "x",
            Some(Path::new("plugins/libx.so")),
            Path::new("/p"),
            &[],
        )
        .unwrap();
        assert_eq!(p, Path::new("/p/plugins/libx.so"));
        let p = resolve("x", Some(Path::new("/abs/libx.so")), Path::new("/p"), &[]).unwrap();
        assert_eq!(p, Path::new("/abs/libx.so"));
    }

    #[test]
    fn name_lookup_finds_cargo_style_names_and_lists_folders_when_not_found() {
        let dir = std::env::temp_dir().join(format!("ardpipe-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!(
            "{}my_loader{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        std::fs::write(&file, b"").unwrap();
        let found = resolve(
            "my-loader",
            None,
            Path::new("."),
            std::slice::from_ref(&dir),
        )
        .unwrap();
        assert_eq!(found, file);
        let e = resolve("other", None, Path::new("."), std::slice::from_ref(&dir)).unwrap_err();
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
        assert!(e.help().contains(SEARCH_PATH_ENV));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
