//! `saelab kernel`: driven over ZeroMQ as a Jupyter front end drives it, and
//! checked by Jupyter's own conformance suite (tests/kernel_conformance.py).
use crate::support::saelab;
use base64::prelude::*;
use jupyter_protocol::{
    CompleteRequest, ConnectionInfo, ExecuteRequest, InspectRequest, InterruptRequest,
    IsCompleteRequest, JupyterMessage, JupyterMessageContent, KernelInfoRequest, MediaType,
    ShutdownRequest, Transport, UnknownMessage,
};
use jupyter_zmq_client::{
    create_client_control_connection, create_client_iopub_connection,
    create_client_shell_connection_with_identity, peer_identity_for_session,
    ClientControlConnection, ClientIoPubConnection, ClientShellConnection, Connection,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::timeout;
use zeromq::Socket as _;

const KEY: &str = "a-test-key";
const WAIT: Duration = Duration::from_secs(60);

/// A kernel process and a client's shell, iopub and control connections.
struct Kernel {
    child: Child,
    info: ConnectionInfo,
    shell: ClientShellConnection,
    iopub: ClientIoPubConnection,
    control: ClientControlConnection,
    dir: tempfile::TempDir,
}

impl Kernel {
    async fn start() -> Kernel {
        let dir = tempfile::tempdir().unwrap();
        let ports = jupyter_zmq_client::peek_ports("127.0.0.1".parse().unwrap(), 5)
            .await
            .unwrap();
        let info = ConnectionInfo {
            ip: "127.0.0.1".into(),
            transport: Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: KEY.into(),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: Some("saelab".into()),
        };
        let file = dir.path().join("connection.json");
        std::fs::write(&file, serde_json::to_string(&info).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("kernel.log")).unwrap();
        let child = saelab()
            .args(["kernel", "--connection-file"])
            .arg(&file)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let session = "test-client";
        let shell = retry(|| {
            let identity = peer_identity_for_session(session).unwrap();
            create_client_shell_connection_with_identity(&info, session, identity)
        })
        .await;
        let iopub = retry(|| create_client_iopub_connection(&info, "", session)).await;
        let control = retry(|| create_client_control_connection(&info, session)).await;
        let mut kernel = Kernel {
            child,
            info,
            shell,
            iopub,
            control,
            dir,
        };
        kernel.wait_until_subscribed().await;
        kernel
    }

    /// A SUB socket misses what is published before its subscription
    /// reaches the kernel; ask for kernel info until a status comes through.
    async fn wait_until_subscribed(&mut self) {
        for _ in 0..100 {
            let request: JupyterMessage = KernelInfoRequest {}.into();
            self.shell.send(request).await.unwrap();
            timeout(WAIT, self.shell.read()).await.unwrap().unwrap();
            if let Ok(Ok(_)) = timeout(Duration::from_millis(300), self.iopub.read()).await {
                // Drain the rest of that request's statuses.
                while let Ok(Ok(_)) = timeout(Duration::from_millis(100), self.iopub.read()).await {
                }
                return;
            }
        }
        panic!(
            "iopub never delivered a message; kernel log:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kernel.log")).unwrap_or_default()
    }

    async fn send(&mut self, content: impl Into<JupyterMessageContent>) -> JupyterMessage {
        let request = JupyterMessage::new(content.into(), None);
        self.shell.send(request.clone()).await.unwrap();
        request
    }

    async fn reply(&mut self) -> JupyterMessage {
        match timeout(WAIT, self.shell.read()).await {
            Ok(Ok(reply)) => reply,
            other => panic!(
                "no shell reply ({:?}); kernel log:\n{}",
                other.err(),
                self.log()
            ),
        }
    }

    /// Everything `request` published, up to its `idle` status.
    async fn outputs_of(&mut self, request: &JupyterMessage) -> Vec<JupyterMessageContent> {
        let mut outputs = Vec::new();
        loop {
            let message = match timeout(WAIT, self.iopub.read()).await {
                Ok(Ok(message)) => message,
                other => panic!("iopub went quiet ({:?}); log:\n{}", other.err(), self.log()),
            };
            let mine =
                message.parent_header.as_ref().map(|h| &h.msg_id) == Some(&request.header.msg_id);
            if !mine {
                continue;
            }
            if let JupyterMessageContent::Status(status) = &message.content {
                if format!("{:?}", status.execution_state) == "Idle" {
                    return outputs;
                }
                continue;
            }
            outputs.push(message.content);
        }
    }

    async fn execute(&mut self, code: &str) -> (JupyterMessageContent, Vec<JupyterMessageContent>) {
        let request = self.send(ExecuteRequest::new(code.into())).await;
        let reply = self.reply().await;
        let outputs = self.outputs_of(&request).await;
        (reply.content, outputs)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed kernel cannot remove the folder its shown figures go to.
        let shown = std::env::temp_dir().join(format!("saelab-display-{}", self.child.id()));
        let _ = std::fs::remove_dir_all(shown);
    }
}

/// Connecting fails until the kernel has bound its sockets.
async fn retry<T, F, Fut>(connect: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = jupyter_zmq_client::Result<T>>,
{
    for _ in 0..200 {
        if let Ok(connection) = connect().await {
            return connection;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not connect to the kernel");
}

fn plain_text(outputs: &[JupyterMessageContent]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            JupyterMessageContent::ExecuteResult(result) => {
                result.data.content.iter().find_map(|m| match m {
                    MediaType::Plain(text) => Some(text.clone()),
                    _ => None,
                })
            }
            _ => None,
        })
        .collect()
}

fn stdout_text(outputs: &[JupyterMessageContent]) -> String {
    outputs
        .iter()
        .filter_map(|o| match o {
            JupyterMessageContent::StreamContent(stream) => Some(stream.text.clone()),
            _ => None,
        })
        .collect()
}

fn png_images(outputs: &[JupyterMessageContent]) -> Vec<Vec<u8>> {
    outputs
        .iter()
        .flat_map(|o| match o {
            JupyterMessageContent::DisplayData(d) => d.data.content.clone(),
            JupyterMessageContent::ExecuteResult(r) => r.data.content.clone(),
            _ => Vec::new(),
        })
        .filter_map(|m| match m {
            MediaType::Png(data) => Some(BASE64_STANDARD.decode(data).unwrap()),
            _ => None,
        })
        .collect()
}

fn status_of(reply: &JupyterMessageContent) -> String {
    match reply {
        JupyterMessageContent::ExecuteReply(r) => format!("{:?}", r.status),
        other => panic!("expected an execute_reply, got {}", other.message_type()),
    }
}

#[tokio::test]
async fn cells_share_one_session_and_show_values_prints_and_errors() {
    let mut kernel = Kernel::start().await;
    let (reply, outputs) = kernel
        .execute("let x = 41;\nfn twice(v) { v * 2 }\nprint(\"hello\");\nx + 1")
        .await;
    assert_eq!(status_of(&reply), "Ok");
    assert_eq!(plain_text(&outputs), vec!["42"]);
    assert_eq!(stdout_text(&outputs), "hello\n");
    let (_, outputs) = kernel.execute("twice(x)").await;
    assert_eq!(
        plain_text(&outputs),
        vec!["82"],
        "variables and functions persist"
    );

    let (reply, outputs) = kernel.execute("let a = 1;\nlet b = a + oops;").await;
    assert_eq!(status_of(&reply), "Error");
    let error = outputs
        .iter()
        .find_map(|o| match o {
            JupyterMessageContent::ErrorOutput(e) => Some(e.clone()),
            _ => None,
        })
        .expect("an error message on iopub");
    assert!(error.evalue.contains("oops"), "{error:?}");
    assert!(
        error.traceback[0].contains("line 2, column 13"),
        "{error:?}"
    );
    let (_, outputs) = kernel.execute("x").await;
    assert_eq!(
        plain_text(&outputs),
        vec!["41"],
        "an error keeps the session"
    );
}

#[tokio::test]
async fn figures_and_tables_are_shown_inline() {
    let mut kernel = Kernel::start().await;
    let (reply, outputs) = kernel
        .execute("let fig = figure().line([1.0, 2.0, 3.0], [2.0, 1.0, 3.0]);\nfig.save(\"saved.png\");\ndisplay(fig);\ntable([#{a: 1, b: \"x\"}]);\nfig")
        .await;
    assert_eq!(status_of(&reply), "Ok");
    let images = png_images(&outputs);
    assert_eq!(images.len(), 3, "saved, displayed and the cell's value");
    for image in images {
        let decoder = png::Decoder::new(std::io::Cursor::new(image));
        let info = decoder.read_info().unwrap();
        assert!(info.info().width > 100 && info.info().height > 100);
    }
    let html = outputs.iter().any(|o| match o {
        JupyterMessageContent::DisplayData(d) => d
            .data
            .content
            .iter()
            .any(|m| matches!(m, MediaType::Html(h) if h.contains("<td>x</td>"))),
        _ => false,
    });
    assert!(html, "table() should arrive as HTML");
}

#[tokio::test]
async fn training_progress_arrives_as_stderr_lines_that_overwrite_each_other() {
    let mut kernel = Kernel::start().await;
    let (reply, outputs) = kernel
        .execute("seed(0);\nlet s = sae(#{d_in: 16, n_features: 32, kind: \"topk\", k: 4});\ns.train(randn([4096, 16]), #{steps: 200, batch_size: 256});\n\"trained\"")
        .await;
    assert_eq!(status_of(&reply), "Ok");
    let stderr: String = outputs
        .iter()
        .filter_map(|o| match o {
            JupyterMessageContent::StreamContent(s) if format!("{:?}", s.name) == "Stderr" => {
                Some(s.text.clone())
            }
            _ => None,
        })
        .collect();
    assert!(stderr.starts_with('\r'), "{stderr:?}");
    assert!(stderr.contains("/200 steps"), "{stderr:?}");
    assert!(
        stderr.ends_with('\n'),
        "the bar's line is closed: {stderr:?}"
    );
    assert_eq!(plain_text(&outputs), vec!["\"trained\""]);
}

#[tokio::test]
async fn completion_inspection_and_completeness_come_from_the_engine() {
    let mut kernel = Kernel::start().await;
    kernel.execute("let kept_value = 3;").await;
    kernel
        .send(CompleteRequest {
            code: "let y = softm".into(),
            cursor_pos: 13,
        })
        .await;
    match kernel.reply().await.content {
        JupyterMessageContent::CompleteReply(reply) => {
            assert_eq!(reply.matches, vec!["softmax"]);
            assert_eq!((reply.cursor_start, reply.cursor_end), (8, 13));
            assert_eq!(
                reply.metadata["_jupyter_types_experimental"][0]["type"],
                "function"
            );
        }
        other => panic!("{other:?}"),
    }
    kernel
        .send(CompleteRequest {
            code: "kept_".into(),
            cursor_pos: 5,
        })
        .await;
    match kernel.reply().await.content {
        JupyterMessageContent::CompleteReply(reply) => {
            assert_eq!(reply.matches, vec!["kept_value"])
        }
        other => panic!("{other:?}"),
    }
    kernel
        .send(InspectRequest {
            code: "randn([2, 3])".into(),
            cursor_pos: 3,
            detail_level: Some(0),
        })
        .await;
    match kernel.reply().await.content {
        JupyterMessageContent::InspectReply(reply) => {
            assert!(reply.found);
            let text = format!("{:?}", reply.data.content);
            assert!(text.contains("randn"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    for (code, expected) in [
        ("fn f(x) {", "Incomplete"),
        ("1 + 1", "Complete"),
        ("let = 3;\nlet y = 2;", "Invalid"),
    ] {
        kernel.send(IsCompleteRequest { code: code.into() }).await;
        match kernel.reply().await.content {
            JupyterMessageContent::IsCompleteReply(reply) => {
                assert_eq!(format!("{:?}", reply.status), expected, "{code}")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Runs a loop that never ends, stops it with `stop`, and checks the
/// variables from before survive.
async fn interrupted_loop_keeps_variables(
    kernel: &mut Kernel,
    stop: impl AsyncFnOnce(&mut Kernel),
) {
    kernel.execute("let kept = 7;").await;
    let request = kernel
        .send(ExecuteRequest::new("let i = 0;\nloop { i += 1; }".into()))
        .await;
    // Interrupt only once the cell runs: an interrupt before it starts is
    // forgotten, as a Ctrl-C at an idle prompt is.
    loop {
        let message = timeout(WAIT, kernel.iopub.read()).await.unwrap().unwrap();
        let mine =
            message.parent_header.as_ref().map(|h| &h.msg_id) == Some(&request.header.msg_id);
        if mine && message.message_type() == "execute_input" {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(kernel).await;
    let reply = kernel.reply().await;
    assert_eq!(status_of(&reply.content), "Error");
    let outputs = kernel.outputs_of(&request).await;
    let interrupted = outputs
        .iter()
        .any(|o| matches!(o, JupyterMessageContent::ErrorOutput(e) if e.ename == "Interrupted"));
    assert!(interrupted, "{outputs:?}");
    let (reply, outputs) = kernel.execute("kept + 1").await;
    assert_eq!(plain_text(&outputs), vec!["8"], "{reply:?} {outputs:?}");
}

#[tokio::test]
async fn interrupt_request_stops_a_long_cell_and_keeps_the_session() {
    let mut kernel = Kernel::start().await;
    interrupted_loop_keeps_variables(&mut kernel, async |kernel: &mut Kernel| {
        let request: JupyterMessage = InterruptRequest {}.into();
        kernel.control.send(request).await.unwrap();
        let reply = timeout(WAIT, kernel.control.read()).await.unwrap().unwrap();
        assert_eq!(reply.message_type(), "interrupt_reply");
    })
    .await;
}

#[tokio::test]
async fn sigint_stops_a_long_cell_and_keeps_the_session() {
    let mut kernel = Kernel::start().await;
    interrupted_loop_keeps_variables(&mut kernel, async |kernel: &mut Kernel| {
        let status = Command::new("kill")
            .args(["-INT", &kernel.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    })
    .await;
}

#[tokio::test]
async fn bad_messages_are_dropped_and_the_kernel_keeps_running() {
    let mut kernel = Kernel::start().await;
    // Signed with the wrong key: dropped without a reply.
    let mut socket = zeromq::DealerSocket::new();
    socket.connect(&kernel.info.shell_url()).await.unwrap();
    let mut forged = Connection::new(socket, "not-the-key", "intruder");
    let request: JupyterMessage = KernelInfoRequest {}.into();
    forged.send(request).await.unwrap();
    assert!(timeout(Duration::from_millis(500), forged.read())
        .await
        .is_err());
    // An unknown message type: ignored, as the protocol says.
    kernel
        .send(UnknownMessage {
            msg_type: "no_such_request".into(),
            content: serde_json::json!({}),
        })
        .await;
    // (A native function that panics is caught and reported: executor.rs's
    // unit test.) The kernel still answers.
    let (reply, outputs) = kernel.execute("1 + 2").await;
    assert_eq!(status_of(&reply), "Ok");
    assert_eq!(plain_text(&outputs), vec!["3"]);
}

#[tokio::test]
async fn shutdown_request_ends_the_process() {
    let mut kernel = Kernel::start().await;
    let request: JupyterMessage = ShutdownRequest { restart: false }.into();
    kernel.control.send(request).await.unwrap();
    let reply = timeout(WAIT, kernel.control.read()).await.unwrap().unwrap();
    assert_eq!(reply.message_type(), "shutdown_reply");
    for _ in 0..100 {
        if let Some(status) = kernel.child.try_wait().unwrap() {
            assert!(status.success());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the kernel did not exit after shutdown_request");
}

#[test]
fn a_kernel_whose_jupyter_died_exits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("connection.json");
    let listeners: Vec<_> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(listeners);
    let info = serde_json::json!({
        "ip": "127.0.0.1", "transport": "tcp", "key": KEY, "signature_scheme": "hmac-sha256",
        "shell_port": ports[0], "iopub_port": ports[1], "stdin_port": ports[2],
        "control_port": ports[3], "hb_port": ports[4],
    });
    std::fs::write(&file, info.to_string()).unwrap();
    // PID 1 is never this test, so the kernel sees its recorded parent gone.
    let mut child = saelab()
        .args(["kernel", "--connection-file"])
        .arg(&file)
        .env("JPY_PARENT_PID", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            // A clean exit: the parent check, not a failure to start.
            assert!(status.success(), "the kernel failed: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the kernel outlived the process that started it");
}

#[test]
fn install_writes_a_kernelspec_that_runs_this_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = saelab()
        .args(["kernel", "install", "--prefix"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec_dir = dir.path().join("share/jupyter/kernels/saelab");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spec_dir.join("kernel.json")).unwrap())
            .unwrap();
    let binary = PathBuf::from(spec["argv"][0].as_str().unwrap());
    assert_eq!(
        binary.canonicalize().unwrap(),
        Path::new(env!("CARGO_BIN_EXE_saelab"))
            .canonicalize()
            .unwrap()
    );
    assert_eq!(spec["argv"][1], "kernel");
    assert!(spec_dir.join("logo-64x64.png").is_file());
    assert!(spec_dir.join("logo-32x32.png").is_file());
}

/// The Python with jupyter_kernel_test, jupyter_client and nbclient: the
/// peer venv `make peer-venv` creates (setup/fetch-peer-python.sh), or
/// `$SAELAB_JUPYTER_PYTHON`.
fn jupyter_python() -> PathBuf {
    if let Some(python) = std::env::var_os("SAELAB_JUPYTER_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("SAELAB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("saelab")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/saelab")))
        .expect("HOME is not set");
    cache.join("peer-venv/bin/python")
}

#[test]
fn jupyter_conformance_suite_and_nbclient_pass() {
    let python = jupyter_python();
    let ready = Command::new(&python)
        .args(["-c", "import jupyter_kernel_test, jupyter_client, nbclient"])
        .status();
    assert!(
        ready.is_ok_and(|s| s.success()),
        "{} lacks jupyter_kernel_test, jupyter_client or nbclient: run `make peer-venv` \
         (setup/fetch-peer-python.sh installs them), or point SAELAB_JUPYTER_PYTHON at a Python that has them",
        python.display()
    );
    // Everything Jupyter reads or writes stays in a temporary folder.
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("env");
    let install = saelab()
        .args(["kernel", "install", "--prefix"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(install.status.success());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel_conformance.py");
    let out = Command::new(&python)
        .arg(&script)
        .current_dir(dir.path())
        .env("JUPYTER_PATH", prefix.join("share/jupyter"))
        .env("JUPYTER_DATA_DIR", dir.path().join("data"))
        .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
        .env("JUPYTER_CONFIG_DIR", dir.path().join("config"))
        .env("SAELAB_TEST_WORKDIR", dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    println!("{report}");
    assert!(
        out.status.success(),
        "the conformance suite failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
