//! `sandstream sandbox create | list | kill`: a key's sandboxes over the server's
//! `/api/v1/sandboxes` routes (API.md, "Sandboxes").

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::rest::{ApiFlags, Rest, parse_env};

#[derive(Args)]
pub(crate) struct SandboxArgs {
    #[command(flatten)]
    api: ApiFlags,
    #[command(subcommand)]
    action: SandboxAction,
}

#[derive(Subcommand)]
pub(crate) enum SandboxAction {
    /// Create a sandbox; prints its id alone on stdout.
    ///
    /// Flags left out take the server's defaults (API.md): the `default` template, 2 CPUs,
    /// 512 MiB of memory, the runner's default disk, a 300 s timeout. Exits 1 (with the
    /// server's message on stderr) when the server refuses.
    Create(CreateArgs),
    /// List this key's sandboxes that are not killed.
    ///
    /// Prints a table: ID, TEMPLATE, STATE, CPU, MEMORY, CREATED and EXPIRES (UTC).
    #[command(visible_alias = "ls")]
    List {
        /// Print the server's JSON answer (an array of sandbox objects) instead.
        #[arg(long)]
        json: bool,
    },
    /// Kill one or more sandboxes: prints each id killed.
    ///
    /// Killing a sandbox that was already killed succeeds. Exits 1 when any could not be
    /// killed (an unknown id, another key's), with the server's message on stderr.
    #[command(visible_alias = "rm")]
    Kill {
        /// The sandboxes' ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

#[derive(Args)]
pub(crate) struct CreateArgs {
    /// The template (`sandstream template list` on a runner's host).
    #[arg(long, short)]
    template: Option<String>,
    /// Seconds until the sandbox is killed.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Cores, 0.01 to 64.
    #[arg(long)]
    cpu: Option<f64>,
    /// Memory in MiB.
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Disk in MiB: what the sandbox may write outside /tmp.
    #[arg(long)]
    disk_mb: Option<u32>,
    /// An environment variable of every command in the sandbox, K=V (repeatable; a bare K
    /// takes this shell's value).
    #[arg(long, short, value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A label kept with the sandbox, K=V (repeatable).
    #[arg(long, value_name = "K=V", value_parser = parse_label)]
    metadata: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

impl CreateArgs {
    /// The body of `POST /api/v1/sandboxes`: only the fields given.
    fn body(&self) -> anyhow::Result<Value> {
        let mut body = serde_json::Map::new();
        if let Some(t) = &self.template {
            body.insert("template".into(), json!(t));
        }
        if let Some(secs) = self.timeout {
            let ms = secs.checked_mul(1000).context("--timeout is too large")?;
            body.insert("timeoutMs".into(), json!(ms));
        }
        if let Some(cpu) = self.cpu {
            body.insert("cpu".into(), json!(cpu));
        }
        if let Some(mb) = self.memory_mb {
            body.insert("memoryMb".into(), json!(mb));
        }
        if let Some(mb) = self.disk_mb {
            body.insert("diskMb".into(), json!(mb));
        }
        if !self.env.is_empty() {
            body.insert("envs".into(), json!(self.env.iter().cloned().collect::<BTreeMap<_, _>>()));
        }
        if !self.metadata.is_empty() {
            body.insert("metadata".into(), json!(self.metadata.iter().cloned().collect::<BTreeMap<_, _>>()));
        }
        Ok(Value::Object(body))
    }
}

pub(crate) async fn sandbox(a: SandboxArgs) -> anyhow::Result<()> {
    let rest = Rest::new(&a.api)?;
    match a.action {
        SandboxAction::Create(c) => {
            let req = rest.http.post(rest.url("/sandboxes")).json(&c.body()?);
            let sb = rest.json(req).await.context("create a sandbox")?;
            let id = sb["sandboxId"].as_str().or(sb["id"].as_str()).context("the server answered without an id")?;
            println!("{id}");
        }
        SandboxAction::List { json } => {
            let text = rest.text(rest.http.get(rest.url("/sandboxes"))).await.context("list sandboxes")?;
            if json {
                println!("{}", text.trim_end());
            } else {
                let list: Value = serde_json::from_str(&text).context("the server's list is not JSON")?;
                print!("{}", table(list.as_array().map(Vec::as_slice).unwrap_or_default()));
            }
        }
        SandboxAction::Kill { ids } => {
            let mut failed = 0;
            for id in &ids {
                match rest.send(rest.http.delete(rest.sandbox_url(id, &[])?)).await {
                    Ok(_) => println!("{id}"),
                    Err(e) => {
                        eprintln!("sandstream: kill {id}: {e:#}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} sandbox(es) not killed", ids.len());
            }
        }
    }
    Ok(())
}

/// The sandboxes as a table, columns as wide as their widest cell.
fn table(list: &[Value]) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let mut rows = vec![["ID", "TEMPLATE", "STATE", "CPU", "MEMORY", "CREATED", "EXPIRES"].map(String::from)];
    for sb in list {
        let id = if sb["sandboxId"].is_string() { &sb["sandboxId"] } else { &sb["id"] };
        rows.push([
            text(id),
            text(&sb["template"]),
            text(&sb["state"]),
            text(&sb["cpu"]),
            sb["memoryMb"].as_u64().map_or_else(|| "-".into(), |mb| format!("{mb} MiB")),
            when(&text(&sb["createdAt"])),
            when(&text(&sb["expiresAt"])),
        ]);
    }
    let widths: Vec<usize> = (0..7).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `2026-11-23T17:00:00.000Z` as `2026-11-23 17:00:00`; anything else as it is.
fn when(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(10..11), rfc3339.get(11..19)) {
        (Some(date), Some("T"), Some(time)) if rfc3339.ends_with('Z') => format!("{date} {time}"),
        _ => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_its_columns() {
        let list = vec![
            json!({"sandboxId": "sb-0123456789", "template": "default", "state": "running", "cpu": 2.0,
                   "memoryMb": 512, "createdAt": "2026-11-23T17:00:00.000Z", "expiresAt": "2026-11-23T17:05:00.000Z"}),
            json!({"id": "sb-x", "template": "python-with-a-long-name", "state": "lost", "cpu": 0.5, "memoryMb": 16384}),
        ];
        assert_eq!(
            table(&list),
            "ID             TEMPLATE                 STATE    CPU  MEMORY     CREATED              EXPIRES\n\
             sb-0123456789  default                  running  2.0  512 MiB    2026-11-23 17:00:00  2026-11-23 17:05:00\n\
             sb-x           python-with-a-long-name  lost     0.5  16384 MiB  -                    -\n"
        );
        assert_eq!(table(&[]), "ID  TEMPLATE  STATE  CPU  MEMORY  CREATED  EXPIRES\n");
    }

    #[test]
    fn create_sends_only_the_fields_given() {
        let c = CreateArgs {
            template: None,
            timeout: Some(60),
            cpu: None,
            memory_mb: Some(256),
            disk_mb: None,
            env: vec![("A".into(), "b".into())],
            metadata: vec![],
        };
        assert_eq!(c.body().expect("body"), json!({"timeoutMs": 60000, "memoryMb": 256, "envs": {"A": "b"}}));
        assert!(parse_label("k=v=w").is_ok() && parse_label("=v").is_err() && parse_label("k").is_err());
    }
}
