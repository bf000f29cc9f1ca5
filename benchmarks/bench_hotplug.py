"""Benchmark (not a test): hot-plug cycles -- add, online, offline, remove -- and the time per cycle.

    python3 benchmarks/bench_hotplug.py [--cycles 10000] [--baseline 20]

For each configuration (qemu-2g, 6.1 vmemmap, 6.12 vmemmap, 4.20 vmemmap, 6.1 classic
sparsemem-extreme): boot once, then ``--cycles`` times ``add_memory(0, 4 GiB + i*128 MiB, 128 MiB)``
(eight positions in turn: 4 GiB .. 5 GiB), ``online_movable``, ``offline``, ``remove`` through
``k.hotplug``, each step checked ok. After the last cycle the kernel must be byte-identical to the state
before the first (:func:`vmemmap.hotplug.kernel_state`), which is checked (not timed).

Baseline: the naive way to get back to the pre-add state -- boot the machine again -- timed over
``--baseline`` boots (per-cycle cost = one boot + one add/online). Times are ``time.perf_counter``,
from this one run on this machine: they say nothing absolute.
"""

from __future__ import annotations

import argparse
import time

from vmemmap.hotplug import kernel_state
from vmemmap.kernel import boot
from vmemmap.machine import load_machine

G = 1 << 30
BLOCK = 128 << 20
CONFIGS = [("6.1", "vmemmap"), ("6.12", "vmemmap"), ("4.20", "vmemmap"), ("6.1", "sparsemem-extreme")]


def cycles(era: str, model: str, n: int) -> tuple[float, float]:
    k = boot(load_machine("qemu-2g"), era, model)
    hp = k.hotplug
    before = kernel_state(k)
    t0 = time.perf_counter()
    for i in range(n):
        start = 4 * G + (i % 8) * BLOCK
        nr = start // BLOCK
        assert hp.add_memory(0, start, BLOCK, "offline").ok
        assert hp.online(nr, "online_movable").ok
        assert hp.offline(nr).ok
        assert hp.remove(start, BLOCK).ok
    dt = time.perf_counter() - t0
    assert kernel_state(k) == before, "add/online/offline/remove cycles did not restore the kernel"
    return dt, dt / n


def baseline(era: str, model: str, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        k = boot(load_machine("qemu-2g"), era, model)
        assert k.hotplug.add_memory(0, 4 * G, BLOCK).ok and k.hotplug.online(32, "online_movable").ok
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--baseline", type=int, default=20)
    a = ap.parse_args()
    print(f"{'era':6} {'model':18} {'cycles':>7} {'total s':>8} {'us/cycle':>9} {'reboot us':>10} {'ratio':>6}")
    for era, model in CONFIGS:
        total, per = cycles(era, model, a.cycles)
        base = baseline(era, model, a.baseline)
        print(f"{era:6} {model:18} {a.cycles:7d} {total:8.2f} {per * 1e6:9.0f} {base * 1e6:10.0f} "
              f"{base / per:6.1f}")


if __name__ == "__main__":
    main()
