//! Secret files (keys, webhook secrets) generated for local use: created once, owner-only.

use std::io::Write;
use std::path::Path;

/// Creates `path` (and its directory) with `contents`, readable by the owner alone; refuses to
/// overwrite an existing file.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}
