//! Pseudo-terminals for commands that ask for one (`ExecuteRequest.pty`).
//!
//! The agent opens the pair, hands the terminal side to the command's shell as its
//! controlling terminal and stdin, stdout and stderr (`spawn.rs`), and keeps the other
//! side: reading it gives the command's output as one stream, writing it is the user's
//! typing, and resizing it makes the kernel send SIGWINCH to the terminal's foreground
//! process group. Closing it when the command ends hangs up whatever still runs on the
//! terminal (SIGHUP), as closing a terminal window does.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use nix::libc;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWrite, Interest};

use crate::error::{AgentError, Result};
use crate::output_log::Channel;
use crate::pipes::Read;

/// The largest side a terminal may have, in character cells.
const MAX_SIDE: u32 = 10_000;
/// Each read of the terminal's output takes up to this much.
const READ_CHUNK: usize = 64 * 1024;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size {
    pub(crate) cols: u16,
    pub(crate) rows: u16,
}

impl Size {
    /// Checks a request's size: each side between 1 and [`MAX_SIDE`].
    pub(crate) fn parse(size: sandstream_proto::v1::PtySize) -> Result<Size> {
        let side = |v: u32| u16::try_from(v).ok().filter(|&v| v >= 1 && u32::from(v) <= MAX_SIDE);
        match (side(size.cols), side(size.rows)) {
            (Some(cols), Some(rows)) => Ok(Size { cols, rows }),
            _ => Err(AgentError::InvalidArgument(format!(
                "pty size must be between 1 and {MAX_SIDE} columns and rows, got {}x{}",
                size.cols, size.rows
            ))),
        }
    }

    pub(crate) fn to_proto(self) -> sandstream_proto::v1::PtySize {
        sandstream_proto::v1::PtySize { cols: self.cols.into(), rows: self.rows.into() }
    }

    fn winsize(self) -> libc::winsize {
        libc::winsize { ws_row: self.rows, ws_col: self.cols, ws_xpixel: 0, ws_ypixel: 0 }
    }
}

/// The agent's side of a terminal: read for output, written for input, shared by the
/// command's output reader, its input pump and resizes.
pub(crate) type Master = Arc<AsyncFd<OwnedFd>>;

/// Opens a new terminal pair of `size`: `(the agent's side, the command's side)`, both
/// close-on-exec and neither the agent's controlling terminal. The command's side
/// belongs to `owner` (its uid; `None`: left to the agent's user) with mode 0620, as a
/// login gives a user their terminal, so programs that check (`mesg`, `write`, `tty`)
/// see it as theirs.
pub(crate) fn open(size: Size, owner: Option<libc::uid_t>) -> io::Result<(Master, OwnedFd)> {
    // SAFETY: plain system calls; every fd returned is owned at once.
    let master = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    // Unlocking is all devpts needs (grantpt does nothing there).
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let slave = open_peer(&master)?;
    let slave = above_stdio(slave)?;
    if let Some(uid) = owner {
        // SAFETY: fchown/fchmod on an fd we own; -1 keeps the group (devpts' gid= option).
        unsafe {
            if libc::fchown(slave.as_raw_fd(), uid, libc::gid_t::MAX) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // SAFETY: as above.
    if unsafe { libc::fchmod(slave.as_raw_fd(), 0o620) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_utf8(&slave);
    set_size(master.as_raw_fd(), size)?;
    // SAFETY: a valid fd we own.
    if unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the OwnedFd moves into the AsyncFd, which closes it only when dropped.
    let master = unsafe { AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE) }
        .map_err(io::Error::from)?;
    Ok((Arc::new(master), slave))
}

/// The terminal side of `master`'s pair: by TIOCGPTPEER (Linux 4.13), which opens it
/// without looking up a path in /dev/pts, else by its name.
fn open_peer(master: &OwnedFd) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd >= 0 {
        // SAFETY: a new fd, owned here.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the buffer's length is passed.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path.
    let fd = unsafe { libc::open(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Moves `fd` off 0, 1 and 2, which the child's dup2 onto its stdio would clobber.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: a valid fd; the copy is owned at once.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Marks the terminal's input as UTF-8, so erasing a character erases all its bytes
/// (what a login's `stty` or an SSH client's terminal modes set). Best effort.
fn set_utf8(slave: &OwnedFd) {
    // SAFETY: tcgetattr fills the zeroed struct; tcsetattr reads it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
            t.c_iflag |= libc::IUTF8;
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
}

/// Sets the terminal's size; the kernel signals SIGWINCH to its foreground group when
/// the size changed.
pub(crate) fn set_size(master: RawFd, size: Size) -> io::Result<()> {
    let ws = size.winsize();
    // SAFETY: TIOCSWINSZ reads a winsize.
    if unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The terminal's output, read as it comes: one stream, reported as stdout.
pub(crate) struct PtyOutput {
    master: Option<Master>,
    buf: BytesMut,
}

impl PtyOutput {
    pub(crate) fn new(master: Master) -> PtyOutput {
        PtyOutput { master: Some(master), buf: BytesMut::new() }
    }

    /// Whether the terminal may still give output.
    pub(crate) fn is_open(&self) -> bool {
        self.master.is_some()
    }

    /// The next bytes, or the end: every process let go of the terminal (EIO) or reading
    /// failed. Cancel-safe: nothing is read across an await.
    pub(crate) async fn next(&mut self) -> Read {
        loop {
            let Some(master) = &self.master else { return std::future::pending().await };
            let mut guard = match master.readable().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "polling the terminal failed");
                    self.master = None;
                    return Read::Closed;
                }
            };
            if self.buf.capacity() < READ_CHUNK {
                self.buf.reserve(READ_CHUNK);
            }
            let buf = &mut self.buf;
            let got = guard.try_io(|fd| {
                let spare = buf.spare_capacity_mut();
                // SAFETY: reads into the buffer's spare capacity, at most its length.
                let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            });
            match got {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    // SAFETY: the kernel wrote n bytes there.
                    unsafe { self.buf.set_len(n) };
                    return Read::Data(Channel::Stdout, self.buf.split().freeze());
                }
                // EIO: the last process holding the terminal closed it.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                    self.master = None;
                    return Read::Closed;
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the terminal failed");
                    self.master = None;
                    return Read::Closed;
                }
                Err(_would_block) => {}
            }
        }
    }
}

/// The terminal's input side, for the command's stdin pump.
pub(crate) struct PtyInput(pub(crate) Master);

impl AsyncWrite for PtyInput {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            let wrote = guard.try_io(|fd| {
                // SAFETY: writes from a valid slice, at most its length.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            });
            match wrote {
                // EIO: nobody holds the terminal any more; to the writer that is a broken pipe.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_outside_one_to_ten_thousand_are_refused_with_both_sides_named() {
        let p = |cols, rows| Size::parse(sandstream_proto::v1::PtySize { cols, rows });
        assert_eq!(p(80, 24).expect("ok"), Size { cols: 80, rows: 24 });
        assert_eq!(p(10_000, 1).expect("ok"), Size { cols: 10_000, rows: 1 });
        for (c, r) in [(0, 24), (80, 0), (10_001, 24), (80, 70_000), (u32::MAX, u32::MAX)] {
            let e = p(c, r).expect_err("refused").to_string();
            assert!(e.contains(&format!("got {c}x{r}")), "{e}");
        }
    }

    #[tokio::test]
    async fn what_the_terminal_side_writes_is_read_and_the_end_is_eio() {
        let (master, slave) = open(Size { cols: 80, rows: 24 }, None).expect("open");
        let mut out = PtyOutput::new(master.clone());
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (80, 24));
        set_size(master.as_raw_fd(), Size { cols: 132, rows: 50 }).expect("resize");
        assert_eq!(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (132, 50));
        let n = unsafe { libc::write(slave.as_raw_fd(), b"hi\n".as_ptr().cast(), 3) };
        assert_eq!(n, 3);
        drop(slave);
        let mut got = Vec::new();
        while let Read::Data(_, d) = out.next().await {
            got.extend_from_slice(&d);
        }
        // The terminal's output processing turns "\n" into "\r\n".
        assert_eq!(got, b"hi\r\n");
        assert!(!out.is_open());
    }
}
