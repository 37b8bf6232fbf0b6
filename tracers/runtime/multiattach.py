"""One loaded program attached to many targets, each with its own cookie.

funccount counts many functions with one program: a probe's index travels
as its BPF cookie (bpf_get_attach_cookie: kernel >= 5.15 for kprobes,
uprobes and tracepoints, 5.19 for fentry). kprobes and uprobes are created
through their perf PMUs and attached with BPF_LINK_CREATE: file descriptors
only, so nothing outlives the process (tracefs kprobe_events would).
fentry programs are bound to their target at load time, so the same
instructions are loaded once per target, under the name BCC derives the
target from (kfunc__<function>): no text reaches the C code.
"""
from __future__ import annotations

import ctypes
import os
import platform

from tracers.runtime import bpfsys
from tracers.runtime.bpfsys import BPF_PERF_EVENT, BPF_TRACE_FENTRY, BPF_TRACE_FEXIT
from tracers.runtime.capture import quiet_stderr
from tracers.runtime.kconst import PMU_DIR, TRACEFS

PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}  # syscall numbers (bpf()'s: bpfsys)
PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT = 1, 2
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408  # BCC's way for kprobes, tracepoints, perf events
PERF_UPROBE_REF_CTR_OFFSET_SHIFT = 32  # config bits 32-63 of the uprobe PMU
NO_REF_CTR = 0  # no USDT semaphore

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class AttachFailed(Exception):
    """This one target could not be attached; str() says why."""


def _perf_event_open(*args) -> int:
    number = PERF_EVENT_OPEN.get(platform.machine())
    if number is None:
        raise AttachFailed(f"no perf_event_open() number for {platform.machine()}")
    ret = _libc.syscall(number, *args)
    if ret < 0:
        raise AttachFailed(os.strerror(ctypes.get_errno()))
    return ret


def _pmu(name: str) -> tuple[int, int]:
    """(perf type, retprobe config bit) of the kprobe or uprobe PMU."""
    base = PMU_DIR / name
    try:
        kind = int((base / "type").read_text())
        bit = int((base / "format" / "retprobe").read_text().split(":")[1])
    except (OSError, ValueError, IndexError):
        raise AttachFailed(f"no {name} PMU in {PMU_DIR}") from None
    return kind, bit


def _perf_open(kind: int, config: int, config1: int = 0, config2: int = 0, pid: int = -1,
               period: int = 1) -> int:
    attr = (ctypes.c_uint64 * 16)()  # struct perf_event_attr, zeroed
    attr[0] = kind | (ctypes.sizeof(attr) << 32)  # type, size
    attr[1], attr[2] = config, period  # config, sample_period
    attr[6] = 1  # wakeup_events (low half)
    attr[7], attr[8] = config1, config2
    cpu = 0 if pid == -1 else -1
    return _perf_event_open(ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                            ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))


def _link(prog_fd: int, target_fd: int, attach_type: int, cookie: int) -> int:
    attr = (ctypes.c_uint32 * 32)()  # union bpf_attr, link_create
    attr[0], attr[1], attr[2] = prog_fd, target_fd, attach_type
    # perf_event.bpf_cookie is at byte 16; tracing.cookie at byte 24
    slot = 6 if attach_type in (BPF_TRACE_FENTRY, BPF_TRACE_FEXIT) else 4
    attr[slot], attr[slot + 1] = cookie & 0xffffffff, cookie >> 32
    try:
        return bpfsys.bpf(bpfsys.BPF_LINK_CREATE, bytes(attr))
    except OSError as exc:
        raise AttachFailed(exc.strerror or str(exc)) from None


def attach_perf_event(prog_fd: int, perf_fd: int, cookie: int = 0) -> int:
    """A BPF link (fd) from a program to a perf event (kprobe, uprobe, tracepoint)."""
    return _link(prog_fd, perf_fd, BPF_PERF_EVENT, cookie)


class MultiAttach:
    """Attachments of one session's programs; closes them with the session."""

    def __init__(self, session):
        self.session = session
        self.fds: list[int] = []
        self._loaded: dict[tuple[str, int], int] = {}
        session.on_close(self.close)

    def close(self) -> None:
        while self.fds:
            try:
                os.close(self.fds.pop())
            except OSError:
                pass

    def _prog_fd(self, fn: str, type_name: str) -> int:
        from bcc import BPF
        with quiet_stderr() as log:
            try:
                return self.session.bpf.load_func(fn, getattr(BPF, type_name)).fd
            except Exception as exc:
                raise AttachFailed(log.first_error() or str(exc)) from None

    def _attach_perf(self, prog_fd: int, perf_fd: int, cookie: int) -> None:
        self.fds.append(perf_fd)
        self.fds.append(attach_perf_event(prog_fd, perf_fd, cookie))
        import fcntl
        fcntl.ioctl(perf_fd, PERF_EVENT_IOC_ENABLE, 0)

    def kprobe(self, fn: str, function: str, cookie: int = 0, ret: bool = False) -> None:
        self._attach_perf(self._prog_fd(fn, "KPROBE"), kprobe_event(function, ret), cookie)

    def uprobe(self, fn: str, path: str, offset: int, cookie: int = 0, ret: bool = False,
               pid: int = -1) -> None:
        self._attach_perf(self._prog_fd(fn, "KPROBE"), uprobe_event(path, offset, ret, pid), cookie)

    def user(self, fn: str, target: str, ret: bool = False, pid: int = -1) -> None:
        """A "LIBRARY:FUNCTION" hook target (a path or a library name like "c")."""
        library, _, symbol = target.rpartition(":")
        path, offset = user_symbol(library, symbol, pid)
        self.uprobe(fn, path, offset, ret=ret, pid=pid)

    def tracepoint(self, fn: str, tp: str, cookie: int = 0) -> None:
        self._attach_perf(self._prog_fd(fn, "TRACEPOINT"), tracepoint_event(tp), cookie)

    def fentry(self, fn: str, function: str, cookie: int = 0, ret: bool = False) -> None:
        """fn's instructions loaded as a TRACING program bound to `function`."""
        from bcc import BPF, lib
        bpf = self.session.bpf
        prefix = b"kretfunc__" if ret else b"kfunc__"
        start = lib.bpf_function_start(bpf.module, fn.encode())
        if not start:
            raise AttachFailed(f"no program {fn}")
        with quiet_stderr() as log:
            fd = lib.bcc_func_load(bpf.module, BPF.TRACING, prefix + function.encode(), start,
                                   lib.bpf_function_size(bpf.module, fn.encode()),
                                   lib.bpf_module_license(bpf.module),
                                   lib.bpf_module_kern_version(bpf.module), 0, None, 0, None, -1)
        if fd < 0:
            raise AttachFailed(log.first_error() or f"load failed: {os.strerror(ctypes.get_errno())}")
        self.fds.append(fd)
        self.fds.append(_link(fd, 0, BPF_TRACE_FEXIT if ret else BPF_TRACE_FENTRY, cookie))


def for_session(session) -> MultiAttach:
    """The session's one MultiAttach (made on first use)."""
    multi = getattr(session, "_multiattach", None)
    if multi is None:
        multi = session._multiattach = MultiAttach(session)
    return multi


def kprobe_event(function: str, ret: bool = False) -> int:
    """A perf event of the kprobe PMU on a kernel function (fd only: nothing
    in kprobe_events to outlive us)."""
    kind, bit = _pmu("kprobe")
    name = ctypes.create_string_buffer(function.encode())
    return _perf_open(kind, (1 << bit) if ret else 0, ctypes.addressof(name), 0)


def tracepoint_event(tp: str) -> int:
    """A perf event of tracepoint "category:name"."""
    category, _, name = tp.partition(":")
    try:
        tp_id = int((TRACEFS / "events" / category / name / "id").read_text())
    except (OSError, ValueError):
        raise AttachFailed(f"tracepoint {tp} does not exist") from None
    return _perf_open(PERF_TYPE_TRACEPOINT, tp_id)


def cpu_clock_event(period_ns: int) -> int:
    """A software cpu-clock sampling event on CPU 0, every period_ns."""
    return _perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, period=period_ns)


def uprobe_event(path: str, offset: int, ret: bool = False, pid: int = -1) -> int:
    """The one way bpfwatch creates a uprobe: a perf event of the uprobe PMU
    with its ref_ctr_offset stated (0), never tracefs (uprobe_events entries
    outlive a SIGKILLed owner).

    The kernel keeps one uprobe per (file, offset) and refuses another
    registration with a different ref_ctr_offset ("ref_ctr_offset mismatch"
    in dmesg). Debian's python3-bpfcc calls libbcc's uprobe attach with one
    argument too few, so a stray value becomes the ref_ctr_offset: uprobes
    through BCC could not share a function with ours, nor always with each
    other, and BCC then fell back to tracefs."""
    kind, bit = _pmu("uprobe")
    config = (1 << bit if ret else 0) | NO_REF_CTR << PERF_UPROBE_REF_CTR_OFFSET_SHIFT
    raw = ctypes.create_string_buffer(path.encode())
    return _perf_open(kind, config, ctypes.addressof(raw), offset, pid)


def user_symbol(library: str, symbol: str, pid: int = -1) -> tuple[str, int]:
    """(path, file offset) of a function in a library or executable."""
    from bcc import BPF
    with quiet_stderr():
        try:
            path, offset = BPF._check_path_symbol(library, symbol, None, pid)
        except Exception:
            raise AttachFailed(f"no function {symbol} in {library}") from None
    return path.decode(errors="replace"), offset


def library_path(library: str) -> str | None:
    """A path as given, or a library name ("c", "libssl") found like ld.so does."""
    if "/" in library:
        return library if os.path.exists(library) else None
    from bcc import BPF
    found = BPF.find_library(library[3:] if library.startswith("lib") else library)
    return found.decode(errors="replace") if found else None


def user_function_addresses(path: str) -> dict[str, int]:
    """Function symbols of an ELF file and their addresses (aliases share one)."""
    from bcc import BPF
    with quiet_stderr():
        try:
            return {name.decode(errors="replace"): addr
                    for name, addr in BPF.get_user_functions_and_addresses(path, b".*")}
        except Exception as exc:
            raise AttachFailed(f"cannot read symbols of {path}: {exc}") from None


def user_functions(path: str) -> list[str]:
    """Names of the function symbols of an ELF file (no duplicates, sorted)."""
    from bcc import BPF
    names = set()
    with quiet_stderr():
        try:
            for name, _addr in BPF.get_user_functions_and_addresses(path, b".*"):
                names.add(name.decode(errors="replace"))
        except Exception as exc:
            raise AttachFailed(f"cannot read symbols of {path}: {exc}") from None
    return sorted(names)
