"""Files the operator names as input (--program, its c_file, --web-config).

Opened without blocking and checked to be regular files: a FIFO or a device
would hang the exporter at start or feed it endless bytes."""
from __future__ import annotations

import os
import re
import stat

MAX_INPUT_BYTES = 4 << 20  # far above any real program or config
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InputFileError(Exception):
    """Why the file cannot be read, in a few words (the caller names the file)."""


def read_regular(path: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO without a writer must not wait for one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputFileError(exc.strerror or str(exc)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputFileError("is a directory" if stat.S_ISDIR(mode) else "not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(f"larger than {limit >> 20} MiB")
    return data


def utf8(data: bytes) -> str:
    """The text, or InputFileError naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputFileError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})") from None


def one_line(text: str) -> str:
    """Control characters (from names in a file) shown escaped: one line stays one line."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
