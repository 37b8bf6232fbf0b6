"""`bpfwatch doctor`: what this kernel can do, each answer decided by trying."""
from __future__ import annotations

import platform

from tracers.report import probe_report_main


def syscall_names() -> dict:
    """Who names syscalls here, and which of this kernel's it cannot."""
    from tracers.runtime import machine, syscall_table
    try:
        names = set(syscall_table.names().values())
    except syscall_table.UnnamedArchitecture as exc:
        return {"available": False, "detail": str(exc), "unnamed": []}
    unnamed = sorted(syscall_table.kernel_syscalls(machine.TRACEFS) - names)
    detail = f"{len(names)} names for {platform.machine()} from {syscall_table.source()}"
    if unnamed:
        detail += f"; this kernel has {len(unnamed)} more, shown as syscall_<nr>: {', '.join(unnamed)}"
    return {"available": True, "detail": detail, "unnamed": unnamed}


def report(probe) -> dict:
    from tracers.runtime.features import kernel_release
    features = probe.all()
    return {
        "kernel": kernel_release(),
        "headers": {"mode": probe.headers.mode, "version": probe.headers.version,
                    "path": probe.headers.path},
        "mount_problems": probe.mount_problems,
        "features": {name: {"available": f.available, "detail": f.detail}
                     for name, f in features.items()},
        "syscall_names": syscall_names(),
    }


def print_text(data: dict) -> None:
    print(f"{'kernel':<18} {data['kernel']}")
    for problem in data["mount_problems"]:
        print(f"{'mount':<18} {problem}")
    # headers is one of the features (with its detail): printed there, once
    rows = {**data["features"], "syscall_names": data["syscall_names"]}
    for name, f in rows.items():
        mark = "yes" if f["available"] else "no "
        print(f"{name:<18} {mark}  {f['detail']}")


PROG = "bpfwatch doctor"
DESCRIPTION = "Probe what this kernel can do for BPF tracing."
EXAMPLES = ("bpfwatch doctor", "bpfwatch doctor --json | jq .features.kprobe")


def main(argv=None) -> int:
    return probe_report_main(argv, PROG, DESCRIPTION, EXAMPLES, report, print_text)
