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

/// Transpiles `main.ts` with the template's TypeScript (TypeScript 5 in /usr/local, or
/// Debian's node-typescript on a host without npm) and
/// runs it in-process, resolving modules from the working directory.
const TS_RUNNER: &str = r#"const ts = require('typescript');
const fs = require('fs');
const path = require('path');
const Module = require('module');
const file = path.resolve(process.argv[2]);
const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
  fileName: file,
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020, esModuleInterop: true },
});
const m = new Module(file, null);
m.filename = file;
m.paths = Module._nodeModulePaths(path.dirname(file));
m._compile(out.outputText, file);
"#;

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
                (
                    "main.ts",
                    files.contains_key("package.json").then_some("exec npm install"),
                    "exec node .sandstream/run-ts.cjs main.ts",
                )
            }
        };
        files.insert(main.into(), code);
        Plan { files, install: install.map(String::from), run: run.into(), stdin }
    }
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
