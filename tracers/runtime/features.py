"""What this kernel can do, decided by trying (never by version numbers)."""
from __future__ import annotations

import os
import platform
import socket
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tracers.runtime import machine
from tracers.runtime.capture import quiet_stderr
from tracers.runtime.kconst import PMU_DIR, SECURITYFS, SO_ATTACH_BPF, TRACEFS

PROBE_C = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/bpf_perf_event.h>
int on_tracepoint(void *ctx) { return 0; }
int on_raw_tracepoint(struct bpf_raw_tracepoint_args *ctx) { return 0; }
int on_perf_event(struct bpf_perf_event_data *ctx) { return 0; }
int on_socket(struct __sk_buff *skb) { return 0; }
int on_xdp(struct xdp_md *ctx) { return XDP_PASS; }
int on_tc(struct __sk_buff *skb) { return TC_ACT_OK; }
int on_kprobe(struct pt_regs *ctx) { return 0; }
"""
FENTRY_C = "KFUNC_PROBE(do_sys_openat2) { return 0; }"
# Declared first: a struct first named in a parameter list is local to it.
LSM_C = "struct socket; struct sockaddr;\n" \
        "LSM_PROBE(socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret) " \
        "{ return ret; }"
ORDER = ("btf", "headers", "kprobe", "kretprobe", "fentry", "lsm", "tracepoint",
         "raw_tracepoint", "uprobe", "perf_event", "ringbuf", "tc", "tcx", "xdp",
         "socket_filter", "lockdown", "jit", "bpf_stats_enabled")


@dataclass(frozen=True)
class Feature:
    available: bool
    detail: str


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


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
        """A cheap answer for planning (start-up must not pay for a probe
        compile); attach failures are still reported at load time. Only
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

    # -- helpers ---------------------------------------------------------
    @cached_property
    def _probe_bpf(self):
        """One compiled module with a tiny program of each type."""
        if self.headers.mode == "none":
            raise RuntimeError(self.headers.detail)
        from bcc import BPF
        with quiet_stderr() as log:
            try:
                return BPF(text=PROBE_C)
            except Exception as exc:
                raise RuntimeError(log.first_error() or _first_line(exc)) from None

    def _load(self, fn: str, prog_type_name: str):
        from bcc import BPF
        with quiet_stderr() as log:
            try:
                return self._probe_bpf.load_func(fn, getattr(BPF, prog_type_name))
            except Exception as exc:
                raise RuntimeError(log.first_error() or _first_line(exc)) from None

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
        self._load("on_kprobe", "KPROBE")
        target = machine.syscall_symbol("getppid")
        attach = self._probe_bpf.attach_kretprobe if retprobe else self._probe_bpf.attach_kprobe
        with quiet_stderr() as log:
            try:
                attach(event=target, fn_name="on_kprobe")
            except Exception as exc:
                return Feature(False, log.first_error() or _first_line(exc))
        detach = self._probe_bpf.detach_kretprobe if retprobe else self._probe_bpf.detach_kprobe
        detach(event=target)
        return Feature(True, f"attached to {target}")

    def _kretprobe(self):
        return self._kprobe(retprobe=True)

    def _fentry(self):
        from bcc import BPF
        if not BPF.support_kfunc():
            return Feature(False, "BCC reports no trampoline support")
        with quiet_stderr() as log:
            try:
                BPF(text=FENTRY_C).cleanup()
            except Exception as exc:
                why = log.first_error() or _first_line(exc)
                return Feature(False, f"loading a TRACING program failed: {why} "
                                      "(BCC's support_kfunc() says yes; the kernel says no)")
        return Feature(True, "TRACING program loaded and attached to do_sys_openat2")

    def _lsm(self):
        """BPF LSM: the kernel must have it built in and in its active list."""
        active = _read("/sys/kernel/security/lsm")
        if active is not None and "bpf" not in active.split(","):
            return Feature(False, f"bpf is not an active LSM ({active}; boot with lsm=...,bpf)")
        fentry = self.feature("fentry")  # LSM programs attach through the same trampolines
        if not fentry.available:
            return Feature(False, f"no trampolines: {fentry.detail}")
        from bcc import BPF
        with quiet_stderr() as log:
            try:
                BPF(text=LSM_C).cleanup()
            except Exception as exc:
                return Feature(False, f"loading an LSM program failed: {log.first_error() or _first_line(exc)}")
        return Feature(True, "LSM program loaded and attached to socket_connect")

    def _tracepoint(self):
        if not machine.tracepoint_exists("syscalls:sys_enter_getppid"):
            return Feature(False, f"tracefs events missing under {TRACEFS}")
        self._load("on_tracepoint", "TRACEPOINT")
        self._probe_bpf.attach_tracepoint(tp="syscalls:sys_enter_getppid", fn_name="on_tracepoint")
        self._probe_bpf.detach_tracepoint(tp="syscalls:sys_enter_getppid")
        return Feature(True, "attached to syscalls:sys_enter_getppid")

    def _raw_tracepoint(self):
        self._load("on_raw_tracepoint", "RAW_TRACEPOINT")
        self._probe_bpf.attach_raw_tracepoint(tp="sys_enter", fn_name="on_raw_tracepoint")
        self._probe_bpf.detach_raw_tracepoint(tp="sys_enter")
        return Feature(True, "attached to sys_enter")

    def _uprobe(self):
        from tracers.runtime import multiattach  # bpfwatch's one uprobe path
        fn = self._load("on_kprobe", "KPROBE")
        path, offset = multiattach.user_symbol("c", "getppid", os.getpid())
        perf_fd = multiattach.uprobe_event(path, offset, pid=os.getpid())
        try:
            os.close(multiattach.attach_perf_event(fn.fd, perf_fd))
        finally:
            os.close(perf_fd)
        return Feature(True, "attached to libc getppid")

    def _perf_event(self):
        from bcc import PerfType, PerfSWConfig
        self._load("on_perf_event", "PERF_EVENT")
        self._probe_bpf.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
                                          fn_name="on_perf_event", sample_freq=1)
        self._probe_bpf.detach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK)
        return Feature(True, "software cpu-clock sampling attached")

    def _ringbuf(self):
        from tracers.runtime import bpfsys
        # union bpf_attr prefix: map_type, key_size, value_size, max_entries
        attr = struct.pack("=IIII", bpfsys.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
        try:
            fd = bpfsys.bpf(bpfsys.BPF_MAP_CREATE, attr)
        except OSError as exc:
            return Feature(False, f"BPF_MAP_TYPE_RINGBUF: {exc.strerror or exc}")
        os.close(fd)
        return Feature(True, "ring buffer map created")

    def _tc(self):
        from tracers.runtime.clsact_probe import try_clsact
        fn = self._load("on_tc", "SCHED_CLS")
        return Feature(*try_clsact(fn.fd))

    def _tcx(self):
        # no compile: cheap enough to decide tctraffic's hook at every start
        from tracers.runtime.tcx import try_tcx
        return Feature(*try_tcx())

    def _xdp(self):
        self._load("on_xdp", "XDP")
        return Feature(True, "XDP program loaded")

    def _socket_filter(self):
        fn = self._load("on_socket", "SOCKET_FILTER")
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, fn.fd)
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
