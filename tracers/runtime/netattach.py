"""Packet programs: tc clsact filters and packet-socket filters, cleaned up.

tc bookkeeping (see ARCHITECTURE "Traps"): filters are named
bpfwatch-<pid>-<direction>; the clsact qdisc is created only if absent; at
exit we remove our filters, and the qdisc only when a bpfwatch created it
and no filter at all remains; at start, filters of dead bpfwatch processes
(SIGKILL leaves them in the kernel) are removed. Foreign filters are never
touched. A marker file remembers that a bpfwatch created the qdisc, so a
restart after SIGKILL (or the last of several instances) removes it too.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import socket
import struct
from pathlib import Path

from tracers.runtime.capture import quiet_stderr
from tracers.runtime.errors import BpfwatchError, LoadError

PARENTS = {"ingress": "ffff:fff2", "egress": "ffff:fff3"}
OUR_NAME = re.compile(r"^bpfwatch-(\d+)-(ingress|egress)$")
MARKERS = Path("/run/bpfwatch/clsact")
SO_ATTACH_BPF = 50


def load_program(session, fn: str, kind: str):
    """Load entry point fn as a tc (SCHED_CLS) or SOCKET_FILTER program."""
    from bcc import BPF
    prog_type = {"tc": BPF.SCHED_CLS, "socket_filter": BPF.SOCKET_FILTER}[kind]
    with quiet_stderr() as log:
        try:
            return session.bpf.load_func(fn, prog_type)
        except Exception as exc:
            raise LoadError(f"{session.spec.name}: cannot load {fn}: {log.first_error() or exc}",
                            log.text) from None


def filter_name(f) -> str:
    if f.get_attr("TCA_KIND") != "bpf" or not f["handle"]:
        return ""
    return f.get_nested("TCA_OPTIONS", "TCA_BPF_NAME") or ""


def owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def interface_index(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise BpfwatchError(f"no interface {ifname!r} in this network namespace") from None


class Clsact:
    """Our filters on one interface's clsact hooks; attach(session, hook) per direction."""

    def __init__(self, ifname: str):
        self.ifname = ifname
        self.index = 0
        self.marker: Path | None = None
        self.created = False

    def attach(self, session, hook) -> None:
        from pyroute2 import IPRoute
        direction = hook.target
        if direction not in PARENTS:
            raise LoadError(f"{session.spec.name}: tc hook target must be ingress or egress")
        if not self.index:
            self._prepare(session)
        fn = load_program(session, hook.fn, "tc")
        name = f"bpfwatch-{os.getpid()}-{direction}"
        # Registered first: an interrupted add still gets cleaned up (by name).
        session.on_close(lambda: self._remove(lambda n: n == name))
        with IPRoute() as ipr:
            try:
                ipr.tc("add-filter", "bpf", self.index, ":1", fd=fn.fd, name=name,
                       parent=PARENTS[direction], classid=1, direct_action=True)
            except Exception as exc:
                raise LoadError(f"{session.spec.name}: cannot add the {direction} filter "
                                f"on {self.ifname}: {exc}") from None

    def _prepare(self, session) -> None:
        from pyroute2 import IPRoute
        self.index = interface_index(self.ifname)
        self.marker = MARKERS / f"{os.stat('/proc/self/ns/net').st_ino}-{self.index}"
        self._remove(lambda n: not owner_alive(int(OUR_NAME.match(n).group(1))))
        session.on_close(self._release_qdisc)
        with IPRoute() as ipr:
            kinds = {q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(self.index)}
            if "clsact" in kinds:
                return
            if "ingress" in kinds:
                raise BpfwatchError(f"{self.ifname} has an 'ingress' qdisc; tctraffic needs "
                                    "clsact (remove it with: tc qdisc del dev "
                                    f"{self.ifname} ingress)")
            with contextlib.suppress(OSError):
                self.marker.unlink()  # left by a clsact that is gone
            ipr.tc("add", "clsact", self.index)
        with contextlib.suppress(OSError):
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text(f"{os.getpid()}\n")
        self.created = True

    def _filters(self, ipr) -> list:
        return [f for parent in PARENTS.values()
                for f in ipr.get_filters(self.index, parent=parent)]

    def _remove(self, doomed) -> None:
        """Delete our bpfwatch-named filters for which doomed(name) is true."""
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            for f in self._filters(ipr):
                name = filter_name(f)
                if OUR_NAME.match(name) and doomed(name):
                    with contextlib.suppress(Exception):  # gone meanwhile
                        ipr.tc("del-filter", "bpf", self.index, f["handle"],
                               parent=f["parent"], info=f["info"])

    def _release_qdisc(self) -> None:
        from pyroute2 import IPRoute
        ours = self.created or (self.marker is not None and self.marker.exists())
        if not ours:
            return
        with IPRoute() as ipr:
            if self._filters(ipr):  # foreign filters, or another live bpfwatch's
                return
            ipr.tc("del", "clsact", self.index)
        with contextlib.suppress(OSError):
            self.marker.unlink()


def packet_socket(session, fn: str, ifname: str | None) -> socket.socket:
    """An AF_PACKET raw socket with program fn attached, then bound.

    Created with protocol 0 (receives nothing) and bound to ETH_P_ALL only
    after SO_ATTACH_BPF, so no unfiltered packet is ever queued."""
    prog = load_program(session, fn, "socket_filter")
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    session.on_close(sock.close)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, prog.fd)
        bind_all(sock, socket.if_nametoindex(ifname) if ifname else 0)
    except OSError as exc:
        raise LoadError(f"{session.spec.name}: packet socket: {exc.strerror or exc}") from None
    return sock


def bind_all(sock: socket.socket, ifindex: int) -> None:
    """bind() to ETH_P_ALL on one interface or, with ifindex 0, on all of them
    (Python's AF_PACKET addresses need an interface name)."""
    libc = ctypes.CDLL(None, use_errno=True)
    # struct sockaddr_ll: family, protocol (network order), ifindex, then unused fields
    addr = struct.pack("=HHi12x", socket.AF_PACKET, socket.htons(0x0003), ifindex)
    if libc.bind(sock.fileno(), ctypes.c_char_p(addr), len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
