//! Running a stack in the foreground (`make run`, `make fleet`) until Ctrl-C, SIGTERM or
//! SIGHUP, or until one of its processes exits.

use std::process::ExitCode;
use std::time::Duration;

/// Waits; `exited` is asked every second for a process that is gone (name, status).
pub fn run_until_stopped(name: &str, mut exited: impl FnMut() -> Option<(String, String)>, logs: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gone = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // SIGTERM/SIGHUP too, so `timeout`, `kill` or a closed terminal still stop the children.
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            return Some((name.to_string(), "cannot install signal handlers".to_string()));
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return None,
                _ = term.recv() => return None,
                _ = hup.recv() => return None,
                _ = tick.tick() => {
                    if let Some(gone) = exited() {
                        return Some(gone);
                    }
                }
            }
        }
    });
    match gone {
        None => {
            println!("\nstopping.");
            ExitCode::SUCCESS
        }
        Some((process, status)) => {
            eprintln!("{name}: {process} exited ({status}); logs in {logs}");
            ExitCode::FAILURE
        }
    }
}
