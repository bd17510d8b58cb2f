//! The core's `log` records, written to Envoy's `dynamic_modules` logger.

use super::abi::{self, ModuleBuffer};

struct EnvoyLogger;

fn level_of(level: log::Level) -> i32 {
    match level {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        _ => abi::LOG_INFO,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // SAFETY: the logger is thread-safe in Envoy.
        metadata.level() <= log::Level::Info
            && unsafe { abi::envoy_dynamic_module_callback_log_enabled(level_of(metadata.level())) }
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = format!("vllm_gateway: {}", record.args());
        // SAFETY: the buffer outlives the call; the logger is thread-safe in Envoy.
        unsafe {
            abi::envoy_dynamic_module_callback_log(
                level_of(record.level()),
                ModuleBuffer::of(message.as_bytes()),
            )
        }
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Routes `log` to Envoy (once; later calls change nothing).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}
