//! Emits [`crate::metrics`] observations as Envoy stats. Each VM defines a metric once and keeps
//! its id; the same name from every worker's VM adds up to one Envoy stat.

use std::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::metrics::{ByName, MetricKind, Observation};

thread_local! {
    static IDS: RefCell<ByName<u32>> = RefCell::new(ByName::default());
}

fn id_of(name: &str, kind: MetricKind) -> Option<u32> {
    IDS.with(|ids| {
        if let Some(id) = ids.borrow().get(name) {
            return Some(*id);
        }
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Histogram => MetricType::Histogram,
        };
        match hostcalls::define_metric(kind, name) {
            Ok(id) => {
                ids.borrow_mut().insert(name.to_owned(), id);
                Some(id)
            }
            Err(e) => {
                log::warn!("defining metric {name} failed: {e:?}");
                None
            }
        }
    })
}

/// Adds the observations to Envoy's stats; failures are logged, never fatal.
pub fn emit(observations: &[Observation]) {
    for o in observations {
        let Some(id) = id_of(&o.name, o.kind) else { continue };
        let result = match o.kind {
            MetricKind::Counter => {
                hostcalls::increment_metric(id, i64::try_from(o.value).unwrap_or(i64::MAX))
            }
            MetricKind::Histogram => hostcalls::record_metric(id, o.value),
        };
        if let Err(e) = result {
            log::warn!("updating metric {} failed: {e:?}", o.name);
        }
    }
}
