//! stdout and stderr keep the order the program wrote them in, for every reader: the
//! live stream, a late joiner, and one that resumes from a pair of offsets.

mod common;

use common::*;
use sandstream_proto::v1::{AttachRequest, OutputEncoding};
use tokio_stream::StreamExt;

/// Each `echo` is one write, flushed: stdout and stderr alternate 1,000 times.
const ALTERNATE: &str = r#"for i in $(seq 0 999); do echo "out $i"; echo "err $i" >&2; done"#;

fn in_order(from: usize) -> String {
    (from..1000).map(|i| format!("out {i}\nerr {i}\n")).collect()
}

/// Asserts `got` is `want`, naming the first line that differs (not both whole texts).
fn assert_lines(got: &[u8], want: &str, what: &str) {
    let got = String::from_utf8_lossy(got);
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let at = g.iter().zip(&w).position(|(a, b)| a != b).unwrap_or(g.len().min(w.len()));
    let around = |v: &[&str]| v[at.saturating_sub(2)..(at + 3).min(v.len())].join(" | ");
    panic!(
        "{what}: line {at} differs: got [{}], want [{}] ({} lines, want {})",
        around(&g),
        around(&w),
        g.len(),
        w.len()
    );
}

async fn attach(client: &mut Client, command_id: &str, stdout_offset: u64, stderr_offset: u64) -> Collected {
    let req = AttachRequest {
        command_id: command_id.into(),
        stdout_offset,
        stderr_offset,
        encoding: OutputEncoding::Bytes as i32,
    };
    let mut stream = client.attach(req).await.expect("attach").into_inner();
    // Offsets continue from where the reader resumes.
    let mut got = Collected {
        stdout: vec![0; stdout_offset as usize],
        stderr: vec![0; stderr_offset as usize],
        ..Default::default()
    };
    while let Some(m) = stream.next().await {
        got.push(m.expect("message"));
    }
    got
}

async fn alternating_lines_arrive_in_program_order(agent: Agent) {
    let mut client = agent.client().await;
    for run in 0..3 {
        let live = common::run(&mut client, ALTERNATE).await;
        assert_eq!(live.end().exit_code, 0);
        // Positive control: each stream on its own is complete either way.
        assert_eq!(live.stdout_str(), (0..1000).map(|i| format!("out {i}\n")).collect::<String>());
        assert_eq!(live.stderr_str(), (0..1000).map(|i| format!("err {i}\n")).collect::<String>());
        assert_lines(&live.merged, &in_order(0), &format!("run {run}: the live stream"));

        // A late joiner reads the spool from the start: the same order.
        let id = live.events.iter().find(|e| !e.command_id.is_empty()).expect("started event").command_id.clone();
        let late = attach(&mut client, &id, 0, 0).await;
        assert_lines(&late.merged, &in_order(0), &format!("run {run}: a late joiner"));
        // One that resumes after "err 499" gets the rest in the same order.
        let (o, e) = (in_order(0).find("out 500").expect("line") / 2, in_order(0).find("out 500").expect("line") / 2);
        let resumed = attach(&mut client, &id, o as u64, e as u64).await;
        assert_lines(&resumed.merged, &in_order(500), &format!("run {run}: resumed from ({o}, {e})"));
    }
}

#[tokio::test]
async fn alternating_flushed_lines_keep_program_order() {
    alternating_lines_arrive_in_program_order(Agent::start(&[])).await;
}

#[tokio::test]
async fn alternating_flushed_lines_keep_program_order_when_shells_are_forked() {
    alternating_lines_arrive_in_program_order(Agent::start_with_env(&[], &[("SANDSTREAM_AGENT_SPAWN", "fork")])).await;
}

#[tokio::test]
async fn after_one_stream_flooded_alone_the_two_are_back_in_order() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    // 100,000 lines of stdout alone (its pipe grows), a pause, then alternation again.
    let got = common::run(&mut client, &format!("seq 1 100000; sleep 0.2; {ALTERNATE}")).await;
    assert_eq!(got.end().exit_code, 0);
    let seq: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert_lines(&got.merged, &(seq + &in_order(0)), "after the flood");
}
