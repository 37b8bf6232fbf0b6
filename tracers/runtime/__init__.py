"""The kernel runtime: the only code that imports bcc (lazily, after mounts)."""
from __future__ import annotations

from tracers.runtime.errors import BpfwatchError, LoadError, NoUsableHook, Stop
from tracers.runtime.loader import Session, render_source, require_root, stop_on_signals
from tracers.runtime.planner import Plan, plan
from tracers.runtime.privileges import drop_after_attach

_probe = None


def get_probe():
    """The process-wide feature probe (mounts pseudo filesystems on first use)."""
    global _probe
    if _probe is None:
        from tracers.runtime.features import Probe
        _probe = Probe()
    return _probe


__all__ = ["BpfwatchError", "LoadError", "NoUsableHook", "Stop", "Session", "Plan",
           "plan", "get_probe", "render_source", "require_root", "stop_on_signals",
           "drop_after_attach"]
