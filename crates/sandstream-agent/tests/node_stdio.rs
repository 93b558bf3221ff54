//! A Node.js program that writes and then calls `process.exit()` keeps every byte:
//! Node.js leaves a pipe's writes queued in the process when it exits, and the agent
//! preloads a module into every command's Node.js programs that makes them block
//! (`node_stdio.rs`). Needs `node` on PATH (CI's machine has it).

mod common;

use common::*;

const MIB: usize = 1 << 20;

fn node_present() {
    let found = std::process::Command::new("node").arg("--version").output().map(|o| o.status.success());
    assert!(matches!(found, Ok(true)), "these tests need Node.js (`node`) on PATH");
}

fn node(script: &str) -> String {
    format!("node -e \"{script}\"")
}

#[tokio::test]
async fn a_node_program_that_exits_right_after_writing_loses_nothing() {
    node_present();
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    for (stream, fd) in [("stdout", 1), ("stderr", 2)] {
        let got = run(&mut client, &node(&format!("process.{stream}.write('x'.repeat({MIB})); process.exit(7)"))).await;
        assert_eq!(got.end().exit_code, 7, "{}", got.stderr_str());
        let (mine, other) = if fd == 1 { (&got.stdout, &got.stderr) } else { (&got.stderr, &got.stdout) };
        assert_eq!(mine.len(), MIB, "{stream}: every byte before process.exit()");
        assert!(mine.iter().all(|b| *b == b'x'));
        assert!(other.is_empty(), "{stream}: nothing on the other stream");
    }
    // console.log and console.error alternating, then exit: all of it, in program order.
    let lines = 5000;
    let got = run(
        &mut client,
        &node(&format!(
            "for (let i = 0; i < {lines}; i++) {{ console.log('out ' + i); console.error('err ' + i) }} process.exit(3)"
        )),
    )
    .await;
    assert_eq!(got.end().exit_code, 3);
    let want: String = (0..lines).map(|i| format!("out {i}\nerr {i}\n")).collect();
    assert_eq!(got.merged.len(), want.len(), "every line arrived");
    assert!(String::from_utf8_lossy(&got.merged) == want, "lines arrived out of program order");
}

#[tokio::test]
async fn the_commands_own_node_options_are_kept_beside_the_preload() {
    node_present();
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut req = bytes_request(&node(&format!(
        "const v8 = require('v8'); process.stdout.write(v8.getHeapStatistics().heap_size_limit + ' ' + 'y'.repeat({MIB})); process.exit(0)"
    )));
    req.env.insert("NODE_OPTIONS".into(), "--max-old-space-size=64".into());
    let got = execute(&mut client, req).await;
    assert_eq!(got.end().exit_code, 0, "{}", got.stderr_str());
    let out = got.stdout_str();
    let (limit, rest) = out.split_once(' ').expect("a heap limit, then the bytes");
    let limit: u64 = limit.parse().expect("a number");
    assert!(limit < 200 << 20, "--max-old-space-size=64 took effect: heap limit {limit}");
    assert_eq!(rest.len(), MIB, "and the preload too: nothing lost");
    // The command sees where the preload comes from.
    let env = run(&mut client, "printf %s \"$NODE_OPTIONS\"").await;
    let want = format!("--require={}", agent.dir.path().join("node-stdio.cjs").display());
    assert_eq!(env.stdout_str(), want);
}

#[tokio::test]
async fn without_the_preload_node_loses_what_the_pipe_did_not_take() {
    // The control: this is the loss the preload prevents (Node.js leaves the rest of
    // the write queued and exit drops it).
    node_present();
    let agent = Agent::start(&["--node-preload", ""]);
    let mut client = agent.client().await;
    let got = run(&mut client, &node(&format!("process.stdout.write('x'.repeat({MIB})); process.exit(0)"))).await;
    assert_eq!(got.end().exit_code, 0);
    assert!(got.stdout.len() < MIB, "Node.js kept everything without the preload: {} bytes", got.stdout.len());
    let env = run(&mut client, "printf %s \"${NODE_OPTIONS-unset}\"").await;
    assert_eq!(env.stdout_str(), "unset");
}

#[tokio::test]
async fn an_unwritable_preload_path_leaves_commands_running_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let path = blocker.join("node-stdio.cjs");
    let agent = Agent::start(&["--node-preload", path.to_str().expect("utf-8")]);
    let mut client = agent.client().await;
    let env = run(&mut client, "printf %s \"${NODE_OPTIONS-unset}\"").await;
    assert_eq!(env.end().exit_code, 0);
    assert_eq!(env.stdout_str(), "unset", "no NODE_OPTIONS naming a module that is not there");
}
