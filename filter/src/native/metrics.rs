//! The filter's metrics as Envoy stats with labels: every family of
//! [`crate::metrics::FAMILIES`] is declared when the configuration is made (the only time Envoy
//! lets a module declare one), and observations are added through the stream they belong to.
//! Names are declared without their `vllm_gateway_` prefix: the configuration's
//! `metrics_namespace: vllm_gateway` puts it back, and Envoy's Prometheus exposition prefixes
//! `envoy_` (`envoy_vllm_gateway_requests_total`).

use std::ffi::c_void;

use super::abi::{self, ModuleBuffer};
use crate::metrics::{MetricKind, Observation, FAMILIES};

/// What the configuration's `metrics_namespace` (`vllm_gateway`) stands for in a name.
const NAMESPACE_PREFIX: &str = "vllm_gateway_";

/// The Envoy ids of the declared families.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: Vec<(&'static str, MetricKind, usize)>,
}

impl Metrics {
    /// Declares every family on the configuration `config` (in `config_new` only).
    pub fn declare(config: *mut c_void) -> Self {
        let mut ids = Vec::with_capacity(FAMILIES.len());
        for (name, kind, labels) in FAMILIES {
            let mut label_names: Vec<ModuleBuffer> =
                labels.iter().map(|l| ModuleBuffer::of(l.as_bytes())).collect();
            let mut id = 0usize;
            let define = match kind {
                MetricKind::Counter => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter
                }
                MetricKind::Histogram => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_histogram
                }
            };
            // SAFETY: `config` is the configuration being made (main thread, inside
            // `config_new`); the buffers outlive the call.
            let short = name.strip_prefix(NAMESPACE_PREFIX).unwrap_or(name);
            let result = unsafe {
                define(
                    config,
                    ModuleBuffer::of(short.as_bytes()),
                    label_names.as_mut_ptr(),
                    label_names.len(),
                    &mut id,
                )
            };
            if result == abi::METRICS_SUCCESS {
                ids.push((name, kind, id));
            } else {
                log::warn!("declaring metric {name} failed: {result}");
            }
        }
        Self { ids }
    }

    /// Adds the observations through the stream `filter` (on its worker).
    pub fn emit(&self, filter: *mut c_void, observations: &[Observation]) {
        for o in observations {
            let (base, values) = o.parts();
            let Some((_, kind, id)) = self.ids.iter().find(|(name, _, _)| *name == base) else {
                continue;
            };
            let mut values: Vec<ModuleBuffer> =
                values.iter().map(|v| ModuleBuffer::of(v.as_bytes())).collect();
            let add = match kind {
                MetricKind::Counter => {
                    abi::envoy_dynamic_module_callback_http_filter_increment_counter
                }
                MetricKind::Histogram => {
                    abi::envoy_dynamic_module_callback_http_filter_record_histogram_value
                }
            };
            // SAFETY: `filter` is alive and we are on its worker; the buffers outlive the call.
            let result = unsafe { add(filter, *id, values.as_mut_ptr(), values.len(), o.value) };
            if result != abi::METRICS_SUCCESS {
                log::warn!("updating metric {} failed: {result}", o.name);
            }
        }
    }
}
