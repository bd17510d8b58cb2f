//! What a worker does on each tick, over any host ([`Calls`]): keep the Envoy's leases
//! ([`Upkeep`]), follow the shared credentials and pull them when due ([`crate::state_sync`]), send
//! again the lookups whose sender is gone and give up on those whose answer is lost. The wasm
//! glue runs all of it in each worker's root context; the native glue runs the leases and the
//! state on Envoy's main thread and the lookups on a worker's own requests.

use super::waiting::{self, SharedUpkeep, SharedWorker, Waiter};
use super::{Calls, StreamHost};
use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::feed::limits::LeaseAsk;
use crate::limits::float::Float;
use crate::limits::lease;
use crate::lookup::{LookupKey, LookupResult};
use crate::worker::Worker;

/// The upkeep's lease call in flight, and what it asked.
pub type UpkeepCall = Option<(u32, Vec<LeaseAsk>)>;

/// Flushes the worker's float (if it has one), then renews the concurrency leases and gives idle
/// units back (see [`lease::Upkeep`]) unless the last such call is still in flight.
pub fn keep_leases(
    host: &mut impl Calls,
    feed: &StateFeed,
    instance: &str,
    upkeep: &SharedUpkeep,
    float: Option<&mut Float>,
    in_flight: &mut UpkeepCall,
) {
    let now_ms = host.now_ms();
    let Ok(mut upkeep) = upkeep.lock() else { return };
    if let Some(float) = float {
        // The float goes back every tick: a worker holds at most what one tick's requests use.
        float.flush(host.shared(), now_ms);
        upkeep.note_overdrawn(float.take_overdrawn());
    }
    if in_flight.is_some() {
        return;
    }
    let asks = upkeep.due(host.shared(), now_ms);
    if asks.is_empty() {
        return;
    }
    let call = lease::call(feed, instance, &asks);
    match host.dispatch(feed, &call) {
        Some(token) => *in_flight = Some((token, asks)),
        None => {
            lease::undo(host.shared(), &asks);
            upkeep.note(&asks);
        }
    }
}

/// Takes in the answer to the upkeep's call, if `token` is it; whether it was.
pub fn upkeep_answered(
    host: &mut impl Calls,
    upkeep: &SharedUpkeep,
    in_flight: &mut UpkeepCall,
    token: u32,
    answer: &CallAnswer,
) -> bool {
    if in_flight.as_ref().is_none_or(|(t, _)| *t != token) {
        return false;
    }
    let Some((_, asks)) = in_flight.take() else { return false };
    let now_ms = host.now_ms();
    match lease::read_answer(answer, &asks) {
        Ok(grants) => lease::apply(host.shared(), &asks, &grants, now_ms),
        Err(e) => {
            log::warn!("the limits' upkeep call: {e}");
            lease::undo(host.shared(), &asks);
            if let Ok(mut upkeep) = upkeep.lock() {
                upkeep.note(&asks);
            }
        }
    }
    true
}

/// Adopts a newer shared state, then dispatches a catch-up or the pull when due (at most both).
pub fn sync_state<W>(host: &mut impl Calls, feed: &StateFeed, worker: &mut Worker<W>) {
    let now_ms = host.now_ms();
    worker.adopt_shared(host.shared());
    for _ in 0..2 {
        let Some(call) = worker.next_state_call(host.shared(), now_ms) else { break };
        match host.dispatch(feed, &call) {
            Some(token) => worker.state_call_sent(token),
            None => worker.state_call_not_sent(host.shared(), now_ms),
        }
    }
}

/// Takes in the answer to a state call, if `token` is one; whether it was.
pub fn state_answered<W>(
    host: &mut impl Calls,
    worker: &mut Worker<W>,
    token: u32,
    answer: &CallAnswer,
) -> bool {
    if !worker.is_state_call(token) {
        return false;
    }
    let now_ms = host.now_ms();
    worker.state_call_answered(host.shared(), now_ms, token, answer);
    true
}

/// Sends again the lookups whose sender is gone, each through one of its waiters still there
/// (the answer comes to that request), and gives up on those whose answer is lost (past their
/// deadline) or that no waiter can send: their waiters are checked again against the state as
/// it is, and each is counted (`count`). For a host whose calls are answered only to the request
/// that made them and whose workers have no tick (the native module).
pub fn sweep_lookups_through_waiters<H: StreamHost>(
    feed: &StateFeed,
    worker: &SharedWorker<H>,
    now_ms: u64,
    mut count: impl FnMut(LookupResult),
) {
    let given_up = sweep_lookups(feed, worker, now_ms, |w, key, call| {
        w.lookup_waiters(key).find_map(|waiter| waiter.resend(feed, call))
    });
    for _ in 0..given_up {
        count(LookupResult::Error);
    }
}

/// Sends again the lookups whose sender is gone (through `host`: the answer comes to its
/// context), and gives up on those whose answer is lost: their waiters are checked again
/// against the state as it is (refused unless it now knows them).
pub fn sync_lookups<C: Calls, H: StreamHost>(
    host: &mut C,
    feed: &StateFeed,
    worker: &SharedWorker<H>,
) {
    let now_ms = host.now_ms();
    let given_up = sweep_lookups(feed, worker, now_ms, |_, _, call| host.dispatch(feed, call));
    for _ in 0..given_up {
        host.emit(&[crate::metrics::credential_lookup(LookupResult::Error)]);
    }
}

/// Sends again each lookup whose sender is gone with `send` (its token, or `None`), and gives up
/// on those `send` cannot send and on those past their deadline: their waiters are checked
/// again against the state as it is. How many lookups were given up.
fn sweep_lookups<H: StreamHost>(
    feed: &StateFeed,
    worker: &SharedWorker<H>,
    now_ms: u64,
    mut send: impl FnMut(&Worker<Waiter<H>>, LookupKey, &CallRequest) -> Option<u32>,
) -> usize {
    let (lost, given_up) = {
        let Ok(mut w) = worker.try_borrow_mut() else { return 0 };
        let (mut lost, mut given_up): (Vec<Waiter<H>>, usize) = (Vec::new(), 0);
        for key in w.lookups_to_resend(now_ms) {
            match send(&w, key, &key.call(feed)) {
                Some(token) => w.lookup_sent(key, token),
                None => {
                    given_up += 1;
                    lost.extend(w.lookup_not_sent(key));
                }
            }
        }
        for (_, waiters) in w.expired_lookups(now_ms) {
            given_up += 1;
            lost.extend(waiters);
        }
        (lost, given_up)
    };
    if !lost.is_empty() {
        waiting::resume_waiters(worker, lost);
    }
    given_up
}
