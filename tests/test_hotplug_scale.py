"""Invariants at scale (issue 4, "must hold"): a seeded random script of 10,000 hot-plug steps on a 6.1
machine, every invariant checked periodically and at the end, and add-then-remove of any block restoring
a byte-identical kernel (page tables, section table, allocator: :func:`vmemmap.hotplug.kernel_state`)."""

from __future__ import annotations

import random

import pytest

from vmemmap.hotplug import kernel_state
from vmemmap.kernel import boot
from vmemmap.machine import load_machine

G = 1 << 30
BLOCK = 128 << 20
#: 4 GiB.. (root 0, the boot vmemmap PMD table) and 64 GiB.. (its own vmemmap PMD table, root 2)
HOT = list(range(32, 44)) + [512, 513, 514]


def check_invariants(k) -> None:  # noqa: ANN001
    """Sections, pfn_valid, vmemmap, allocator, flags and zones agree with the memory blocks."""
    hp = k.hotplug
    sec = k.model.sections
    online_flag = k.era.section_flag("ONLINE")
    present = {int(x) for x in sec.present_array()}
    assert present == set(hp.blocks)  # one 128 MiB section per block
    base = k.layout.vmemmap_base
    mapped: set[int] = set()
    for r in k.tables.runs(base, k.layout.vmemmap_end + 1):
        mapped |= set(range((r.vaddr - base) >> 21, (r.end - base) >> 21))
    assert mapped == present  # vmemmap mapped exactly where a section has a memmap
    for nr in present:
        w = sec.read_word_nocheck(nr)
        b = hp.blocks[nr]
        assert bool(w & online_flag) == (b.state == "online")  # flags match block states
        assert w & k.era.section_flag("HAS_MEM_MAP")
        assert k.model.pfn_valid(nr << 15).value
        if not b.early:
            assert sec.subsection_map(nr) == (1 << 64) - 1
    for nr in HOT:
        if nr not in present:
            assert not k.model.pfn_valid(nr << 15).value  # pfn_valid == present sections and sub-sections
    # every page-table page and every vmemmap backing page is allocated (not free) and distinct
    free = sorted(rg for rs in k.memblock.free_ranges().values() for rg in rs)
    used = sorted([(r.phys, r.phys_end) for r in k.tables.runs(base, k.layout.vmemmap_end + 1)]
                  + [(p, p + 4096) for _, p in k.tables.iter_tables()])
    for (a, b), (c, _) in zip(used, used[1:]):
        assert b <= c  # no page used twice
    import bisect

    starts = [s for s, _ in free]
    for a, b in used:
        i = bisect.bisect_right(starts, a) - 1
        assert i < 0 or free[i][1] <= a
        assert i + 1 >= len(free) or free[i + 1][0] >= b
    mov = next((z for z in k.zones if z.name == "Movable"), None)
    n_mov = sum(1 for b in hp.blocks.values() if b.state == "online" and b.zone == "Movable")
    assert (mov.present_pages if mov else 0) == n_mov * 32768


@pytest.mark.slow  # ~10 s; still part of the default run (the marker only lets `-m "not slow"` skip it)
def test_ten_thousand_random_steps_keep_every_invariant() -> None:
    k = boot(load_machine("qemu-2g"), "6.1", "vmemmap")
    hp = k.hotplug
    assert hp.add_memory(0, 64 * G, BLOCK).ok and hp.remove(64 * G, BLOCK).ok  # root 2 exists from now on
    rnd = random.Random(20240404)
    counts = {"ok": 0, "failed": 0, "undo": 0}
    for step in range(10_000):
        op = rnd.choice(("add", "add", "online", "online", "offline", "offline", "remove", "probe") * 2 + ("undo",))
        b = rnd.choice(HOT)
        if op == "add":
            r = hp.add_memory(0, b * BLOCK, rnd.choice((1, 1, 2)) * BLOCK)
        elif op == "probe":
            r = hp.probe(b * BLOCK)
        elif op == "online":
            r = hp.online(b, rnd.choice(("online", "online_kernel", "online_movable"))) if b in hp.blocks \
                else hp.offline(b)
        elif op == "offline":
            r = hp.offline(rnd.choice((b, b, 3)))
        elif op == "remove":
            r = hp.remove(b * BLOCK, BLOCK)
        else:  # add-then-remove of a free block restores a byte-identical kernel
            free = [x for x in HOT if x not in hp.blocks]
            if not free:
                continue
            x = rnd.choice(free)
            before = kernel_state(k)
            assert hp.add_memory(0, x * BLOCK, BLOCK).ok
            if rnd.random() < 0.5:
                assert hp.online(x, "online_movable").ok and hp.offline(x).ok
            assert hp.remove(x * BLOCK, BLOCK).ok
            assert kernel_state(k) == before, step
            counts["undo"] += 1
            continue
        counts["ok" if r.ok else "failed"] += 1
        if step % 500 == 0:
            check_invariants(k)
    check_invariants(k)
    # the script exercised everything: successes, refusals, undo
    assert counts["ok"] > 1000 and counts["failed"] > 1000 and counts["undo"] > 300
    # and tearing everything down returns to the boot state's blocks
    for nr in sorted((x for x in hp.blocks if not hp.blocks[x].early), reverse=True):
        if hp.blocks[nr].state == "online":
            hp.offline(nr)
    for nr in sorted((x for x in hp.blocks if not hp.blocks[x].early), reverse=True):
        if hp.blocks[nr].state == "offline":
            hp.remove(nr * BLOCK, BLOCK)
    check_invariants(k)
