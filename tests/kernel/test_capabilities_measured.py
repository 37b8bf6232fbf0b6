"""privileges.NEEDS measured on the running kernel, not by bpfwatch's own
pre-check: a child (this file run as a script) does the raw steps of one
hook kind (tracefs reads, BPF_PROG_LOAD, perf_event_open, attaching) as uid
65534 with a given capability set, and prints the first step that failed
with its errno. With exactly NEEDS[kind] every step must work, and without
any one of them some step must fail with EPERM or EACCES: the table is then
what the kernel demands, and nothing more.

kprobe, kretprobe, fentry and fexit are not measurable here (no kprobes,
fentry refused): their rows are the kernel's checks read from the source."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import platform
import socket
import struct
import subprocess
import sys

import pytest

from tracers.runtime import bpfsys
from tracers.runtime.kconst import PMU_DIR, SO_ATTACH_BPF, TRACEFS
from tracers.runtime.bpfsys import BPF_PERF_EVENT
from tracers.runtime.multiattach import (PERF_EVENT_IOC_SET_BPF, PERF_EVENT_OPEN, PERF_FLAG_FD_CLOEXEC,
                                         PERF_TYPE_TRACEPOINT)
from tracers.runtime.privileges import NEEDS, parse_mask

pytestmark = pytest.mark.kernel

NAME = "on_capmeasure"  # on_*: what conftest.bpf_objects counts as ours
# enum bpf_prog_type, bpf_cmd, bpf_attach_type (include/uapi/linux/bpf.h)
BPF_XDP = 37  # enum bpf_attach_type
XDP_PASS = 2
# include/uapi/linux/perf_event.h
PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, PERF_SAMPLE_RAW = 1, 0, 1 << 10

_libc = ctypes.CDLL(None, use_errno=True)


# -- the child: raw steps, no bpfwatch pre-check ---------------------------------
def load(prog_type: str, r0: int = 0) -> int:
    """BPF_PROG_LOAD of "r0 = <r0>; exit" (the bare syscall)."""
    return bpfsys.load_program(prog_type, r0, name=NAME.encode())


def perf_open(kind: int, config: int, period: int = 1, sample_type: int = 0,
              config1: int = 0, config2: int = 0) -> int:
    """perf_event_open on all tasks of CPU 0 (pid -1), as BCC and bpfwatch open them."""
    attr = (ctypes.c_uint64 * 16)()  # struct perf_event_attr (PERF_ATTR_SIZE_VER7), zeroed
    attr[0] = kind | ctypes.sizeof(attr) << 32
    attr[1], attr[2], attr[3] = config, period, sample_type
    attr[6] = 1  # wakeup_events
    attr[7], attr[8] = config1, config2
    fd = _libc.syscall(PERF_EVENT_OPEN[platform.machine()], ctypes.byref(attr), ctypes.c_int(-1),
                       ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def link(prog: int, target: int, attach_type: int) -> int:
    """BPF_LINK_CREATE: prog_fd, target fd or ifindex, attach_type, flags."""
    return bpfsys.bpf(bpfsys.BPF_LINK_CREATE, struct.pack("=IIII", prog, target, attach_type, 0))


def read(path) -> str:
    with open(path) as f:
        return f.read()


def tracepoint(step):
    tp_id = int(step("read tracefs id", read, TRACEFS / "events/syscalls/sys_enter_getppid/id"))
    prog = step("BPF_PROG_LOAD", load, "TRACEPOINT")
    event = step("perf_event_open", perf_open, PERF_TYPE_TRACEPOINT, tp_id, 1, PERF_SAMPLE_RAW)
    step("PERF_EVENT_IOC_SET_BPF", fcntl.ioctl, event, PERF_EVENT_IOC_SET_BPF, prog)


def raw_tracepoint(step):
    # the planner's lookup: machine.raw_tracepoint_exists globs events/*/<name>/id
    step("list tracefs events", os.listdir, TRACEFS / "events")
    step("read tracefs id", read, TRACEFS / "events/raw_syscalls/sys_enter/id")
    prog = step("BPF_PROG_LOAD", load, "RAW_TRACEPOINT")
    step("BPF_RAW_TRACEPOINT_OPEN", bpfsys.raw_tracepoint_open, prog, "sys_enter")


def perf_event(step):
    prog = step("BPF_PROG_LOAD", load, "PERF_EVENT")
    # profile's sampling event: cpu-clock, every 10 ms of CPU 0
    event = step("perf_event_open", perf_open, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, 10_000_000)
    step("PERF_EVENT_IOC_SET_BPF", fcntl.ioctl, event, PERF_EVENT_IOC_SET_BPF, prog)


def uprobe(step, path, offset, ret=False):
    # multiattach.uprobe_event: the uprobe PMU, ref_ctr_offset 0, then a BPF link
    kind = int(step("read uprobe PMU", read, PMU_DIR / "uprobe/type"))
    bit = int(step("read uprobe PMU", read, PMU_DIR / "uprobe/format/retprobe").split(":")[1])
    prog = step("BPF_PROG_LOAD", load, "KPROBE")
    raw = ctypes.create_string_buffer(path.encode())
    event = step("perf_event_open", perf_open, kind, (1 << bit) if ret else 0, 1, 0,
                 ctypes.addressof(raw), int(offset))
    step("BPF_LINK_CREATE", link, prog, event, BPF_PERF_EVENT)


def uretprobe(step, path, offset):
    uprobe(step, path, offset, ret=True)


def tc(step):
    # inside a fresh network namespace (the parent's): its lo only
    prog = step("BPF_PROG_LOAD", load, "SCHED_CLS")
    step("BPF_LINK_CREATE tcx", bpfsys.tcx_link, prog, socket.if_nametoindex("lo"), "ingress")


def xdp(step):
    prog = step("BPF_PROG_LOAD", load, "XDP", XDP_PASS)
    step("BPF_LINK_CREATE xdp", link, prog, socket.if_nametoindex("lo"), BPF_XDP)


def socket_filter(step):
    prog = step("BPF_PROG_LOAD", load, "SOCKET_FILTER")
    # protocol 0: packet_create's CAP_NET_RAW check, yet no packet is queued
    sock = step("socket(AF_PACKET)", socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0)
    step("SO_ATTACH_BPF", sock.setsockopt, socket.SOL_SOCKET, SO_ATTACH_BPF, prog)


STEPS = {f.__name__: f for f in (tracepoint, raw_tracepoint, perf_event, uprobe, uretprobe,
                                 tc, xdp, socket_filter)}


def child(kind: str, *args: str) -> int:
    """Prints "caps <CapEff>", then "ok" (exit 0) or "FAIL <step> <errno>" (exit 1).
    Everything is an fd of this process: gone when it exits."""
    with open("/proc/self/status") as f:
        print("caps", next(line.split()[1] for line in f if line.startswith("CapEff:")))
    current = []

    def step(name, fn, *fn_args):
        current[:] = [name]
        return fn(*fn_args)
    try:
        STEPS[kind](step, *args)
    except OSError as exc:
        print("FAIL", current[0], errno.errorcode.get(exc.errno, exc.errno), flush=True)
        return 1
    print("ok", flush=True)
    return 0


# -- the tests -------------------------------------------------------------------
CASES = [pytest.param(kind, missing, id=f"{kind}-{'exact' if missing is None else 'no-' + missing}")
         for kind in STEPS for missing in [None, *sorted(NEEDS[kind])]]


def test_every_measurable_kind_is_measured():
    assert set(NEEDS) - set(STEPS) == {"kprobe", "kretprobe", "fentry", "fexit"}


@pytest.fixture(scope="module")
def getppid_in_libc():
    from tracers.runtime import machine, multiattach
    assert not [p for p in machine.mount_pseudo_filesystems() if p.startswith("tracefs")]
    return multiattach.user_symbol(b"c", b"getppid")


@contextlib.contextmanager
def fresh_netns(kind: str):
    """argv prefix: a network namespace of its own for tc and xdp, deleted after."""
    if kind not in ("tc", "xdp"):
        yield []
        return
    name = f"bpfw-capm-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def measure(kind: str, caps, args=()) -> tuple[frozenset, str]:
    """(the child's effective capabilities, "ok" or "FAIL <step> <errno>")."""
    # imported here: the child runs this file without tests/ on sys.path
    from test_capabilities import as_nobody
    with fresh_netns(kind) as netns:
        proc = subprocess.run([*netns, *as_nobody(caps), sys.executable, __file__, kind, *args],
                              capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode in (0, 1) and len(lines) == 2 and lines[0].startswith("caps "), \
        (proc.returncode, proc.stdout, proc.stderr)
    assert (proc.returncode == 0) == (lines[1] == "ok"), proc.stdout
    return parse_mask(lines[0].split()[1]), lines[1]


@pytest.mark.parametrize("kind, missing", CASES)
def test_needs_is_measured_and_minimal(kind, missing, getppid_in_libc):
    from conftest import bpf_objects, wait_gone
    caps = NEEDS[kind] - {missing}
    args = [str(a) for a in getppid_in_libc] if kind in ("uprobe", "uretprobe") else []
    before = bpf_objects([NAME])
    held, outcome = measure(kind, caps, args)
    assert held == caps
    if missing is None:
        assert outcome == "ok", f"{kind} with exactly {sorted(caps)}: {outcome}"
    else:
        assert outcome.split()[-1] in ("EPERM", "EACCES"), \
            f"{kind} works without CAP_{missing.upper()} ({outcome}): not needed on this kernel"
    assert not any(wait_gone(before, names=[NAME]).values())  # programs and links went with the child


if __name__ == "__main__":
    sys.exit(child(*sys.argv[1:]))
