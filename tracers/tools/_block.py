"""What biolatency and biosnoop share: hooks, the --disk filter, -Q."""
from __future__ import annotations

import os

from tracers.spec import Alternative, Hook, UsageError

C_FILE = "block.bpf.c"

# struct request fields the kprobe alternative reads (offsets from BTF).
REQUEST_FIELDS = {
    "OFF_RQ_Q": ("request", "q"),
    "OFF_RQ_CMD_FLAGS": ("request", "cmd_flags"),
    "OFF_RQ_DATA_LEN": ("request", "__data_len"),
    "OFF_RQ_SECTOR": ("request", "__sector"),
    "OFF_Q_DISK": ("request_queue", "disk"),
    "OFF_DISK_MAJOR": ("gendisk", "major"),
    "OFF_DISK_FIRST_MINOR": ("gendisk", "first_minor"),
}


def alternatives(needs: tuple[str, ...] = ()) -> tuple[Alternative, ...]:
    return (
        # The tracepoints carry dev, sector, bytes and rwbs: no struct reads.
        # Insert is for -Q (queue time) and the issuer: the CLI's.
        Alternative("tracepoint", (
            Hook("tracepoint", "block:block_rq_insert", "on_insert", optional=True, cli_only=True),
            Hook("tracepoint", "block:block_rq_issue", "on_issue"),
            Hook("tracepoint", "block:block_rq_complete", "on_complete"),
        ), define="HOOK_TRACEPOINT", needs=needs),
        # blk_update_request is where block_rq_complete fires; the insert
        # function changed name in 6.5, so both are tried.
        Alternative("kprobe", (
            Hook("kprobe", "blk_mq_insert_request", "on_insert", optional=True, cli_only=True),
            Hook("kprobe", "blk_mq_sched_insert_request", "on_insert", optional=True, cli_only=True),
            Hook("kprobe", "blk_mq_start_request", "on_issue"),
            Hook("kprobe", "blk_update_request", "on_complete"),
        ), define="HOOK_KPROBE", btf_fields=REQUEST_FIELDS, needs=needs),
    )


def add_arguments(parser) -> None:
    parser.add_argument("-Q", "--queued", action="store_true",
                        help="include the time queued in the kernel (from insert)")
    parser.add_argument("-d", "--disk", metavar="NAME", help="only this disk (e.g. sda, loop0)")


def disk_dev(name: str, sysfs: str = "/sys", prog: str = "bpfwatch") -> int:
    """Disk name -> the block tracepoints' dev_t (major << 20 | minor)."""
    name = name.removeprefix("/dev/")
    if not name or "/" in name or name in (".", ".."):
        raise UsageError(f"--disk takes a disk name such as sda, not {name!r}")
    base = os.path.join(sysfs, "class", "block", name)
    if os.path.exists(os.path.join(base, "partition")):
        raise UsageError(f"{name} is a partition; block requests name the whole disk")
    try:
        with open(os.path.join(base, "dev"), encoding="ascii") as f:
            major, minor = (int(x) for x in f.read().strip().split(":"))
    except (OSError, ValueError):
        raise UsageError(f"no block device named {name!r} (see /sys/class/block)") from None
    return major << 20 | minor


def defines(args, prog: str) -> dict[str, int]:
    out = {}
    if args.queued:
        out["QUEUED"] = 1
    if args.disk:
        out["DISK_DEV"] = disk_dev(args.disk, prog=prog)
    return out


def skip_hooks(args, needs_issuer: bool) -> set[str]:
    # Insert only matters for queue time and for naming the issuer.
    issuer_filter = args.pid or args.comm or getattr(args, "cgroup_filter", None)
    return set() if (args.queued or needs_issuer or issuer_filter) else {"on_insert"}


def drop_warning(session, prog: str) -> str | None:
    stats = session.stats()
    lost = stats["events_dropped"] + stats["map_update_failures"]
    return f"{prog}: {lost} I/Os not counted (ring buffer or map full)" if lost else None

