"""Tests of vmemmap.layout: published maps per era, KASLR placement (arch/x86/mm/kaslr.c), helpers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemmap.eras import era_names, load_era
from vmemmap.errors import InputError, VmemmapError
from vmemmap.layout import (
    PUD_SIZE,
    build_layout,
    canonical,
    describe,
    kaslr_bases_feasible,
    kaslr_plan,
    load_map,
    pgd_index,
)

TB = 1 << 40
SEEDS = [0, 1, 2, 42, 2**63 + 5]


def modes() -> list[tuple[str, bool]]:
    out = []
    for n in era_names():
        out.append((n, False))
        if load_era(n).la57_supported:
            out.append((n, True))
    return out


def kaslr_modes() -> list[tuple[str, bool]]:
    return [(n, l5) for n, l5 in modes() if load_map(n).get("kaslr")]


def check_invariants(lay) -> None:
    regs = lay.regions
    assert regs, "empty layout"
    for a, b in zip(regs, regs[1:]):
        assert a.end < b.start, (a, b)
    for r in regs:
        assert r.start <= r.end
        assert canonical(r.start, lay.la57) and canonical(r.end, lay.la57), r
    names = [r.name for r in regs]
    assert len(names) == len(set(names))
    vm = lay.region("vmemmap")
    assert vm.start == lay.vmemmap_base and vm.end == lay.vmemmap_end
    dm = lay.region("direct-map")
    assert dm.start == lay.page_offset
    assert lay.region("vmalloc").start == lay.vmalloc_start
    assert lay.levels == (5 if lay.la57 else 4)
    j = lay.to_json()
    assert [r["name"] for r in j["regions"]] == names
    for r in j["regions"]:
        for k in ("start", "end", "size"):
            assert re.fullmatch(r"0x[0-9a-f]+", r[k]), r
    assert j["era"] == lay.era and j["la57"] == lay.la57 and j["kaslr_seed"] == lay.kaslr_seed
    # markers are in increasing address order (the ptdump walker relies on it)
    addrs = [a for a, _ in lay.markers]
    assert addrs == sorted(addrs), lay.markers


@pytest.mark.parametrize("era,la57", modes())
def test_published_layout(era: str, la57: bool) -> None:
    lay = build_layout(era, la57)
    check_invariants(lay)
    assert lay.kaslr_seed is None
    names = [m for _, m in lay.markers]
    assert names[:3] == ["User Space", "Kernel Space", "LDT remap" if load_map(era).get("dynamic_layout") else "Low Kernel Mapping"]
    assert "Vmemmap" in names


@pytest.mark.parametrize("era,la57", kaslr_modes())
@pytest.mark.parametrize("seed", SEEDS)
def test_kaslr_layout(era: str, la57: bool, seed: int) -> None:
    lay = build_layout(era, la57, kaslr_seed=seed, max_pfn=0x7FFE0)
    check_invariants(lay)
    check_kaslr(lay, era, la57, 0x7FFE0)


def check_kaslr(lay, era: str, la57: bool, max_pfn: int | None) -> None:
    plan = kaslr_plan(era, la57, max_pfn)
    dm, vmal, vm = lay.region("direct-map"), lay.region("vmalloc"), lay.region("vmemmap")
    for r in (dm, vmal, vm):
        assert r.start % PUD_SIZE == 0
        assert plan.vaddr_start <= r.start and r.end < plan.vaddr_end
    assert dm.end < vmal.start and vmal.end < vm.start
    assert [dm.size, vmal.size, vm.size] == [t * TB for t in plan.sizes_tb]
    assert vm.size >= (dm.size >> 12) * load_era(era).struct_page_size or load_map(era).get("kaslr_vmemmap") == "fixed"
    assert vm.size >= (min(dm.size, 1 << lay.max_physmem_bits) >> 12) * lay.struct_page_size
    assert kaslr_bases_feasible(era, dm.start, vmal.start, vm.start, la57, max_pfn)
    assert lay.vmemmap_is_constant is False
    # the KASLR range holds nothing but the three regions and recomputed holes
    inside = [r for r in lay.regions if plan.vaddr_start <= r.start < plan.vaddr_end]
    assert all(r.hole for r in inside if r.name not in ("direct-map", "vmalloc", "vmemmap"))
    assert sum(r.size for r in inside) == plan.vaddr_end - plan.vaddr_start


def test_kaslr_deterministic() -> None:
    assert build_layout("6.1", kaslr_seed=7) == build_layout("6.1", kaslr_seed=7)
    bases = {build_layout("6.1", kaslr_seed=s).page_offset for s in range(20)}
    assert len(bases) > 10


# ---- worked numbers --------------------------------------------------------------------------------


def test_seed_vmemmap() -> None:
    lay = build_layout("2.6.21-seed")
    vm = lay.region("vmemmap")
    assert (vm.start, vm.end) == (0xFFFFE20000000000, 0xFFFFE2FFFFFFFFFF)
    assert vm.size_text == "=40 bits" and vm.description == "virtual memory map"
    assert pgd_index(vm.start) == 452
    assert lay.vmemmap_is_constant is True
    assert lay.page_offset == 0xFFFF810000000000
    assert describe(0xFFFFE20000001000, lay) == vm
    assert lay.physmem_end is None


def test_vmemmap_1tb_eras() -> None:
    for era in ("2.6.24", "2.6.26"):
        assert build_layout(era).region("vmemmap").description == "virtual memory map (1TB)"
    assert build_layout("2.6.26").modules_vaddr == 0xFFFFFFFFA0000000
    assert build_layout("2.6.24").modules_vaddr == 0xFFFFFFFF88000000


def test_2_6_31() -> None:
    lay = build_layout("2.6.31")
    assert lay.page_offset == 0xFFFF880000000000
    assert lay.vmemmap_base == 0xFFFFEA0000000000
    assert pgd_index(lay.page_offset) == 272
    assert lay.region("direct-map").end == 0xFFFFC7FFFFFFFFFF
    assert describe(0xFFFF840000000000, lay) is None  # unpublished hypervisor slot


def test_6_1_numbers() -> None:
    l4 = build_layout("6.1")
    assert l4.vmemmap_base == 0xFFFFEA0000000000 and pgd_index(l4.vmemmap_base) == 468
    assert l4.page_offset == 0xFFFF888000000000 and pgd_index(l4.page_offset) == 273
    assert l4.vmalloc_end == 0xFFFFE8FFFFFFFFFF
    assert l4.modules_vaddr == 0xFFFFFFFFC0000000 and l4.modules_end == 0xFFFFFFFFFF000000
    assert l4.physmem_end == (1 << 46) - 1
    assert l4.vmemmap_is_constant is False
    l5 = build_layout("6.1", la57=True)
    assert l5.vmemmap_base == 0xFFD4000000000000 and pgd_index(l5.vmemmap_base, True) == 468
    assert l5.page_offset == 0xFF11000000000000
    assert l5.levels == 5
    assert describe(0xFFFFEA0000000040, l4).name == "vmemmap"
    assert describe(0x0000800000000000, l4) is None


def test_4_20_errata_corrected() -> None:
    l5 = build_layout("4.20", la57=True)
    assert l5.region("kasan").end == 0xFFFFFBFFFFFFFFFF
    rows = {r["name"]: r for r in load_map("4.20")["l5"]["rows"]}
    assert "fffffdffffffffff" in rows["kasan"]["range"]  # as published


# ---- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ["2.6.21-seed", "2.6.24", "2.6.26", "2.6.31"])
def test_no_kaslr_or_la57_in_2_6(era: str) -> None:
    with pytest.raises(InputError, match="KASLR"):
        build_layout(era, kaslr_seed=1)
    with pytest.raises(InputError, match="5-level"):
        build_layout(era, la57=True)


def test_bad_max_pfn() -> None:
    with pytest.raises(InputError):
        build_layout("6.1", kaslr_seed=1, max_pfn=1 << 40)
    with pytest.raises(InputError, match="P2PDMA"):
        build_layout("4.20", kaslr_seed=1, p2pdma=True)


def test_4_20_fixed_vmemmap_bug() -> None:
    """4.20 KASLR kept a 1 TB vmemmap region: too small for > 54 TB of RAM with 5-level (00e5a2bbcc31)."""
    max_pfn = (60 * TB) >> 12
    with pytest.raises(VmemmapError, match="vmemmap"):
        build_layout("4.20", la57=True, kaslr_seed=3, max_pfn=max_pfn)
    build_layout("6.12", la57=True, kaslr_seed=3, max_pfn=max_pfn, p2pdma=False)


# ---- helpers -----------------------------------------------------------------------------------------


def test_canonical_and_pgd_index() -> None:
    assert canonical(0x00007FFFFFFFFFFF) and not canonical(0x0000800000000000)
    assert canonical(0xFFFF800000000000) and not canonical(0xFFFF7FFFFFFFFFFF)
    assert canonical(0x00FFFFFFFFFFFFFF, True) and not canonical(0x0100000000000000, True)
    assert canonical(0xFF00000000000000, True)
    assert pgd_index(0xFFFF810000000000) == 258
    assert pgd_index(0xFFFF888000000000) == 273


# ---- the real capture (Debian 6.1, KASLR on, -m 2G) -------------------------------------------------

# From /work/shared/oracle/captures/kaslr-2G-a.log, KCORE block (copied so the test always runs).
CAPTURE = {
    "vmemmap_base": 0xFFFFF99B00000000,
    "page_offset_base": 0xFFFF8BCF80000000,
    "vmalloc_base": 0xFFFFD2B500000000,
    "max_pfn": 0x7FFE0,
}


def _capture_values() -> dict[str, int]:
    shared = Path(__file__).resolve().parents[2] / "shared"
    log = shared / "oracle" / "captures" / "kaslr-2G-a.log"
    if not log.exists():
        pytest.skip("no /work/shared capture")
    vals = {}
    for m in re.finditer(r"SYMVAL (\w+) addr=[0-9a-f]+ value=([0-9a-f]+)", log.read_text()):
        vals[m.group(1)] = int(m.group(2), 16)
    return vals


def test_capture_copy_matches_file() -> None:
    vals = _capture_values()
    for k, v in CAPTURE.items():
        assert vals[k] == v


def test_capture_bases_feasible() -> None:
    c = CAPTURE
    for k in ("vmemmap_base", "page_offset_base", "vmalloc_base"):
        assert c[k] % PUD_SIZE == 0
    assert kaslr_bases_feasible(
        "6.1", c["page_offset_base"], c["vmalloc_base"], c["vmemmap_base"], max_pfn=c["max_pfn"]
    )
    # the direct-map region cannot have been shrunk to 11 TB (1 TB RAM round-up + 10 TB padding):
    assert not kaslr_bases_feasible(
        "6.1", c["page_offset_base"], c["vmalloc_base"], c["vmemmap_base"], max_pfn=c["max_pfn"], p2pdma=False
    )


# ---- properties ----------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    mode=st.sampled_from(kaslr_modes()),
    seed=st.integers(min_value=0, max_value=2**64 - 1),
    max_pfn=st.integers(min_value=1, max_value=1 << 34),
    p2pdma=st.booleans(),
)
def test_kaslr_properties(mode: tuple[str, bool], seed: int, max_pfn: int, p2pdma: bool) -> None:
    era, la57 = mode
    if era == "4.20":
        p2pdma = False  # 7ffb791423c7 is a 2025 commit
        plan = kaslr_plan(era, la57, max_pfn)
        if la57 and plan.sizes_tb[0] > 64:  # 1 TB fixed vmemmap region too small (fixed by 00e5a2bbcc31)
            with pytest.raises(VmemmapError):
                build_layout(era, la57, kaslr_seed=seed, max_pfn=max_pfn)
            return
    lay = build_layout(era, la57, kaslr_seed=seed, max_pfn=max_pfn, p2pdma=p2pdma)
    check_invariants(lay)
    plan = kaslr_plan(era, la57, max_pfn, p2pdma=p2pdma)
    dm, vmal, vm = lay.region("direct-map"), lay.region("vmalloc"), lay.region("vmemmap")
    assert dm.start % plan.align == 0 and vmal.start % plan.align == 0 and vm.start % plan.align == 0
    assert plan.vaddr_start <= dm.start < dm.end < vmal.start < vmal.end < vm.start < vm.end < plan.vaddr_end
    assert dm.size >= max_pfn << 12
    assert kaslr_bases_feasible(era, dm.start, vmal.start, vm.start, la57, max_pfn, p2pdma=p2pdma)
    if lay.physmem_end is not None:
        assert lay.physmem_end == dm.size - 1


@settings(max_examples=100, deadline=None)
@given(mode=st.sampled_from(modes()), addr=st.integers(min_value=0, max_value=2**64 - 1))
def test_describe_property(mode: tuple[str, bool], addr: int) -> None:
    lay = build_layout(*mode)
    r = describe(addr, lay)
    if r is not None:
        assert r.start <= addr <= r.end
    if not canonical(addr, lay.la57):
        assert r is None
