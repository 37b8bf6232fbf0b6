"""Capture what BCC and libbpf print on fd 2, to report it in a few lines."""
from __future__ import annotations

import contextlib
import os
import re
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
        """The first relevant lines: clang errors, else the verifier's last words."""
        lines = [l.strip() for l in self.text.splitlines() if l.strip()]
        errors = [l for l in lines if "error:" in l]
        if errors:
            return " | ".join(errors[:limit])
        hits = [l for l in lines if ERROR_LINE.search(l)]
        return " | ".join((hits or lines)[-limit:])


@contextlib.contextmanager
def quiet_stderr():
    """Redirect fd 2 (C code writes there, not to sys.stderr) into a log."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        log = CapturedLog(tmp)
        os.dup2(tmp.fileno(), 2)
        try:
            yield log
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log._final = log.text
