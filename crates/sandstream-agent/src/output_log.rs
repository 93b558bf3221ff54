//! A command's output spool: every chunk the command writes, on disk, in the order
//! the agent read it, so any number of readers can replay it from any offset.
//!
//! **Readers never hold output in memory beyond the chunk they are sending**, and the
//! writer never waits for a reader: a slow or absent client costs disk, bounded by
//! the per-command cap, and never agent memory or command speed.
//!
//! File format: a sequence of records `[channel: u8][len: u32 LE][len bytes]`. A sparse
//! in-memory index of checkpoints (one per [`CHECKPOINT_EVERY`] bytes of file) lets a
//! reader that resumes from channel offsets skip to near its position.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::exit::ExitInfo;

const HEADER: usize = 5;
const CHECKPOINT_EVERY: u64 = 1 << 20;
/// Memory a command's live window may hold; readers further behind read the file.
const RECENT_BYTES: usize = 4 << 20;
/// What one record of the live window costs besides its bytes (its entry, the `Bytes`
/// handle): counted against [`RECENT_BYTES`], so a program that writes a byte at a time
/// (one record per write, `pipes.rs`) cannot make millions of entries.
const RECORD_COST: usize = 64;

/// Which pipe a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    Stdout = 0,
    Stderr = 1,
}

impl Channel {
    fn from_byte(b: u8) -> Option<Channel> {
        match b {
            0 => Some(Channel::Stdout),
            1 => Some(Channel::Stderr),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Checkpoint {
    pos: u64,
    out: u64,
    err: u64,
}

#[derive(Debug, Default)]
struct State {
    file: Option<Arc<File>>,
    len: u64,
    out: u64,
    err: u64,
    checkpoints: Vec<Checkpoint>,
    /// Bytes the command wrote after the cap (or a spool write error) cut the log.
    dropped: u64,
    cut: Option<String>,
    finished: Option<ExitInfo>,
    /// The newest records, kept in memory so readers at the live tail get them without
    /// touching the file: `(position in file, channel, data)`, bounded by [`RECENT_BYTES`].
    recent: VecDeque<(u64, Channel, Bytes)>,
    recent_bytes: usize,
}

/// Totals a finished or running command has recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) stdout: u64,
    pub(crate) stderr: u64,
}

/// The spool of one command.
#[derive(Debug)]
pub(crate) struct OutputLog {
    path: PathBuf,
    cap: u64,
    /// Why output past `cap` is dropped, as readers are told.
    cap_reason: String,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl OutputLog {
    /// A log that will be written to `path` (created on the first chunk, so commands
    /// that print nothing cost no file) and keeps at most `cap` bytes.
    pub(crate) fn new(path: PathBuf, cap: u64) -> Arc<OutputLog> {
        Self::with_reason(path, cap, format!("output reached the agent's cap of {cap} bytes"))
    }

    /// A log whose cap is the limit the command's request set (`output_limit_bytes`).
    pub(crate) fn limited(path: PathBuf, limit: u64) -> Arc<OutputLog> {
        Self::with_reason(path, limit, format!("output reached the command's limit of {limit} bytes"))
    }

    fn with_reason(path: PathBuf, cap: u64, cap_reason: String) -> Arc<OutputLog> {
        let state = State { checkpoints: vec![Checkpoint::default()], ..State::default() };
        Arc::new(OutputLog { path, cap, cap_reason, state: Mutex::new(state), changed: watch::Sender::new(0) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic mid-append; the state is still consistent
        // because every field is updated only after the write succeeded.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Appends one chunk. Never blocks on readers. Past the cap, bytes are counted and
    /// dropped; the first byte dropped marks the log as cut. Returns true when this
    /// chunk reached the cap (the first byte past it was dropped).
    pub(crate) fn append(&self, channel: Channel, data: Bytes) -> bool {
        if data.is_empty() {
            return false;
        }
        let mut reached_cap = false;
        {
            let mut st = self.lock();
            if st.cut.is_some() {
                st.dropped += data.len() as u64;
                return false;
            }
            let room = self.cap.saturating_sub(st.out + st.err);
            let take = (data.len() as u64).min(room) as usize;
            if take > 0
                && let Err(e) = Self::write_record(&self.path, &mut st, channel, data.slice(..take))
            {
                tracing::error!(path = %self.path.display(), error = %e, "spool write failed; output is cut here");
                st.cut = Some(format!("the agent could not spool more output ({e})"));
                st.dropped += data.len() as u64;
                drop(st);
                self.notify();
                return false;
            }
            if take < data.len() {
                st.cut = Some(self.cap_reason.clone());
                st.dropped += (data.len() - take) as u64;
                reached_cap = true;
            }
        }
        self.notify();
        reached_cap
    }

    fn write_record(path: &PathBuf, st: &mut State, channel: Channel, data: Bytes) -> std::io::Result<()> {
        let file = match &st.file {
            Some(f) => f.clone(),
            None => {
                let f = std::fs::OpenOptions::new().create_new(true).read(true).append(true).mode(0o600).open(path)?;
                let f = Arc::new(f);
                st.file = Some(f.clone());
                f
            }
        };
        let mut header = [0u8; HEADER];
        header[0] = channel as u8;
        header[1..].copy_from_slice(&(data.len() as u32).to_le_bytes());
        (&*file).write_all(&header)?;
        (&*file).write_all(&data)?;
        let pos = st.len;
        st.len += (HEADER + data.len()) as u64;
        match channel {
            Channel::Stdout => st.out += data.len() as u64,
            Channel::Stderr => st.err += data.len() as u64,
        }
        let last = st.checkpoints.last().map_or(0, |c| c.pos);
        if st.len - last >= CHECKPOINT_EVERY {
            let cp = Checkpoint { pos: st.len, out: st.out, err: st.err };
            st.checkpoints.push(cp);
        }
        st.recent_bytes += data.len() + RECORD_COST;
        st.recent.push_back((pos, channel, data));
        while st.recent_bytes > RECENT_BYTES && st.recent.len() > 1 {
            if let Some((_, _, old)) = st.recent.pop_front() {
                st.recent_bytes -= old.len() + RECORD_COST;
            }
        }
        Ok(())
    }

    /// Records how the command ended; readers see it after the last chunk.
    pub(crate) fn finish(&self, exit: ExitInfo) {
        let mut st = self.lock();
        st.finished = Some(exit);
        // A finished command's live window would only pin memory; late readers use the file.
        st.recent = VecDeque::new();
        st.recent_bytes = 0;
        drop(st);
        self.notify();
    }

    pub(crate) fn exit(&self) -> Option<ExitInfo> {
        self.lock().finished.clone()
    }

    pub(crate) fn totals(&self) -> Totals {
        let st = self.lock();
        Totals { stdout: st.out, stderr: st.err }
    }

    /// Why the output was cut, and how many bytes were dropped, if it was.
    pub(crate) fn cut(&self) -> Option<(String, u64)> {
        let st = self.lock();
        st.cut.clone().map(|c| (c, st.dropped))
    }

    /// Bytes of disk the spool uses.
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.lock().len
    }

    /// A reader positioned at the given channel offsets.
    pub(crate) fn cursor(self: &Arc<Self>, stdout_from: u64, stderr_from: u64) -> Cursor {
        let cp = {
            let st = self.lock();
            // Checkpoints grow in both offsets, so those at or before the wanted
            // position form a prefix.
            let n = st.checkpoints.partition_point(|c| c.out <= stdout_from && c.err <= stderr_from);
            st.checkpoints[n.saturating_sub(1)]
        };
        Cursor {
            log: self.clone(),
            rx: self.changed.subscribe(),
            pos: cp.pos,
            next: [cp.out, cp.err],
            want: [stdout_from, stderr_from],
            cut_reported: false,
        }
    }
}

impl Drop for OutputLog {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if st.file.is_some()
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove spool file");
        }
    }
}

/// What a reader gets next.
#[derive(Debug)]
pub(crate) enum Next {
    Chunk {
        channel: Channel,
        offset: u64,
        data: Bytes,
    },
    /// The log was cut (cap or spool error); reported once, when the reader reaches the cut.
    Cut {
        reason: String,
        dropped: u64,
    },
    /// Nothing happened for the idle interval.
    Idle,
    End {
        exit: ExitInfo,
        totals: Totals,
    },
}

/// What a reader does next, decided under the log's lock.
enum Step {
    Recent(Channel, Bytes),
    File(Option<Arc<File>>),
    CaughtUp { cut: Option<(String, u64)>, finished: Option<ExitInfo>, totals: Totals },
}

/// One reader's position in a log.
#[derive(Debug)]
pub(crate) struct Cursor {
    log: Arc<OutputLog>,
    rx: watch::Receiver<u64>,
    pos: u64,
    next: [u64; 2],
    want: [u64; 2],
    cut_reported: bool,
}

impl Cursor {
    /// Waits for what comes next: a chunk (one record: one pipe read, so at most one
    /// arena), the cut marker, the end, or `Idle` after `idle` of silence.
    pub(crate) async fn next(&mut self, idle: Duration) -> std::io::Result<Next> {
        loop {
            self.rx.borrow_and_update();
            // Under the lock, take only what this step needs: a chunk from the live
            // window, the file to read one from, or (caught up) how the log ends.
            let step = {
                let st = self.log.lock();
                match st.recent.binary_search_by_key(&self.pos, |r| r.0) {
                    Ok(i) => Step::Recent(st.recent[i].1, st.recent[i].2.clone()),
                    Err(_) if self.pos < st.len => Step::File(st.file.clone()),
                    Err(_) => Step::CaughtUp {
                        cut: st.cut.clone().map(|c| (c, st.dropped)),
                        finished: st.finished.clone(),
                        totals: Totals { stdout: st.out, stderr: st.err },
                    },
                }
            };
            match step {
                Step::Recent(channel, data) => {
                    if let Some(chunk) =
                        self.take(channel, data.len() as u64, |skip| Ok(data.slice(skip as usize..)))?
                    {
                        return Ok(chunk);
                    }
                    continue;
                }
                Step::File(file) => {
                    let file = file.ok_or_else(|| std::io::Error::other("spool has length but no file"))?;
                    if let Some(chunk) = self.read_record(&file)? {
                        return Ok(chunk);
                    }
                    continue;
                }
                Step::CaughtUp { cut, finished, totals } => {
                    if let Some((reason, dropped)) = cut
                        && !self.cut_reported
                    {
                        self.cut_reported = true;
                        return Ok(Next::Cut { reason, dropped });
                    }
                    if let Some(exit) = finished {
                        return Ok(Next::End { exit, totals });
                    }
                }
            }
            if tokio::time::timeout(idle, self.rx.changed()).await.is_err() {
                return Ok(Next::Idle);
            }
        }
    }

    /// Reads the record at `pos` from the file; `None` when it lies wholly before the
    /// wanted offset.
    fn read_record(&mut self, file: &File) -> std::io::Result<Option<Next>> {
        // Reads hit the page cache the writer filled moments ago, so a synchronous pread
        // is cheaper here than a hop to the blocking pool.
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, self.pos)?;
        let channel = Channel::from_byte(header[0])
            .ok_or_else(|| std::io::Error::other(format!("corrupt spool record at {}", self.pos)))?;
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as u64;
        let data_pos = self.pos + HEADER as u64;
        self.take(channel, len, |skip| {
            let mut data = vec![0u8; (len - skip) as usize];
            file.read_exact_at(&mut data, data_pos + skip)?;
            Ok(Bytes::from(data))
        })
    }

    /// Advances past the record at `pos` (of `len` bytes on `channel`) and returns its
    /// part at or after the wanted offset, fetched by `data(skip)`.
    fn take(
        &mut self,
        channel: Channel,
        len: u64,
        data: impl FnOnce(u64) -> std::io::Result<Bytes>,
    ) -> std::io::Result<Option<Next>> {
        let ch = channel as usize;
        let start = self.next[ch];
        self.pos += HEADER as u64 + len;
        self.next[ch] = start + len;
        if start + len <= self.want[ch] {
            return Ok(None);
        }
        let skip = self.want[ch].saturating_sub(start);
        self.want[ch] = start + len;
        Ok(Some(Next::Chunk { channel, offset: start + skip, data: data(skip)? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Termination;

    fn exit() -> ExitInfo {
        ExitInfo {
            termination: Termination::Exited(0),
            finished_at_ms: 0,
            oom_killed: false,
            output_limit_reached: false,
        }
    }

    async fn drain(mut c: Cursor) -> (Vec<u8>, Vec<u8>, Vec<String>) {
        let (mut out, mut err, mut notes) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            match c.next(Duration::from_millis(50)).await.expect("read") {
                Next::Chunk { channel: Channel::Stdout, offset, data } => {
                    assert_eq!(offset, out.len() as u64);
                    out.extend_from_slice(&data)
                }
                Next::Chunk { channel: Channel::Stderr, offset, data } => {
                    assert_eq!(offset, err.len() as u64);
                    err.extend_from_slice(&data)
                }
                Next::Cut { reason, dropped } => notes.push(format!("{reason}; dropped {dropped}")),
                Next::Idle => notes.push("idle".into()),
                Next::End { .. } => return (out, err, notes),
            }
        }
    }

    #[tokio::test]
    async fn replays_from_any_offset_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = OutputLog::new(dir.path().join("c.log"), u64::MAX);
        let mut want_out = Vec::new();
        let mut want_err = Vec::new();
        // Enough records to create several checkpoints.
        for i in 0..3000u32 {
            let chunk = format!("line {i} {}\n", "x".repeat((i % 1000) as usize));
            if i % 3 == 0 {
                log.append(Channel::Stderr, Bytes::from(chunk.clone()));
                want_err.extend_from_slice(chunk.as_bytes());
            } else {
                log.append(Channel::Stdout, Bytes::from(chunk.clone()));
                want_out.extend_from_slice(chunk.as_bytes());
            }
        }
        log.finish(exit());
        assert!(log.lock().checkpoints.len() > 1);
        for (o, e) in
            [(0, 0), (1, 0), (0, 7), (want_out.len() / 2, want_err.len() / 3), (want_out.len(), want_err.len())]
        {
            let (out, err, _) = drain_from(&log, o as u64, e as u64).await;
            assert_eq!(out, want_out[o..], "stdout from {o}");
            assert_eq!(err, want_err[e..], "stderr from {e}");
        }
    }

    async fn drain_from(log: &Arc<OutputLog>, o: u64, e: u64) -> (Vec<u8>, Vec<u8>, Vec<String>) {
        let mut c = log.cursor(o, e);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match c.next(Duration::from_millis(50)).await.expect("read") {
                Next::Chunk { channel: Channel::Stdout, offset, data } => {
                    assert_eq!(offset, o + out.len() as u64);
                    out.extend_from_slice(&data)
                }
                Next::Chunk { channel: Channel::Stderr, offset, data } => {
                    assert_eq!(offset, e + err.len() as u64);
                    err.extend_from_slice(&data)
                }
                Next::End { .. } => return (out, err, vec![]),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn cap_cuts_and_counts_dropped_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = OutputLog::new(dir.path().join("c.log"), 10);
        log.append(Channel::Stdout, Bytes::from_static(b"12345678"));
        log.append(Channel::Stderr, Bytes::from_static(b"abcdef"));
        log.append(Channel::Stdout, Bytes::from_static(b"zzz"));
        log.finish(exit());
        let (out, err, notes) = drain(log.cursor(0, 0)).await;
        assert_eq!(out, b"12345678");
        assert_eq!(err, b"ab");
        assert_eq!(notes, vec!["output reached the agent's cap of 10 bytes; dropped 7".to_string()]);
    }

    #[tokio::test]
    async fn reader_waits_for_the_writer_and_reports_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = OutputLog::new(dir.path().join("c.log"), u64::MAX);
        let mut c = log.cursor(0, 0);
        assert!(matches!(c.next(Duration::from_millis(20)).await.expect("read"), Next::Idle));
        let writer = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            writer.append(Channel::Stdout, Bytes::from_static(b"late"));
            writer.finish(exit());
        });
        match c.next(Duration::from_secs(5)).await.expect("read") {
            Next::Chunk { data, .. } => assert_eq!(&data[..], b"late"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(c.next(Duration::from_secs(5)).await.expect("read"), Next::End { .. }));
    }

    #[test]
    fn spool_file_is_removed_with_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let log = OutputLog::new(path.clone(), u64::MAX);
        log.append(Channel::Stdout, Bytes::from_static(b"x"));
        assert!(path.exists());
        drop(log);
        assert!(!path.exists());
    }
}
