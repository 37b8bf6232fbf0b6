#!/usr/bin/python3
"""Run a shell command as root inside Debian's stock kernel under qemu (TCG).

The guest's root is the host's / over 9p (read-only) under a tmpfs overlay:
it runs the host's python3, BCC, project tree and venv, and its writes never
reach the host, except in `share_dir`. The initramfs (busybox-static + the
9p modules) is rebuilt per run: it takes ms and never goes stale.

    /usr/bin/python3 tests/vm/vmrun.py [--timeout S] [--mem 2G] -- CMD...
"""
import argparse
import glob
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

APT_PACKAGES = ["linux-image-amd64", "linux-headers-amd64", "qemu-system-x86",
                "busybox-static"]
PIP_PACKAGES: list = []  # none: virtme-ng was measured slower (see README)

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIR = os.path.dirname(os.path.dirname(HERE))
GUEST_INIT = os.path.join(HERE, "guest-init.sh")  # stage 1, in the initramfs
QEMU = "qemu-system-x86_64"
# Loaded in dependency order (resolved from modules.dep); built-ins skipped.
MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay"]
# Stage 2, PID 1 on the host's filesystem: run the command, report its code
# in a file (console text is never parsed), then power off at once
# (busybox: a synchronous reboot(2); if it fails, PID 1 exits and panics).
STAGE2 = r"""export PATH={path} HOME=/root LANG=C.UTF-8 TERM=dumb \
  PYTHONDONTWRITEBYTECODE=1
ip link set lo up
cd {cwd}
/bin/sh /run/vmrun/cmd.sh > /run/vmrun/output 2>&1 < /dev/null
echo $? > /run/vmrun/rc
sync
/bin/busybox poweroff -f
"""


class VMError(RuntimeError):
    """The guest reported no exit code (boot failure or timeout)."""
    def __init__(self, msg, console=""):
        super().__init__(msg)
        self.console = console  # the guest's serial console and qemu's words


class VMTimeout(VMError):
    """`timeout` seconds passed: qemu was killed."""


@dataclass
class VMResult:
    args: str
    returncode: int
    output: str
    console: str
    seconds: float
    release: str

    @property
    def stdout(self):  # subprocess.CompletedProcess compatibility
        return self.output


def find_release():
    """Newest /boot/vmlinuz-*-amd64 whose /lib/modules/<rel>/build exists."""
    rels = [p[14:] for p in glob.glob("/boot/vmlinuz-*-amd64")]
    rels = [r for r in rels if os.path.isdir(f"/lib/modules/{r}/build")]
    return max(rels, default=None,
               key=lambda r: [int(x) for x in re.findall(r"\d+", r)])


def guest_kernel(release):
    """An uncompressed vmlinux, cached: qemu boots it directly (PVH entry),
    skipping the xz decompressor, which takes ~8 s under TCG."""
    vmlinuz = f"/boot/vmlinuz-{release}"
    st = os.stat(vmlinuz)
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                         os.path.expanduser("~/.cache"), "bpfwatch-vm")
    out = f"{cache}/vmlinux-{release}-{st.st_size}-{int(st.st_mtime)}"
    if os.path.exists(out):
        return out
    data = _read(vmlinuz)
    start = data.find(b"\xfd7zXZ\x00")
    try:
        elf = lzma.LZMADecompressor().decompress(data[start:])
    except lzma.LZMAError:
        elf = b""
    if start < 0 or not elf.startswith(b"\x7fELF"):
        return vmlinuz  # not xz: let qemu boot the compressed image
    os.makedirs(cache, exist_ok=True)
    for old in glob.glob(f"{cache}/vmlinux-{release}-*"):
        os.unlink(old)
    with open(f"{out}.{os.getpid()}", "wb") as f:  # atomic: runs may race
        f.write(elf)
    os.replace(f.name, out)
    return out


def _module_files(release):
    base = f"/lib/modules/{release}/"
    deps = {}
    with open(base + "modules.dep") as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[_modname(path)] = (path, [_modname(d) for d in rest.split()])
    order = []

    def visit(name):
        if name not in order and name in deps:  # else built in
            for dep in reversed(deps[name][1]):
                visit(dep)
            order.append(name)
    list(map(visit, MODULES))
    return [(m, base + deps[m][0]) for m in order]


def _modname(path):
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def _read(path, mode="rb"):
    # busybox insmod wants plain ELF; newer Debian kernels ship .ko.xz.
    with (lzma.open if path.endswith(".xz") else open)(path, mode) as f:
        return f.read()


def _text(path):
    try:
        return _read(path).decode(errors="replace")
    except FileNotFoundError:
        return ""


def _cpio(entries):
    """newc archive of (name, mode, data, rdev): needs no root nor cpio."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate(entries + [
            ("TRAILER!!!", 0, b"", (0, 0))], 1):
        name = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name), 0]
        out += b"070701" + "".join(f"{x:08x}" for x in fields).encode() + name
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build_initramfs(release, share_dir, dest):
    mods = _module_files(release)
    entries = [(d, 0o40755, b"", (0, 0)) for d in
               ("bin", "dev", "proc", "sys", "mod")]
    entries += [("dev/console", 0o20600, b"", (5, 1)),
                ("bin/busybox", 0o100755, _read("/bin/busybox"), (0, 0)),
                ("init", 0o100755, _read(GUEST_INIT), (0, 0)),
                ("share", 0o100644, share_dir.encode(), (0, 0)),
                ("modules", 0o100644,
                 "\n".join(m for m, _ in mods).encode() + b"\n", (0, 0))]
    entries += [(f"mod/{m}.ko", 0o100644, _read(p), (0, 0))
                for m, p in mods]
    with open(dest, "wb") as f:
        f.write(_cpio(entries))


def _fsdev(tag, path, ro):
    opts = ",readonly=on" if ro else ""
    path = path.replace(",", ",,")  # qemu's option escaping
    return ["-fsdev", f"local,id={tag},path={path},security_model=none,"
            f"multidevs=remap{opts}",
            "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]


def _follow(path, stream, stop):
    pos, done = 0, False  # copies the output to `stream` as the guest writes
    while stream and not done:
        done = stop.wait(0.5)
        chunk = _read(path)[pos:] if os.path.exists(path) else b""
        pos += len(chunk)
        stream.write(chunk.decode(errors="replace"))
        stream.flush()


def run_in_vm(command: str, timeout: float, share_dir: str, *, mem="2G",
              cpus=2, release=None, env=None, stream=None) -> VMResult:
    """Run `command` (a shell string) as root in the guest, cwd = project dir.

    `share_dir` (an existing host directory) is mounted read-write at the same
    path. Returns VMResult(returncode, output, ...); raises VMTimeout after
    `timeout` seconds and VMError if the guest never reported an exit code.
    `env` adds environment variables; `stream`, a text file, receives the
    output live.
    """
    release = release or find_release()
    if not (release and os.path.exists(f"/boot/vmlinuz-{release}") and
            os.path.exists("/bin/busybox") and shutil.which(QEMU)):
        raise VMError(f"no guest kernel {release or '(vmlinuz + headers)'}, "
                      "busybox or qemu: apt-get install "
                      + " ".join(APT_PACKAGES))
    share_dir = os.path.realpath(share_dir)
    if not os.path.isdir(share_dir):
        raise VMError(f"share_dir {share_dir} is not a directory")
    venv_bin = os.path.join(PROJECT_DIR, ".venv", "bin")
    path = (f"{venv_bin}:" if os.path.isdir(venv_bin) else "") + \
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vmrun-") as ctl:
        build_initramfs(release, share_dir, f"{ctl}/initrd")
        with open(f"{ctl}/cmd.sh", "w") as f:
            for key, val in (env or {}).items():
                f.write(f"export {key}={shlex.quote(str(val))}\n")
            f.write(command + "\n")
        with open(f"{ctl}/stage2.sh", "w") as f:
            f.write(STAGE2.format(path=path, cwd=shlex.quote(PROJECT_DIR)))
        # setpriv: qemu dies with us even on SIGKILL/SIGTERM (no orphans).
        qemu = ["setpriv", "--pdeathsig", "KILL", QEMU, "-machine",
                "pc,accel=tcg", "-cpu", "max", "-smp", str(cpus), "-m", mem,
                "-nodefaults", "-no-user-config", "-display", "none",
                "-no-reboot", "-serial", f"file:{ctl}/console", "-kernel",
                guest_kernel(release), "-initrd", f"{ctl}/initrd",
                # panic=-1 + -no-reboot: any guest death ends qemu at once;
                # acpi=noirq, mitigations=off: measured 1.5 s less boot.
                "-append", "console=ttyS0 rdinit=/init panic=-1 loglevel=4 "
                "acpi=noirq mitigations=off"]
        qemu += _fsdev("hostroot", "/", True) + _fsdev("vmctl", ctl, False) \
            + _fsdev("vmshare", share_dir, False)
        stop = threading.Event()
        follower = threading.Thread(target=_follow, daemon=True, args=(
            f"{ctl}/output", stream, stop))
        follower.start()
        proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        timed_out = False
        try:
            qemu_out = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            qemu_out = proc.communicate()[0]
        except BaseException:  # Ctrl-C, pytest timeout: never leak a qemu
            proc.kill()
            raise
        finally:
            stop.set()
            follower.join()
        console = _text(f"{ctl}/console") + qemu_out.decode(errors="replace")
        output = _text(f"{ctl}/output")
        rc = _text(f"{ctl}/rc").strip()
    seconds = time.monotonic() - start
    if not rc and timed_out:
        raise VMTimeout(f"guest timed out after {timeout:.0f}s; output so "
                        f"far:\n{output}", console)
    if not rc:
        raise VMError(f"guest gave no exit code (qemu exit {proc.returncode});"
                      f" console tail:\n{console[-3000:]}", console)
    return VMResult(command, int(rc), output, console, seconds, release)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--share", help="host dir shared read-write "
                    "(default: a fresh temporary dir, printed)")
    ap.add_argument("--release", help="guest kernel release (default: newest)")
    ap.add_argument("cmd", nargs="+", help="one shell string, or argv words")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run cleanups
    share = args.share or tempfile.mkdtemp(prefix="vmrun-share-")
    try:
        cmd = args.cmd[0] if len(args.cmd) == 1 else shlex.join(args.cmd)
        res = run_in_vm(cmd, args.timeout, share, mem=args.mem, cpus=args.cpus,
                        release=args.release, stream=sys.stdout)
    except VMError as e:
        print(f"vmrun: {e}", file=sys.stderr)
        return 125
    finally:
        if not args.share and not os.listdir(share):
            shutil.rmtree(share)
    nl = "" if res.output.endswith("\n") or not res.output else "\n"
    kept = f", share {share}" if os.path.isdir(share) else ""
    print(f"{nl}vmrun: {res.release}, exit {res.returncode}, "
          f"{res.seconds:.1f}s{kept}", file=sys.stderr)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
