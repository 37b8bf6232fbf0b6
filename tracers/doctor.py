"""`bpfwatch doctor`: what this kernel can do, each answer decided by trying."""
from __future__ import annotations

from tracers.report import probe_report_main


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
    }


def print_text(data: dict) -> None:
    print(f"{'kernel':<18} {data['kernel']}")
    print(f"{'headers':<18} {data['headers']['mode']} {data['headers']['version']}")
    for problem in data["mount_problems"]:
        print(f"{'mount':<18} {problem}")
    for name, f in data["features"].items():
        mark = "yes" if f["available"] else "no "
        print(f"{name:<18} {mark}  {f['detail']}")


def main(argv=None) -> int:
    return probe_report_main(
        argv, "bpfwatch doctor", "Probe what this kernel can do for BPF tracing.",
        ("bpfwatch doctor", "bpfwatch doctor --json | jq .features.kprobe"), report, print_text)
