"""`bpfwatch doctor`: what this kernel can do, each answer decided by trying."""
from __future__ import annotations

import argparse
import json
import sys

from tracers.common import OneLineParser


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


def main(argv=None) -> int:
    parser = OneLineParser(
        prog="bpfwatch doctor", description="Probe what this kernel can do for BPF tracing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  bpfwatch doctor\n  bpfwatch doctor --json | jq .features.kprobe")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    from tracers import runtime
    try:
        runtime.require_root()
        data = report(runtime.get_probe())
    except runtime.BpfwatchError as exc:
        print(f"bpfwatch doctor: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{'kernel':<18} {data['kernel']}")
    print(f"{'headers':<18} {data['headers']['mode']} {data['headers']['version']}")
    for problem in data["mount_problems"]:
        print(f"{'mount':<18} {problem}")
    for name, f in data["features"].items():
        mark = "yes" if f["available"] else "no "
        print(f"{name:<18} {mark}  {f['detail']}")
    return 0
