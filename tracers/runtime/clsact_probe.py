"""Try a clsact qdisc and a direct-action cls_bpf filter in a throwaway netns."""
from __future__ import annotations

import os

from tracers.runtime.kconst import CLSACT_PARENTS


def try_clsact(prog_fd: int) -> tuple[bool, str]:
    from pyroute2 import NetNS, netns

    name = f"bpfwatch-probe-{os.getpid()}"
    try:
        with NetNS(name) as ns:
            lo = ns.link_lookup(ifname="lo")[0]
            ns.link("set", index=lo, state="up")
            ns.tc("add", "clsact", lo)
            ns.tc("add-filter", "bpf", lo, ":1", fd=prog_fd, name="bpfwatch-probe",
                  parent=CLSACT_PARENTS["ingress"], classid=1, direct_action=True)
        return True, "clsact qdisc + direct-action cls_bpf filter attached (in a scratch netns)"
    except Exception as exc:  # netlink errors carry (errno, text)
        return False, f"clsact/cls_bpf: {exc}"
    finally:
        try:
            netns.remove(name)
        except OSError:
            pass
