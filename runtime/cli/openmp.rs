//! OpenMP's wait policy, which must be chosen before libtorch loads.
//!
//! libgomp reads `OMP_WAIT_POLICY` once, in its load-time constructor, which
//! runs before `main` because libtorch links it. Its default lets idle worker
//! threads spin for a while before sleeping; on a machine whose cores are
//! shared with other jobs the spinners steal the cores the busy threads need
//! (harvesting fell from 846 to 192 tokens/s on two shared cores). So when
//! the variable is unset, saelab re-executes itself once with `PASSIVE` in
//! its environment; a value the user set, even an empty one, is kept.
use std::os::unix::process::CommandExt;
use std::process::Command;

const VARIABLE: &str = "OMP_WAIT_POLICY";

/// Replaces this process by itself with `OMP_WAIT_POLICY=PASSIVE` unless the
/// variable is already set. The re-executed process finds it set, so this
/// runs at most once; if the exec fails, saelab goes on with libgomp's default.
pub fn ensure_passive_wait_policy() {
    if std::env::var_os(VARIABLE).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).env(VARIABLE, "PASSIVE").exec();
    eprintln!("saelab: could not re-execute with {VARIABLE}=PASSIVE ({error}); continuing");
}
