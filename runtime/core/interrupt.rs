//! Ctrl-C as a value: a SIGINT handler sets a flag that long computations
//! (the Rhai engine's `on_progress`, native training loops) poll, so an
//! interrupted job stops cleanly instead of killing the process.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the SIGINT handler once per process. Later Ctrl-C presses only
/// set the flag; whoever is running decides how to stop.
pub fn install_handler() {
    INSTALL.call_once(|| {
        // A failure here (another handler already installed) only means
        // Ctrl-C keeps its default behaviour, so it is not fatal.
        let _ = ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst));
    });
}

/// Has Ctrl-C been pressed since the last `clear`?
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Forget an earlier Ctrl-C (the REPL calls this before each evaluation).
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}

/// Ask running work to stop, as Ctrl-C would (used by tests and timeouts).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// `Err(Interrupted)` once Ctrl-C was pressed; call it between steps of long
/// loops. The request stays until `clear`, so everything running stops —
/// the script around a native loop too, even one that catches the error.
pub fn check() -> crate::Result<()> {
    if requested() {
        Err(crate::Error::interrupted())
    } else {
        Ok(())
    }
}
