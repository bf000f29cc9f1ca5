"""The booted kernel and its memory models: worked numbers, loads, walks and properties.

Worked numbers come from kernel-reference.md: vmemmap + pfn * sizeof(struct page), with
VMEMMAP_START 0xffffe20000000000 and 56-byte pages in the seed, vmemmap_base 0xffffea0000000000 and
64-byte pages in 6.1 (§2.5: PFN 0x100000 -> 0xffffe20003800000 / 0xffffea0004000000).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemmap.eras import era_names, load_era
from vmemmap.errors import ModelNotBuildable
from vmemmap.kernel import Kernel, boot, legal_models
from vmemmap.machine import load_machine


@cache
def kern(machine: str, era: str, model: str | None = None) -> Kernel:
    return boot(load_machine(machine), era, model)


def ram_pfns(k: Kernel, n: int = 2000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ranges = k.ram_pfn_ranges()
    sizes = np.array([e - s for s, e, _ in ranges], dtype=np.float64)
    which = rng.choice(len(ranges), size=n, p=sizes / sizes.sum())
    out = np.array([rng.integers(ranges[i][0], ranges[i][1]) for i in which], dtype=np.uint64)
    edges = [p for s, e, _ in ranges for p in (s, e - 1)]
    return np.concatenate([out, np.array(edges, dtype=np.uint64)])


# ---------------------------------------------------------------------- worked numbers


def test_seed_vmemmap_pfn_4g_is_constant_arithmetic() -> None:
    k = kern("opteron-2007", "2.6.21-seed", "vmemmap")
    r = k.model.pfn_to_page(0x100000)
    assert r.value == 0xFFFFE20003800000  # 0xffffe20000000000 + 0x100000 * 56
    assert r.loads == ()  # the seed's point: no memory reference


def test_61_vmemmap_pfn_4g_loads_vmemmap_base() -> None:
    k = kern("desktop-32g", "6.1", "vmemmap")
    r = k.model.pfn_to_page(0x100000)
    assert r.value == 0xFFFFEA0004000000
    assert [ld.what for ld in r.loads] == ["vmemmap_base"]
    assert r.loads[0].vaddr == 0xFFFFFFFF82398470  # the Debian 6.1 cloud image's symbol (capture KALLSYMS)


def test_flatmem_loads_mem_map_once() -> None:
    k = kern("qemu-2g", "2.6.24", "flatmem")
    r = k.model.pfn_to_page(0x10000)
    assert [ld.what for ld in r.loads] == ["mem_map"]
    mem_map = k.mem.peek(k.sym("mem_map"), 8)
    assert r.value == mem_map + 0x10000 * 56


def test_classic_sparsemem_loads_root_then_section() -> None:
    k = kern("qemu-2g", "2.6.24", "sparsemem-extreme")
    r = k.model.pfn_to_page(0x10000)
    assert [ld.what for ld in r.loads] == ["mem_section[root]", "ms->section_mem_map"]
    k6 = kern("qemu-2g", "6.1", "sparsemem-extreme")
    r6 = k6.model.pfn_to_page(0x10000)
    assert [ld.what for ld in r6.loads] == ["mem_section", "mem_section[root]", "ms->section_mem_map"]


def test_discontigmem_memnodemap_path() -> None:
    k = kern("opteron-2007", "2.6.24", "discontigmem")
    r = k.model.pfn_to_page(0x3A0000)
    assert [ld.what for ld in r.loads] == [
        "memnode_shift", "memnodemap", "memnodemap[addr >> shift]", "node_data[nid]",
        "pgdat->node_mem_map", "pgdat->node_start_pfn",
    ]
    assert k.model.shift == 29  # lowest set bit of the OR of node starts (4.5 GiB = 0x120000000)


def test_61_section_words_encode_vmemmap_base() -> None:
    """Like the capture: raw 0xffffea000000000f (PRESENT|HAS_MEM_MAP|ONLINE|EARLY), coded == vmemmap_base."""
    k = kern("qemu-2g", "6.1")
    st_ = k.model.sections
    for nr in st_.present_array():
        raw = st_.read_word_nocheck(int(nr))
        assert raw == 0xFFFFEA000000000F
    assert len(st_.present_array()) == 16
    assert st_.subsection_map(15) == (1 << 64) - 1


def test_odd_2000m_partial_subsection_map() -> None:
    from vmemmap.machine import E820Entry, Machine

    base = load_machine("qemu-2g")
    e820 = tuple(E820Entry(e.start, 0x7CFE0000 if e.end == 0x7FFE0000 else e.end, e.type) for e in base.e820)
    m = Machine(name="odd", description="2000M", e820=e820, nodes=(), cpu=base.cpu)
    k = boot(m, "6.1")
    assert bin(k.model.sections.subsection_map(15)).count("1") == 40  # capture odd-2000M: 40 of 64


def test_sparse_root_counts() -> None:
    assert kern("qemu-2g", "6.1").model.sections.nr_roots == 2048  # 46-bit, 16-byte sections
    assert kern("qemu-2g", "2.6.21-seed", "vmemmap").model.sections.per_root == 512


# ---------------------------------------------------------------------- refusals


def test_flatmem_refused_on_numa_2621() -> None:
    with pytest.raises(ModelNotBuildable, match="NUMA"):
        boot(load_machine("opteron-2007"), "2.6.21-seed", "flatmem")


def test_discontigmem_refused_after_2624() -> None:
    with pytest.raises(ModelNotBuildable, match="DISCONTIGMEM"):
        boot(load_machine("opteron-2007"), "2.6.26", "discontigmem")


# ---------------------------------------------------------------------- walks


@pytest.mark.parametrize("era", ["2.6.21-seed", "2.6.24", "2.6.31", "6.1"])
def test_vmemmap_struct_pages_walk_to_2m_leaves(era: str) -> None:
    k = kern("opteron-2007", era, "vmemmap")
    pfns = ram_pfns(k, 300)
    for pfn in pfns:
        page = k.model.pfn_to_page(int(pfn)).value
        w = k.tables.walk(page)
        assert w.leaf_level == "pmd" and w.page_size == 1 << 21
        assert k.tables.walk(page + k.era.struct_page_size - 1).leaf_level == "pmd"


def test_vmemmap_4k_walks_to_ptes() -> None:
    k = kern("qemu-2g", "6.1", "vmemmap-4k")
    page = k.model.pfn_to_page(0x12345).value
    assert k.tables.walk(page).leaf_level == "pte"


def test_walk_equals_leaf_arithmetic() -> None:
    """The MMU's answer for each struct page equals the populate record's backing + offset."""
    k = kern("qemu-numa2", "6.1")
    for lf in k.vmemmap_leaves:
        for v in (lf.vstart, lf.vend - 8, (lf.vstart + lf.vend) // 2 & ~7):
            assert k.tables.translate(v) == lf.pstart + (v - lf.vstart)


def test_memmap_backing_is_node_local() -> None:
    k = kern("qemu-numa2", "6.1")
    for lf in k.vmemmap_leaves:
        assert k.memblock.node_of(lf.pstart) == lf.node
    nodes = {lf.node for lf in k.vmemmap_leaves}
    assert nodes == {0, 1}


# ---------------------------------------------------------------------- properties


MODEL_CASES = [
    (m, e, model)
    for m in ("qemu-2g", "qemu-numa2", "sparse-holes")
    for e in ("2.6.21-seed", "2.6.24", "2.6.31", "6.1")
    for model in legal_models(load_era(e), load_machine(m))
    if model != "vmemmap-4k" or m == "qemu-2g"
]


@pytest.mark.parametrize(("machine", "era", "model"), MODEL_CASES)
def test_round_trip_scalar_and_bulk_agree(machine: str, era: str, model: str) -> None:
    k = kern(machine, era, model)
    m = k.model
    pfns = ram_pfns(k, 400)
    pages = m.pfn_to_page_array(pfns)
    assert np.array_equal(m.page_to_pfn_array(pages), pfns)
    assert m.pfn_valid_array(pfns).all()
    for pfn, page in list(zip(pfns, pages))[:60]:
        assert m.pfn_to_page(int(pfn)).value == int(page)
        assert m.page_to_pfn(int(page)).value == int(pfn)
        assert m.pfn_valid(int(pfn)).value == 1
        virt = k.layout.page_offset + (int(pfn) << 12)
        assert m.virt_to_page(virt).value == int(page)
        assert m.page_address(int(page)).value == virt


@pytest.mark.parametrize("era", ["2.6.24", "6.1"])
def test_sparse_models_agree_on_validity(era: str) -> None:
    machine = "sparse-holes"
    e = load_era(era)
    models = [x for x in legal_models(e, load_machine(machine)) if x.startswith(("sparse", "vmemmap"))]
    ks = [kern(machine, era, x) for x in models]
    top = max(k.max_pfn for k in ks) + (1 << 16)
    pfns = np.arange(0, top, 97, dtype=np.uint64)
    ref = ks[0].model.pfn_valid_array(pfns)
    for k in ks[1:]:
        assert np.array_equal(k.model.pfn_valid_array(pfns), ref), k.model_name
    # every model: RAM is valid
    for x in legal_models(e, load_machine(machine)):
        k = kern(machine, era, x)
        assert k.model.pfn_valid_array(ram_pfns(k, 200)).all()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pfn_valid_scalar_equals_bulk(data: st.DataObject) -> None:
    machine = data.draw(st.sampled_from(["qemu-2g", "sparse-holes", "qemu-numa2"]))
    era = data.draw(st.sampled_from(["2.6.21-seed", "2.6.24", "6.1"]))
    model = data.draw(st.sampled_from(legal_models(load_era(era), load_machine(machine))))
    k = kern(machine, era, model)
    pfn = data.draw(st.integers(0, k.max_pfn + (1 << 18)))
    assert bool(k.model.pfn_valid(pfn).value) == bool(k.model.pfn_valid_array(np.array([pfn], dtype=np.uint64))[0])


def test_page_flags_links_match_zones_and_nodes() -> None:
    """page->flags read through the page tables gives the zone and node the kernel assigned."""
    for model in ("vmemmap", "sparsemem-extreme"):
        k = kern("qemu-numa2", "6.1", model)
        for pfn in ram_pfns(k, 200):
            page = k.model.pfn_to_page(int(pfn)).value
            z = k.zone_of(int(pfn))
            assert k.model.page_to_nid(page).value == z.nid
            assert k.model.page_zonenum(page) == z.idx


@pytest.mark.parametrize("era", era_names())
def test_every_era_boots_qemu_2g(era: str) -> None:
    for model in legal_models(load_era(era), load_machine("qemu-2g")):
        k = kern("qemu-2g", era, model)
        assert k.max_pfn == 0x7FFE0
        pfn = 0x12345
        assert k.model.page_to_pfn(k.model.pfn_to_page(pfn).value).value == pfn


def test_server_64t_boots_with_8_nodes() -> None:
    k = kern("server-64t", "6.12")
    assert k.la57 and len(k.nodes) == 8
    assert len(k.model.sections.present_array()) == 524288  # 64 TiB / 128 MiB (+ the 2 GiB below 4 GiB)
    assert k.phys.bytes_held() < 512 << 20  # memmap is described by fills, not materialised


def test_boot_progress_reports_every_phase_in_order() -> None:
    from vmemmap.kernel import BOOT_PHASES, boot_progress

    seen: list[tuple[str, int, int]] = []
    with boot_progress(lambda phase, done, total: seen.append((phase, done, total))):
        boot(load_machine("qemu-2g"), "6.1")
    n = len(BOOT_PHASES)
    assert seen == [(p, i, n) for i, p in enumerate(BOOT_PHASES)] + [("booted", n, n)]
    # outside the block nothing is reported
    seen.clear()
    boot(load_machine("qemu-2g"), "6.1")
    assert seen == []
