"""Which container a task ran in: cgroup v2 id -> cgroup path -> container.

The kernel side records bpf_get_current_cgroup_id(): the inode number of the
task's cgroup directory in the unified (v2) hierarchy. This module finds that
hierarchy (/sys/fs/cgroup on pure v2, /sys/fs/cgroup/unified on a hybrid
host), maps ids to paths by walking it, and reads the container id, runtime
and Kubernetes pod from the path's shape. No bcc, no root for the parsing.
"""
from __future__ import annotations

import os
import re
import struct
import time
from dataclasses import asdict, dataclass, replace

CGROUP2 = "cgroup2"
O_PATH = getattr(os, "O_PATH", 0o10000000)
HEX_ID = r"[0-9a-f]{64}"
# Kubernetes pod UIDs; systemd slices spell their dashes as underscores.
POD_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"

# One path component that names a container: (pattern, runtime). Tried from
# the deepest component up, so a container's own sub-cgroups (systemd's
# init.scope inside it, nspawn's payload) resolve to it.
CONTAINER_COMPONENTS = (
    (re.compile(rf"docker-({HEX_ID})\.scope"), "docker"),
    (re.compile(rf"cri-containerd-({HEX_ID})\.scope"), "containerd"),
    (re.compile(rf"crio-({HEX_ID})(?:\.scope)?"), "cri-o"),  # systemd and cgroupfs drivers
    (re.compile(rf"libpod-({HEX_ID})(?:\.scope)?"), "podman"),
    (re.compile(rf"nerdctl-({HEX_ID})\.scope"), "containerd"),
    (re.compile(r"machine-(.+)\.scope"), "systemd-nspawn"),
    (re.compile(r"lxc\.payload\.(.+)"), "lxc"),
)
# A bare id is a container under these parents (cgroupfs drivers):
# /docker/<id>, /kubepods/.../pod<uid>/<id>, containerd's /<namespace>/<id>.
BARE_ID = re.compile(HEX_ID)
# The conmon monitor of CRI-O/podman is not the container's workload.
NOT_CONTAINERS = re.compile(rf"(crio|libpod)-conmon-{HEX_ID}(\.scope)?|lxc\.monitor\..*")
POD_SYSTEMD = re.compile(rf"kubepods(?:-(burstable|besteffort))?-pod({POD_UID})\.slice")
POD_CGROUPFS = re.compile(rf"pod({POD_UID})")
QOS_CGROUPFS = ("burstable", "besteffort")


@dataclass(frozen=True)
class Identity:
    """A container as its cgroup path tells it. `cgroup` is the container's
    own cgroup (the directory named for it), the one --container filters on."""
    id: str
    runtime: str
    cgroup: str
    pod_uid: str | None = None
    qos: str | None = None  # guaranteed | burstable | besteffort
    pod: str | None = None  # name and namespace: only when the node says (kubelet's log dirs)
    namespace: str | None = None

    @property
    def short(self) -> str:
        """Docker's 12-character short id; names (nspawn, LXC) as they are."""
        return self.id[:12] if BARE_ID.fullmatch(self.id) else self.id

    def record(self) -> dict:
        """The JSON `container` object."""
        out = asdict(self)
        del out["cgroup"]
        return out


def _unescape_unit(name: str) -> str:
    """systemd unit-name escapes: machine-my\\x2dbox.scope is 'my-box'."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def parse_path(path: str) -> Identity | None:
    """The container a cgroup v2 path belongs to, or None (the host)."""
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts) - 1, -1, -1):
        part = parts[depth]
        if NOT_CONTAINERS.fullmatch(part):
            return None
        found = _component(parts, depth)
        if found:
            ident, runtime = found
            pod_uid, qos = _pod(parts[:depth])
            return Identity(ident, runtime, "/" + "/".join(parts[:depth + 1]), pod_uid, qos)
    return None


def _component(parts: list[str], depth: int) -> tuple[str, str] | None:
    part = parts[depth]
    for pattern, runtime in CONTAINER_COMPONENTS:
        m = pattern.fullmatch(part)
        if m:
            name = m.group(1)
            return (_unescape_unit(name), runtime) if runtime == "systemd-nspawn" else (name, runtime)
    parent = parts[depth - 1] if depth else ""
    if BARE_ID.fullmatch(part) and depth:
        if parent == "docker":
            return part, "docker"
        return part, "containerd"  # kubepods (cgroupfs driver) or containerd's /<namespace>/<id>
    if depth and parent == "lxc":  # LXC before 4.0: /lxc/<name>
        return part, "lxc"
    if depth and parent == "lxc.payload":  # LXC 3.x with the unified layout
        return part, "lxc"
    return None


def _pod(parents: list[str]) -> tuple[str | None, str | None]:
    """(pod UID, QoS class) from the parents of a container's cgroup."""
    if not any(p == "kubepods" or p.startswith("kubepods") for p in parents):
        return None, None
    for part in parents:
        m = POD_SYSTEMD.fullmatch(part)
        if m:
            return m.group(2).replace("_", "-"), m.group(1) or "guaranteed"
    for i, part in enumerate(parents):
        m = POD_CGROUPFS.fullmatch(part)
        if m:
            qos = parents[i - 1] if i and parents[i - 1] in QOS_CGROUPFS else "guaranteed"
            return m.group(1).replace("_", "-"), qos
    return None, None


# -- the hierarchy on this machine ---------------------------------------------

class CgroupError(Exception):
    """No cgroup v2, or a path that is not a cgroup v2 directory: one line."""


def cgroup2_mount(mounts: str = "/proc/self/mounts") -> str | None:
    """Where the unified hierarchy is mounted (the first cgroup2 mount)."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == CGROUP2:
                    return fields[1].replace("\\040", " ")
    except OSError:
        return None
    return None


def require_mount(mounts: str = "/proc/self/mounts") -> str:
    root = cgroup2_mount(mounts)
    if root is None:
        raise CgroupError("no cgroup v2 hierarchy is mounted (see /proc/self/mounts); "
                          "mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified")
    return root


def cgroup_dir(text: str, mounts: str = "/proc/self/mounts") -> tuple[str, int]:
    """(absolute directory, cgroup id) of --cgroup: a directory under the
    cgroup2 mount, or a cgroup path as /proc/PID/cgroup prints it."""
    root = require_mount(mounts)
    full = os.path.realpath(text if _under(text, root) else os.path.join(root, text.lstrip("/")))
    if not _under(full, root) or not os.path.isfile(os.path.join(full, "cgroup.procs")):
        raise CgroupError(f"{text!r} is not a cgroup v2 directory (cgroup2 is mounted at {root})")
    return full, os.stat(full).st_ino


def _under(path: str, root: str) -> bool:
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


class Resolver:
    """cgroup id -> path -> Identity, cached. A miss walks the hierarchy again
    (at most every `min_walk_s`); ids of cgroups that are gone keep their last
    known path, so events of an exited container still name it."""

    def __init__(self, root: str | None = None, pods_dir: str = "/var/log/pods",
                 min_walk_s: float = 1.0, clock=time.monotonic):
        self.root = root if root is not None else cgroup2_mount()
        self.by_handle = root is None and self.root is not None  # a test's tree: only the walk
        self.pods_dir = pods_dir
        self.min_walk_s = min_walk_s
        self.clock = clock
        self.paths: dict[int, str] = {}
        self._identities: dict[int, Identity | None] = {}
        self._pods: dict[str, tuple[str, str]] = {}
        self._walked = float("-inf")
        self.walks = 0

    def walk(self) -> None:
        """Every cgroup directory's inode number (its id) and path."""
        self._walked = self.clock()
        self.walks += 1
        if not self.root:
            return
        stack = [(self.root, "/")]
        try:
            self.paths[os.stat(self.root).st_ino] = "/"
        except OSError:
            return
        while stack:
            top, rel = stack.pop()
            try:
                entries = list(os.scandir(top))
            except OSError:
                continue  # removed while we walked
            for entry in entries:
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    ino = entry.inode()  # kernfs readdir gives the node id: no stat
                except OSError:
                    continue
                path = rel.rstrip("/") + "/" + entry.name
                self.paths[ino] = path
                stack.append((entry.path, path))

    def path(self, cgroup_id: int) -> str | None:
        found = self.paths.get(cgroup_id) or self._by_handle(cgroup_id)
        if found is None and self.clock() - self._walked >= self.min_walk_s:
            self.walk()
            found = self.paths.get(cgroup_id)
        return found

    def _by_handle(self, cgroup_id: int) -> str | None:
        """One cgroup by id, as systemd and bpftool do: open_by_handle_at()
        with a kernfs file handle (needs CAP_DAC_READ_SEARCH; else None and
        the walk finds it)."""
        if not self.by_handle:
            return None
        path = _open_by_cgroup_id(self.root, cgroup_id)
        if path is not None:
            self.paths[cgroup_id] = path
        return path

    def identity(self, cgroup_id: int | None) -> Identity | None:
        """The container of a cgroup id, or None (the host, or unknown)."""
        if not cgroup_id:
            return None
        if cgroup_id in self._identities:
            return self._identities[cgroup_id]
        path = self.path(cgroup_id)
        if path is None:
            return None  # not cached: a later walk may still find it
        ident = parse_path(path)
        if ident is not None and ident.pod_uid:
            ident = self._with_pod_name(ident)
        self._identities[cgroup_id] = ident
        return ident

    def alive(self, ident: Identity) -> bool:
        return bool(self.root) and os.path.isdir(os.path.join(self.root, ident.cgroup.lstrip("/")))

    def _with_pod_name(self, ident: Identity) -> Identity:
        """Pod name and namespace from the kubelet's log directories,
        /var/log/pods/<namespace>_<name>_<uid>: no API server, no new dependency."""
        if ident.pod_uid not in self._pods:
            try:
                for entry in os.listdir(self.pods_dir):
                    parts = entry.rsplit("_", 2)
                    if len(parts) == 3:
                        self._pods[parts[2]] = (parts[1], parts[0])
            except OSError:
                pass
        name, namespace = self._pods.get(ident.pod_uid, (None, None))
        return replace(ident, pod=name, namespace=namespace)

    def find(self, prefix: str) -> Identity:
        """The one running container whose id (or name) starts with prefix."""
        if not prefix:
            raise CgroupError("--container needs a container id or a prefix of one")
        if not self.root:
            require_mount()
        self.walk()
        matches: dict[str, Identity] = {}
        for path in self.paths.values():
            ident = parse_path(path)
            if ident is not None and ident.id.startswith(prefix):
                best = matches.get(ident.id)
                if best is None or len(ident.cgroup) < len(best.cgroup):
                    matches[ident.id] = ident
        if not matches:
            raise CgroupError(f"no running container's id starts with {prefix!r}")
        if len(matches) > 1:
            shown = ", ".join(sorted(i.short for i in matches.values())[:5])
            raise CgroupError(f"container id prefix {prefix!r} is ambiguous: {len(matches)} "
                              f"containers match ({shown}); give more characters")
        return next(iter(matches.values()))


FILEID_KERNFS = 0xFE


def _open_by_cgroup_id(root: str, cgroup_id: int) -> str | None:
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        handle = struct.pack("=Ii", 8, FILEID_KERNFS) + struct.pack("=Q", cgroup_id)
        buf = ctypes.create_string_buffer(handle, len(handle))
        mount_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fd = libc.open_by_handle_at(mount_fd, buf, os.O_RDONLY | O_PATH)
        if fd < 0:
            return None  # gone (ESTALE) or not allowed (EPERM)
        try:
            full = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    finally:
        os.close(mount_fd)
    if not _under(full, root):
        return None
    return "/" if full == root else "/" + os.path.relpath(full, root)


def short_id_decoders(resolver: Resolver | None = None) -> dict:
    """Per-run decoders for summary tables: "container" turns a cgroup id
    into the short id, or None on the host (shown as '-')."""
    resolver = resolver or Resolver()

    def container(raw) -> str | None:
        ident = resolver.identity(int(getattr(raw, "value", raw)))
        return ident.short if ident else None
    return {"container": container}


def record_fields(resolver: Resolver, cgroup_id: int | None) -> dict:
    """{"cgroup_id", "container"} for a JSON record (0: not known)."""
    ident = resolver.identity(cgroup_id)
    return {"cgroup_id": cgroup_id or None, "container": ident.record() if ident else None}
