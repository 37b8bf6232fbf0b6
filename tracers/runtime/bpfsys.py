"""The bpf() syscall for what BCC has no API for (tcx links, object info).

Kernel constants live here, once: the syscall number per architecture,
the commands and attach types used, from include/uapi/linux/bpf.h.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct

SYSCALL_NUMBER = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361,
                  "s390x": 351, "i686": 357, "armv7l": 386}

# enum bpf_cmd
BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 0, 5, 13, 15
BPF_MAP_GET_NEXT_KEY = 4
BPF_LINK_CREATE = 28
BPF_PROG_TEST_RUN, BPF_F_TEST_RUN_ON_CPU = 10, 1
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 32, 0
# enum bpf_prog_type
PROG_TYPE = {"SOCKET_FILTER": 1, "KPROBE": 2, "SCHED_CLS": 3, "TRACEPOINT": 5, "XDP": 6,
             "PERF_EVENT": 7, "RAW_TRACEPOINT": 17, "TRACING": 26, "LSM": 29}
# enum bpf_attach_type (tcx: 6.6+)
BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_LSM_MAC, BPF_PERF_EVENT = 24, 25, 27, 41
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47
TCX_ATTACH_TYPE = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}
# link_create.flags for tcx (bpf_mprog): position relative to the others
BPF_F_BEFORE, BPF_F_AFTER = 1 << 3, 1 << 4
BPF_MAP_TYPE_RINGBUF = 27
ATTR_SIZE = 128  # bytes of union bpf_attr we pass; the kernel wants the rest zero

_libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: bytes) -> int:
    """bpf(cmd, attr): the result (often an fd), or OSError with the errno."""
    number = SYSCALL_NUMBER.get(platform.machine())
    if number is None:
        raise OSError(0, f"bpf() syscall number unknown on {platform.machine()}")
    buf = ctypes.create_string_buffer(attr.ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
    result = _libc.syscall(number, cmd, buf, ATTR_SIZE)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def run_on_cpu(prog_fd: int, cpu: int) -> None:
    """BPF_PROG_TEST_RUN of a raw tracepoint program (no context) on one CPU."""
    bpf(BPF_PROG_TEST_RUN, struct.pack("=IIIIQQIIIIQQII", prog_fd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       BPF_F_TEST_RUN_ON_CPU, cpu))


def prog_id(fd: int) -> int:
    """The kernel-wide id of the program behind fd (struct bpf_prog_info.id)."""
    info = ctypes.create_string_buffer(8)  # type, id: the first two u32 fields
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", fd, len(info), ctypes.addressof(info)))
    return struct.unpack_from("=II", info.raw)[1]


def enable_run_time_stats() -> int:
    """An fd that keeps the kernel's per-program run time and count on while
    it is open (BPF_ENABLE_STATS; CAP_SYS_ADMIN), off again when the last
    holder closes it or dies."""
    return bpf(BPF_ENABLE_STATS, struct.pack("=I", BPF_STATS_RUN_TIME))


def prog_run_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the program behind fd: struct bpf_prog_info
    up to run_cnt (offsets 192 and 200), zero while statistics are off."""
    info = ctypes.create_string_buffer(208)
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", fd, len(info), ctypes.addressof(info)))
    return struct.unpack_from("=QQ", info.raw, 192)


def prog_exists(prog_id_: int) -> bool:
    try:
        os.close(bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("=I", prog_id_)))
    except OSError:
        return False
    return True


def tcx_link(prog_fd: int, ifindex: int, direction: str, flags: int = BPF_F_BEFORE) -> int:
    """A tcx link (BPF_LINK_CREATE) of a SCHED_CLS program on an interface of
    the caller's network namespace; the kernel detaches it when the returned
    fd's last copy closes, also when its owner is killed.
    flags: BPF_F_BEFORE puts it first (like a new clsact filter), BPF_F_AFTER last."""
    # link_create: prog_fd, target_ifindex, attach_type, flags, tcx.relative_fd
    attr = struct.pack("=IIIII", prog_fd, ifindex, TCX_ATTACH_TYPE[direction], flags, 0)
    return bpf(BPF_LINK_CREATE, attr)


def load_program(prog_type: str, r0: int = 0, expected_attach_type: int = 0,
                 attach_btf_id: int = 0, name: bytes = b"bpfwatch_probe") -> int:
    """A two-instruction program ("r0 = <r0>; exit") of a type: probes of
    what the kernel accepts, without a compiler. TRACING and LSM programs
    name their kernel function by attach_btf_id (vmlinux BTF)."""
    insns = ctypes.create_string_buffer(struct.pack("=BBhi", 0xb7, 0, 0, r0)  # r0 = imm
                                        + struct.pack("=BBhi", 0x95, 0, 0, 0))  # exit
    license_ = ctypes.create_string_buffer(b"GPL")
    # prog_load: prog_type, insn_cnt, insns, license, log_level/size/buf,
    # kern_version, prog_flags, prog_name, prog_ifindex, expected_attach_type,
    # prog_btf_fd, func_info_rec_size/func_info/cnt, line_info_rec_size/line_info/cnt,
    # attach_btf_id
    attr = struct.pack("=IIQQIIQII16sIIIIQIIQII", PROG_TYPE[prog_type], 2, ctypes.addressof(insns),
                       ctypes.addressof(license_), 0, 0, 0, 0, 0, name, 0, expected_attach_type,
                       0, 0, 0, 0, 0, 0, 0, attach_btf_id)
    return bpf(BPF_PROG_LOAD, attr)


def load_pass_program() -> int:
    """A SCHED_CLS program returning TC_ACT_UNSPEC (-1): it lets traffic by."""
    return load_program("SCHED_CLS", r0=-1)


def raw_tracepoint_open(prog_fd: int, name: str | None = None) -> int:
    """Attach a RAW_TRACEPOINT program to tracepoint name, or a TRACING/LSM
    program to the function it was loaded for (name None). Returns the link fd."""
    raw = ctypes.create_string_buffer(name.encode()) if name else None
    return bpf(BPF_RAW_TRACEPOINT_OPEN, struct.pack("=QI", ctypes.addressof(raw) if raw else 0, prog_fd))
