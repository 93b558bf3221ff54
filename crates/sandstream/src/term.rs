//! This process's terminal, as `shell` uses it: its size, and raw mode for as long as a
//! guard lives.

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::libc;
use nix::sys::termios::{self, SetArg, Termios};
use sandstream_proto::v1::PtySize;

/// The size a terminal is given when this process has none to measure.
const DEFAULT: PtySize = PtySize { cols: 80, rows: 24 };

/// The size of the terminal on stdin, else on stdout, else 80x24.
pub(crate) fn size() -> PtySize {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    [stdin.as_fd(), stdout.as_fd()].into_iter().find_map(window_size).unwrap_or(DEFAULT)
}

/// TIOCGWINSZ of `fd`, when it is a terminal with a size.
fn window_size(fd: BorrowedFd<'_>) -> Option<PtySize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize, which `ws` is.
    let ok = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then(|| PtySize { cols: ws.ws_col.into(), rows: ws.ws_row.into() })
}

/// Stdin's terminal in raw mode (as `cfmakeraw` makes it: no echo, no line editing, no
/// signals from keys, no output processing), so every key reaches the sandbox as its
/// bytes; its settings come back when this is dropped.
pub(crate) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin; `None` when stdin is not a terminal. Input already typed is kept.
    pub(crate) fn enter() -> anyhow::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // After the output already written has gone out, as a shell leaving raw mode does.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}
