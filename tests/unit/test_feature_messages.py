"""How a refused feature probe reads: one line naming the step and why."""
import errno

import pytest

from tracers.runtime import features, multiattach


def refuse(exc):
    def fn(*args):
        raise exc
    return fn


@pytest.mark.parametrize("exc, detail", [
    (OSError(errno.EPERM, "Operation not permitted"), "loading a TRACING program: Operation not permitted"),
    (OSError(524, ""), "loading a TRACING program: not supported (ENOTSUPP)"),  # no strerror
    (multiattach.AttachFailed("no kprobe PMU in /sys/bus/event_source/devices"),
     "loading a TRACING program: no kprobe PMU in /sys/bus/event_source/devices"),
])
def test_a_refused_step_is_named_with_its_reason(exc, detail):
    with pytest.raises(OSError) as caught:
        features._step("loading a TRACING program", refuse(exc))
    assert features._first_line(caught.value) == detail


def test_an_os_error_keeps_its_file_but_not_its_errno_prefix():
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "/sys/kernel/btf/vmlinux")
    assert features._first_line(exc) == "No such file or directory: /sys/kernel/btf/vmlinux"
    assert features._first_line(RuntimeError("first\nsecond")) == "first"


def test_a_probe_closes_every_fd_it_opened(tmp_path):
    import os
    with features._Fds() as fds:
        opened = [fds.add(os.open(tmp_path, os.O_RDONLY)) for _ in range(3)]
    for fd in opened:
        with pytest.raises(OSError):
            os.fstat(fd)
