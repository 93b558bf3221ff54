//! A command's stdout and stderr pipes, read in the order the program wrote them.
//!
//! Two pipes keep no order between them: once both hold data, nothing says which bytes
//! came first. So the agent never lets that happen while both streams are in use:
//!
//! - **In step** (how every command starts): each pipe holds one write at most. The
//!   pipes are in packet mode (`O_DIRECT`, pipe(7)), so writes are never merged, and
//!   one page long, so a second write to the same pipe waits until the agent read the
//!   first. Both read ends sit in one epoll set, edge-triggered; epoll lists ready
//!   files in the order they became ready, and the agent reads one write per readiness
//!   in that order. A write to one pipe therefore always lies behind every earlier write
//!   to the other, and the spool gets them in the program's order.
//! - **Alone**: in step, a program that floods one stream would wait for the agent at
//!   every page. After [`ALONE_AFTER`] writes in a row to one stream (the other one
//!   silent), that pipe grows to [`PIPE_SIZE`] and is read until empty at each
//!   readiness, as fast as before. When the other stream writes again, the grown pipe
//!   goes back in step at once if it holds a page at most, else as soon as it is drained
//!   (a pipe cannot shrink below what it holds); and so does a grown pipe that was found
//!   empty and then stayed silent for [`ALONE_IDLE`] (long enough that a writer the
//!   scheduler set aside for a moment does not lose its grown pipe).
//!
//! **The guarantee**: the spool holds a command's writes in the order the program made
//! them (for one thread, program order; for several, the order the kernel took them),
//! except around a switch back from alone: when the quiet stream writes while the loud
//! one is still writing (or paused for less than [`ALONE_IDLE`]), those first writes can
//! be placed up to what the loud pipe holds (at most [`PIPE_SIZE`] bytes) away from where
//! they were written, until the loud pipe is drained and back in step. A write larger
//! than a page is several packets; another thread's write can fall between them, as the
//! kernel interleaved them. Output written through a reopened pipe (`/dev/stdout`, a
//! new open file, not packet mode) may merge within one page.

use std::collections::VecDeque;
use std::io;
#[cfg(test)]
use std::os::fd::BorrowedFd;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::output_log::Channel;

/// Pipe reads land in arenas of up to this size, split off as chunks without copying.
const ARENA_MAX: usize = 1 << 20;
const ARENA_MIN: usize = 16 * 1024;
/// A stream that writes alone gets a pipe this large, so a fast writer fills fewer,
/// larger chunks.
pub(crate) const PIPE_SIZE: i32 = 1 << 20;
/// One page: one write in flight per pipe.
const IN_STEP_SIZE: i32 = 4096;

/// The largest packet a read can meet: packet mode splits writes into packets of at
/// most a page. A read into less room than the next packet keeps what fits and the
/// kernel discards the rest (pipe(7)), so every read has at least this much room.
fn packet_max() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf reads a constant of the system.
    *PAGE.get_or_init(|| usize::try_from(unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) }).unwrap_or(0).max(4096))
}
/// Writes in a row to one stream, the other silent, after which its pipe grows.
pub(crate) const ALONE_AFTER: u32 = 16;
/// A grown pipe found empty and then silent this long goes back in step.
const ALONE_IDLE: Duration = Duration::from_millis(20);

/// A close-on-exec output pipe in packet mode whose pipe holds one page (in step);
/// `(read end, write end)`. `above_stdio` moves an end off fds 0 to 2.
pub(crate) fn output_pipe(above_stdio: impl Fn(OwnedFd) -> io::Result<OwnedFd>) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_DIRECT)?;
    // Without this the pipes still work, only their order is looser: best effort.
    let _ = fcntl(&r, FcntlArg::F_SETPIPE_SZ(IN_STEP_SIZE));
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// Where one pipe's reads land. Each chunk is split off the arena as `Bytes`, so the
/// spool, the live window and every reader share it without copying. Arenas start
/// small (a quiet command holds little memory) and grow while reads keep filling them.
struct Arena {
    buf: BytesMut,
    next: usize,
}

impl Arena {
    fn new() -> Arena {
        Arena { buf: BytesMut::new(), next: ARENA_MIN }
    }

    fn room(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < ARENA_MIN.max(packet_max()) {
            self.buf = BytesMut::with_capacity(self.next.max(packet_max()));
        }
        &mut self.buf
    }

    fn take(&mut self) -> Bytes {
        let chunk = self.buf.split().freeze();
        if self.buf.capacity() < ARENA_MIN {
            // The reads filled the arena: the command is loud, give it a bigger one.
            self.next = (self.next * 4).min(ARENA_MAX);
        }
        chunk
    }
}

/// One read into the arena's free room: `Ok(0)` at end of file, `WouldBlock` when empty.
fn read_into(fd: RawFd, buf: &mut BytesMut) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `buf`; read(2)
    // writes at most that many, and only those it reports are marked initialised.
    let n = unsafe { nix::libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: read(2) initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

struct Pipe {
    fd: OwnedFd,
    arena: Arena,
    /// Grown and read until empty (see the module's "alone").
    alone: bool,
    /// The other stream wrote while this one was alone: back in step once drained.
    rejoin: bool,
    /// End of file seen while chunk data was still to be returned.
    eof: bool,
}

/// What the pipes gave next.
pub(crate) enum Read {
    Data(Channel, Bytes),
    /// The pipe reached end of file (or failed): nothing more comes from it.
    Closed,
}

/// The epoll set, as tokio sees it: readable when a pipe is ready.
struct Set(Epoll);

impl AsRawFd for Set {
    fn as_raw_fd(&self) -> RawFd {
        self.0.0.as_raw_fd()
    }
}

/// Both output pipes of a command, read in write order (module docs).
pub(crate) struct OutputPipes {
    set: AsyncFd<Set>,
    pipes: [Option<Pipe>; 2],
    /// Ready pipes, in the order epoll listed them, with whether the writer hung up.
    ready: VecDeque<(Channel, bool)>,
    /// The stream of the last write read, and how many in a row.
    last: Option<(Channel, u32)>,
    /// When grown pipes go back in step unless written meanwhile (one was drained empty).
    idle_at: Option<Instant>,
}

const CHANNELS: [Channel; 2] = [Channel::Stdout, Channel::Stderr];

impl OutputPipes {
    /// Takes the read ends (either may be absent).
    pub(crate) fn new(stdout: Option<OwnedFd>, stderr: Option<OwnedFd>) -> io::Result<OutputPipes> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let mut pipes = [None, None];
        for (ch, fd) in CHANNELS.into_iter().zip([stdout, stderr]) {
            let Some(fd) = fd else { continue };
            fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET | EpollFlags::EPOLLRDHUP;
            epoll.add(fd.as_fd(), EpollEvent::new(flags, ch as u64))?;
            pipes[ch as usize] = Some(Pipe { fd, arena: Arena::new(), alone: false, rejoin: false, eof: false });
        }
        // SAFETY: the epoll set moves into the AsyncFd, which closes it only when dropped.
        let set =
            unsafe { AsyncFd::register_with_interest(Set(epoll), Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(OutputPipes { set, pipes, ready: VecDeque::new(), last: None, idle_at: None })
    }

    /// Whether a pipe is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.pipes.iter().any(Option::is_some)
    }

    /// The next write (or, for a pipe read alone, everything it held), or a pipe's end.
    /// Cancel-safe: nothing is read across an await.
    pub(crate) async fn next(&mut self) -> Read {
        loop {
            while let Some((ch, hung_up)) = self.ready.pop_front() {
                if let Some(read) = self.read(ch, hung_up) {
                    return read;
                }
            }
            if !self.is_open() {
                return std::future::pending().await;
            }
            let readable = match self.idle_at {
                Some(at) => tokio::select! {
                    r = self.set.readable() => Some(r),
                    _ = tokio::time::sleep_until(at) => None,
                },
                None => Some(self.set.readable().await),
            };
            let Some(readable) = readable else {
                self.back_in_step();
                continue;
            };
            let mut guard = match readable {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "polling the output pipes failed");
                    return self.close_any();
                }
            };
            let mut events = [EpollEvent::empty(); 4];
            let got = guard.try_io(|set| match set.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
                Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                Ok(n) => Ok(n),
                Err(e) => Err(e.into()),
            });
            match got {
                Ok(Ok(n)) => {
                    for ev in &events[..n] {
                        let ch = if ev.data() == Channel::Stderr as u64 { Channel::Stderr } else { Channel::Stdout };
                        let hup = ev.events().intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
                        self.ready.push_back((ch, hup));
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the output pipes' readiness failed");
                    return self.close_any();
                }
                // Nothing ready after all: wait again.
                Err(_would_block) => {}
            }
        }
    }

    /// Every grown pipe that holds a page at most goes back in step: its stream went
    /// quiet, so the next writes to either stream are taken in order again.
    fn back_in_step(&mut self) {
        self.idle_at = None;
        for p in self.pipes.iter_mut().flatten() {
            if p.alone && fcntl(&p.fd, FcntlArg::F_SETPIPE_SZ(IN_STEP_SIZE)).is_ok() {
                p.alone = false;
                p.rejoin = false;
            }
        }
        self.last = None;
    }

    fn close_any(&mut self) -> Read {
        let ch = if self.pipes[0].is_some() { Channel::Stdout } else { Channel::Stderr };
        self.close(ch)
    }

    fn close(&mut self, ch: Channel) -> Read {
        if let Some(p) = self.pipes[ch as usize].take() {
            let _ = self.set.get_ref().0.delete(p.fd.as_fd());
        }
        self.ready.retain(|(c, _)| *c != ch);
        Read::Closed
    }

    /// Reads pipe `ch` once it was listed ready: one write in step, all it holds when
    /// it is alone or its writer hung up. `None` when there was nothing after all.
    fn read(&mut self, ch: Channel, hung_up: bool) -> Option<Read> {
        let pipe = self.pipes[ch as usize].as_mut()?;
        if pipe.eof {
            return Some(self.close(ch));
        }
        let drain = pipe.alone || hung_up;
        let fd = pipe.fd.as_raw_fd();
        let buf = pipe.arena.room();
        let mut eof = false;
        let mut failed = None;
        let mut emptied = false;
        loop {
            match read_into(fd, buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                // Another read only while a whole packet fits: a packet read into less
                // room loses its excess (pipe(7)), as output once did here.
                Ok(_) if drain && buf.capacity() - buf.len() >= packet_max() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    emptied = true;
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            tracing::warn!(channel = ?ch, error = %e, "reading an output pipe failed; it is closed");
            eof = true;
        }
        let data = (!pipe.arena.buf.is_empty()).then(|| pipe.arena.take());
        if pipe.alone {
            // Written again: it stays grown while it keeps writing.
            self.idle_at = emptied.then(|| Instant::now() + ALONE_IDLE);
        }
        if drain && !emptied && !eof {
            // The arena filled first: epoll says nothing more about what is left (edge
            // triggered), so this pipe is read again after the others listed.
            self.ready.push_back((ch, hung_up));
        }
        if pipe.alone && pipe.rejoin && !eof {
            // Drained: back in step, unless a write slipped in (then at the next readiness).
            if fcntl(&pipe.fd, FcntlArg::F_SETPIPE_SZ(IN_STEP_SIZE)).is_ok() {
                pipe.alone = false;
                pipe.rejoin = false;
            }
        }
        match (data, eof) {
            (Some(data), eof) => {
                if eof {
                    // Returned at the next call, after this data.
                    pipe.eof = true;
                    self.ready.push_front((ch, true));
                }
                self.count(ch);
                Some(Read::Data(ch, data))
            }
            (None, true) => Some(self.close(ch)),
            (None, false) => None,
        }
    }

    /// Counts a write read from `ch`: a stream alone long enough grows its pipe; one that
    /// writes again sends the other back in step.
    fn count(&mut self, ch: Channel) {
        let run = match self.last {
            Some((c, n)) if c == ch => n.saturating_add(1),
            _ => 1,
        };
        self.last = Some((ch, run));
        let other = match ch {
            Channel::Stdout => Channel::Stderr,
            Channel::Stderr => Channel::Stdout,
        };
        if run == 1
            && let Some(o) = self.pipes[other as usize].as_mut()
            && o.alone
        {
            // Back in step now if it holds a page at most; else once drained.
            if fcntl(&o.fd, FcntlArg::F_SETPIPE_SZ(IN_STEP_SIZE)).is_ok() {
                o.alone = false;
            } else {
                o.rejoin = true;
            }
        }
        if let Some(p) = self.pipes[ch as usize].as_mut()
            && !p.alone
            && run >= ALONE_AFTER
        {
            // Best effort, as before: the kernel caps it at /proc/sys/fs/pipe-max-size
            // for unprivileged users; a pipe that stays small is read until empty anyway.
            let _ = fcntl(&p.fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
            p.alone = true;
            p.rejoin = false;
        }
    }
}

/// The read end's pipe size, for tests.
#[cfg(test)]
fn pipe_size(fd: BorrowedFd<'_>) -> i32 {
    fcntl(fd, FcntlArg::F_GETPIPE_SZ).unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn raw_above(fd: OwnedFd) -> io::Result<OwnedFd> {
        Ok(fd)
    }

    async fn read_all(pipes: &mut OutputPipes) -> Vec<(Channel, Vec<u8>)> {
        let mut got = Vec::new();
        while pipes.is_open() {
            match pipes.next().await {
                Read::Data(ch, d) => got.push((ch, d.to_vec())),
                Read::Closed => {}
            }
        }
        got
    }

    #[tokio::test]
    async fn writes_to_two_pipes_come_out_in_the_order_made() {
        let (out_r, out_w) = output_pipe(raw_above).expect("pipe");
        let (err_r, err_w) = output_pipe(raw_above).expect("pipe");
        assert_eq!(pipe_size(out_r.as_fd()), IN_STEP_SIZE);
        let mut pipes = OutputPipes::new(Some(out_r), Some(err_r)).expect("pipes");
        // A writer thread that alternates as fast as it can; each write blocks until the
        // agent took the previous one of its pipe.
        let writer = std::thread::spawn(move || {
            let mut out = std::fs::File::from(out_w);
            let mut err = std::fs::File::from(err_w);
            for i in 0..1000 {
                out.write_all(format!("out {i}\n").as_bytes()).expect("write");
                err.write_all(format!("err {i}\n").as_bytes()).expect("write");
            }
        });
        let got = read_all(&mut pipes).await;
        writer.join().expect("writer");
        let mut text = String::new();
        for (_, d) in &got {
            text.push_str(std::str::from_utf8(d).expect("utf-8"));
        }
        let want: String = (0..1000).map(|i| format!("out {i}\nerr {i}\n")).collect();
        assert_eq!(text, want);
        assert!(got.iter().all(|(ch, d)| (*ch == Channel::Stdout) == d.starts_with(b"out")));
    }

    /// Packets read into an arena with less room than a packet lost the excess: a stream
    /// alone, drained into a partly filled arena, lost the tail of a page-sized write
    /// (`echo` lines, then `seq 1 100000`, lost 304 bytes at 65,543).
    #[tokio::test]
    async fn a_drained_pipe_loses_no_byte_of_page_sized_writes() {
        let (out_r, out_w) = output_pipe(raw_above).expect("pipe");
        let mut pipes = OutputPipes::new(Some(out_r), None).expect("pipes");
        let writer = std::thread::spawn(move || {
            let mut out = std::fs::File::from(out_w);
            // Lines apart in time, as `echo; sleep` makes them: the pipe grows and goes
            // back in step, and the arena's packets no longer start at page boundaries.
            for i in 1..=40 {
                out.write_all(format!("line-{i}\n").as_bytes()).expect("write");
                std::thread::sleep(Duration::from_millis(25));
            }
            // What stdio sends to a pipe: page-sized writes.
            let text: String = (0..1_000_000).map(|i| format!("{i}\n")).collect();
            for page in text.as_bytes().chunks(4096) {
                out.write_all(page).expect("write");
            }
            text
        });
        let mut got = Vec::new();
        while pipes.is_open() {
            match pipes.next().await {
                Read::Data(_, d) => got.extend_from_slice(&d),
                Read::Closed => {}
            }
            // A reader that lags, so the grown pipe holds many packets when drained.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let text = writer.join().expect("writer");
        let want: String = (1..=40).map(|i| format!("line-{i}\n")).collect::<String>() + &text;
        assert_eq!(got.len(), want.len(), "bytes read");
        assert!(got == want.as_bytes(), "the bytes differ from what was written");
    }

    #[tokio::test]
    async fn a_stream_alone_grows_its_pipe_and_rejoins_when_the_other_writes() {
        let (out_r, out_w) = output_pipe(raw_above).expect("pipe");
        let (err_r, err_w) = output_pipe(raw_above).expect("pipe");
        let mut pipes = OutputPipes::new(Some(out_r), Some(err_r)).expect("pipes");
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let mut out = std::fs::File::from(out_w);
            let mut err = std::fs::File::from(err_w);
            for i in 0..ALONE_AFTER * 4 {
                out.write_all(format!("out {i}\n").as_bytes()).expect("write");
            }
            go_rx.recv().expect("go");
            err.write_all(b"err\n").expect("write");
            go_rx.recv().expect("go");
            for i in 0..10 {
                out.write_all(format!("more {i}\n").as_bytes()).expect("write");
                err.write_all(format!("err {i}\n").as_bytes()).expect("write");
            }
        });
        let mut out_lines = 0;
        while out_lines < ALONE_AFTER * 4 {
            match pipes.next().await {
                Read::Data(Channel::Stdout, d) => out_lines += d.iter().filter(|b| **b == b'\n').count() as u32,
                _ => panic!("only stdout writes so far"),
            }
        }
        assert!(pipes.pipes[0].as_ref().expect("open").alone, "stdout wrote alone");
        go_tx.send(()).expect("go");
        assert!(matches!(pipes.next().await, Read::Data(Channel::Stderr, d) if &d[..] == b"err\n"));
        go_tx.send(()).expect("go");
        let rest = read_all(&mut pipes).await;
        writer.join().expect("writer");
        let text: String = rest.iter().map(|(_, d)| String::from_utf8_lossy(d).into_owned()).collect();
        let want: String = (0..10).map(|i| format!("more {i}\nerr {i}\n")).collect();
        assert_eq!(text, want, "back in step once stderr wrote again");
    }
}
