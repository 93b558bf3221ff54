"""Runs a program on a real pseudo-terminal, as a terminal emulator would, for tests.

Usage: python3 pty-drive.py COLS ROWS PROGRAM ARGS...

The program gets a new session whose controlling terminal is the pty (stdin, stdout and
stderr), of size COLS x ROWS. This process's stdout carries what the program writes to
the terminal, byte for byte. Its stdin takes commands, one JSON object a line:
  {"type": "TEXT"}        writes TEXT (UTF-8) to the terminal, as keys typed
  {"resize": [COLS, ROWS]} resizes the terminal (the kernel sends SIGWINCH to the
                           program's foreground process group)
  {"mode": true}           reports the terminal's current settings
Its stderr carries events, one JSON object a line:
  {"pid": N}               the program's process id, once it is started
  {"mode": {"echo": B, "icanon": B, "isig": B, "opost": B}}
  {"exit": CODE, "signal": N or null, "restored": B}  once the program exited;
    `restored`: the terminal's settings are exactly those it had before the program ran.
"""

import fcntl
import json
import os
import select
import struct
import sys
import termios


def main():
    cols, rows = int(sys.argv[1]), int(sys.argv[2])
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    before = termios.tcgetattr(slave)
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
        os.execvp(sys.argv[3], sys.argv[3:])
    event({"pid": pid})
    out = sys.stdout.buffer
    commands = b""
    stdin_open = True
    status = None
    while status is None:
        fds = [master] + ([0] if stdin_open else [])
        ready, _, _ = select.select(fds, [], [], 0.05)
        if master in ready:
            copy(master, out)
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                stdin_open = False
            commands += chunk
            while b"\n" in commands:
                line, commands = commands.split(b"\n", 1)
                command(json.loads(line), master, slave)
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    # What it wrote before it exited is still in the terminal's buffer.
    os.set_blocking(master, False)
    while copy(master, out):
        pass
    after = termios.tcgetattr(slave)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    event({"exit": code, "signal": signal, "restored": before == after})


def copy(master, out):
    try:
        data = os.read(master, 65536)
    except (BlockingIOError, OSError):
        return False
    out.write(data)
    out.flush()
    return bool(data)


def command(c, master, slave):
    if "type" in c:
        os.write(master, c["type"].encode())
    elif "resize" in c:
        cols, rows = c["resize"]
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    elif "mode" in c:
        iflag, oflag, cflag, lflag = termios.tcgetattr(slave)[:4]
        event({
            "mode": {
                "echo": bool(lflag & termios.ECHO),
                "icanon": bool(lflag & termios.ICANON),
                "isig": bool(lflag & termios.ISIG),
                "opost": bool(oflag & termios.OPOST),
            }
        })


def event(e):
    sys.stderr.write(json.dumps(e) + "\n")
    sys.stderr.flush()


main()
