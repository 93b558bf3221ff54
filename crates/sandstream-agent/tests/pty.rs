//! Commands on a pseudo-terminal (`ExecuteRequest.pty`), driven over real gRPC as a
//! terminal client drives them: typing, resizing, reading, dropping and resuming.

mod common;

use std::time::Duration;

use common::*;
use sandstream_proto::v1::{
    AttachRequest, CloseStdinRequest, CommandOutput, EventKind, ExecuteRequest, ListRequest, OutputChannel,
    OutputEncoding, PtySize, ResizePtyRequest, SignalRequest, WriteStdinRequest,
};
use tokio_stream::StreamExt;
use tonic::Code;

/// Long enough for any step on a loaded machine; a hang fails instead of stalling CI.
const WAIT: Duration = Duration::from_secs(30);

fn pty_request(command: &str, cols: u32, rows: u32) -> ExecuteRequest {
    ExecuteRequest { pty: Some(PtySize { cols, rows }), ..bytes_request(command) }
}

/// A started terminal command: its id, and its output as read so far.
struct Term {
    id: String,
    stream: tonic::Streaming<CommandOutput>,
    out: Vec<u8>,
    end: Option<CommandOutput>,
}

impl Term {
    async fn start(client: &mut Client, req: ExecuteRequest) -> Term {
        let id = client.start(req).await.expect("start").into_inner().command_id;
        Term::attach(client, id, 0).await
    }

    async fn attach(client: &mut Client, id: String, from: u64) -> Term {
        let req = AttachRequest {
            command_id: id.clone(),
            stdout_offset: from,
            stderr_offset: 0,
            encoding: OutputEncoding::Bytes as i32,
        };
        let stream = client.attach(req).await.expect("attach").into_inner();
        Term { id, stream, out: Vec::new(), end: None }
    }

    /// Reads until the output read so far contains `want`; panics on the end or after [`WAIT`].
    async fn read_until(&mut self, want: &str) {
        let found = tokio::time::timeout(WAIT, async {
            while !String::from_utf8_lossy(&self.out).contains(want) {
                if !self.next().await {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(matches!(found, Ok(true)), "no {want:?} in {:?}", String::from_utf8_lossy(&self.out));
    }

    /// Reads to the end; returns the end message.
    async fn read_to_end(&mut self) -> CommandOutput {
        tokio::time::timeout(WAIT, async { while self.next().await {} }).await.expect("the command ended");
        self.end.clone().expect("an end message")
    }

    /// One message; false once the stream ended.
    async fn next(&mut self) -> bool {
        let Some(msg) = self.stream.next().await else { return false };
        let msg = msg.expect("stream message");
        if msg.kind == EventKind::Output as i32 {
            assert_eq!(msg.channel, OutputChannel::Stdout as i32, "a terminal's output is one stream, on stdout");
            self.out.extend_from_slice(&msg.data);
        } else if msg.kind == EventKind::End as i32 {
            self.end = Some(msg);
            return false;
        }
        true
    }

    async fn type_in(&self, client: &mut Client, text: &str) {
        let req = WriteStdinRequest { command_id: self.id.clone(), data: text.as_bytes().to_vec().into() };
        client.write_stdin(req).await.expect("write to the terminal");
    }
}

/// A bash without start-up files and with a fixed prompt, so what it prints is known.
const BASH: &str = "PS1='$ ' exec bash --norc --noprofile -i";

#[tokio::test]
async fn bash_on_a_terminal_answers_typed_input_and_exits_with_its_code() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut term = Term::start(&mut client, pty_request(BASH, 80, 24)).await;
    term.read_until("$ ").await;
    term.type_in(&mut client, "echo $((6*7))\n").await;
    // The terminal echoes the typing, then bash answers; the terminal writes "\r\n".
    // (Between them bash may switch bracketed paste off and on: escape sequences.)
    term.read_until("echo $((6*7))\r\n").await;
    term.read_until("\r42\r\n").await;
    term.type_in(&mut client, "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty; tty; echo TERM=$TERM\n").await;
    term.read_until("all-tty\r\n/dev/pts/").await;
    term.read_until("TERM=xterm-256color\r\n").await;
    term.type_in(&mut client, "exit 5\n").await;
    let end = term.read_to_end().await;
    assert_eq!(end.exit_code, 5);
    // The end is final: input and resizes are refused.
    let write = client.write_stdin(WriteStdinRequest { command_id: term.id.clone(), data: b"x".to_vec().into() }).await;
    assert_eq!(write.expect_err("closed").code(), Code::FailedPrecondition);
    let resize = client.resize_pty(resize(&term.id, 100, 30)).await.expect_err("ended");
    assert_eq!(resize.code(), Code::FailedPrecondition);
    assert!(resize.message().contains("has already exited"), "{}", resize.message());
}

fn resize(id: &str, cols: u32, rows: u32) -> ResizePtyRequest {
    ResizePtyRequest { command_id: id.into(), size: Some(PtySize { cols, rows }) }
}

#[tokio::test]
async fn the_size_is_set_at_start_and_a_resize_signals_sigwinch() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let script = "trap 'echo winch $(stty size)' WINCH; echo start $(stty size); \
                  while :; do sleep 0.05; done";
    let mut term = Term::start(&mut client, pty_request(script, 100, 30)).await;
    term.read_until("start 30 100\r\n").await;
    client.resize_pty(resize(&term.id, 132, 50)).await.expect("resize");
    term.read_until("winch 50 132\r\n").await;
    let listed = client.list(ListRequest {}).await.expect("list").into_inner();
    let info = listed.commands.iter().find(|c| c.command_id == term.id).expect("listed");
    assert_eq!(info.pty, Some(PtySize { cols: 132, rows: 50 }));
    for (cols, rows) in [(0, 50), (132, 0), (10_001, 50)] {
        let err = client.resize_pty(resize(&term.id, cols, rows)).await.expect_err("bad size");
        assert_eq!(err.code(), Code::InvalidArgument, "{cols}x{rows}");
        assert!(err.message().contains(&format!("got {cols}x{rows}")), "{}", err.message());
    }
    let missing = client.resize_pty(ResizePtyRequest { command_id: term.id.clone(), size: None }).await;
    assert_eq!(missing.expect_err("no size").code(), Code::InvalidArgument);
    client.signal(SignalRequest { command_id: term.id.clone(), signal: 9 }).await.expect("kill");
    assert_eq!(term.read_to_end().await.signal, 9);
}

#[tokio::test]
async fn ctrl_c_typed_interrupts_the_foreground_program_only() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut term = Term::start(&mut client, pty_request(BASH, 80, 24)).await;
    term.read_until("$ ").await;
    term.type_in(&mut client, "sleep 100\n").await;
    term.read_until("sleep 100\r\n").await;
    // Give bash the moment to start sleep in the foreground; ^C typed early would only
    // interrupt bash's own line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    term.type_in(&mut client, "\x03").await;
    term.read_until("^C").await;
    // The sleep died of SIGINT (130); bash itself lives on and answers.
    term.type_in(&mut client, "echo after $?\n").await;
    term.read_until("after 130\r\n").await;
    term.type_in(&mut client, "exit\n").await;
    assert_eq!(term.read_to_end().await.exit_code, 0);
}

#[tokio::test]
async fn a_dropped_stream_resumes_from_its_offset_without_loss_or_duplicates() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut term = Term::start(&mut client, pty_request(BASH, 80, 24)).await;
    term.type_in(&mut client, "for i in $(seq 1 3000); do echo line-$i; done\n").await;
    term.read_until("line-1000\r\n").await;
    let seen = term.out.clone();
    let id = term.id.clone();
    drop(term);
    // Typing while nobody reads: the agent keeps the output.
    let mut client2 = agent.client().await;
    let resumed = Term::attach(&mut client2, id.clone(), seen.len() as u64).await;
    resumed.type_in(&mut client2, "echo done-$((1+1)); exit 3\n").await;
    let mut resumed = resumed;
    assert_eq!(resumed.read_to_end().await.exit_code, 3);
    let mut whole = seen;
    whole.extend_from_slice(&resumed.out);
    // The same bytes as one reader from the start saw.
    let mut all = Term::attach(&mut client2, id, 0).await;
    all.read_to_end().await;
    assert_eq!(whole, all.out);
    let text = String::from_utf8_lossy(&whole);
    for i in [1, 999, 1000, 1001, 3000] {
        assert_eq!(text.matches(&format!("line-{i}\r\n")).count(), 1, "line-{i}");
    }
    assert!(text.contains("done-2\r\n"), "{text}");
}

#[tokio::test]
async fn an_empty_command_is_an_interactive_login_shell_on_the_terminal_only() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut term = Term::start(&mut client, pty_request("", 80, 24)).await;
    term.type_in(&mut client, "shopt -q login_shell && echo login; [[ $- == *i* ]] && echo interactive; exit 4\n")
        .await;
    term.read_until("login\r\n").await;
    term.read_until("interactive\r\n").await;
    assert_eq!(term.read_to_end().await.exit_code, 4);
    // Without a terminal an empty command is still refused.
    let err = client.start(bytes_request("")).await.expect_err("empty");
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "command is empty"));
    let err = client.start(pty_request("true", 0, 24)).await.expect_err("bad size");
    assert_eq!(err.code(), Code::InvalidArgument);
    let piped = run(&mut client, "true").await;
    let err = client.resize_pty(resize(&piped.end().command_id, 80, 24)).await.expect_err("no terminal");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("does not run on a terminal"), "{}", err.message());
}

#[tokio::test]
async fn what_is_left_on_the_terminal_is_hung_up_when_the_command_ends() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    // The background sleep keeps the terminal open after the shell exits; once the agent
    // stops reading it closes its side, and the kernel hangs the sleep up.
    let mut term = Term::start(&mut client, pty_request("sleep 1000 & echo bg $!; exit 0", 80, 24)).await;
    term.read_until("\r\n").await;
    let text = String::from_utf8_lossy(&term.out).into_owned();
    let pid: i32 = text.trim().strip_prefix("bg ").and_then(|p| p.parse().ok()).expect("the sleep's pid");
    assert_eq!(term.read_to_end().await.exit_code, 0);
    let gone = tokio::time::timeout(WAIT, async {
        while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the background sleep {pid} outlived its terminal");
    // Closing input on a terminal command is allowed and refuses later input.
    let mut term = Term::start(&mut client, pty_request(BASH, 80, 24)).await;
    client.close_stdin(CloseStdinRequest { command_id: term.id.clone() }).await.expect("close");
    let write = client.write_stdin(WriteStdinRequest { command_id: term.id.clone(), data: b"x".to_vec().into() }).await;
    assert_eq!(write.expect_err("closed").code(), Code::FailedPrecondition);
    client.signal(SignalRequest { command_id: term.id.clone(), signal: 9 }).await.expect("kill");
    term.read_to_end().await;
}

#[tokio::test]
async fn terminals_run_as_the_run_as_user_who_owns_them_also_when_started_with_fork() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (--run-as)");
    for env in [&[][..], &[("SANDSTREAM_AGENT_SPAWN", "fork")][..]] {
        let agent = Agent::start_with_env(&["--run-as", "65534:65534"], env);
        let mut client = agent.client().await;
        let mut req = pty_request(
            "id -u; stat -c 'owner %u mode %a' $(tty); read -r _ _ _ _ _ sid _ < /proc/$$/stat; \
             [ \"$sid\" = $$ ] && echo own-session; stty size",
            90,
            20,
        );
        req.cwd = "/".into();
        let mut term = Term::start(&mut client, req).await;
        assert_eq!(term.read_to_end().await.exit_code, 0, "{env:?}");
        assert_eq!(String::from_utf8_lossy(&term.out), "65534\r\nowner 65534 mode 620\r\nown-session\r\n20 90\r\n");
    }
}
