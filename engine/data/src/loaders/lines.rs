//! Line reading that reports invalid UTF-8 as a bad row at its line instead of failing the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{DataError, ErrorKind};

pub struct ByteLines {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    /// Byte offset of the next line.
    offset: u64,
    done: bool,
}

impl ByteLines {
    /// Start reading at byte `offset`, the start of 1-based line `line`.
    pub fn open_at(path: &Path, offset: u64, line: u64) -> Result<Self, DataError> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, &e))?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| DataError::io(path, &e))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            line: line.saturating_sub(1),
            offset,
            done: false,
        })
    }

    /// Byte offset of the line that the next call returns.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Iterator for ByteLines {
    /// (1-based line number, line without its `\n` / `\r\n`).
    type Item = Result<(u64, String), DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => {
                self.done = true;
                None
            }
            Ok(n) => {
                self.line += 1;
                self.offset += n as u64;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                // A UTF-8 byte-order mark at the start of the file is not text.
                if self.line == 1 && buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    buf.drain(..3);
                }
                Some(match String::from_utf8(buf) {
                    Ok(s) => Ok((self.line, s)),
                    Err(e) => Err(DataError::new(
                        ErrorKind::BadRow,
                        format!(
                            "not valid UTF-8 (at byte {} of the line)",
                            e.utf8_error().valid_up_to()
                        ),
                    )
                    .at(&self.path, self.line)
                    .with_help("convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")),
                })
            }
            Err(e) => {
                self.done = true;
                Some(Err(DataError::io(&self.path, &e)))
            }
        }
    }
}
