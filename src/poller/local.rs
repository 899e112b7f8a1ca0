//! A landing area in a local (or mounted) directory: `<root>/<client id>/…/<file>`.

use std::path::{Path, PathBuf};

use super::{Listing, PollerError, Source};

/// Names that mark a file as still being written: upload tools write to these and rename
/// when done, so they are never candidates.
const PARTIAL_SUFFIXES: &[&str] = &[".filepart", ".part", ".partial", ".tmp", ".crdownload"];

/// A local directory source.
pub struct LocalSource {
    name: String,
    root: PathBuf,
}

impl LocalSource {
    pub fn new(name: &str, root: impl Into<PathBuf>) -> LocalSource {
        LocalSource {
            name: name.to_string(),
            root: root.into(),
        }
    }

    fn err(&self, op: &'static str, path: &Path, error: std::io::Error) -> PollerError {
        PollerError::Source {
            source_name: self.name.clone(),
            op,
            path: path.display().to_string(),
            error,
        }
    }
}

/// Is this a name to skip: hidden (dot files, our own temporaries) or a partial upload.
pub(super) fn skipped(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || PARTIAL_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A relative path as UTF-8 with `/` separators; bytes that are not UTF-8 become `%XX`, and
/// `%` itself `%25`, so distinct paths stay distinct.
pub(crate) fn display_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for (i, part) in path.components().enumerate() {
        if i > 0 {
            out.push('/');
        }
        let bytes = part.as_os_str().as_bytes();
        for chunk in bytes.utf8_chunks() {
            for ch in chunk.valid().chars() {
                if ch == '%' || ch.is_control() {
                    let mut b = [0u8; 4];
                    for byte in ch.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("%{byte:02X}"));
                    }
                } else {
                    out.push(ch);
                }
            }
            for byte in chunk.invalid() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl Source for LocalSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list(&self) -> Result<Vec<Listing>, PollerError> {
        let root = self.root.clone();
        let name = self.name.clone();
        let listed = tokio::task::spawn_blocking(move || walk(&root))
            .await
            .expect("listing does not panic");
        let files = listed.map_err(|(path, e)| self.err("list", &path, e))?;
        Ok(super::client_listings(&name, files))
    }

    async fn open(
        &self,
        listing: &Listing,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, PollerError> {
        let path = self.root.join(&listing.path);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.err("open", &path, e))?;
        Ok(Box::new(file))
    }

    async fn stat(&self, listing: &Listing) -> Result<(u64, i64), PollerError> {
        let path = self.root.join(&listing.path);
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| self.err("stat", &path, e))?;
        Ok((meta.len(), mtime_ms(&meta)))
    }
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000
}

type Walked = Vec<(PathBuf, u64, i64)>;

/// Regular files under `root`, relative to it. Symbolic links are not followed: a link
/// could lead out of the landing area.
fn walk(root: &Path) -> Result<Walked, (PathBuf, std::io::Error)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| (dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            if skipped(&entry.file_name()) {
                continue;
            }
            let file_type = entry.file_type().map_err(|e| (entry.path(), e))?;
            let rel_path = rel.join(entry.file_name());
            if file_type.is_dir() {
                stack.push(rel_path);
            } else if file_type.is_file() {
                // A file deleted between listing and stat is simply not listed.
                if let Ok(meta) = entry.metadata() {
                    out.push((rel_path, meta.len(), mtime_ms(&meta)));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[tokio::test]
    async fn lists_client_files_and_skips_partials_and_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("acme/2026/10")).unwrap();
        std::fs::write(root.join("acme/2026/10/accounts.csv"), b"a").unwrap();
        std::fs::write(root.join("acme/b.csv.filepart"), b"a").unwrap();
        std::fs::write(root.join("acme/.hidden"), b"a").unwrap();
        std::fs::write(root.join("stray.csv"), b"a").unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"bad\xffname%.csv");
        std::fs::write(root.join("acme").join(odd), b"a").unwrap();

        let source = LocalSource::new("landing", root);
        let listed: Vec<_> = source
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.client_id, l.display))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("acme".to_string(), "acme/2026/10/accounts.csv".to_string()),
                ("acme".to_string(), "acme/bad%FFname%25.csv".to_string()),
            ]
        );
    }
}
