"""Issue 11 §2 on the real kernel: read_sizes --per-process --max-series 50
while 4000 command names read (LRU maps evicting all along). No served
counter may go backwards or vanish between scrapes; evictions and folds
are counted; a name that stays busy is counted exactly."""
import signal
import subprocess
import sys
import time

import pytest

from conftest import unique_name
from exporter_helpers import READS_TOML, samples, scrape, start_exporter, value

pytestmark = pytest.mark.kernel

NAMES = 4000
HOT_READS = 3000
# One process renames itself (PR_SET_NAME) 4000 times; each name reads 100,
# 5000 and 70000 bytes (three histogram slots: 12000 keys for a 10240-entry
# map, 4000 names for the 1024-entry sum map). Between names, the hot name
# reads 100 bytes, so its entries stay the most recently used.
WORKLOAD = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None)
hot, names, hot_reads = sys.argv[1].encode(), int(sys.argv[2]), int(sys.argv[3])
fd = os.open("/dev/zero", os.O_RDONLY)
done = 0
for i in range(names):
    libc.prctl(15, b"ev%05d" % i)
    for size in (100, 5000, 70000):
        os.read(fd, size)
    libc.prctl(15, hot)
    while done < hot_reads * (i + 1) // names:
        os.read(fd, 100)
        done += 1
    time.sleep(0.002)
"""


def counters(parsed: dict) -> dict:
    return {k: v for k, v in parsed.items()
            if k[0].startswith("bpfwatch_read_size_bytes") and k[0].endswith(("_bucket", "_count", "_sum"))}


def test_counters_never_go_backwards_while_lru_maps_evict():
    proc, url = start_exporter("--tracers", "none", "--program", READS_TOML, "--per-process",
                               "--max-series", "50")
    try:
        hot = unique_name("hot")
        # The hot name reads first, so the first scrape admits it among the 50.
        subprocess.run([sys.executable, "-c", "import ctypes, os, sys; ctypes.CDLL(None).prctl(15, sys.argv[1].encode());"
                        "fd = os.open('/dev/zero', os.O_RDONLY); [os.read(fd, 100) for _ in range(500)]", hot],
                       check=True)
        first = samples(scrape(url))
        assert value(first, "bpfwatch_read_size_bytes_count", comm=hot) == 500
        workload = subprocess.Popen([sys.executable, "-c", WORKLOAD, hot, str(NAMES), str(HOT_READS)])
        backwards, vanished, scrapes, previous = [], [], 0, counters(first)
        while workload.poll() is None or scrapes < 3:
            now = counters(samples(scrape(url)))
            scrapes += 1
            vanished += [k for k in previous if k not in now]
            backwards += [(k, previous[k], now[k]) for k in previous if k in now and now[k] < previous[k]]
            previous = now
            time.sleep(0.1)
        assert workload.wait() == 0
        assert scrapes >= 20, scrapes
        assert not vanished, vanished[:5]
        assert not backwards, (len(backwards), backwards[:5])
        last = samples(scrape(url))
        assert value(last, "bpfwatch_read_size_bytes_count", comm=hot) == 500 + HOT_READS
        assert value(last, "bpfwatch_read_size_bytes_sum", comm=hot) == (500 + HOT_READS) * 100
        assert len({dict(k[1]).get("comm") for k in counters(last)}) == 51  # 50 names and `other`
        for name in ("read_sizes", "read_bytes"):
            assert value(last, "bpfwatch_map_evictions_total", tracer="read_sizes", map=name) > 0, name
        assert value(last, "bpfwatch_series_folded_arrivals_total", tracer="read_sizes",
                     metric="read_size_bytes") >= NAMES // 2  # names no scrape saw are not counted
    finally:
        assert proc.stop(signal.SIGTERM) == 0
        proc.close()
