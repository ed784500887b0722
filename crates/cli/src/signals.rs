//! Signals: Ctrl-C (SIGINT), SIGTERM (scancel, a Slurm time limit) and SIGHUP
//! (a closed terminal) stop long work cleanly where it can stop (training
//! writes a checkpoint first); a second signal, or one that arrives where
//! nothing can stop cleanly, exits at once with code 130 without running exit
//! handlers (which would close HDF5 files another thread is writing). A
//! closed output pipe (`headlab inspect … | head`) ends the process quietly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by the first signal while [`catch`] is in force.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Whether the work in progress stops cleanly on the flag.
static CATCHING: AtomicBool = AtomicBool::new(false);

/// Exit now, skipping exit handlers and destructors (async-signal safe).
fn exit_now() -> ! {
    // SAFETY: _exit ends the process immediately; no Rust state is touched.
    unsafe { libc::_exit(130) }
}

/// Install the handlers (once) and the default for closed pipes.
pub fn install() {
    // SAFETY: restoring the default action of SIGPIPE before any thread
    // starts: writing to a closed pipe then ends the process silently (the
    // shell's `| head` idiom) instead of making println! panic.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    STOP.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let r = ctrlc::set_handler(move || {
            if !CATCHING.load(Ordering::SeqCst) || f.swap(true, Ordering::SeqCst) {
                exit_now();
            }
            let _ = writeln!(std::io::stderr(), "\ninterrupted: finishing the current step, writing a checkpoint and stopping (signal again to quit at once)");
        });
        if let Err(e) = r {
            let _ = writeln!(std::io::stderr(), "warning: cannot handle Ctrl-C/SIGTERM ({e}); a signal will stop headlab without a final checkpoint");
        }
        flag
    });
}

/// While the returned guard lives, the first signal sets the returned flag
/// (the work checks it and stops cleanly) instead of ending the process.
pub fn catch() -> (Arc<AtomicBool>, CatchGuard) {
    install();
    let flag = STOP.get().cloned().unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    flag.store(false, Ordering::SeqCst);
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
