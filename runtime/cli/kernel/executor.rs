//! The session's thread: shell requests one at a time, in order, each
//! between a `busy` and an `idle` status on iopub.
use super::completion::{self, KEYWORDS};
use super::outputs::{self, Publisher};
use jupyter_protocol::{
    CommInfoReply, CompleteReply, CompleteRequest, ErrorOutput, ExecuteInput, ExecuteReply,
    ExecuteRequest, ExecuteResult, ExecutionCount, ExecutionState, HistoryEntry, HistoryReply,
    HistoryRequest, InspectReply, InspectRequest, IsCompleteReply, IsCompleteReplyStatus,
    IsCompleteRequest, JupyterMessage, JupyterMessageContent, Media, MediaType, Payload,
    ReplyError, ReplyStatus, ShutdownReply, Transient,
};
use rhai::Dynamic;
use saelab::core::interrupt;
use saelab::script::console;
use saelab::script::display::format_value;
use saelab::script::help::HelpIndex;
use saelab::script::{completeness, Completeness, EngineOptions, Session};
use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use tokio::sync::mpsc::UnboundedSender;

pub struct Executor {
    session: Session,
    help: HelpIndex,
    /// Counts the cells run with `store_history`, as `In [n]` shows it.
    execution_count: usize,
    /// The code of those cells, for `history_request`.
    history: Vec<String>,
    shell: UnboundedSender<JupyterMessage>,
    publisher: Publisher,
}

/// How running a cell ended.
enum Outcome {
    Value(Dynamic),
    Page(String),
    Failed(ErrorOutput),
}

impl Executor {
    pub fn new(shell: UnboundedSender<JupyterMessage>, publisher: Publisher) -> Self {
        // Imports resolve against the folder the kernel started in: the
        // notebook's folder, in JupyterLab and VS Code.
        let session = Session::new(EngineOptions {
            script_dir: Some(".".into()),
        });
        Self::with_session(session, shell, publisher)
    }

    fn with_session(
        session: Session,
        shell: UnboundedSender<JupyterMessage>,
        publisher: Publisher,
    ) -> Self {
        let help = HelpIndex::build(session.engine());
        Executor {
            session,
            help,
            execution_count: 0,
            history: Vec::new(),
            shell,
            publisher,
        }
    }

    /// Handles requests until the socket thread hangs up.
    pub fn run(mut self, requests: Receiver<JupyterMessage>) {
        while let Ok(request) = requests.recv() {
            self.publisher.status(ExecutionState::Busy, &request);
            let (reply, stop) = self.handle(&request);
            // Requests queued behind a failed cell are taken before its reply
            // goes out, so a request sent after the reply is never aborted.
            let queued: Vec<JupyterMessage> = if stop {
                requests.try_iter().collect()
            } else {
                Vec::new()
            };
            if let Some(reply) = reply {
                self.reply(reply, &request);
            }
            self.publisher.status(ExecutionState::Idle, &request);
            for request in queued {
                self.abort(&request);
            }
        }
    }

    /// The reply to one request (`None` for messages the kernel ignores),
    /// and whether a failed cell asked for the cells queued behind it to be
    /// abandoned (`stop_on_error`).
    fn handle(&mut self, request: &JupyterMessage) -> (Option<JupyterMessageContent>, bool) {
        let reply: JupyterMessageContent = match &request.content {
            JupyterMessageContent::KernelInfoRequest(_) => super::kernel_info().into(),
            JupyterMessageContent::ExecuteRequest(execute) => {
                let (reply, failed) = self.execute(execute, request);
                return (Some(reply.into()), failed && execute.stop_on_error);
            }
            JupyterMessageContent::CompleteRequest(complete) => self.complete(complete).into(),
            JupyterMessageContent::InspectRequest(inspect) => self.inspect(inspect).into(),
            JupyterMessageContent::IsCompleteRequest(code) => self.is_complete(code).into(),
            JupyterMessageContent::HistoryRequest(history) => self.history(history).into(),
            JupyterMessageContent::CommInfoRequest(_) => CommInfoReply {
                status: ReplyStatus::Ok,
                comms: Default::default(),
                error: None,
            }
            .into(),
            // Old clients send shutdown on shell; the socket thread ends the process.
            JupyterMessageContent::ShutdownRequest(shutdown) => ShutdownReply {
                restart: shutdown.restart,
                status: ReplyStatus::Ok,
                error: None,
            }
            .into(),
            other => {
                eprintln!("saelab kernel: ignoring {} on shell", other.message_type());
                return (None, false);
            }
        };
        (Some(reply), false)
    }

    fn reply(&self, content: JupyterMessageContent, request: &JupyterMessage) {
        let _ = self.shell.send(JupyterMessage::new(content, Some(request)));
    }

    fn execute(
        &mut self,
        execute: &ExecuteRequest,
        request: &JupyterMessage,
    ) -> (ExecuteReply, bool) {
        if execute.store_history && !execute.silent {
            self.execution_count += 1;
            self.history.push(execute.code.clone());
        }
        let count = ExecutionCount::new(self.execution_count);
        if !execute.silent {
            let input = ExecuteInput {
                code: execute.code.clone(),
                execution_count: count,
            };
            self.publisher.send(input, request);
        }
        let outcome = self.run_cell(&execute.code, request);
        let mut reply = ExecuteReply {
            status: ReplyStatus::Ok,
            execution_count: count,
            payload: Vec::new(),
            user_expressions: Some(Default::default()),
            error: None,
        };
        match outcome {
            Outcome::Value(value) if !value.is_unit() && !execute.silent => {
                let data = outputs::value_media(&value, outputs::value_figure_path(count.value()));
                self.publisher.send(
                    ExecuteResult {
                        execution_count: count,
                        data,
                        metadata: Default::default(),
                        // The message spec wants an object here, never null.
                        transient: Some(Transient { display_id: None }),
                    },
                    request,
                );
            }
            Outcome::Value(_) => {}
            Outcome::Page(text) => reply.payload.push(Payload::Page {
                data: Media::new(vec![MediaType::Plain(text)]),
                start: 0,
            }),
            Outcome::Failed(error) => {
                self.publisher.send(error.clone(), request);
                reply.status = ReplyStatus::Error;
                reply.error = Some(Box::new(ReplyError {
                    ename: error.ename,
                    evalue: error.evalue,
                    traceback: error.traceback,
                }));
                return (reply, true);
            }
        }
        (reply, false)
    }

    /// Runs a cell with its prints, tables and figures going out as they
    /// happen; a panic inside a native function becomes an error and the
    /// session lives on.
    fn run_cell(&mut self, code: &str, request: &JupyterMessage) -> Outcome {
        if let Some(command) = code.trim().strip_prefix(':') {
            return self.command(command.trim());
        }
        interrupt::clear();
        self.publisher.begin(request);
        let publisher = self.publisher.clone();
        let parent = request.clone();
        console::stream_to(move |item| publisher.send(outputs::captured_content(item), &parent));
        let result = self.session.eval(code, None);
        console::stop_streaming();
        self.publisher.end(request);
        match result {
            Ok(value) => Outcome::Value(value),
            Err(err) => Outcome::Failed(outputs::error_output(&err, code)),
        }
    }

    /// The REPL's commands, shown in the pager: `:help [NAME]`, `:vars`.
    fn command(&self, command: &str) -> Outcome {
        let (name, argument) = command.split_once(' ').unwrap_or((command, ""));
        let text = match name {
            "help" | "h" if argument.trim().is_empty() => self.help.overview(),
            "help" | "h" => self.help.describe(argument),
            "vars" => self.variables_text(),
            _ => {
                return Outcome::Failed(ErrorOutput {
                    ename: "UnknownCommand".into(),
                    evalue: format!(":{name}"),
                    traceback: vec![format!(
                        "unknown command ':{name}' (the kernel knows :help [NAME] and :vars)"
                    )],
                })
            }
        };
        Outcome::Page(text)
    }

    fn variables_text(&self) -> String {
        self.session
            .scope()
            .iter_raw()
            .map(|(name, _, value)| format!("{name}: {}\n", value.type_name()))
            .collect()
    }

    /// Answers an execute request queued behind a failed cell with
    /// `aborted`, as ipykernel does when the client asked to stop on errors;
    /// other requests are handled as usual.
    fn abort(&mut self, request: &JupyterMessage) {
        self.publisher.status(ExecutionState::Busy, request);
        let reply = if matches!(request.content, JupyterMessageContent::ExecuteRequest(_)) {
            Some(
                ExecuteReply {
                    status: ReplyStatus::Aborted,
                    execution_count: ExecutionCount::new(self.execution_count),
                    payload: Vec::new(),
                    user_expressions: None,
                    error: None,
                }
                .into(),
            )
        } else {
            self.handle(request).0
        };
        if let Some(reply) = reply {
            self.reply(reply, request);
        }
        self.publisher.status(ExecutionState::Idle, request);
    }

    fn complete(&self, request: &CompleteRequest) -> CompleteReply {
        let word = completion::word_before(&request.code, request.cursor_pos);
        // What each name is, for JupyterLab's completer icons; a variable
        // shadows a function of the same name, as in the engine.
        let mut kinds: HashMap<String, &str> = HashMap::new();
        let keywords = KEYWORDS.iter().map(|k| (k.to_string(), "keyword"));
        let functions = self
            .help
            .names()
            .chain(self.session.function_names())
            .map(|name| (name.to_string(), "function"));
        let variables = self
            .session
            .scope()
            .iter_raw()
            .map(|(name, _, _)| name.to_string())
            .chain(completion::declared_names(&request.code))
            .map(|name| (name, "instance"));
        kinds.extend(keywords.chain(functions).chain(variables));
        let matches = completion::matches(&word.text, kinds.keys().map(String::as_str));
        let types: Vec<serde_json::Value> = matches
            .iter()
            .map(|name| {
                serde_json::json!({
                    "start": word.start,
                    "end": word.end,
                    "text": name,
                    "type": kinds.get(name).copied().unwrap_or("function"),
                })
            })
            .collect();
        let mut metadata = serde_json::Map::new();
        metadata.insert("_jupyter_types_experimental".into(), types.into());
        CompleteReply {
            matches,
            cursor_start: word.start,
            cursor_end: word.end,
            metadata,
            status: ReplyStatus::Ok,
            error: None,
        }
    }

    /// `:help NAME` for a function, the type and value for a variable.
    fn inspect(&self, request: &InspectRequest) -> InspectReply {
        let text = completion::word_at(&request.code, request.cursor_pos).and_then(|word| {
            if self.help.entries.contains_key(&word) {
                return Some(self.help.describe(&word));
            }
            self.session
                .scope()
                .get(&word)
                .map(|value| format!("{word}: {}\n{}", value.type_name(), format_value(value)))
        });
        InspectReply {
            found: text.is_some(),
            data: Media::new(text.map(MediaType::Plain).into_iter().collect()),
            metadata: Default::default(),
            status: ReplyStatus::Ok,
            error: None,
        }
    }

    fn is_complete(&self, request: &IsCompleteRequest) -> IsCompleteReply {
        let code = request.code.trim_start();
        let status = if code.starts_with(':') {
            IsCompleteReplyStatus::Complete
        } else {
            match completeness(self.session.engine(), &request.code) {
                Completeness::Complete => IsCompleteReplyStatus::Complete,
                Completeness::Incomplete => IsCompleteReplyStatus::Incomplete,
                Completeness::Invalid => IsCompleteReplyStatus::Invalid,
            }
        };
        let indent = match status {
            IsCompleteReplyStatus::Incomplete => "    ".to_string(),
            _ => String::new(),
        };
        IsCompleteReply { status, indent }
    }

    /// The inputs of this kernel's session (session number 0): the latest
    /// `n`, a range of them, or those matching a glob pattern.
    fn history(&self, request: &HistoryRequest) -> HistoryReply {
        let numbered = self
            .history
            .iter()
            .enumerate()
            .map(|(i, code)| (i + 1, code));
        let entries: Vec<(usize, &String)> = match request {
            HistoryRequest::Tail { n, .. } => {
                let all: Vec<_> = numbered.collect();
                let skip = all.len().saturating_sub((*n).max(0) as usize);
                all.into_iter().skip(skip).collect()
            }
            HistoryRequest::Range { start, stop, .. } => numbered
                .filter(|(line, _)| *line as i32 >= *start && (*line as i32) < *stop)
                .collect(),
            HistoryRequest::Search { pattern, n, .. } => {
                let found: Vec<_> = numbered
                    .filter(|(_, code)| glob_match(pattern, code))
                    .collect();
                let skip = found.len().saturating_sub((*n).max(0) as usize);
                found.into_iter().skip(skip).collect()
            }
        };
        let with_output = match request {
            HistoryRequest::Tail { output, .. }
            | HistoryRequest::Range { output, .. }
            | HistoryRequest::Search { output, .. } => *output,
        };
        let history = entries
            .into_iter()
            .map(|(line, code)| {
                if with_output {
                    HistoryEntry::InputOutput(0, line, (code.clone(), String::new()))
                } else {
                    HistoryEntry::Input(0, line, code.clone())
                }
            })
            .collect();
        HistoryReply {
            history,
            status: ReplyStatus::Ok,
            error: None,
        }
    }
}

/// IPython's history search: `*` any text, `?` one character, whole input.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn matches(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|i| matches(rest, &text[i..])),
            Some(('?', rest)) => !text.is_empty() && matches(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && matches(rest, &text[1..]),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    matches(&pattern, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_native_function_is_an_error_and_the_session_lives_on() {
        let mut engine = saelab::script::new_engine(EngineOptions::default());
        engine.register_fn("explode", || -> i64 { panic!("binding bug") });
        let (shell, _replies) = tokio::sync::mpsc::unbounded_channel();
        let (iopub, _outputs) = tokio::sync::mpsc::unbounded_channel();
        let mut executor =
            Executor::with_session(Session::with_engine(engine), shell, Publisher::new(iopub));
        let request = JupyterMessage::new(ExecuteRequest::new("explode()".into()), None);
        executor.run_cell("let kept = 5;", &request);
        match executor.run_cell("explode()", &request) {
            Outcome::Failed(error) => {
                assert_eq!(error.ename, "Panic");
                assert!(error.evalue.starts_with("explode: binding bug"));
                assert!(error.evalue.contains("this is a bug in saelab"));
                // The traceback points at the call, as for any script error.
                assert!(error.traceback[0].starts_with("Panic at line 1, column 1"));
            }
            _ => panic!("a panic must become an error"),
        }
        match executor.run_cell("kept", &request) {
            Outcome::Value(value) => assert_eq!(value.as_int().unwrap(), 5),
            _ => panic!("the session must survive"),
        }
    }

    #[test]
    fn history_search_patterns_are_globs_over_the_whole_input() {
        assert!(glob_match("1 + *", "1 + 2"));
        assert!(glob_match("?+1", "1+1"));
        assert!(!glob_match("1 +", "1 + 2"));
        assert!(glob_match("*", ""));
    }
}
