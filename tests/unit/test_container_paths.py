"""Container identity from cgroup v2 paths, as each runtime lays them out
(paths from the runtimes' and the kubelet's documented layouts)."""
import os

import pytest

from tracers import containers
from tracers.containers import CgroupError, Identity, Resolver, parse_path

ID = "4f1b2c3d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"
ID2 = "4f1b9999aaaabbbbccccddddeeeeffff0000111122223333444455556666777a"
UID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
UID_ = UID.replace("-", "_")

# path -> (id, runtime, container cgroup, pod uid, qos)
CASES = [
    # docker, systemd and cgroupfs drivers; a systemd inside the container
    (f"/system.slice/docker-{ID}.scope", (ID, "docker", f"/system.slice/docker-{ID}.scope", None, None)),
    (f"/system.slice/docker-{ID}.scope/init.scope",
     (ID, "docker", f"/system.slice/docker-{ID}.scope", None, None)),
    (f"/docker/{ID}", (ID, "docker", f"/docker/{ID}", None, None)),
    # containerd with CRI (kubelet systemd driver: QoS slices, pod UID with underscores)
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope",
     (ID, "containerd", f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
      f"cri-containerd-{ID}.scope", UID, "burstable")),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope",
     (ID, "containerd", f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope",
      UID, "guaranteed")),
    # kubelet cgroupfs driver: /kubepods/<qos>/pod<uid>/<id>; guaranteed pods sit under /kubepods
    (f"/kubepods/besteffort/pod{UID}/{ID}",
     (ID, "containerd", f"/kubepods/besteffort/pod{UID}/{ID}", UID, "besteffort")),
    (f"/kubepods/pod{UID}/{ID}", (ID, "containerd", f"/kubepods/pod{UID}/{ID}", UID, "guaranteed")),
    # containerd without CRI: ctr's /<namespace>/<id>, nerdctl's systemd scope
    (f"/default/{ID}", (ID, "containerd", f"/default/{ID}", None, None)),
    (f"/system.slice/nerdctl-{ID}.scope", (ID, "containerd", f"/system.slice/nerdctl-{ID}.scope", None, None)),
    # CRI-O, systemd and cgroupfs
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope",
     (ID, "cri-o", f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
      f"crio-{ID}.scope", UID, "besteffort")),
    (f"/kubepods/burstable/pod{UID}/crio-{ID}",
     (ID, "cri-o", f"/kubepods/burstable/pod{UID}/crio-{ID}", UID, "burstable")),
    # podman: rootful systemd, rootless, cgroupfs
    (f"/machine.slice/libpod-{ID}.scope", (ID, "podman", f"/machine.slice/libpod-{ID}.scope", None, None)),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container",
     (ID, "podman", f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
      None, None)),
    (f"/libpod_parent/libpod-{ID}", (ID, "podman", f"/libpod_parent/libpod-{ID}", None, None)),
    # systemd-nspawn (unit-name escapes) and its payload sub-cgroup
    ("/machine.slice/machine-my\\x2dbox.scope/payload",
     ("my-box", "systemd-nspawn", "/machine.slice/machine-my\\x2dbox.scope", None, None)),
    # LXC: before 4.0, and the 4.0 unified layout
    ("/lxc/web01", ("web01", "lxc", "/lxc/web01", None, None)),
    ("/lxc.payload.web01/init.scope", ("web01", "lxc", "/lxc.payload.web01", None, None)),
]

HOST = ["/", "/system.slice/ssh.service", "/user.slice/user-0.slice/session-3.scope",
        f"/machine.slice/libpod-conmon-{ID}.scope", f"/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope", "/lxc.monitor.web01",
        "/kubepods.slice/kubepods-burstable.slice", "/system.slice/docker.service"]


@pytest.mark.parametrize("path,want", CASES, ids=[c[0][-40:] for c in CASES])
def test_each_runtime_layout(path, want):
    got = parse_path(path)
    assert got is not None
    assert (got.id, got.runtime, got.cgroup, got.pod_uid, got.qos) == want


@pytest.mark.parametrize("path", HOST)
def test_host_and_monitor_cgroups_are_no_container(path):
    assert parse_path(path) is None


def test_short_id_is_twelve_characters_names_stay():
    assert parse_path(f"/docker/{ID}").short == ID[:12]
    assert parse_path("/lxc/web01").short == "web01"


def test_record_is_the_json_object():
    rec = parse_path(f"/kubepods/pod{UID}/{ID}").record()
    assert rec == {"id": ID, "runtime": "containerd", "pod_uid": UID, "qos": "guaranteed",
                   "pod": None, "namespace": None}


def test_cgroup2_mount_hybrid_and_pure(tmp_path):
    hybrid = tmp_path / "hybrid"
    hybrid.write_text("tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
                      "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
                      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
    pure = tmp_path / "pure"
    pure.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n")
    none = tmp_path / "none"
    none.write_text("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n")
    assert containers.cgroup2_mount(str(hybrid)) == "/sys/fs/cgroup/unified"
    assert containers.cgroup2_mount(str(pure)) == "/sys/fs/cgroup"
    with pytest.raises(CgroupError, match="no cgroup v2 hierarchy is mounted"):
        containers.require_mount(str(none))


def make_tree(root, paths):
    for p in paths:
        os.makedirs(os.path.join(root, p.lstrip("/")), exist_ok=True)


def test_resolver_walks_on_a_miss_and_keeps_exited_containers(tmp_path):
    tree = tmp_path / "cg"
    make_tree(tree, [f"/system.slice/docker-{ID}.scope"])
    now = [0.0]
    r = Resolver(root=str(tree), pods_dir=str(tmp_path / "nopods"), clock=lambda: now[0])
    cid = os.stat(tree / "system.slice" / f"docker-{ID}.scope").st_ino
    assert r.identity(cid).id == ID and r.walks == 1
    assert r.identity(cid).id == ID and r.walks == 1  # cached
    # a container started after the first walk: the miss walks again
    make_tree(tree, [f"/docker/{ID2}"])
    now[0] = 5.0
    assert r.identity(os.stat(tree / "docker" / ID2).st_ino).runtime == "docker"
    assert r.walks == 2
    # it exits: its id still names it
    os.rmdir(tree / "docker" / ID2)
    assert r.identity(os.stat(tree).st_ino) is None  # the root: the host
    assert r.identity(next(k for k, v in r.paths.items() if v == f"/docker/{ID2}")).id == ID2


def test_unknown_ids_walk_at_most_once_a_second(tmp_path):
    now = [0.0]
    r = Resolver(root=str(tmp_path), clock=lambda: now[0])
    for _ in range(50):
        assert r.identity(123456789) is None
    assert r.walks == 1
    now[0] = 1.5
    r.identity(123456789)
    assert r.walks == 2


def test_find_by_prefix_unique_ambiguous_unknown(tmp_path):
    make_tree(tmp_path, [f"/system.slice/docker-{ID}.scope/init.scope", f"/docker/{ID2}"])
    r = Resolver(root=str(tmp_path))
    found = r.find(ID[:12])
    assert found.id == ID and found.cgroup == f"/system.slice/docker-{ID}.scope"
    with pytest.raises(CgroupError, match=r"ambiguous: 2 containers match \(4f1b2c3d5e6f, 4f1b9999aaaa\)"):
        r.find("4f1b")
    with pytest.raises(CgroupError, match="no running container's id starts with 'ffff'"):
        r.find("ffff")


def test_pod_name_and_namespace_from_the_kubelet_log_dirs(tmp_path):
    make_tree(tmp_path / "cg", [f"/kubepods/burstable/pod{UID}/{ID}"])
    (tmp_path / "pods" / f"shop_cart-7d9f_{UID}").mkdir(parents=True)
    r = Resolver(root=str(tmp_path / "cg"), pods_dir=str(tmp_path / "pods"))
    ident = r.identity(os.stat(tmp_path / "cg" / "kubepods" / "burstable" / f"pod{UID}" / ID).st_ino)
    assert (ident.pod, ident.namespace, ident.qos) == ("cart-7d9f", "shop", "burstable")


def test_cgroup_dir_accepts_cgroup_paths_and_refuses_others(tmp_path):
    root = tmp_path / "unified"
    make_tree(root, ["/system.slice/app.service"])
    for d in (root, root / "system.slice", root / "system.slice" / "app.service"):
        (d / "cgroup.procs").write_text("")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    want = (str(root / "system.slice" / "app.service"),
            os.stat(root / "system.slice" / "app.service").st_ino)
    assert containers.cgroup_dir("/system.slice/app.service", str(mounts)) == want
    assert containers.cgroup_dir(str(root / "system.slice/app.service"), str(mounts)) == want
    with pytest.raises(CgroupError, match="is not a cgroup v2 directory"):
        containers.cgroup_dir("/no/such", str(mounts))
    with pytest.raises(CgroupError, match="is not a cgroup v2 directory"):
        containers.cgroup_dir(str(tmp_path), str(mounts))


def test_identity_is_hashable_for_label_caches():
    assert len({Identity(ID, "docker", "/x"), Identity(ID, "docker", "/x")}) == 1


def test_options_pass_the_cgroup_id_and_only_event_tracers_get_the_column():
    from tracers import options
    from tracers.tools import execsnoop, syscount
    args = options.build_parser(execsnoop.TRACER()).parse_args([])
    assert args.containers is False and args.cgroup_filter is None
    args.cgroup_filter = options.CgroupFilter("/sys/fs/cgroup/x", 4242)
    assert options.common_defines(args)["FILTER_CGROUP"] == 4242
    assert not hasattr(options.build_parser(syscount.TRACER()).parse_args([]), "containers")


def test_summary_views_name_containers_through_the_per_run_decoder(tmp_path):
    import ctypes

    from tracers.summary import Histogram, label

    class Key(ctypes.Structure):
        _fields_ = [("cgroup_id", ctypes.c_uint64), ("slot", ctypes.c_uint32), ("pad", ctypes.c_uint32)]
    make_tree(tmp_path, [f"/docker/{ID}"])
    box, host = os.stat(tmp_path / "docker" / ID).st_ino, os.stat(tmp_path).st_ino
    hist = Histogram("dist_cgroup", "usecs", by=(label("container", "CONTAINER", 0, "cgroup_id", "container"),),
                     slot_field="slot", decoders=containers.short_id_decoders(Resolver(root=str(tmp_path))))
    now = hist.read([(Key(box, 3), ctypes.c_uint64(4)), (Key(host, 2), ctypes.c_uint64(1))])
    assert now == {(ID[:12],): {3: 4}, (None,): {2: 1}}
    text = hist.text(hist.rows(now, {}))[0]
    assert f"CONTAINER = {ID[:12]}" in text and "CONTAINER = -" in text
    assert [r["container"] for r in hist.json(now)["histograms"]] == [ID[:12], None]
