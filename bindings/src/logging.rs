//! Log records to the shell's logger (Logcat on Android, os_log on iOS).
//!
//! The core logs through the `log` facade and never puts personal data in a
//! record (no descriptions, names, coordinates, tokens or paths), so a sink
//! may forward every record as it is.

use std::sync::{Arc, OnceLock, RwLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Debug, uniffi::Record)]
pub struct LogRecord {
    pub level: LogLevel,
    /// The Rust module that logged, e.g. `gridwork_core::sync::runner`.
    pub target: String,
    pub message: String,
}

/// Implemented by the shell. Called on whatever thread logged; keep it quick.
#[uniffi::export(with_foreign)]
pub trait LogSink: Send + Sync {
    fn log(&self, record: LogRecord);
}

struct Forwarder {
    sink: RwLock<Option<Arc<dyn LogSink>>>,
}

static FORWARDER: OnceLock<Forwarder> = OnceLock::new();

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sink = self.sink.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(sink) = sink {
            sink.log(LogRecord {
                level: level_of(record.level()),
                target: record.target().to_owned(),
                message: record.args().to_string(),
            });
        }
    }

    fn flush(&self) {}
}

fn level_of(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Trace => LogLevel::Trace,
    }
}

fn filter_of(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Send the library's log records at `max_level` and above to `sink`.
/// Call once at app start; a later call replaces the sink and the level.
#[uniffi::export]
pub fn set_log_sink(sink: Arc<dyn LogSink>, max_level: LogLevel) {
    let forwarder = FORWARDER.get_or_init(|| Forwarder { sink: RwLock::new(None) });
    *forwarder.sink.write().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    // Fails only when another logger was installed first (a Rust test
    // harness, say); the sink then stays unused, which is harmless.
    let _ = log::set_logger(forwarder);
    log::set_max_level(filter_of(max_level));
}
