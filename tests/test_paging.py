"""x86-64 page tables: entry format, map/unmap, walks, bulk translation, runs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemmap.errors import InputError, PageFault
from vmemmap.paging import PageTables, entry
from vmemmap.paging.entry import (
    __PAGE_KERNEL,
    __PAGE_KERNEL_LARGE,
    __PAGE_KERNEL_LARGE_EXEC,
    _KERNPG_TABLE,
    _PAGE_TABLE,
    entry_flags,
    entry_phys,
    make_entry,
)
from vmemmap.physmem import PhysMem

K4, M2, G1 = 1 << 12, 1 << 21, 1 << 30
VMEMMAP = 0xFFFFEA0000000000
PAGE_OFFSET = 0xFFFF888000000000


class Alloc:
    """Bump allocator for table pages from 16 MiB up, with a free list."""

    def __init__(self, base: int = 0x100_0000) -> None:
        self.next = base
        self.free: list[int] = []
        self.calls: list[int] = []

    def __call__(self, nid: int) -> int:
        self.calls.append(nid)
        if self.free:
            return self.free.pop()
        a = self.next
        self.next += K4
        return a


def make(levels: int = 4) -> tuple[PhysMem, PageTables, Alloc]:
    mem = PhysMem()
    alloc = Alloc()
    return mem, PageTables(mem, levels, alloc), alloc


# ---------------------------------------------------------------- entry format
def test_composite_protections() -> None:
    assert _KERNPG_TABLE == 0x063
    assert _PAGE_TABLE == 0x067
    assert __PAGE_KERNEL == 0x8000000000000163
    assert __PAGE_KERNEL_LARGE == 0x80000000000001E3
    assert __PAGE_KERNEL_LARGE_EXEC == 0x1E3
    assert entry.PTE_PFN_MASK == 0x000FFFFFFFFFF000
    assert entry.PTE_FLAGS_MASK == 0xFFF0000000000FFF
    assert make_entry(0x7BA00000, __PAGE_KERNEL_LARGE) == 0x800000007BA001E3


def test_entry_decode() -> None:
    e = 0x800000007BA001E3
    assert entry_phys(e, "pmd") == 0x7BA00000
    assert entry_flags(e, "pmd") == ["PRESENT", "RW", "ACCESSED", "DIRTY", "PSE", "GLOBAL", "NX"]
    # bit 12 is PAT_LARGE in a 2M leaf, a frame bit in a pte
    e2 = 0x7BA00000 | 0x1000 | 0x1E3
    assert entry_phys(e2, "pmd") == 0x7BA00000
    assert "PAT_LARGE" in entry_flags(e2, "pmd")
    assert entry_phys(e2, "pte") == 0x7BA01000
    assert entry_flags(0x163 | 0x80, "pte")[4] == "PAT"
    assert entry_phys(0x1234063, "pmd") == 0x1234000          # table pointer
    assert entry.protval_large_2_4k(0x1E3 | 0x1000) == 0x1E3  # PAT_LARGE -> PAT (bit 7)
    assert entry.protval_large_2_4k(0x1E3) == 0x163
    with pytest.raises(ValueError):
        make_entry(0x1001, 0x63)


# ---------------------------------------------------------------- worked example
def test_vmemmap_walk_worked_example() -> None:
    mem, pt, alloc = make(4)
    # 64 GiB of RAM -> 1 GiB of memmap = 512 PMD leaves, backed from 0x7ba00000 upward
    pt.map(VMEMMAP, 0x7BA00000, 34 * M2, M2, __PAGE_KERNEL_LARGE, nid=1)
    assert alloc.calls == [0, 1, 1]                  # pgd (nid 0), pud, pmd tables node-local
    w = pt.walk(0xFFFFEA0004000000)
    assert [(s.level, s.index) for s in w.steps] == [("pgd", 468), ("pud", 0), ("pmd", 32)]
    pgd, pud, pmd = w.steps
    assert pgd.entry == 0x1001000 | 0x63 and pgd.entry_phys == 0x1000000 + 468 * 8
    assert pud.entry == 0x1002000 | 0x63
    assert pmd.entry == 0x800000007BA001E3 + 32 * M2 == 0x800000007FA001E3
    assert w.phys == 0x7FA00000 and w.page_size == M2 and w.leaf_level == "pmd"
    assert pt.translate(0xFFFFEA0004000000 + 0x1238) == 0x7FA01238
    assert w.to_list()[2] == {"level": "pmd", "index": 32, "entry": "0x800000007fa001e3"}
    assert pt.table_pages() == {"pgd": 1, "pud": 1, "pmd": 1, "pte": 0}
    assert pt.table_bytes() == 3 * 4096


def test_five_level_indices() -> None:
    mem, pt, _ = make(5)
    va = 0xFFD4000000000000                          # 6.x LA57 vmemmap_base (capture la57-6G)
    pt.map(va, 0x1B7A00000, 24 * M2, M2, __PAGE_KERNEL_LARGE)
    w = pt.walk(va + 5 * M2 + 8)
    assert [(s.level, s.index) for s in w.steps] == [("pgd", 468), ("p4d", 0), ("pud", 0),
                                                     ("pmd", 5)]
    assert w.phys == 0x1B7A00000 + 5 * M2 + 8
    # 0x0000800000000000 is canonical with 57 bits, not with 48
    pt.map(0x0000800000000000, 0, K4, K4, __PAGE_KERNEL)
    assert pt.translate(0x0000800000000010) == 0x10
    _, pt4, _ = make(4)
    with pytest.raises(InputError):
        pt4.walk(0x0000800000000000)
    with pytest.raises(InputError):
        pt.walk(0x0100000000000000)


def test_page_fault_levels() -> None:
    mem, pt, _ = make(4)
    with pytest.raises(PageFault) as ei:
        pt.translate(VMEMMAP)
    assert ei.value.level == "pgd"
    pt.map(VMEMMAP, 0, M2, M2, __PAGE_KERNEL_LARGE)
    with pytest.raises(PageFault) as ei:
        pt.translate(VMEMMAP + M2)
    assert ei.value.level == "pmd" and ei.value.vaddr == VMEMMAP + M2
    assert pt.walk(VMEMMAP + G1).fault_level == "pud"


def test_gbpages_direct_map_and_runs() -> None:
    mem, pt, _ = make(4)
    pt.map(PAGE_OFFSET, 0, 4 * G1, G1, __PAGE_KERNEL_LARGE)
    assert pt.walk(PAGE_OFFSET + 3 * G1 + 5).steps[-1].entry == 3 * G1 | 0x80000000000001E3
    assert pt.leaf_counts(PAGE_OFFSET, PAGE_OFFSET + 4 * G1) == {"pud": 4, "pmd": 0, "pte": 0}
    (r,) = pt.runs(PAGE_OFFSET, 0xFFFFC88000000000)
    assert (r.vaddr, r.end, r.level, r.phys, r.phys_end, r.count) == (
        PAGE_OFFSET, PAGE_OFFSET + 4 * G1, "pud", 0, 4 * G1, 4)


def test_runs_match_capture_line() -> None:
    # base-2G.log PTWALK_VMEMMAP: 16 PMD leaves at vmemmap_base backed by 0x7ba00000
    mem, pt, _ = make(4)
    pt.map(VMEMMAP, 0x7BA00000, 16 * M2, M2, __PAGE_KERNEL_LARGE)
    runs = pt.runs(VMEMMAP, 0xFFFFEB0000000000)
    assert [r.map_line() for r in runs] == [
        "MAP 0xffffea0000000000-0xffffea0002000000    32768K PMD -> pa 0x00007ba00000-"
        "0x00007da00000 RW     PSE GLB NX"]
    assert pt.leaf_counts(VMEMMAP, 0xFFFFEB0000000000)["pmd"] == 16
    # discontiguous backing or different flags break runs; clipping to the range
    pt.map(VMEMMAP + 16 * M2, 0x90000000, 2 * M2, M2, __PAGE_KERNEL_LARGE)
    pt.map(VMEMMAP + 18 * M2, 0x90400000, M2, M2, __PAGE_KERNEL_LARGE_EXEC)
    runs = pt.runs(VMEMMAP + M2, VMEMMAP + 18 * M2 + 4096)
    assert [(r.vaddr - VMEMMAP, r.size, r.phys, r.count) for r in runs] == [
        (M2, 15 * M2, 0x7BC00000, 15), (16 * M2, 2 * M2, 0x90000000, 2),
        (18 * M2, 4096, 0x90400000, 1)]
    assert runs[2].map_line().endswith("RW     PSE GLB x ")


def test_split_large_leaf_keeps_attributes() -> None:
    mem, pt, _ = make(4)
    pt.map(PAGE_OFFSET, 0, 4 * M2, M2, __PAGE_KERNEL_LARGE)
    # remap one 4K page read-only inside the second 2M leaf: the leaf is split
    pt.map(PAGE_OFFSET + M2 + 5 * K4, M2 + 5 * K4, K4, K4, 0x8000000000000161)
    w = pt.walk(PAGE_OFFSET + M2)
    assert w.leaf_level == "pte" and w.steps[2].entry & 0xFFF == _KERNPG_TABLE
    assert w.steps[3].entry == M2 | 0x8000000000000163          # identical attributes, 4K form
    assert pt.walk(PAGE_OFFSET + M2 + 5 * K4).steps[3].entry == (M2 + 5 * K4) | 0x8000000000000161
    for off in (0, M2 - 1, M2 + 6 * K4, 3 * M2 + 77):
        assert pt.translate(PAGE_OFFSET + off) == off
    assert pt.leaf_counts(PAGE_OFFSET, PAGE_OFFSET + 4 * M2) == {"pud": 0, "pmd": 3, "pte": 512}
    # a 1G leaf split into 2M leaves keeps PSE
    _, pt2, _ = make(4)
    pt2.map(PAGE_OFFSET, 0, G1, G1, __PAGE_KERNEL_LARGE)
    pt2.map(PAGE_OFFSET, 0, M2, M2, __PAGE_KERNEL_LARGE_EXEC)
    assert pt2.walk(PAGE_OFFSET + M2).steps[-1].entry == M2 | __PAGE_KERNEL_LARGE
    assert pt2.walk(PAGE_OFFSET).steps[-1].entry == __PAGE_KERNEL_LARGE_EXEC


def test_large_over_table_and_identical_remap() -> None:
    mem, pt, alloc = make(4)
    pt.map(PAGE_OFFSET, 0, M2, K4, __PAGE_KERNEL)
    before = pt.table_pages()
    pt.map(PAGE_OFFSET, 0, M2, K4, __PAGE_KERNEL)              # identical: no-op
    assert pt.table_pages() == before
    pt.map(PAGE_OFFSET, 0, M2, M2, __PAGE_KERNEL_LARGE)         # keeps the pte table
    w = pt.walk(PAGE_OFFSET + 0x3000)
    assert w.leaf_level == "pte" and w.steps[-1].entry == 0x3000 | 0x8000000000000163


def test_unmap_frees_tables_and_restores_memory() -> None:
    mem, pt, alloc = make(4)
    snapshot = mem.read(pt.pgd_phys, 4096)
    pt.map(VMEMMAP, 0x7BA00000, 3 * G1, M2, __PAGE_KERNEL_LARGE)
    pt.map(VMEMMAP + 3 * G1, 0x200000000, M2, K4, __PAGE_KERNEL)
    assert pt.table_pages() == {"pgd": 1, "pud": 1, "pmd": 4, "pte": 1}
    freed = pt.unmap(VMEMMAP, 3 * G1 + M2)
    assert len(freed) == 6 and len(set(freed)) == 6
    assert pt.table_pages() == {"pgd": 1, "pud": 0, "pmd": 0, "pte": 0}
    assert mem.read(pt.pgd_phys, 4096) == snapshot
    assert mem.frames_materialised() == 1
    # partial unmap of a 2M leaf splits it
    pt.map(VMEMMAP, 0, M2, M2, __PAGE_KERNEL_LARGE)
    assert pt.unmap(VMEMMAP + K4, K4) == []
    assert pt.translate(VMEMMAP) == 0 and pt.translate(VMEMMAP + 2 * K4) == 2 * K4
    with pytest.raises(PageFault):
        pt.translate(VMEMMAP + K4)


def test_translate_array_faults() -> None:
    mem, pt, _ = make(4)
    pt.map(VMEMMAP, 0x7BA00000, 4 * M2, M2, __PAGE_KERNEL_LARGE)
    va = np.array([VMEMMAP + 8, VMEMMAP + 5 * M2, VMEMMAP + M2 + 16], dtype=np.uint64)
    with pytest.raises(PageFault) as ei:
        pt.translate_array(va)
    assert ei.value.vaddr == VMEMMAP + 5 * M2
    got = pt.translate_array(va, fault=0xFFFFFFFFFFFFFFFF)
    assert got.tolist() == [0x7BA00008, 0xFFFFFFFFFFFFFFFF, 0x7BC00010]
    with pytest.raises(InputError):
        pt.translate_array(np.array([0x0000900000000000], dtype=np.uint64))


def test_sparse_huge_range_is_cheap() -> None:
    mem, pt, _ = make(5)
    t = time.perf_counter()
    pt.map(0xFF11000000000000, 0, 64 << 40, G1, __PAGE_KERNEL_LARGE)   # 64 TiB, 1G leaves
    pt.map(0xFFD4000000000000, 0, 1 << 40, M2, __PAGE_KERNEL_LARGE)    # 1 TiB, 2M leaves
    assert time.perf_counter() - t < 5
    t = time.perf_counter()
    runs = pt.runs(0, 1 << 64)
    assert len(runs) == 2 and runs[1].count == 1 << 19
    assert pt.leaf_counts(0, 1 << 64) == {"pud": 1 << 16, "pmd": 1 << 19, "pte": 0}
    assert time.perf_counter() - t < 5
    assert pt.table_pages()["pmd"] == 1024


# ---------------------------------------------------------------- properties
_PROTS = [__PAGE_KERNEL, 0x8000000000000161, 0x163]
_LPROTS = [__PAGE_KERNEL_LARGE, __PAGE_KERNEL_LARGE_EXEC, 0x80000000000001E1]


@st.composite
def mappings(draw: st.DrawFn, levels: int) -> list[tuple[int, int, int, int, int]]:
    bases = [VMEMMAP, PAGE_OFFSET, 0x0000_4000_0000_0000]
    if levels == 5:
        bases.append(0xFF11_0000_0000_0000)
    out = []
    for _ in range(draw(st.integers(1, 5))):
        ps = draw(st.sampled_from([K4, M2, G1]))
        n = draw(st.integers(1, 6 if ps != K4 else 700))
        va = draw(st.sampled_from(bases)) + draw(st.integers(0, 2048)) * ps
        pa = draw(st.integers(0, 1 << 12)) * ps
        prot = draw(st.sampled_from(_PROTS if ps == K4 else _LPROTS))
        out.append((va, pa, n * ps, ps, prot))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_walk_translate_translate_array_agree(data: st.DataObject) -> None:
    levels = data.draw(st.sampled_from([4, 5]))
    mem, pt, _ = make(levels)
    maps = data.draw(mappings(levels))
    for va, pa, size, ps, prot in maps:
        pt.map(va, pa, size, ps, prot)
    probes = []
    for va, pa, size, ps, prot in maps:
        probes += [va, va + size - 8, va + size, va + data.draw(st.integers(0, size - 1)) & ~7]
    probes += [data.draw(st.integers(0, (1 << 47) - 1)), VMEMMAP - 4096]
    # scalar reference
    expect = []
    for v in probes:
        w = pt.walk(v)
        try:
            p = pt.translate(v)
        except PageFault as e:
            assert w.phys is None and e.level == w.fault_level
            p = None
        else:
            assert p == w.phys
            # the walk's leaf entry maps it
            leaf = w.steps[-1].entry
            assert p == entry_phys(leaf, w.leaf_level) + (v & (w.page_size - 1))
        expect.append(p)
    got = pt.translate_array(np.array(probes, dtype=np.uint64), fault=1 << 63)
    assert got.tolist() == [(1 << 63) if p is None else p for p in expect]
    # the last mapping made wins for its own range
    va, pa, size, ps, prot = maps[-1]
    assert pt.translate(va + size - 1) == pa + size - 1
    # runs and leaves describe the same translations
    for r in pt.runs(0, 1 << 64):
        assert pt.translate(r.vaddr) == r.phys
        assert pt.translate(r.end - 1) == r.phys_end - 1


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_map_then_unmap_restores_memory(data: st.DataObject) -> None:
    levels = data.draw(st.sampled_from([4, 5]))
    mem, pt, alloc = make(levels)
    pre = data.draw(st.booleans())
    if pre:     # an unrelated mapping that must survive
        pt.map(0xFFFFFFFF80000000, 0x1000000, 4 * M2, M2, __PAGE_KERNEL_LARGE_EXEC)
    frames_before = {p: mem.read(p << 12, 4096) for p in range(0x1000, alloc.next >> 12)}
    tables_before = pt.table_pages()
    maps = data.draw(mappings(levels))
    for va, pa, size, ps, prot in maps:
        pt.map(va, pa, size, ps, prot)
    freed = []
    for va, pa, size, ps, prot in maps:
        freed += pt.unmap(va, size)
    assert pt.table_pages() == tables_before
    for p in range(0x1000, alloc.next >> 12):
        assert mem.read(p << 12, 4096) == frames_before.get(p, b"\0" * 4096)
    assert len(set(freed)) == len(freed)
    assert mem.frames_materialised() == sum(tables_before.values())
    if pre:
        assert pt.translate(0xFFFFFFFF80000000 + 5) == 0x1000005
