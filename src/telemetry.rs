//! Logging: human-readable on a terminal, JSON lines otherwise (for log collectors).
//! Filter with `RUST_LOG` (default `info`). Spans carry ids, never personal values.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init() {
    init_with_default("info");
}

/// As [`init`], with another level when `RUST_LOG` is not set (the demo narrates instead
/// of logging).
pub fn init_with_default(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
    // Already installed (several servers in one test process): keep the first.
    drop(result);
    log_panics();
}

/// Sends panics to the log as errors, with their location, instead of bare stderr text, so
/// a log collector sees them beside the request they broke. Installed once per process.
fn log_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let thread = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned();
            tracing::error!(panic = %message, %location, %thread, "a thread panicked");
        }));
    });
}
