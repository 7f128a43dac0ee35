//! Where the harness finds what it runs (Envoy, the built `.wasm`, the workspace's binaries)
//! and where each stack keeps its files.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The workspace root (this crate lives in `<root>/integration`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// `$var` if set, else `<root>/default`; an error naming `hint` when the file is missing.
fn locate(var: &str, default: &str, hint: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| workspace_root().join(default));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} missing: {hint}", path.display()))
    }
}

/// Envoy binary: `$FUSEBOX_ENVOY`, else `<root>/.venv/bin/envoy` (installed by the Makefile).
pub fn envoy_binary() -> Result<PathBuf, String> {
    locate("FUSEBOX_ENVOY", ".venv/bin/envoy", "run `make test` (it installs Envoy) or set FUSEBOX_ENVOY")
}

/// The release filter: `$FUSEBOX_WASM`, else `<root>/target/wasm32-wasip1/release/fusebox_filter.wasm`.
pub fn wasm_path() -> Result<PathBuf, String> {
    locate("FUSEBOX_WASM", "target/wasm32-wasip1/release/fusebox_filter.wasm", "build it with `make wasm`")
}

/// A sibling binary of the running executable (`fusebox-control`, `mock-llm`), built by cargo.
pub fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!("{name} not found next to {} (run `cargo build --workspace`)", exe.display()))
}

/// A program on `PATH`, if there is one.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A fresh directory under the system temp dir for one stack's files and logs. It is removed
/// when dropped, unless the thread is panicking (a failing test keeps its logs) or it was
/// told to [`WorkDir::keep`] it.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Keeps the directory after the drop (a log in it was named in an error, or a user
    /// was told its path).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl std::ops::Deref for WorkDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for WorkDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn work_dir() -> WorkDir {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = std::env::temp_dir().join(format!("fusebox-e2e-{}-{nanos}", std::process::id()));
    let _ = std::fs::create_dir_all(&path);
    WorkDir { path, keep: false }
}
