//! The sandbox's own deadline (`--deadline-file`): the agent ends the sandbox itself
//! when it passes, so a sandbox does not outlive its time-to-live when the runner that
//! should kill it is down or slow.
//!
//! The file holds a Unix time in milliseconds (surrounding whitespace ignored). The
//! runtime replaces it by rename in a directory bound read-only into the sandbox, so it
//! is opened anew at every check (a held descriptor would keep reading the old file).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::now_ms;

/// How often the file is read.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A deadline is a few digits; a longer file is not one.
const MAX_FILE_BYTES: u64 = 64;

#[derive(Debug, PartialEq, Eq)]
enum Reading {
    Missing,
    At(i64),
    Invalid(String),
}

fn read(path: &Path) -> Reading {
    let mut text = String::new();
    let opened = std::fs::File::open(path);
    let read = opened.and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text));
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Reading::Missing,
        Err(e) => Reading::Invalid(format!("cannot read it: {e}")),
        Ok(n) if n as u64 > MAX_FILE_BYTES => Reading::Invalid(format!("longer than {MAX_FILE_BYTES} bytes")),
        Ok(_) => match text.trim().parse::<i64>() {
            Ok(ms) => Reading::At(ms),
            Err(_) => Reading::Invalid(format!("{:?} is not a time in milliseconds", text.trim())),
        },
    }
}

/// Resolves once the deadline in `path` has passed. A missing file means no deadline
/// yet (once one was read, a vanished file keeps it); an unreadable or unparseable one
/// is logged once and the previous deadline stays. A later deadline written to the
/// file moves it.
pub(crate) async fn reached(path: PathBuf) {
    let mut deadline: Option<i64> = None;
    let mut complained = false;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let reading = {
            let path = path.clone();
            // A read of a local file, but off the async workers all the same.
            tokio::task::spawn_blocking(move || read(&path)).await.unwrap_or(Reading::Missing)
        };
        match reading {
            Reading::Missing => {}
            Reading::At(ms) => {
                if deadline != Some(ms) {
                    tracing::info!(deadline_ms = ms, "sandbox deadline set");
                }
                deadline = Some(ms);
                complained = false;
            }
            Reading::Invalid(why) if !complained => {
                tracing::warn!(path = %path.display(), error = %why, "ignoring the deadline file; the previous deadline stays");
                complained = true;
            }
            Reading::Invalid(_) => {}
        }
        if let Some(at) = deadline
            && now_ms() >= at
        {
            tracing::warn!(deadline_ms = at, "sandbox deadline reached; shutting down");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_milliseconds_with_whitespace_and_reports_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deadline");
        assert_eq!(read(&path), Reading::Missing);
        std::fs::write(&path, " 1700000000123\n").expect("write");
        assert_eq!(read(&path), Reading::At(1_700_000_000_123));
        std::fs::write(&path, "soon").expect("write");
        assert!(matches!(read(&path), Reading::Invalid(_)));
        std::fs::write(&path, "1".repeat(100)).expect("write");
        assert!(matches!(read(&path), Reading::Invalid(_)));
    }
}
