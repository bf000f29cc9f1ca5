"""The fast boot paths build exactly what the literal kernel loops build.

* 2.6.x ``vmemmap_populate`` (arch/x86/mm/init_64.c @ v2.6.26): :meth:`Vmemmap._populate_sequential`
  batches a page-table page at a time over runs of sections; :meth:`Vmemmap._populate_per_leaf`
  (``Vmemmap.reference_loop``) is the kernel's loop, section by section and leaf by leaf -- missing
  tables (``vmemmap_pgd_populate``/``vmemmap_pud_populate``), then ``vmemmap_alloc_block``. Both must
  leave identical page tables (every table page's address and contents), bootmem (every reservation
  record in order, the free ranges), leaf runs, memmap contents and boot log.
* ``memory_dev_init``: :meth:`Hotplug._boot_blocks` (arrays) against ``_boot_blocks_reference``.
* ``compare(kernels=...)`` reads a kernel the caller booted instead of booting it again.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmemmap.compare as compare_mod
from vmemmap.bootlog import render_boot_log
from vmemmap.compare import compare
from vmemmap.eras import load_era
from vmemmap.errors import ModelNotBuildable
from vmemmap.facts import boot_facts
from vmemmap.kernel import BootOptions, Kernel, boot
from vmemmap.machine import load_machine
from vmemmap.machine.toml_file import parse_toml_text
from vmemmap.models.vmemmap import Vmemmap

MACHINES = ["qemu-numa2", "sparse-holes", "opteron-2007", "numa-2s-256g"]
ERAS = ["2.6.26", "2.6.31"]
PAGE = 4096
PMD = 1 << 21


def fingerprint(k: Kernel) -> dict[str, Any]:
    """Everything populate can influence, read back from the booted kernel."""
    h = hashlib.sha256()
    tables = []
    for level, phys in k.tables.iter_tables():
        tables.append((level, phys))
        h.update(k.phys.frame(phys >> 12).tobytes())
    fills = [(r.start, r.end, r.origin, r.stride, r.words, r.period,
              None if r.incs is None else r.incs.tolist()) for r in k.phys.fill_regions()]
    return {
        "table_pages": tables,
        "table_contents": h.hexdigest(),
        "reservations": [(a.start, a.end, a.nid, a.what) for a in k.memblock.allocations],
        "free": k.memblock.free_ranges(),
        "leaves": [(v.vstart, v.vend, v.pstart, v.page_size, v.node) for v in k.vmemmap_leaves],
        "fills": fills,
        "log": render_boot_log(boot_facts(k)),
    }


def boot_both(machine, era: str, model: str = "vmemmap") -> tuple[Kernel, Kernel]:  # noqa: ANN001
    fast = boot(machine, era, model)
    Vmemmap.reference_loop = True
    try:
        ref = boot(machine, era, model)
    finally:
        Vmemmap.reference_loop = False
    return fast, ref


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("name", MACHINES)
def test_batched_populate_equals_per_leaf_loop(name: str, era: str) -> None:
    fast, ref = boot_both(load_machine(name), era)
    assert fast.model.leaf_size == PMD
    a, b = fingerprint(fast), fingerprint(ref)
    for key in a:
        assert a[key] == b[key], key
    # the leaves really are there: every 2 MiB leaf of each run translates to its backing
    for v in fast.vmemmap_leaves:
        for va in (v.vstart, v.vend - PMD):
            assert fast.tables.translate(va) == v.pstart + (va - v.vstart)


@pytest.mark.parametrize("era", ERAS)
def test_batched_basepage_populate_equals_per_leaf_loop(era: str) -> None:
    """The base-page what-if (vmemmap-4k): a PTE table per 2 MiB of memmap, same identity."""
    machine = load_machine("qemu-numa2")
    try:
        fast, ref = boot_both(machine, era, "vmemmap-4k")
    except ModelNotBuildable:
        pytest.skip(f"{era} cannot build vmemmap-4k")
    assert fast.model.leaf_size == PAGE
    assert fingerprint(fast) == fingerprint(ref)


def _machine(chunks: list[tuple[int, int]]) -> str:
    ram = "".join(f'\n[[ram]]\nstart = "{s * 128}M"\nsize = "{n * 128}M"\n' for s, n in chunks)
    return f'''name = "prop"
description = "generated"
[cpu]
pse = true
gbpages = false
la57 = false
nx = true
hypervisor = false
[[e820]]
start = "0x0"
end = "0x9fc00"
type = "usable"
[[e820]]
start = "0x100000"
end = "2G"
type = "usable"
{ram}'''


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(32, 4000), st.integers(1, 40)), min_size=1, max_size=5),
       st.sampled_from(ERAS))
def test_batched_populate_equals_per_leaf_loop_random_layouts(raw: list[tuple[int, int]], era: str) -> None:
    """RAM in 128 MiB chunks scattered over 4 GiB .. 520 GiB: runs of sections broken by holes,
    leaves shared between sections, new PMD and PUD tables mid-run."""
    chunks: list[tuple[int, int]] = []
    for s, n in sorted(raw):
        if chunks and s <= chunks[-1][0] + chunks[-1][1]:
            s = chunks[-1][0] + chunks[-1][1] + 1
        chunks.append((s, n))
    fast, ref = boot_both(parse_toml_text(_machine(chunks)), era)
    assert fingerprint(fast) == fingerprint(ref)


def test_tables_are_allocated_before_the_leaf() -> None:
    """vmemmap_populate @ v2.6.26 calls vmemmap_pgd_populate and vmemmap_pud_populate before
    vmemmap_alloc_block(PMD_SIZE): with bootmem's first fit from __pa(MAX_DMA_ADDRESS) and no free
    page below a 2 MiB boundary A, the PUD and PMD tables take A and A + 4 KiB and the leaves start
    at A + 2 MiB (leaf first would put the leaf at A)."""
    for reference in (False, True):
        k = boot(load_machine("qemu-2g"), "2.6.26", "vmemmap")
        m = k.model
        goal = k.era.max_dma_address
        a = -(-max(al.end for al in k.memblock.allocations) // PMD) * PMD
        k.memblock.reserve(goal, a, "test: fill the holes")
        v0 = m.base + (512 << 30)  # the next pgd entry: no PUD table, no PMD table yet
        before = len(k.vmemmap_leaves)
        if reference:
            m._populate_per_leaf(v0, v0 + 3 * PMD, 0)
        else:
            m._populate_sequential(v0, v0 + 3 * PMD, 0)
        w = k.tables.walk(v0)
        assert [s.table_phys for s in w.steps] == [k.tables.pgd_phys, a, a + PAGE]
        assert [k.tables.translate(v0 + i * PMD) for i in range(3)] == [a + PMD, a + 2 * PMD, a + 3 * PMD]
        assert [(lf.vstart, lf.vend, lf.pstart) for lf in k.vmemmap_leaves[before:]] == [(v0, v0 + 3 * PMD, a + PMD)]
        assert [(x.start, x.end, x.what) for x in k.memblock.allocations[-2:]] == [
            (a, a + 2 * PAGE, "page table"), (a + PMD, a + 4 * PMD, "vmemmap block")]


@pytest.mark.parametrize("name,era", [("qemu-numa2", "6.1"), ("numa-2s-256g", "6.12"), ("opteron-2007", "2.6.26"),
                                      ("sparse-holes", "6.1"), ("opteron-2007", "2.6.31")])
def test_boot_blocks_equal_block_by_block_rule(name: str, era: str) -> None:
    k = boot(load_machine(name), era)
    hp = k.hotplug
    ref = hp._boot_blocks_reference()
    assert len(ref) > 0
    assert list(hp.blocks.items()) == list(ref.items())


def test_boot_blocks_span_nodes_and_zones() -> None:
    """Nodes split at 1 GiB + 64 MiB (inside 128 MiB block 8) and at 3 GiB (a block boundary): block 8
    has both nodes' pages, so the highest nid and no zone; block 0 holds ZONE_DMA and ZONE_DMA32 of one
    node, so no zone; every other block one node, one zone."""
    text = _machine([]).replace("[[e820]]", "[[node]]\nnid = 0\nranges = [[\"0x0\", \"0x9fc00\"], "
                                "[\"0x100000\", \"0x44000000\"]]\n[[node]]\nnid = 1\nranges = "
                                "[[\"0x44000000\", \"0xc0000000\"]]\n[[node]]\nnid = 2\nranges = [[\"3G\", \"4G\"]]\n"
                                "[[e820]]", 1).replace('end = "2G"', 'end = "4G"')
    k = boot(parse_toml_text(text), "6.1", "vmemmap")
    hp = k.hotplug
    assert list(hp.blocks.items()) == list(hp._boot_blocks_reference().items())
    got = {b.nr: (b.nid, b.zone) for b in hp.blocks.values()}
    assert got[0] == (0, None) and got[8] == (1, None)
    assert got[7] == (0, "DMA32") and got[9] == (1, "DMA32") and got[23] == (1, "DMA32") and got[24] == (2, "DMA32")


def _count_boots(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models ``compare`` boots from now on, in order."""
    booted: list[str] = []
    real_boot = compare_mod.boot

    def counting_boot(m, e, model, opts):  # noqa: ANN001, ANN202
        booted.append(model)
        return real_boot(m, e, model, opts)

    monkeypatch.setattr(compare_mod, "boot", counting_boot)
    return booted


def test_compare_reuses_a_kernel_already_booted(monkeypatch: pytest.MonkeyPatch) -> None:
    machine, era = load_machine("qemu-numa2"), load_era("2.6.26")
    plain = compare(machine, era)
    k = boot(machine, era, "vmemmap", BootOptions())
    k.hotplug  # noqa: B018 - what the report touches before compare
    booted = _count_boots(monkeypatch)
    reused = compare(machine, era, kernels={"vmemmap": k})
    assert reused == plain
    assert "vmemmap" not in booted and sorted(booted) == sorted(r["model"] for r in plain["results"]
                                                               if r["model"] != "vmemmap")


def test_compare_refuses_a_kernel_of_another_boot() -> None:
    machine, era = load_machine("qemu-numa2"), load_era("2.6.26")
    other = boot(load_machine("qemu-2g"), era, "vmemmap")
    with pytest.raises(ValueError, match="was not booted"):
        compare(machine, era, kernels={"vmemmap": other})
    wrong_model = boot(machine, era, "sparsemem")
    with pytest.raises(ValueError, match="was not booted"):
        compare(machine, era, kernels={"vmemmap": wrong_model})


def test_report_boots_its_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmemmap.report import build_report

    booted = _count_boots(monkeypatch)
    rep = build_report(load_machine("qemu-2g"), load_era("2.6.26"))
    assert "compare" in rep.sections
    assert rep.model not in booted and booted  # the others are still booted by compare
