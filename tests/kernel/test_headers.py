"""The fallback header tree: built once under a lock, stale staging trees of
killed builders removed, and no headers at all is one clear line. Each test
runs in a private mount namespace with an empty cache (tmpfs), so the
machine's own cache is untouched."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

SCRIPT = r"""
import json, os, subprocess, sys
from pathlib import Path
cache = Path("/var/cache/bpfwatch")
cache.mkdir(parents=True, exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(cache)], check=True)
for hidden in sys.argv[2:]:  # directories to show empty
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", hidden], check=True)
setup = sys.argv[1]
exec(setup)
procs = [subprocess.Popen([sys.executable, "-m", "tracers", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) for argv in RUNS]
out = [{"rc": p.wait(120), "stderr": p.stderr.read()} for p in procs]
tree = cache / "kernel-headers"
out.append(sorted(p.name for p in tree.iterdir() if not p.name.startswith(".")) if tree.is_dir() else [])
print(json.dumps(out))
"""


def in_private_cache(setup: str, hidden: tuple[str, ...] = ()) -> list:
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                           sys.executable, "-c", SCRIPT, setup, *hidden],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_two_tracers_started_together_on_an_empty_cache_both_run():
    *runs, tree = in_private_cache('RUNS = [["syscount", "-d", "0.5"], ["syscount", "-d", "0.5"]]')
    assert [r["rc"] for r in runs] == [0, 0], runs
    assert len(tree) == 1 and ".tmp" not in tree[0], tree


def test_a_killed_builders_staging_tree_is_removed():
    setup = ('v = sorted(p.name[len("linux-headers-"):-len("-common")] for p in Path("/usr/src").glob("linux-headers-*-common"))[-1]\n'
             'stale = cache / "kernel-headers" / (v + "-amd64.tmp4242") / "include"\n'
             'stale.mkdir(parents=True)\n'
             'RUNS = [["syscount", "-d", "0.2"]]')
    run, tree = in_private_cache(setup)
    assert run["rc"] == 0, run
    assert not [name for name in tree if ".tmp" in name], tree
    assert len(tree) == 1  # the tree itself, built once


def test_no_headers_at_all_is_one_line_that_says_so():
    import platform
    hidden = ["/usr/src"] + ([f"/lib/modules/{platform.release()}"]
                             if subprocess.run(["test", "-d", f"/lib/modules/{platform.release()}"]).returncode == 0 else [])
    run, _ = in_private_cache('RUNS = [["execsnoop", "-d", "0.5"]]', tuple(hidden))
    lines = run["stderr"].strip().splitlines()
    assert run["rc"] == 1 and len(lines) == 1, run
    assert "no kernel headers found" in lines[0] and "linux-headers" in lines[0]
