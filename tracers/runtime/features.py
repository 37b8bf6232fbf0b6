"""What this kernel can do, decided by trying (never by version numbers)."""
from __future__ import annotations

import errno
import fcntl
import os
import platform
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from tracers.runtime import bpfsys, machine, multiattach
from tracers.runtime.kconst import PMU_DIR, SECURITYFS, SO_ATTACH_BPF, TRACEFS

# Every probe loads a two-instruction program through bpf() and attaches it
# the way the tracers do: no compiler, no headers, a few milliseconds.
ENOTSUPP = 524  # kernel-internal, no strerror: "operation not supported"
XDP_PASS = 2
FENTRY_TARGET, LSM_HOOK = "do_sys_openat2", "socket_connect"
ORDER = ("btf", "headers", "kprobe", "kretprobe", "fentry", "lsm", "tracepoint",
         "raw_tracepoint", "uprobe", "perf_event", "ringbuf", "tc", "tcx", "xdp",
         "socket_filter", "lockdown", "jit", "bpf_stats_enabled")


@dataclass(frozen=True)
class Feature:
    available: bool
    detail: str


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:  # without "[Errno N]"
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _step(what: str, fn, *args, **kw):
    """fn(*args): its errno becomes one line saying which step failed."""
    try:
        return fn(*args, **kw)
    except OSError as exc:
        why = "not supported (ENOTSUPP)" if exc.errno == ENOTSUPP else (exc.strerror or str(exc))
        raise OSError(exc.errno, f"{what}: {why}") from None
    except multiattach.AttachFailed as exc:
        raise OSError(errno.EINVAL, f"{what}: {exc}") from None


class _Fds(list):
    """The fds one probe opens, closed when it ends: a probe leaves nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fd in reversed(self):
            os.close(fd)

    def add(self, fd: int) -> int:
        self.append(fd)
        return fd

    def program(self, prog_type: str, **kw) -> int:
        return self.add(_step(f"loading a {prog_type} program", bpfsys.load_program, prog_type, **kw))

    def set_bpf(self, what: str, perf_fd: int, prog_fd: int) -> None:
        self.add(perf_fd)
        _step(f"attaching to {what}", fcntl.ioctl, perf_fd, multiattach.PERF_EVENT_IOC_SET_BPF, prog_fd)


class Probe:
    """Lazily probes each feature once per process."""

    def __init__(self):
        self.mount_problems = machine.mount_pseudo_filesystems()
        self.headers = machine.resolve_headers()
        self._cache: dict[str, Feature] = {}

    def feature(self, name: str) -> Feature:
        if name not in self._cache:
            method = getattr(self, "_" + name)
            try:
                self._cache[name] = method()
            except Exception as exc:  # a probe must answer, never crash doctor
                self._cache[name] = Feature(False, _first_line(exc))
        return self._cache[name]

    def usable(self, name: str) -> Feature:
        """A cheap answer for planning (start-up must not pay for every
        probe); attach failures are still reported at load time. Only
        fentry must be tried: the kernel here refuses it although every
        cheap sign says yes."""
        cheap = getattr(self, "_cheap_" + name, None)
        if cheap is None or name in self._cache:
            return self.feature(name)
        return cheap()

    def _cheap_tracepoint(self):
        ok = (TRACEFS / "events").is_dir()
        return Feature(ok, "tracefs events present" if ok else f"no {TRACEFS}/events")

    _cheap_raw_tracepoint = _cheap_tracepoint

    def _cheap_kprobe(self):
        ok = (PMU_DIR / "kprobe").exists() or (TRACEFS / "kprobe_events").exists()
        return Feature(ok, "kprobe PMU present" if ok else
                       "no kprobe PMU and no kprobe_events (CONFIG_KPROBES not set)")

    _cheap_kretprobe = _cheap_kprobe

    def _cheap_uprobe(self):
        ok = (PMU_DIR / "uprobe").exists()  # our only uprobe path (never uprobe_events)
        return Feature(ok, "uprobe PMU present" if ok else "no uprobe PMU (CONFIG_UPROBES not set)")

    def _cheap_perf_event(self):
        ok = Path("/proc/sys/kernel/perf_event_paranoid").exists()
        return Feature(ok, "perf events present" if ok else "no perf events (CONFIG_PERF_EVENTS not set)")

    def _cheap_tc(self):
        return Feature(True, "assumed; attach reports failures")

    _cheap_xdp = _cheap_socket_filter = _cheap_tc

    def all(self) -> dict[str, Feature]:
        return {name: self.feature(name) for name in ORDER}

    # -- features ----------------------------------------------------------
    def _btf(self):
        path = "/sys/kernel/btf/vmlinux"
        if os.path.exists(path):
            return Feature(True, f"{path} ({os.path.getsize(path)} bytes)")
        return Feature(False, f"{path} missing (CONFIG_DEBUG_INFO_BTF not set)")

    def _headers(self):
        h = self.headers
        return Feature(h.mode != "none", f"{h.mode} {h.version}: {h.detail}".strip())

    def _kprobe(self, retprobe=False):
        pmu = PMU_DIR / "kprobe"
        if not pmu.exists() and not (TRACEFS / "kprobe_events").exists():
            return Feature(False, "no kprobe PMU and no kprobe_events (CONFIG_KPROBES not set)")
        if retprobe and pmu.exists() and not (pmu / "format" / "retprobe").exists():
            return Feature(False, "kprobe PMU has no retprobe format")
        target = machine.syscall_symbol("getppid")
        with _Fds() as fds:
            prog = fds.program("KPROBE")
            event = _step(f"kprobe PMU event on {target}", multiattach.kprobe_event, target, retprobe)
            fds.set_bpf(target, event, prog)
        return Feature(True, f"attached to {target}")

    def _kretprobe(self):
        return self._kprobe(retprobe=True)

    def _trampoline(self, prog_type: str, attach_type: int, function: str) -> None:
        """Load a TRACING or LSM program for a kernel function and attach it."""
        from tracers.runtime.btf import BTF
        func_id = BTF.load().function_id(function)
        if func_id is None:
            raise OSError(errno.ENOENT, f"no {function} in the kernel's BTF")
        with _Fds() as fds:
            prog = fds.program(prog_type, expected_attach_type=attach_type, attach_btf_id=func_id)
            fds.add(_step(f"attaching to {function}", bpfsys.raw_tracepoint_open, prog))

    def _fentry(self):
        from bcc import BPF
        if not BPF.support_kfunc():  # BCC loads our fentry programs: it must agree
            return Feature(False, "BCC reports no trampoline support")
        self._trampoline("TRACING", bpfsys.BPF_TRACE_FENTRY, FENTRY_TARGET)
        return Feature(True, f"TRACING program loaded and attached to {FENTRY_TARGET}")

    def _lsm(self):
        """BPF LSM: the kernel must have it built in and in its active list."""
        active = _read("/sys/kernel/security/lsm")
        if active is not None and "bpf" not in active.split(","):
            return Feature(False, f"bpf is not an active LSM ({active}; boot with lsm=...,bpf)")
        fentry = self.feature("fentry")  # LSM programs attach through the same trampolines
        if not fentry.available:
            return Feature(False, f"no trampolines: {fentry.detail}")
        self._trampoline("LSM", bpfsys.BPF_LSM_MAC, "bpf_lsm_" + LSM_HOOK)
        return Feature(True, f"LSM program loaded and attached to {LSM_HOOK}")

    def _tracepoint(self):
        tp = "syscalls:sys_enter_getppid"
        if not machine.tracepoint_exists(tp):
            return Feature(False, f"tracefs events missing under {TRACEFS}")
        with _Fds() as fds:
            prog = fds.program("TRACEPOINT")
            fds.set_bpf(tp, _step(f"perf event of {tp}", multiattach.tracepoint_event, tp), prog)
        return Feature(True, f"attached to {tp}")

    def _raw_tracepoint(self):
        with _Fds() as fds:
            prog = fds.program("RAW_TRACEPOINT")
            fds.add(_step("attaching to sys_enter", bpfsys.raw_tracepoint_open, prog, "sys_enter"))
        return Feature(True, "attached to sys_enter")

    def _uprobe(self):
        path, offset = multiattach.user_symbol("c", "getppid", os.getpid())
        with _Fds() as fds:  # bpfwatch's one uprobe path: the PMU and a BPF link
            prog = fds.program("KPROBE")
            event = fds.add(_step("uprobe PMU event on libc getppid", multiattach.uprobe_event,
                                  path, offset, pid=os.getpid()))
            fds.add(_step("BPF_LINK_CREATE", multiattach.attach_perf_event, prog, event))
        return Feature(True, "attached to libc getppid")

    def _perf_event(self):
        with _Fds() as fds:
            prog = fds.program("PERF_EVENT")
            event = _step("cpu-clock perf event", multiattach.cpu_clock_event, 10_000_000)
            fds.set_bpf("cpu-clock sampling", event, prog)
        return Feature(True, "software cpu-clock sampling attached")

    def _ringbuf(self):
        # union bpf_attr prefix: map_type, key_size, value_size, max_entries
        attr = struct.pack("=IIII", bpfsys.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
        with _Fds() as fds:
            fds.add(_step("BPF_MAP_TYPE_RINGBUF", bpfsys.bpf, bpfsys.BPF_MAP_CREATE, attr))
        return Feature(True, "ring buffer map created")

    def _tc(self):
        from tracers.runtime.clsact_probe import try_clsact
        with _Fds() as fds:
            return Feature(*try_clsact(fds.program("SCHED_CLS")))

    def _tcx(self):
        from tracers.runtime.tcx import try_tcx
        return Feature(*try_tcx())

    def _xdp(self):
        with _Fds() as fds:
            fds.program("XDP", r0=XDP_PASS)
        return Feature(True, "XDP program loaded")

    def _socket_filter(self):
        with _Fds() as fds, socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            prog = fds.program("SOCKET_FILTER")
            _step("SO_ATTACH_BPF", sock.setsockopt, socket.SOL_SOCKET, SO_ATTACH_BPF, prog)
        return Feature(True, "attached to a packet socket with SO_ATTACH_BPF")

    def _lockdown(self):
        text = _read(str(SECURITYFS / "lockdown"))
        if text is None:
            return Feature(True, "no lockdown file (securityfs or LSM absent): none")
        mode = text[text.find("[") + 1:text.find("]")] if "[" in text else text
        notes = {"none": "no restrictions",
                 "integrity": "kernel reads allowed; bpf_probe_write_user refused",
                 "confidentiality": "kernel memory reads refused: most tracers cannot run"}
        return Feature(mode != "confidentiality", f"{mode}: {notes.get(mode, '')}")

    def _jit(self):
        value = _read("/proc/sys/net/core/bpf_jit_enable")
        if value is None:
            return Feature(False, "bpf_jit_enable not readable")
        return Feature(value != "0", f"bpf_jit_enable={value}")

    def _bpf_stats_enabled(self):
        value = _read("/proc/sys/kernel/bpf_stats_enabled")
        if value is None:
            return Feature(False, "kernel.bpf_stats_enabled not present")
        if value == "1":
            return Feature(True, "kernel.bpf_stats_enabled=1")
        return Feature(False, "kernel.bpf_stats_enabled=0 (sysctl -w kernel.bpf_stats_enabled=1 to enable)")


def kernel_release() -> str:
    return platform.release()
