//! `make envoy-configs`: the Envoy bootstraps in `envoy/` are templates (`${LISTEN_PORT}`,
//! `${WASM}`, ...); this renders every one into a file Envoy runs as it is
//! (`envoy -c target/envoy/demo.yaml`). Ports come from `FUSEBOX_LISTEN_PORT`,
//! `FUSEBOX_ADMIN_PORT`, `FUSEBOX_CONTROL_PORT`, `FUSEBOX_MOCK_PORT` (the `make run` ports by
//! default), the filter from `FUSEBOX_WASM` (the built `.wasm`), a provider's key file from
//! `FUSEBOX_PROVIDER_KEY_FILE` (default `/etc/fusebox/provider-key`). `--out DIR` (default
//! `target/envoy`) says where.

use fusebox_integration::{render, wasm_path, workspace_root, Ports};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Bootstrap templates under `dir` (Kubernetes manifests and cluster snippets are not).
fn templates(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if !path.ends_with("istio/k8s") && !path.ends_with("snippets") {
                templates(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    Ok(())
}

fn run() -> Result<Vec<PathBuf>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        [] => workspace_root().join("target/envoy"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => return Err("usage: fusebox-render [--out DIR]".into()),
    };
    let ports = Ports::from_env();
    let key = std::env::var("FUSEBOX_PROVIDER_KEY_FILE").unwrap_or_else(|_| "/etc/fusebox/provider-key".into());
    let vars = [
        ("LISTEN_PORT", ports.listen.to_string()),
        ("ADMIN_PORT", ports.admin.to_string()),
        ("CONTROL_PORT", ports.control.to_string()),
        ("MOCK_PORT", ports.mock.to_string()),
        ("WASM", wasm_path()?.display().to_string()),
        ("PROVIDER_KEY_FILE", key),
    ];
    let source = workspace_root().join("envoy");
    let mut files = Vec::new();
    templates(&source, &mut files).map_err(|e| format!("{}: {e}", source.display()))?;
    files.sort();
    let mut written = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let rendered = render(&text, &vars);
        if let Some(at) = rendered.find("${") {
            let name: String = rendered.get(at..).unwrap_or_default().chars().take_while(|c| *c != '}').collect();
            return Err(format!("{}: no value for {name}}}", file.display()));
        }
        let relative = file.strip_prefix(&source).map_err(|e| e.to_string())?;
        let target = out.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&target, rendered).map_err(|e| format!("{}: {e}", target.display()))?;
        written.push(target);
    }
    Ok(written)
}

fn main() -> ExitCode {
    match run() {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fusebox-render: {e}");
            ExitCode::FAILURE
        }
    }
}
