"""The collector's --per-container labels against fake maps and a fake cgroup tree."""
import ctypes
import os
import shutil

from prometheus_client import CollectorRegistry, generate_latest

from exporters.collector import MapCollector, Target
from tracers.containers import Resolver
from tracers.spec import Label, Metric, TracerSpec

A = "a" * 64
B = "b" * 64
UID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"


class ErrKey(ctypes.Structure):
    _fields_ = [("cgroup_id", ctypes.c_uint64), ("err", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class FakeMap:
    def __init__(self, items):
        self._items = list(items)
        self.max_entries = 4096

    def items(self):
        return list(self._items)

    def items_lookup_batch(self):
        yield from self._items


EXECS = Metric("execs_total", "Execs.", map="execs", labels=(Label("container", "", "cgroup"),))
FAILS = Metric("exec_failures_total", "Failed execs.", map="errs",
               labels=(Label("errno", "err", "errno_name"), Label("container", "cgroup_id", "cgroup")))


class Tree:
    """A cgroup tree with a docker container, a kubernetes one and the host."""

    def __init__(self, root):
        self.root = root
        self.a = self.make(f"system.slice/docker-{A}.scope")
        self.b = self.make(f"kubepods/burstable/pod{UID}/{B}")
        self.host = os.stat(root).st_ino
        os.makedirs(os.path.join(root, "..", "pods", f"shop_cart-7d9f_{UID}"))
        self.resolver = Resolver(root=str(root), pods_dir=os.path.join(root, "..", "pods"), min_walk_s=0)

    def make(self, path):
        os.makedirs(os.path.join(self.root, path))
        return os.stat(os.path.join(self.root, path)).st_ino


def collector(maps, metrics, tree, now, **kw):
    registry = CollectorRegistry()
    spec = TracerSpec(name="execsnoop", summary="x", c_file="x.bpf.c", alternatives=(),
                      metrics=tuple(metrics))
    target = Target(spec, "tracepoint", maps.__getitem__)
    return registry, MapCollector([target], registry=registry, resolver=tree.resolver,
                                  clock=lambda: now[0], **kw)


def test_without_the_flag_the_cgroup_is_summed_away(tmp_path):
    tree = Tree(tmp_path / "cg")
    execs = FakeMap([(ctypes.c_uint64(tree.a), ctypes.c_uint64(3)),
                     (ctypes.c_uint64(tree.host), ctypes.c_uint64(4))])
    reg, _ = collector({"execs": execs}, [EXECS], tree, [0.0])
    assert reg.get_sample_value("bpfwatch_execs_total", {}) == 7


def test_per_container_labels_with_pod_and_namespace(tmp_path):
    tree = Tree(tmp_path / "cg")
    execs = FakeMap([(ctypes.c_uint64(tree.a), ctypes.c_uint64(3)),
                     (ctypes.c_uint64(tree.b), ctypes.c_uint64(5)),
                     (ctypes.c_uint64(tree.host), ctypes.c_uint64(4)),
                     (ctypes.c_uint64(0), ctypes.c_uint64(2))])  # 0: unknown owner, the host
    errs = FakeMap([(ErrKey(tree.b, 2, 0), ctypes.c_uint64(6))])
    reg, _ = collector({"execs": execs, "errs": errs}, [EXECS, FAILS], tree, [0.0], per_container=True)
    get = reg.get_sample_value
    assert get("bpfwatch_execs_total", {"container": A[:12], "pod": "", "namespace": ""}) == 3
    assert get("bpfwatch_execs_total", {"container": B[:12], "pod": "cart-7d9f", "namespace": "shop"}) == 5
    assert get("bpfwatch_execs_total", {"container": "", "pod": "", "namespace": ""}) == 6
    assert get("bpfwatch_exec_failures_total", {"errno": "ENOENT", "container": B[:12], "pod": "cart-7d9f",
                                                "namespace": "shop"}) == 6


def test_gone_containers_stop_after_the_ttl_and_free_their_slot(tmp_path):
    tree = Tree(tmp_path / "cg")
    now = [0.0]
    execs = FakeMap([(ctypes.c_uint64(tree.a), ctypes.c_uint64(3)),
                     (ctypes.c_uint64(tree.host), ctypes.c_uint64(4))])
    reg, _ = collector({"execs": execs}, [EXECS], tree, now, per_container=True, container_ttl=60,
                       max_series=2)
    labels_a = {"container": A[:12], "pod": "", "namespace": ""}
    assert reg.get_sample_value("bpfwatch_execs_total", labels_a) == 3
    shutil.rmtree(tmp_path / "cg" / "system.slice")  # the container exits
    now[0] = 10.0
    assert reg.get_sample_value("bpfwatch_execs_total", labels_a) == 3  # still served
    now[0] = 69.0
    assert reg.get_sample_value("bpfwatch_execs_total", labels_a) == 3
    now[0] = 71.0
    assert reg.get_sample_value("bpfwatch_execs_total", labels_a) is None
    # its slot under --max-series 2 is free: a new container takes it, nothing folds
    execs._items.append((ctypes.c_uint64(tree.b), ctypes.c_uint64(1)))
    text = generate_latest(reg).decode()
    assert f'container="{B[:12]}"' in text and 'container="other"' not in text
    assert reg.get_sample_value("bpfwatch_series_folded", {"tracer": "execsnoop", "metric": "execs_total"}) == 0


def test_more_containers_than_max_series_fold_and_are_counted(tmp_path):
    tree = Tree(tmp_path / "cg")
    execs = FakeMap([(ctypes.c_uint64(tree.a), ctypes.c_uint64(3)),
                     (ctypes.c_uint64(tree.b), ctypes.c_uint64(5)),
                     (ctypes.c_uint64(tree.host), ctypes.c_uint64(9))])
    reg, _ = collector({"execs": execs}, [EXECS], tree, [0.0], per_container=True, max_series=2)
    get = reg.get_sample_value
    assert get("bpfwatch_execs_total", {"container": "other", "pod": "other", "namespace": "other"}) == 3
    assert get("bpfwatch_series_folded", {"tracer": "execsnoop", "metric": "execs_total"}) == 1


def test_an_evicted_host_cgroup_never_makes_the_host_series_go_back(tmp_path):
    tree = Tree(tmp_path / "cg")
    other_host = tree.make("system.slice/ssh.service")
    execs = FakeMap([(ctypes.c_uint64(tree.host), ctypes.c_uint64(4)),
                     (ctypes.c_uint64(other_host), ctypes.c_uint64(10))])
    reg, _ = collector({"execs": execs}, [EXECS], tree, [0.0], per_container=True)
    host = {"container": "", "pod": "", "namespace": ""}
    assert reg.get_sample_value("bpfwatch_execs_total", host) == 14
    execs._items = [(ctypes.c_uint64(tree.host), ctypes.c_uint64(5))]  # the LRU dropped ssh's entry
    assert reg.get_sample_value("bpfwatch_execs_total", host) == 15
