"""Build bpfwatch_<version>_all.deb from this checkout with Debian's tooling.

    python3 -m tracers.packaging.build_deb [--out DIR]     (default DIR: build/)

Copies the sources (pyproject.toml, README.md, tracers/, exporters/, bpf_c/)
and tracers/packaging/debian/ into a temporary tree and runs
`dpkg-buildpackage -us -uc -b` there (debhelper with dh-python's pybuild,
from Debian 12: `python3 -m tracers.bootstrap --test` installs them). The
checkout only receives the .deb. Prints its path.
"""
from __future__ import annotations

import argparse
import email.utils
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "tracers", "exporters", "bpf_c")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def version() -> str:
    text = (ROOT / "tracers" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def changelog(ver: str) -> str:
    return (f"bpfwatch ({ver}) unstable; urgency=medium\n\n"
            f"  * Built from the bpfwatch checkout.\n\n"
            f" -- bpfwatch developers <bpfwatch@localhost>  {email.utils.formatdate(0)}\n")


def prepare(tree: Path, ver: str) -> Path:
    src = tree / f"bpfwatch-{ver}"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORED)
        else:
            shutil.copy2(path, src / name)
    debian = src / "debian"
    shutil.copytree(ROOT / "tracers" / "packaging" / "debian", debian)
    (debian / "changelog").write_text(changelog(ver))
    # dh_installsystemd takes <package>.<unit>.service
    shutil.copy2(ROOT / "exporters" / "bpfwatch-exporter.service",
                 debian / "bpfwatch.bpfwatch-exporter.service")
    return src


def build(out: Path) -> Path:
    ver = version()
    with tempfile.TemporaryDirectory(prefix="bpfwatch-deb-") as tmp:
        src = prepare(Path(tmp), ver)
        # Debian's own interpreter and tools, whatever this shell's PATH holds (pyenv, a venv)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp, "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
            raise RuntimeError("dpkg-buildpackage failed: " + " | ".join(tail))
        name = f"bpfwatch_{ver}_all.deb"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(tmp) / name, out / name)
    return out / name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tracers.packaging.build_deb",
                                     description="Build bpfwatch's Debian package from this checkout.")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="where the .deb goes (default build/)")
    args = parser.parse_args(argv)
    if shutil.which("dpkg-buildpackage") is None or shutil.which("dh") is None:
        print("build_deb: needs dpkg-dev and debhelper (python3 -m tracers.bootstrap --test)",
              file=sys.stderr)
        return 1
    try:
        print(build(args.out.resolve()))
    except (RuntimeError, OSError) as exc:
        print(f"build_deb: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
