//! What an execution runs: the files, install and run commands per language (`Plan`),
//! their environment, and writing the files into the sandbox.

use std::collections::{BTreeMap, HashMap};

use sandstream_proto::v1::{EventKind, ExecuteRequest, OutputChannel, OutputEncoding};
use serde::{Deserialize, Serialize};

use super::WORKDIR;
use super::agents::AgentClient;
use crate::time::now_ms;

/// Languages `/api/sandbox/exec` runs.
pub(crate) const LANGUAGES: &[&str] = &["python", "javascript", "typescript"];

/// Runs `main.ts` as `tsc && node` would (`run-ts.cjs`, with the template's TypeScript
/// and `@types/node`): the request's `.ts` files are type-checked as one program, tsc's
/// diagnostics end the run with tsc's exit code (2), else each file is emitted as
/// CommonJS in memory and main.ts runs.
const TS_RUNNER: &str = include_str!("run-ts.cjs");

/// What an execution runs, stored with it so a restarted server can carry it on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// Files to write before anything runs: the program first.
    pub files: BTreeMap<String, String>,
    pub install: Option<String>,
    pub run: String,
    pub stdin: Option<String>,
}

impl Plan {
    pub(crate) fn new(
        language: &str,
        code: String,
        mut files: BTreeMap<String, String>,
        stdin: Option<String>,
    ) -> Plan {
        let ts_command;
        let (main, install, run) = match language {
            "python" => (
                "main.py",
                files.contains_key("requirements.txt").then_some({
                    "{ [ -x .venv/bin/python ] || python3 -m venv .venv; } && exec .venv/bin/pip install -r requirements.txt"
                }),
                "if [ -x .venv/bin/python ]; then exec .venv/bin/python -u main.py; else exec python3 -u main.py; fi",
            ),
            "javascript" => ("main.js", files.contains_key("package.json").then_some("exec npm install"), "exec node main.js"),
            _ => {
                files.insert(".sandstream/run-ts.cjs".into(), TS_RUNNER.into());
                ts_command = ts_run(&files);
                ("main.ts", files.contains_key("package.json").then_some("exec npm install"), ts_command.as_str())
            }
        };
        files.insert(main.into(), code);
        Plan { files, install: install.map(String::from), run: run.into(), stdin }
    }
}

/// The default template's TypeScript startup snapshot (runtime `template/machine.rs`):
/// TypeScript loaded and Node.js's declarations parsed, so the check starts warm.
const TS_SNAPSHOT: &str = "/usr/local/lib/sandstream/typescript.blob";

/// The TypeScript run command: main.ts first, then every other `.ts` file of the
/// request (declaration files included), the roots of the program tsc would check;
/// started from the template's snapshot when it has one.
fn ts_run(files: &BTreeMap<String, String>) -> String {
    let mut args = String::from(".sandstream/run-ts.cjs main.ts");
    for name in files.keys().filter(|name| name.ends_with(".ts") && name.as_str() != "main.ts") {
        args.push(' ');
        args.push_str(&quote(name));
    }
    format!("if [ -r {TS_SNAPSHOT} ]; then exec node --snapshot-blob {TS_SNAPSHOT} {args}; else exec node {args}; fi")
}

pub(super) fn run_env() -> HashMap<String, String> {
    [
        ("HOME", WORKDIR),
        ("PYTHONUNBUFFERED", "1"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
        ("PIP_PROGRESS_BAR", "on"),
        ("npm_config_update_notifier", "false"),
        ("npm_config_fund", "false"),
        ("npm_config_audit", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Single-quotes `s` for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes the plan's files, each by a command of its own (30 s at most, and never past
/// the execution's `deadline`).
pub(super) async fn write_files(client: &mut AgentClient, plan: &Plan, deadline: i64) -> Result<(), String> {
    for (name, content) in &plan.files {
        let remaining = deadline - now_ms();
        if remaining <= 0 {
            return Err("the execution's timeout passed".into());
        }
        let q = quote(name);
        // Written beside the target, then renamed over it: executions in one sandbox share
        // its home, and a program starting while another execution rewrites its main.py
        // must read a whole file (the old one or the new one), never a truncated one.
        let req = ExecuteRequest {
            command: format!(
                "d=$(dirname -- {q}) && mkdir -p -- \"$d\" && t=\"$d/.sandstream-write-$$\" && \
                 {{ cat > \"$t\" && mv -f -- \"$t\" {q}; }} || {{ rm -f -- \"$t\"; exit 1; }}"
            ),
            cwd: WORKDIR.into(),
            encoding: OutputEncoding::Bytes as i32,
            stdin: content.clone().into_bytes(),
            timeout: remaining.min(30_000),
            ..Default::default()
        };
        let mut stream = client.execute(req).await.map_err(|e| e.message().to_string())?.into_inner();
        let mut stderr = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(m)) if m.end || m.kind == EventKind::End as i32 => {
                    if m.exit_code != 0 {
                        return Err(format!("{name}: {}", String::from_utf8_lossy(&stderr).trim()));
                    }
                    break;
                }
                Ok(Some(m)) if m.channel == OutputChannel::Stderr as i32 => stderr.extend_from_slice(&m.data),
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("{name}: the agent closed the stream")),
                Err(e) => return Err(format!("{name}: {}", e.message())),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typescript_checks_main_with_every_other_ts_file_of_the_request() {
        let files = BTreeMap::from([
            ("util.ts".to_string(), "export const a = 1;".to_string()),
            ("lib/it's.d.ts".to_string(), "declare const b: number;".to_string()),
            ("data.json".to_string(), "{}".to_string()),
            ("main.ts".to_string(), "replaced by the code".to_string()),
        ]);
        let plan = Plan::new("typescript", "console.log(1);".into(), files, None);
        let args = r".sandstream/run-ts.cjs main.ts 'lib/it'\''s.d.ts' 'util.ts'";
        assert_eq!(
            plan.run,
            format!(
                "if [ -r {TS_SNAPSHOT} ]; then exec node --snapshot-blob {TS_SNAPSHOT} {args}; else exec node {args}; fi"
            )
        );
        assert_eq!(plan.files["main.ts"], "console.log(1);");
        assert_eq!(plan.files[".sandstream/run-ts.cjs"], TS_RUNNER);
        assert_eq!(plan.install, None);
    }
}
