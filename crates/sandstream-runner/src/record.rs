//! A sandbox's record: what the runner keeps about it beyond what its runtime knows
//! (its deadline and metadata), one JSON file each, so it survives a runner restart.

use std::collections::BTreeMap;
use std::path::Path;

use sandstream_runner_protocol::RunnerSandbox;

/// Now, in milliseconds since the Unix epoch: the clock records and deadlines use.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What the runner keeps about a sandbox beyond what its runtime knows, in
/// `STATE_DIR/records/ID.json`, so that it survives a runner restart.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub(crate) expires_at: Option<i64>,
    #[serde(default)]
    pub(crate) metadata: BTreeMap<String, String>,
}

impl Record {
    pub(crate) fn of(rs: &RunnerSandbox) -> Record {
        Record { expires_at: rs.expires_at, metadata: rs.metadata.clone() }
    }

    /// Written whole to a temporary file, then renamed: a crash leaves the old record or
    /// the new one.
    pub(crate) fn write(&self, dir: &Path, id: &str) -> std::io::Result<()> {
        let tmp = dir.join(format!(".{id}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, dir.join(format!("{id}.json")))
    }

    pub(crate) fn remove(dir: &Path, id: &str) {
        match std::fs::remove_file(dir.join(format!("{id}.json"))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(sandbox_id = %id, error = %e, "could not remove the sandbox's record"),
        }
    }

    /// Every record in `dir`, by sandbox id; unreadable ones are logged and skipped.
    pub(crate) fn read_all(dir: &Path) -> BTreeMap<String, Record> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(dir) else { return out };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json").filter(|id| !id.starts_with('.')) else { continue };
            match std::fs::read(e.path())
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => {
                    out.insert(id.to_string(), r);
                }
                Err(e) => tracing::warn!(sandbox_id = %id, error = %e, "unreadable sandbox record; ignoring it"),
            }
        }
        out
    }
}
