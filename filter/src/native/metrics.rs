//! The filter's metrics as Envoy stats, declared when the configuration is made (the only time
//! Envoy lets a module declare one); observations are added through the stream they belong to.
//!
//! What every request adds (requests, tokens and latencies per model and status class) is
//! declared series by series ([`crate::metrics::known_series`]): a stat without labels is one
//! atomic add for Envoy, where a labelled one costs a symbol-table lookup, a name built and a
//! cache search per call (about 2 µs each, five per request). Such a series' name carries its
//! labels as the wasm filter's do (`requests_total;model=m;status_class=2xx`), and the
//! configuration's `stats_tags` turn them into the same Prometheus labels. The families whose
//! label values only a request can say (refusal reasons, lookup results: rare) are declared
//! with labels.
//!
//! Names are declared without their `vllm_gateway_` prefix: the configuration's
//! `metrics_namespace: vllm_gateway` puts it back, and Envoy's Prometheus exposition prefixes
//! `envoy_` (`envoy_vllm_gateway_requests_total`).

use std::ffi::c_void;

use super::abi::{self, ModuleBuffer};
use crate::config::PluginConfig;
use crate::metrics::{known_series, ByName, MetricKind, Observation, FAMILIES};

/// What the configuration's `metrics_namespace` (`vllm_gateway`) stands for in a name.
const NAMESPACE_PREFIX: &str = "vllm_gateway_";

/// The Envoy ids of the declared series and families.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Series declared without labels, by observation name.
    series: ByName<(MetricKind, usize)>,
    /// Families declared with labels, by base name.
    families: Vec<(&'static str, MetricKind, usize)>,
}

impl Metrics {
    /// Declares the known series of `plugin` and every other family on the configuration
    /// `config` (in `config_new` only).
    pub fn declare(config: *mut c_void, plugin: &PluginConfig) -> Self {
        let known = known_series(plugin);
        let mut series = ByName::default();
        let mut families = Vec::with_capacity(FAMILIES.len());
        for (name, kind, labels) in FAMILIES {
            match known.iter().find(|(family, _)| *family == name) {
                Some((_, names)) => {
                    for series_name in names {
                        if let Some(id) = define(config, series_name, kind, &[]) {
                            series.insert(series_name.clone(), (kind, id));
                        }
                    }
                }
                None => {
                    if let Some(id) = define(config, name, kind, labels) {
                        families.push((name, kind, id));
                    }
                }
            }
        }
        Self { series, families }
    }

    /// Adds the observations through the stream `filter` (on its worker).
    pub fn emit(&self, filter: *mut c_void, observations: &[Observation]) {
        for o in observations {
            if let Some((kind, id)) = self.series.get(&o.name) {
                add(filter, *kind, *id, &mut [], o);
                continue;
            }
            let (base, values) = o.parts();
            let Some((_, kind, id)) = self.families.iter().find(|(name, _, _)| *name == base)
            else {
                continue;
            };
            let mut values: Vec<ModuleBuffer> =
                values.iter().map(|v| ModuleBuffer::of(v.as_bytes())).collect();
            add(filter, *kind, *id, &mut values, o);
        }
    }
}

/// Declares one counter or histogram named `name` (prefix dropped) with `labels` on `config`;
/// its Envoy id.
fn define(config: *mut c_void, name: &str, kind: MetricKind, labels: &[&str]) -> Option<usize> {
    let mut label_names: Vec<ModuleBuffer> =
        labels.iter().map(|l| ModuleBuffer::of(l.as_bytes())).collect();
    let define = match kind {
        MetricKind::Counter => abi::envoy_dynamic_module_callback_http_filter_config_define_counter,
        MetricKind::Histogram => {
            abi::envoy_dynamic_module_callback_http_filter_config_define_histogram
        }
    };
    let short = name.strip_prefix(NAMESPACE_PREFIX).unwrap_or(name);
    let mut id = 0usize;
    // SAFETY: `config` is the configuration being made (main thread, inside `config_new`); the
    // buffers outlive the call.
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
        Some(id)
    } else {
        log::warn!("declaring metric {name} failed: {result}");
        None
    }
}

/// Adds observation `o` to the stat `id` with the label `values` (none for a series).
fn add(
    filter: *mut c_void,
    kind: MetricKind,
    id: usize,
    values: &mut [ModuleBuffer],
    o: &Observation,
) {
    let add = match kind {
        MetricKind::Counter => abi::envoy_dynamic_module_callback_http_filter_increment_counter,
        MetricKind::Histogram => {
            abi::envoy_dynamic_module_callback_http_filter_record_histogram_value
        }
    };
    // SAFETY: `filter` is alive and we are on its worker; the buffers outlive the call.
    let result = unsafe { add(filter, id, values.as_mut_ptr(), values.len(), o.value) };
    if result != abi::METRICS_SUCCESS {
        log::warn!("updating metric {} failed: {result}", o.name);
    }
}
