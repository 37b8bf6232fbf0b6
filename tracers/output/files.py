"""Files the user names for output (--svg, -w): opened before tracing, so a
bad path is one line before anything runs, and never through a symlink, so
another user cannot point root's output at a file of their choosing."""
from __future__ import annotations

import errno
import os
import stat

from tracers.spec import UsageError


def open_output(option: str, path: str, mode: str = "wb"):
    """The file, created or truncated; UsageError for anything but a regular
    file of ours (a directory, a device, a symlink, another user's file)."""
    if not path:
        raise UsageError(f"{option}: the file name is empty")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"{option} {path!r}: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise UsageError(f"{option} {path!r} is a symbolic link: not following it")
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{option} {path!r} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{option} {path!r} is not a regular file")
        if st.st_uid != os.geteuid():
            raise UsageError(f"{option} {path!r} belongs to uid {st.st_uid}: not overwriting it")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)  # O_NOFOLLOW: a symlink planted since lstat fails
    except OSError as exc:
        why = "is a symbolic link: not following it" if exc.errno == errno.ELOOP else exc.strerror
        raise UsageError(f"{option} {path!r}: {why}") from None
    return os.fdopen(fd, mode)
