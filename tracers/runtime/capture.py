"""Capture what BCC and libbpf print on fd 2, to report it in a few lines."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tempfile

ERROR_LINE = re.compile(r"error:|invalid|unknown|R\d+ |denied|not permitted|failed", re.I)


class CapturedLog:
    def __init__(self, tmp):
        self._tmp = tmp
        self._final: str | None = None

    @property
    def text(self) -> str:
        """What was written so far (readable inside the `with` block too)."""
        if self._final is not None:
            return self._final
        self._tmp.flush()
        self._tmp.seek(0)
        return self._tmp.read().decode("utf-8", "replace")

    def first_error(self, limit: int = 3) -> str:
        return first_error_of(self.text, limit)


def first_error_of(text: str, limit: int = 3) -> str:
    """The first relevant lines: clang errors, else the verifier's last words."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if "error:" in l]
    if errors:
        return " | ".join(errors[:limit])
    hits = [l for l in lines if ERROR_LINE.search(l)]
    return " | ".join((hits or lines)[-limit:])


@contextlib.contextmanager
def quiet_stderr(if_exit: str | None = None):
    """Redirect fd 2 (C code writes there, not to sys.stderr) into a log.

    if_exit: LLVM ends the whole process with exit(1) on some errors (a BPF
    stack over 512 bytes), its only words in this log. Then a watchdog
    prints if_exit and those words as one line on the real stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        log = CapturedLog(tmp)
        os.dup2(tmp.fileno(), 2)
        watchdog = _watchdog(tmp.fileno(), saved, if_exit) if if_exit else None
        try:
            yield log
        finally:
            if watchdog:
                _dismiss(*watchdog)
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log._final = log.text


def _watchdog(log_fd: int, stderr_fd: int, prefix: str) -> tuple[int, int]:
    """A forked child that waits on a pipe: told "done", it leaves quietly;
    if the pipe closes first (we died inside) and the log has an error (not
    a SIGKILL, then), it reports the log."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # os calls only, then _exit: a fork of a threaded process
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C is for the parent
                signal.signal(sig, signal.SIG_IGN)
            os.close(w)
            if not os.read(r, 1):
                os.lseek(log_fd, 0, os.SEEK_SET)
                text = b"".join(iter(lambda: os.read(log_fd, 65536), b""))
                log = text.decode("utf-8", "backslashreplace")
                if "error" in log.lower():
                    os.write(stderr_fd, f"{prefix}{first_error_of(log)}\n".encode("utf-8", "backslashreplace"))
        finally:
            os._exit(0)
    os.close(r)
    return pid, w


def _dismiss(pid: int, w: int) -> None:
    try:
        os.write(w, b"1")
    except OSError:  # it is gone already
        pass
    os.close(w)
    os.waitpid(pid, 0)
