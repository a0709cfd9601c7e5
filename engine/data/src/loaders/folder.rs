//! One folder per class: `root/<class>/<file>`, each file one record labelled with its folder:
//! a text file's text, or (image folders) an image file's path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{DataError, ErrorKind};
use crate::record::{Origin, Record};

/// The file names an image folder's records are made of (PNG and JPEG, any case).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Whether `path` names an image file by its extension.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

pub struct FolderSource {
    files: std::vec::IntoIter<(String, PathBuf)>,
    images: bool,
}

impl FolderSource {
    /// Text files: each file's text is a record.
    pub fn open(root: &Path) -> Result<Self, DataError> {
        Ok(Self {
            files: Self::list(root)?.into_iter(),
            images: false,
        })
    }

    /// Image files: each PNG or JPEG file is a record with `image` set (decoded only when the
    /// record is encoded).
    pub fn open_images(root: &Path) -> Result<Self, DataError> {
        Ok(Self {
            files: Self::list_images(root)?.into_iter(),
            images: true,
        })
    }

    /// `(class, file)` for every file under `root`, classes and files sorted by name.
    pub fn list(root: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
        Self::list_where(root, |_| true)
    }

    /// `(class, image)` for every image file (see [`IMAGE_EXTENSIONS`]) under `root`, classes
    /// and files sorted by name. No image at all is an error.
    pub fn list_images(root: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
        let files = Self::list_where(root, is_image_file)?;
        if files.is_empty() {
            return Err(
                DataError::new(ErrorKind::Empty, "the class folders hold no image files")
                    .in_file(root)
                    .with_help(format!(
                        "lay the data out as root/<class>/<image>, with images named *.{}",
                        IMAGE_EXTENSIONS.join(", *.")
                    )),
            );
        }
        Ok(files)
    }

    fn list_where(
        root: &Path,
        keep: impl Fn(&Path) -> bool,
    ) -> Result<Vec<(String, PathBuf)>, DataError> {
        let read = |dir: &Path| -> Result<Vec<PathBuf>, DataError> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| DataError::io(dir, &e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                // Hidden files (.DS_Store, .gitkeep) are not data.
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            v.sort();
            Ok(v)
        };
        let mut files = Vec::new();
        let mut classes = 0;
        for class_dir in read(root)?.into_iter().filter(|p| p.is_dir()) {
            classes += 1;
            let class = class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for f in read(&class_dir)?
                .into_iter()
                .filter(|p| p.is_file() && keep(p))
            {
                files.push((class.clone(), f));
            }
        }
        if classes == 0 {
            return Err(
                DataError::new(ErrorKind::Empty, "the folder has no class subfolders")
                    .in_file(root)
                    .with_help("lay the data out as root/<class>/<file>, one subfolder per class"),
            );
        }
        Ok(files)
    }

    /// The record of one image file, labelled `class`: its path, not yet read.
    pub fn image_one(class: &str, path: &Path) -> Record {
        let mut rec = Record::new(
            String::new(),
            Origin {
                file: Arc::from(path),
                line: 1,
            },
        );
        rec.label = Some(class.to_string());
        rec.image = Some(path.to_path_buf());
        rec
    }

    /// The record of one text file, labelled `class`.
    pub fn read_one(class: &str, path: &Path) -> Result<Record, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, &e))?;
        match String::from_utf8(bytes) {
            Ok(text) => {
                let mut rec = Record::new(
                    text.trim_end().to_string(),
                    Origin {
                        file: Arc::from(path),
                        line: 1,
                    },
                );
                rec.label = Some(class.to_string());
                Ok(rec)
            }
            Err(_) => Err(
                DataError::new(ErrorKind::BadRow, "the file is not valid UTF-8 text")
                    .at(path, 1)
                    .with_help(
                        "convert it to UTF-8, or remove binary files from the class folders",
                    ),
            ),
        }
    }
}

impl Iterator for FolderSource {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (class, path) = self.files.next()?;
        if self.images {
            return Some(Ok(Self::image_one(&class, &path)));
        }
        Some(Self::read_one(&class, &path))
    }
}
