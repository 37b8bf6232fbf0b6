"""Packet programs: tc programs (tcx links or clsact filters) and
packet-socket filters, always cleaned up.

tc: where the kernel has tcx (runtime/tcx.py), programs are links owned by
a file descriptor and nothing can outlive us. Otherwise (clsact, see
ARCHITECTURE "Traps") filters and the qdisc survive SIGKILL, so:
- a filter's owner is the live process that holds the program: the owner
  keeps an flock on /run/bpfwatch/tc/prog-<program id>.lock for as long as
  it runs. The kernel drops the lock when the owner dies; that is the only
  proof of death we act on. A PID proves nothing across PID namespaces or
  after reuse, and /proc shows no process of a parent PID namespace: a
  filter whose lock file we cannot see (another /run) is left alone;
- a bpfwatch that creates the clsact qdisc says so in its filters' names
  (...-madeqdisc); one that attaches to a qdisc holding such a filter says
  so too. The qdisc goes only when such a filter of ours leaves it empty.
  The claim lives in the kernel, on that qdisc instance: a qdisc the
  operator creates later never carries it;
- qdisc and filter changes of all bpfwatch processes take one lock.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import socket
import struct
from pathlib import Path

from tracers.runtime import bpfsys
from tracers.runtime.capture import quiet_stderr
from tracers.runtime.errors import BpfwatchError, LoadError
from tracers.runtime.kconst import CLSACT_PARENTS as PARENTS, SO_ATTACH_BPF

MADE_QDISC = "-madeqdisc"
OUR_NAME = re.compile(r"^bpfwatch-(\d+)-(ingress|egress)(-madeqdisc)?$")
LOCKS = Path("/run/bpfwatch/tc")
TCA_BPF_ID = 11  # in TCA_OPTIONS of a cls_bpf filter; pyroute2 does not decode it


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


def interface_index(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise BpfwatchError(f"no interface {ifname!r} in this network namespace") from None


def tc_attacher(ifname: str):
    """attach(session, hook) for "tc" hooks: tcx links when the chosen
    alternative needs the tcx feature, clsact filters otherwise."""
    from tracers.runtime.tcx import Tcx
    tcx, clsact = Tcx(ifname), Clsact(ifname)

    def attach(session, hook) -> None:
        (tcx if "tcx" in session.alternative.needs else clsact).attach(session, hook)
    return attach


# -- clsact ----------------------------------------------------------------------
def filter_name(f) -> str:
    if f.get_attr("TCA_KIND") != "bpf" or not f["handle"]:
        return ""
    return f.get_nested("TCA_OPTIONS", "TCA_BPF_NAME") or ""


def filter_prog_id(f) -> int:
    """The id of the program a cls_bpf filter holds (0 if none), read from
    the raw TCA_OPTIONS attributes."""
    opts = f.get_attr("TCA_OPTIONS")
    if opts is None:
        return 0
    raw = bytes(opts.data[opts.offset + 4:opts.offset + opts.length])
    while len(raw) >= 4:
        length, kind = struct.unpack_from("=HH", raw)
        if length < 4:
            break
        if kind & 0x3FFF == TCA_BPF_ID and length >= 8:
            return struct.unpack_from("=I", raw, 4)[0]
        raw = raw[(length + 3) & ~3:]
    return 0


def _open_lock(path: Path, create: bool) -> int | None:
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        if create:
            LOCKS.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as exc:
        raise BpfwatchError(f"the clsact hook keeps its locks in {LOCKS}: {path}: "
                            f"{exc.strerror or exc}") from None


def hold_program(prog_id: int):
    """Lock prog-<id>.lock for as long as we run; returns the release function."""
    path = LOCKS / f"prog-{prog_id}.lock"
    fd = _open_lock(path, create=True)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh id: at most a cleaner holds it, for a moment

    def release() -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
    return release


@contextlib.contextmanager
def dead_owner(prog_id: int):
    """Yields the program's lock file, holding its lock, if the owner provably
    died (the caller unlinks it when done); None if it lives or we cannot
    tell (no lock file visible to us)."""
    path = LOCKS / f"prog-{prog_id}.lock"
    fd = _open_lock(path, create=False) if prog_id else None
    if fd is None:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield path
    finally:
        os.close(fd)


@contextlib.contextmanager
def tc_lock():
    """One lock for every bpfwatch's qdisc and filter changes."""
    fd = _open_lock(LOCKS / "clsact.lock", create=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def forget_orphan_locks() -> None:
    """Lock files of dead owners whose program is gone too (the operator
    deleted the qdisc after a kill)."""
    for path in LOCKS.glob("prog-*.lock"):
        with contextlib.suppress(ValueError, OSError):
            prog_id = int(path.name[len("prog-"):-len(".lock")])
            with dead_owner(prog_id) as lock:
                if lock and not bpfsys.prog_exists(prog_id):
                    lock.unlink()


class Clsact:
    """Our filters on one interface's clsact hooks; attach(session, hook) per direction."""

    def __init__(self, ifname: str):
        self.ifname = ifname
        self.index = 0
        self.made_qdisc = False  # this qdisc instance was created by a bpfwatch

    def attach(self, session, hook) -> None:
        from pyroute2 import IPRoute
        direction = hook.target
        if direction not in PARENTS:
            raise LoadError(f"{session.spec.name}: tc hook target must be ingress or egress")
        fn = load_program(session, hook.fn, "tc")
        session.on_close(hold_program(bpfsys.prog_id(fn.fd)))  # released after the filter goes
        with tc_lock():
            if not self.index:
                self._prepare()
            name = f"bpfwatch-{os.getpid()}-{direction}" + (MADE_QDISC if self.made_qdisc else "")
            # Registered first: an interrupted add still gets cleaned up (by name).
            session.on_close(lambda: self._detach(name))
            with IPRoute() as ipr:
                try:
                    ipr.tc("add-filter", "bpf", self.index, ":1", fd=fn.fd, name=name,
                           parent=PARENTS[direction], classid=1, direct_action=True)
                except Exception as exc:
                    raise LoadError(f"{session.spec.name}: cannot add the {direction} filter "
                                    f"on {self.ifname}: {exc}") from None

    def _prepare(self) -> None:
        """Under tc_lock: remove dead owners' filters, create the qdisc if
        absent, and learn whether a bpfwatch made it."""
        from pyroute2 import IPRoute
        index = interface_index(self.ifname)
        forget_orphan_locks()
        with IPRoute() as ipr:
            kinds = {q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index)}
            if "clsact" not in kinds:
                if "ingress" in kinds:
                    raise BpfwatchError(f"{self.ifname} has an 'ingress' qdisc; the clsact hook "
                                        f"needs clsact (remove it with: tc qdisc del dev "
                                        f"{self.ifname} ingress)")
                ipr.tc("add", "clsact", index)
                self.index, self.made_qdisc = index, True
                return
            self.index = index
            for f in self._filters(ipr):
                match = OUR_NAME.match(filter_name(f))
                if not match:
                    continue
                self.made_qdisc |= bool(match.group(3))  # the evidence stays, dead or alive
                with dead_owner(filter_prog_id(f)) as lock:
                    if lock:
                        self._delete(ipr, f)
                        lock.unlink()

    def _filters(self, ipr) -> list:
        return [f for parent in PARENTS.values()
                for f in ipr.get_filters(self.index, parent=parent)]

    def _delete(self, ipr, f) -> None:
        with contextlib.suppress(Exception):  # gone meanwhile
            ipr.tc("del-filter", "bpf", self.index, f["handle"], parent=f["parent"], info=f["info"])

    def _detach(self, name: str) -> None:
        """Remove our filter; then the qdisc, if a bpfwatch made it and it is empty."""
        from pyroute2 import IPRoute
        with tc_lock(), IPRoute() as ipr:
            for f in self._filters(ipr):
                if filter_name(f) == name:
                    self._delete(ipr, f)
            if name.endswith(MADE_QDISC) and not self._filters(ipr):
                with contextlib.suppress(Exception):  # another bpfwatch was faster
                    ipr.tc("del", "clsact", self.index)


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
