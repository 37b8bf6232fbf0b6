"""Getting the machine ready for BCC: pseudo filesystems and kernel headers.

No bcc import here: BCC decides where tracefs lives when it is imported,
so these must run first.
"""
from __future__ import annotations

import fcntl
import os
import platform
import shutil
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tracers.runtime.kconst import DEBUGFS, KPROBE_BLACKLIST, SECURITYFS, TRACEFS

PSEUDO_FILESYSTEMS = (("debugfs", DEBUGFS), ("tracefs", TRACEFS), ("securityfs", SECURITYFS))
HEADER_CACHE = Path("/var/cache/bpfwatch/kernel-headers")
NO_HEADERS = ("no kernel headers found: install linux-headers-{release}, or Debian's generic "
              "linux-headers-amd64 for a fallback tree")


def mounted_types() -> dict[str, str]:
    mounts = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                mounts[parts[1]] = parts[2]
    return mounts


def mount_pseudo_filesystems() -> list[str]:
    """Mount debugfs, tracefs and securityfs where absent; return problems."""
    problems = []
    for fstype, path in PSEUDO_FILESYSTEMS:
        if mounted_types().get(str(path)) == fstype:
            continue
        if not os.path.isdir(path):
            problems.append(f"{fstype}: {path} does not exist (kernel built without it?)")
            continue
        proc = subprocess.run(["mount", "-t", fstype, fstype, path],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            why = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            problems.append(f"{fstype}: cannot mount on {path}: {why[0]}")
    return problems


@dataclass(frozen=True)
class Headers:
    mode: str  # matching | fallback | none
    version: str
    path: str
    detail: str


def _debian_header_pairs() -> list[tuple[str, Path, Path]]:
    """(version, common dir, arch dir) for each installed Debian header set."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    pairs = []
    for common in Path("/usr/src").glob("linux-headers-*-common"):
        version = common.name[len("linux-headers-"):-len("-common")]
        arch_dir = common.with_name(f"linux-headers-{version}-{arch}")
        if arch_dir.is_dir():
            pairs.append((f"{version}-{arch}", common, arch_dir))

    def version_key(item):
        return [int(n) for n in re.findall(r"\d+", item[0])]
    return sorted(pairs, key=version_key, reverse=True)


def _merge_trees(sources: list[Path], target: Path) -> None:
    """Symlink farm: later sources win, like `cp -as` of both folders."""
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    for source in sources:
        for dirpath, dirnames, filenames in os.walk(source, followlinks=True):
            rel = os.path.relpath(dirpath, source)
            out = staging / rel
            out.mkdir(parents=True, exist_ok=True)
            for name in filenames:
                link = out / name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(os.path.realpath(os.path.join(dirpath, name)))
    os.replace(staging, target)  # atomic: a half-built tree is never used


def _build_fallback_tree(common: Path, arch_dir: Path, tree: Path) -> None:
    """Build the tree once, under a lock: a second starter waits for the first.
    Under the lock no one else is building, so any staging tree is stale (its
    builder was killed) and is removed."""
    HEADER_CACHE.mkdir(parents=True, exist_ok=True)
    with open(HEADER_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in HEADER_CACHE.glob("*.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        if not (tree / "include").is_dir():
            _merge_trees([common, arch_dir], tree)


def resolve_headers(release: str | None = None) -> Headers:
    """Matching headers if installed, else a merged Debian fallback tree.

    Sets BCC_KERNEL_SOURCE for the fallback; never writes into /lib/modules.
    """
    release = release or platform.release()
    build = Path("/lib/modules", release, "build")
    if build.is_dir():
        return Headers("matching", release, str(build), f"{build}")
    pairs = _debian_header_pairs()
    if not pairs:
        return Headers("none", "", "", NO_HEADERS.format(release=release))
    version, common, arch_dir = pairs[0]
    tree = HEADER_CACHE / version
    if not (tree / "include").is_dir():
        try:
            _build_fallback_tree(common, arch_dir, tree)
        except OSError as exc:
            return Headers("none", version, "", f"cannot build fallback tree in {tree}: {exc}")
    os.environ["BCC_KERNEL_SOURCE"] = str(tree)
    return Headers("fallback", version, str(tree),
                   f"Debian {version} headers for kernel {release}: kernel struct "
                   "layouts come from BTF, not from these headers")


def tracepoint_exists(target: str) -> bool:
    category, _, name = target.partition(":")
    return (TRACEFS / "events" / category / name / "id").exists()


def raw_tracepoint_exists(name: str) -> bool:
    return any((TRACEFS / "events").glob(f"*/{name}/id"))


def kernel_function_traceable(name: str) -> tuple[bool, str]:
    """Can a kprobe go on this function? (listed and not blacklisted)"""
    if KPROBE_BLACKLIST.exists():
        with open(KPROBE_BLACKLIST) as f:
            if any(line.split()[-1:] == [name] for line in f):
                return False, f"{name} is on the kprobe blacklist"
    functions = TRACEFS / "available_filter_functions"
    if functions.exists():
        with open(functions) as f:
            for line in f:
                if line.split(" ", 1)[0].strip() == name:
                    return True, ""
        return False, f"{name} is not a traceable kernel function here"
    return True, ""


def syscall_symbol(name: str) -> str:
    """The kernel's wrapper symbol for a syscall, from kallsyms."""
    prefixes = ("__x64_sys_", "__arm64_sys_", "__se_sys_", "sys_")
    wanted = {p + name: i for i, p in enumerate(prefixes)}
    found = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            sym = line.rstrip("\n").split(" ")[2].split("\t")[0]
            if sym in wanted:
                found[wanted[sym]] = sym
    return found[min(found)] if found else prefixes[0] + name
