//! `saelab kernel`: a Jupyter kernel over the one scripting session the
//! REPL and notebooks use (evcxr keeps its `EvalContext` behind its REPL and
//! its kernel the same way).
//!
//! Two threads. The main thread owns the session — the engine holds tensors
//! in `Rc`, so it never leaves the thread that made it — and works through
//! shell requests one at a time. A second thread runs the sockets (shell,
//! control, iopub, stdin, heartbeat) on a small async runtime, so heartbeats
//! and a control channel `interrupt_request` are answered while a cell runs.
mod completion;
mod executor;
pub mod install;
mod outputs;
mod sockets;

use jupyter_protocol::{
    CodeMirrorMode, ConnectionInfo, HelpLink, JupyterMessage, KernelInfoReply, LanguageInfo,
    ReplyStatus,
};
use saelab::core::progress;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;

pub use install::{install, InstallOptions};

/// Runs the kernel described by a connection file until a shutdown request
/// (or until the front end goes away and ends the process).
pub fn run_kernel(connection_file: &Path) -> ExitCode {
    let info = match read_connection_file(connection_file) {
        Ok(info) => info,
        Err(message) => {
            eprintln!("saelab kernel: {message}");
            return ExitCode::FAILURE;
        }
    };
    let (requests_tx, requests_rx) = mpsc::channel::<JupyterMessage>();
    let (shell_tx, shell_rx) = tokio::sync::mpsc::unbounded_channel();
    let (iopub_tx, iopub_rx) = tokio::sync::mpsc::unbounded_channel();
    let publisher = outputs::Publisher::new(iopub_tx);
    let bars = publisher.clone();
    progress::send_lines_to(move |line| bars.progress_line(line));
    let sockets = sockets::Sockets {
        info,
        requests: requests_tx,
        shell_replies: shell_rx,
        iopub: iopub_rx,
        publisher: publisher.clone(),
    };
    let server = std::thread::spawn(move || sockets::serve(sockets));
    executor::Executor::new(shell_tx, publisher).run(requests_rx);
    // The request channel closes only when the socket thread has ended,
    // which it does on an error worth reporting.
    match server.join() {
        Ok(Err(message)) => {
            eprintln!("saelab kernel: {message}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn read_connection_file(path: &Path) -> Result<ConnectionInfo, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the connection file {}: {e}", path.display()))?;
    let info: ConnectionInfo = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a connection file: {e}", path.display()))?;
    if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
        return Err(format!(
            "unsupported signature scheme {:?} (only hmac-sha256)",
            info.signature_scheme
        ));
    }
    Ok(info)
}

/// What `kernel_info_request` answers, on shell and control alike.
pub fn kernel_info() -> KernelInfoReply {
    KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: "5.3".into(),
        implementation: "saelab".into(),
        implementation_version: env!("CARGO_PKG_VERSION").into(),
        language_info: LanguageInfo {
            name: "rhai".into(),
            version: "1".into(),
            mimetype: Some("text/x-rhai".into()),
            file_extension: Some(".rhai".into()),
            // Neither Pygments nor CodeMirror knows Rhai; its syntax is Rust's
            // closest relative that both highlight.
            pygments_lexer: Some("rust".into()),
            codemirror_mode: Some(CodeMirrorMode::Simple("rust".into())),
            nbconvert_exporter: None,
        },
        banner: format!(
            "saelab {} — Rhai over libtorch for interpretability research. `:help` lists functions.",
            env!("CARGO_PKG_VERSION")
        ),
        help_links: vec![HelpLink {
            text: "Rhai language book".into(),
            url: "https://rhai.rs/book/".into(),
        }],
        debugger: false,
        error: None,
    }
}
