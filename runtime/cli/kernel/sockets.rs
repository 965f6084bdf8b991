//! The kernel's five sockets, served on one thread of their own: shell
//! requests go to the session's thread in order, its replies and outputs
//! come back through channels; control and heartbeat are answered here, so
//! they work while a cell runs.
use super::outputs::Publisher;
use jupyter_protocol::{
    ConnectionInfo, ExecutionState, InterruptReply, JupyterMessage, JupyterMessageContent,
    ReplyStatus, ShutdownReply, Stdio,
};
use jupyter_zmq_client::{
    create_kernel_control_connection, create_kernel_heartbeat_connection,
    create_kernel_iopub_connection, create_kernel_shell_connection, create_kernel_stdin_connection,
    KernelIoPubConnection, RouterRecvConnection, RouterSendConnection, RuntimeError,
};
use saelab::core::interrupt;
use std::sync::mpsc::Sender;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Everything the socket thread needs.
pub struct Sockets {
    pub info: ConnectionInfo,
    /// Shell requests, to the session's thread.
    pub requests: Sender<JupyterMessage>,
    /// Shell replies, from the session's thread.
    pub shell_replies: UnboundedReceiver<JupyterMessage>,
    /// Outputs and statuses to publish.
    pub iopub: UnboundedReceiver<JupyterMessage>,
    pub publisher: Publisher,
}

/// Time for the last replies to leave before the process ends.
const FLUSH: Duration = Duration::from_millis(200);

/// Binds the sockets and serves them until the process ends; returns only
/// when the sockets could not be set up.
pub fn serve(sockets: Sockets) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the socket runtime: {e}"))?;
    runtime.block_on(serve_async(sockets))
}

async fn serve_async(sockets: Sockets) -> Result<(), String> {
    let Sockets {
        info,
        requests,
        shell_replies,
        iopub,
        publisher,
    } = sockets;
    let session = format!("saelab-kernel-{}", std::process::id());
    let bind = |what: &str, e: RuntimeError| format!("cannot bind the {what} socket: {e}");
    let shell = create_kernel_shell_connection(&info, &session)
        .await
        .map_err(|e| bind("shell", e))?;
    let control = create_kernel_control_connection(&info, &session)
        .await
        .map_err(|e| bind("control", e))?;
    let iopub_socket = create_kernel_iopub_connection(&info, &session)
        .await
        .map_err(|e| bind("iopub", e))?;
    let stdin = create_kernel_stdin_connection(&info, &session)
        .await
        .map_err(|e| bind("stdin", e))?;
    let heartbeat = create_kernel_heartbeat_connection(&info)
        .await
        .map_err(|e| bind("heartbeat", e))?;
    let (shell_send, shell_recv) = shell.split();
    tokio::spawn(async move {
        let mut heartbeat = heartbeat;
        while heartbeat.single_heartbeat().await.is_ok() {}
    });
    tokio::spawn(publish(iopub_socket, iopub));
    tokio::spawn(send_replies(shell_send, shell_replies));
    tokio::spawn(async move {
        // stdin is never asked for input (`allow_stdin` is not supported);
        // reading keeps stray messages from piling up.
        let mut stdin = stdin;
        while stdin.read().await.is_ok() {}
    });
    tokio::spawn(serve_control(control, publisher));
    tokio::spawn(exit_with_parent());
    forward_requests(shell_recv, requests).await;
    Ok(())
}

/// Reads shell requests and queues them for the session. A message that
/// fails its signature or does not parse is dropped with a note on stderr,
/// as the protocol asks; the kernel keeps running.
async fn forward_requests(mut shell: RouterRecvConnection, requests: Sender<JupyterMessage>) {
    loop {
        match shell.read().await {
            Ok(message) => {
                if is_unknown(&message) {
                    eprintln!(
                        "saelab kernel: ignoring unknown shell message {}",
                        message.header.msg_type
                    );
                    continue;
                }
                if requests.send(message).is_err() {
                    return;
                }
            }
            Err(err) => dropped("shell", &err).await,
        }
    }
}

fn is_unknown(message: &JupyterMessage) -> bool {
    matches!(message.content, JupyterMessageContent::UnknownMessage(_))
}

async fn dropped(channel: &str, err: &RuntimeError) {
    eprintln!("saelab kernel: dropped a message on {channel}: {err}");
    if matches!(err, RuntimeError::ZmqError(_) | RuntimeError::IoError(_)) {
        // A socket-level failure may repeat at once; do not spin on it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send_replies(
    mut shell: RouterSendConnection,
    mut replies: UnboundedReceiver<JupyterMessage>,
) {
    while let Some(reply) = replies.recv().await {
        let shutdown = matches!(reply.content, JupyterMessageContent::ShutdownReply(_));
        if let Err(err) = shell.send(reply).await {
            eprintln!("saelab kernel: cannot send a shell reply: {err}");
        }
        if shutdown {
            exit_soon().await;
        }
    }
}

/// Publishes outputs in order. Stream text that arrives in a burst (a loop
/// of prints) is merged into one message, as ipykernel's buffered stdout is.
async fn publish(
    mut socket: KernelIoPubConnection,
    mut outputs: UnboundedReceiver<JupyterMessage>,
) {
    let mut pending: Option<JupyterMessage> = None;
    loop {
        let mut message = match pending.take() {
            Some(message) => message,
            None => match outputs.recv().await {
                Some(message) => message,
                None => return,
            },
        };
        while let Ok(next) = outputs.try_recv() {
            if !merge_stream(&mut message, &next) {
                pending = Some(next);
                break;
            }
        }
        if let Err(err) = socket.send(message).await {
            eprintln!("saelab kernel: cannot publish: {err}");
        }
    }
}

/// Appends `next` to `message` when both are text on the same stream for
/// the same request.
fn merge_stream(message: &mut JupyterMessage, next: &JupyterMessage) -> bool {
    let same_parent = message.parent_header.as_ref().map(|h| &h.msg_id)
        == next.parent_header.as_ref().map(|h| &h.msg_id);
    match (&mut message.content, &next.content) {
        (
            JupyterMessageContent::StreamContent(first),
            JupyterMessageContent::StreamContent(more),
        ) if same_parent && same_stream(&first.name, &more.name) => {
            first.text.push_str(&more.text);
            true
        }
        _ => false,
    }
}

fn same_stream(a: &Stdio, b: &Stdio) -> bool {
    matches!(
        (a, b),
        (Stdio::Stdout, Stdio::Stdout) | (Stdio::Stderr, Stdio::Stderr)
    )
}

/// The control channel: interrupts and shutdowns are handled here, on the
/// socket thread, because the session's thread may be busy with a cell.
async fn serve_control(
    mut control: jupyter_zmq_client::KernelControlConnection,
    publisher: Publisher,
) {
    loop {
        let request = match control.read().await {
            Ok(request) => request,
            Err(err) => {
                dropped("control", &err).await;
                continue;
            }
        };
        let reply: JupyterMessageContent = match &request.content {
            JupyterMessageContent::KernelInfoRequest(_) => super::kernel_info().into(),
            JupyterMessageContent::InterruptRequest(_) => {
                // The running cell stops at its next check (the engine's
                // progress hook, a training or harvesting step), as on Ctrl-C.
                interrupt::request();
                InterruptReply {
                    status: ReplyStatus::Ok,
                    error: None,
                }
                .into()
            }
            JupyterMessageContent::ShutdownRequest(shutdown) => ShutdownReply {
                restart: shutdown.restart,
                status: ReplyStatus::Ok,
                error: None,
            }
            .into(),
            other => {
                eprintln!(
                    "saelab kernel: ignoring {} on control",
                    other.message_type()
                );
                continue;
            }
        };
        let shutdown = matches!(reply, JupyterMessageContent::ShutdownReply(_));
        if shutdown {
            publisher.status(ExecutionState::Busy, &request);
        }
        if let Err(err) = control
            .send(JupyterMessage::new(reply, Some(&request)))
            .await
        {
            eprintln!("saelab kernel: cannot send a control reply: {err}");
        }
        if shutdown {
            publisher.status(ExecutionState::Idle, &request);
            exit_soon().await;
        }
    }
}

/// Jupyter names the process that started the kernel in `JPY_PARENT_PID`;
/// when that process dies without a shutdown request (a killed server),
/// the kernel goes too instead of running on as an orphan, as ipykernel's
/// parent poller does.
async fn exit_with_parent() {
    let parent = std::env::var("JPY_PARENT_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok());
    let Some(parent) = parent else { return };
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if parent_pid().is_some_and(|now| now != parent) {
            eprintln!("saelab kernel: the process that started the kernel ended; exiting");
            exit_soon().await;
        }
    }
}

#[cfg(unix)]
fn parent_pid() -> Option<u32> {
    Some(std::os::unix::process::parent_id())
}

#[cfg(not(unix))]
fn parent_pid() -> Option<u32> {
    None
}

/// Ends the process once the last messages are out, even if a cell is
/// still running on the session's thread.
async fn exit_soon() {
    tokio::time::sleep(FLUSH).await;
    let _ = std::fs::remove_dir_all(saelab::script::console::display_dir());
    std::process::exit(0);
}
