//! Signals: Ctrl-C (SIGINT), SIGTERM (scancel, a Slurm time limit) and SIGHUP
//! (a closed terminal) stop long work cleanly where it can stop (training
//! writes a checkpoint first). Signals that arrive within a second of the
//! first are the same request passed on several ways (Slurm signals the job
//! script and training, which the script also signals; a terminal's Ctrl-C
//! reaches `headlab sweep` and its children) and are absorbed. A later
//! signal, or one that arrives where nothing can stop cleanly, exits at once
//! with code 130 without running exit handlers (which would close HDF5 files
//! another thread is writing). A closed output pipe (`headlab inspect … |
//! head`) ends the process quietly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by the first signal while [`catch`] is in force.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Whether the work in progress stops cleanly on the flag.
static CATCHING: AtomicBool = AtomicBool::new(false);
/// Monotonic milliseconds of the first signal of this request (0: none yet).
static FIRST_MS: AtomicU64 = AtomicU64::new(0);
/// Signals closer than this to the first one are the same request.
const SAME_REQUEST_MS: u64 = 1000;

const MESSAGE: &[u8] =
    b"\ninterrupted: finishing the current step, writing a checkpoint and stopping (signal again to quit at once)\n";

/// Exit now, skipping exit handlers and destructors (async-signal safe).
fn exit_now() -> ! {
    // SAFETY: _exit ends the process immediately; no Rust state is touched.
    unsafe { libc::_exit(130) }
}

/// Monotonic clock in milliseconds (clock_gettime is async-signal safe).
fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1000) + ts.tv_nsec as u64 / 1_000_000
}

/// The signal handler: only atomics, clock_gettime, write and _exit.
extern "C" fn on_signal(_sig: libc::c_int) {
    if !CATCHING.load(Ordering::SeqCst) {
        exit_now();
    }
    let now = now_ms().max(1);
    match FIRST_MS.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => {
            if let Some(flag) = STOP.get() {
                flag.store(true, Ordering::SeqCst);
            }
            // SAFETY: write(2) on stderr with a static buffer is async-signal safe.
            unsafe { libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len()) };
        }
        Err(first) if now.saturating_sub(first) < SAME_REQUEST_MS => {}
        Err(_) => exit_now(),
    }
}

/// Install the handlers (once) and the default for closed pipes.
pub fn install() {
    STOP.get_or_init(|| {
        // SAFETY: restoring the default action of SIGPIPE (writing to a
        // closed pipe then ends the process silently, the shell's `| head`
        // idiom, instead of making println! panic), and installing a handler
        // that only touches atomics and async-signal-safe calls.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        Arc::new(AtomicBool::new(false))
    });
}

/// While the returned guard lives, the first signal sets the returned flag
/// (the work checks it and stops cleanly) instead of ending the process.
pub fn catch() -> (Arc<AtomicBool>, CatchGuard) {
    install();
    let flag = STOP.get().cloned().unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    flag.store(false, Ordering::SeqCst);
    FIRST_MS.store(0, Ordering::SeqCst);
    CATCHING.store(true, Ordering::SeqCst);
    (flag, CatchGuard)
}

/// Ends [`catch`]: signals end the process again.
pub struct CatchGuard;

impl Drop for CatchGuard {
    fn drop(&mut self) {
        CATCHING.store(false, Ordering::SeqCst);
    }
}
