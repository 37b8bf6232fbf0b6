"""tc programs as tcx links (kernels from 6.6): owned by a file descriptor.

A tcx link lives exactly as long as its fd: when tctraffic exits, however
it exits (SIGKILL too), the kernel detaches the program. No qdisc, no
filter, nothing left to clean at the next start. clsact (netattach.Clsact)
is the alternative for kernels without tcx.
"""
from __future__ import annotations

import ctypes
import os

from tracers.runtime import bpfsys
from tracers.runtime.errors import LoadError

CLONE_NEWNET = 0x40000000


class Tcx:
    """Our links on one interface; attach(session, hook) per direction."""

    def __init__(self, ifname: str):
        self.ifname = ifname

    def attach(self, session, hook) -> None:
        from tracers.runtime.netattach import interface_index, load_program
        direction = hook.target
        if direction not in bpfsys.TCX_ATTACH_TYPE:
            raise LoadError(f"{session.spec.name}: tc hook target must be ingress or egress")
        index = interface_index(self.ifname)
        fn = load_program(session, hook.fn, "tc")
        try:
            link = bpfsys.tcx_link(fn.fd, index, direction)
        except OSError as exc:
            raise LoadError(f"{session.spec.name}: cannot attach the {direction} tcx link "
                            f"on {self.ifname}: {exc.strerror or exc}") from None
        session.on_close(lambda: os.close(link))


def try_tcx() -> tuple[bool, str]:
    """Attach a tcx link to lo in a scratch network namespace, made by a
    forked child (ours is never touched). Without CAP_SYS_ADMIN there is no
    scratch namespace: then the child links to our own lo for an instant
    (the probe program returns TCX_NEXT: traffic is not affected)."""
    try:
        prog = bpfsys.load_pass_program()
    except OSError as exc:
        return False, f"loading a SCHED_CLS program: {exc.strerror or exc}"
    try:
        pid = os.fork()
        if pid == 0:  # child: exit status 0 or 1 (where it linked), else the errno
            code = 255
            try:
                scratch = ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) == 0
                os.close(bpfsys.tcx_link(prog, 1, "ingress"))  # lo is ifindex 1
                code = 0 if scratch else 1
            except OSError as exc:
                code = min(exc.errno or 255, 250) + 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(prog)
    code = os.waitstatus_to_exitcode(status)
    if code in (0, 1):
        where = "a scratch netns" if code == 0 else "this netns's lo, detached at once"
        return True, f"tcx link (BPF_LINK_CREATE, BPF_TCX_INGRESS) attached in {where}"
    why = os.strerror(code - 2) if 2 < code < 253 else f"probe exited with {code}"
    return False, f"BPF_LINK_CREATE with BPF_TCX_INGRESS: {why} (kernels before 6.6 have no tcx)"
