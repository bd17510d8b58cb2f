//! The calls into Envoy that can run other hooks before they return: a local reply, resuming a
//! paused request, resetting a stream. Envoy carries them out at once (a proxy-wasm host queues
//! them until the VM returns), and what they run can end the stream — its `stream_complete` and
//! `destroy` hooks — or resume another. So the glue never makes them while the core holds any
//! state: they are queued here, per worker, and every exported hook runs the queue as its last
//! step, after it has let go of the stream's state, and touches nothing of its own afterwards.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_void;

use super::abi::{self, ModuleBuffer, ModuleHeader};

/// A call waiting for the end of the hook.
pub enum Deferred {
    /// A local JSON reply, with extra headers.
    Reply { status: u16, body: Vec<u8>, headers: Vec<(String, String)> },
    /// Resume a paused request.
    Resume,
    /// Reset the stream (a cut-off response: the upstream stops).
    Reset,
}

/// A stream's liveness, as the queue sees it: its Envoy pointer while it exists.
pub trait Target {
    fn envoy(&self) -> Option<*mut c_void>;
}

type Queued = (std::rc::Rc<dyn Target>, Deferred);

thread_local! {
    static QUEUE: RefCell<VecDeque<Queued>> = const { RefCell::new(VecDeque::new()) };
}

/// Queues `call` on the stream `target`.
pub fn defer(target: std::rc::Rc<dyn Target>, call: Deferred) {
    QUEUE.with(|q| match q.try_borrow_mut() {
        Ok(mut q) => q.push_back((target, call)),
        Err(_) => log::error!("the deferred calls are in use: a call is lost"),
    });
}

/// Runs every queued call whose stream still exists, in order (calls queued meanwhile, by hooks
/// the calls ran, included). Call it last in a hook, holding no state.
pub fn run() {
    while let Some((target, call)) =
        QUEUE.with(|q| q.try_borrow_mut().ok().and_then(|mut q| q.pop_front()))
    {
        let Some(envoy) = target.envoy() else { continue };
        drop(target);
        // SAFETY: `envoy` is alive (its `destroy` has not run) and we are on its worker; no
        // state of the core is borrowed, so whatever Envoy runs from here may use it.
        unsafe { carry_out(envoy, call) };
    }
}

/// # Safety
/// `envoy` is a live stream of this worker.
unsafe fn carry_out(envoy: *mut c_void, call: Deferred) {
    // SAFETY: the caller's contract; every buffer outlives its call.
    unsafe {
        match call {
            Deferred::Reply { status, body, headers } => {
                let mut all = vec![ModuleHeader::of("content-type", "application/json")];
                all.extend(headers.iter().map(|(name, value)| ModuleHeader::of(name, value)));
                abi::envoy_dynamic_module_callback_http_send_response(
                    envoy,
                    u32::from(status),
                    all.as_mut_ptr(),
                    all.len(),
                    ModuleBuffer::of(&body),
                    ModuleBuffer::of(b"vllm_gateway"),
                );
            }
            Deferred::Resume => {
                abi::envoy_dynamic_module_callback_http_filter_continue_decoding(envoy)
            }
            Deferred::Reset => abi::envoy_dynamic_module_callback_http_filter_reset_stream(
                envoy,
                abi::RESET_LOCAL,
                ModuleBuffer::of(b"vllm_gateway_cut_off"),
            ),
        }
    }
}
