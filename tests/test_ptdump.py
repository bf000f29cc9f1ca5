"""ptdump: the kernel's /sys/kernel/debug/page_tables/kernel text (arch/x86/mm/dump_pagetables.c,
5.8+/6.x, walked by mm/ptdump.c).  Golden files were derived by hand from the printf formats
``"0x%0*lx-0x%0*lx   "``, ``"%9lu%c "`` and printk_prot()'s columns."""

from __future__ import annotations

import time
from pathlib import Path

from vmemmap.paging import PageTables
from vmemmap.paging.entry import (
    __PAGE_KERNEL,
    __PAGE_KERNEL_LARGE,
    __PAGE_KERNEL_LARGE_EXEC,
    __PAGE_KERNEL_RO,
    __PAGE_KERNEL_RX,
    _PAGE_PAT,
    _PAGE_PCD,
)
from vmemmap.paging.ptdump import kernel_walk_ranges, printk_prot, ptdump, x86_64_markers
from vmemmap.physmem import PhysMem

GOLDEN = Path(__file__).parent / "golden"
K4, M2, G1 = 1 << 12, 1 << 21, 1 << 30


def _tables(levels: int) -> PageTables:
    nxt = [0x100_0000]

    def alloc(nid: int) -> int:
        nxt[0] += K4
        return nxt[0]
    return PageTables(PhysMem(), levels, alloc)


def test_printk_prot_columns() -> None:
    assert printk_prot(0, 4) == " " * 30 + "pte\n"
    assert printk_prot(__PAGE_KERNEL, 4) == "    RW                 GLB NX pte\n"
    assert printk_prot(__PAGE_KERNEL_LARGE, 3) == "    RW         PSE     GLB NX pmd\n"
    assert printk_prot(0x1E7 | (1 << 12), 2) == "USR RW         PSE PAT GLB x  pud\n"
    assert printk_prot(0x80 | 0x1F, 4) == "USR RW PWT PCD     PAT     x  pte\n"   # bit 7 = PAT in a pte
    assert printk_prot(0x81, 0) == "    ro         PSE         x  pgd\n"


def test_walk_ranges() -> None:
    assert kernel_walk_ranges(4) == [(0, 0x0000800000000000),
                                     (0xFFFF880000000000, 0xFFFFFFFFFFFFFFFF)]
    assert kernel_walk_ranges(5) == [(0, 0x0100000000000000),
                                     (0xFF10000000000000, 0xFFFFFFFFFFFFFFFF)]


def test_golden_4level() -> None:
    pt = _tables(4)
    po = 0xFFFF888000000000
    pt.map(po, 0, 0x98000, K4, __PAGE_KERNEL)
    pt.map(po + 0x98000, 0x98000, K4, K4, __PAGE_KERNEL_RO)
    pt.map(po + 0x99000, 0x99000, 2 * K4, K4, __PAGE_KERNEL_RX)
    pt.map(po + 0x9B000, 0x9B000, M2 - 0x9B000, K4, __PAGE_KERNEL)
    pt.map(po + M2, M2, G1 - M2, M2, __PAGE_KERNEL_LARGE)
    pt.map(po + G1, G1, G1, G1, __PAGE_KERNEL_LARGE)
    pt.map(0xFFFFEA0000000000, 0x7BA00000, 16 * M2, M2, __PAGE_KERNEL_LARGE)
    pt.map(0xFFFFFFFF80000000, 0x1000000, 4 * M2, M2, __PAGE_KERNEL_LARGE_EXEC)
    pt.map(0xFFFFFFFF80800000, 0x2000000, K4, K4, __PAGE_KERNEL | _PAGE_PAT | _PAGE_PCD)
    markers = [(0, "User Space"), (1 << 63, "Kernel Space"), (po, "Low Kernel Mapping"),
               (0xFFFFC90000000000, "vmalloc() Area"), (0xFFFFEA0000000000, "Vmemmap"),
               (0xFFFFFFFF80000000, "High Kernel Mapping")]
    assert ptdump(pt, markers) == (GOLDEN / "ptdump-4level-small.txt").read_text()


def test_golden_5level() -> None:
    pt = _tables(5)
    pt.map(0xFF11000000000000, 0, 2 * G1, G1, __PAGE_KERNEL_LARGE)
    markers = [(0, "User Space"), (1 << 63, "Kernel Space"),
               (0xFF11000000000000, "Low Kernel Mapping")]
    assert ptdump(pt, markers) == (GOLDEN / "ptdump-5level-small.txt").read_text()


def test_marker_line_limit() -> None:
    """ESPfix-style max_lines: 2 lines printed then '... N entries skipped ... '."""
    pt = _tables(4)
    base = 0xFFFFFF0000000000
    for i in range(5):            # alternate RW / ro pages: 5 separate lines
        pt.map(base + i * K4, i * K4, K4, K4, __PAGE_KERNEL if i % 2 == 0 else __PAGE_KERNEL_RO)
    # something at the next marker, so that a note_page() call crosses it
    pt.map(0xFFFFFFFF80000000, 0x1000000, M2, M2, __PAGE_KERNEL_LARGE_EXEC)
    text = ptdump(pt, [(0, "User Space"), (1 << 63, "Kernel Space"), (base, "ESPfix Area", 2),
                       (0xFFFFFFFF80000000, "High Kernel Mapping")])
    lines = text.splitlines()
    i = lines.index("---[ ESPfix Area ]---")
    assert lines[i + 1].startswith("0xffffff0000000000-0xffffff0000001000           4K     RW ")
    assert lines[i + 2].startswith("0xffffff0000001000-0xffffff0000002000           4K     ro ")
    # 5 pages + pte hole + pmd hole + pud hole (pgd 510's and 511's pud holes merge) = 8 lines
    assert lines[i + 3] == "... 6 entries skipped ... "
    assert lines[i + 4] == "---[ High Kernel Mapping ]---"


def test_pat_large_masked_like_kernel() -> None:
    """5.8+ note_page() keeps val & PTE_FLAGS_MASK, which drops bit 12: no PAT on a 2M leaf."""
    pt = _tables(4)
    pt.map(0xFFFF888000000000, 0, M2, M2, __PAGE_KERNEL_LARGE | (1 << 12))
    line = [ln for ln in ptdump(pt, [(0, "U")]).splitlines() if ln.endswith("pmd")][0]
    assert line.endswith("    RW         PSE     GLB NX pmd")


def test_markers_helper_and_cost() -> None:
    pt = _tables(5)
    t = time.perf_counter()
    pt.map(0xFF11000000000000, 0, 64 << 40, G1, __PAGE_KERNEL_LARGE)
    pt.map(0xFFD4000000000000, 0x100000000, 1 << 40, M2, __PAGE_KERNEL_LARGE)
    markers = x86_64_markers(levels=5, page_offset=0xFF11000000000000,
                             vmalloc_start=0xFFA0000000000000, vmemmap_start=0xFFD4000000000000,
                             fixaddr_start=0xFFFFFFFFFF578000)
    text = ptdump(pt, markers)
    assert time.perf_counter() - t < 10
    lines = text.splitlines()
    # one marker advance per flushed line (note_page): "LDT remap" (0xff10000000000000) is only
    # left at the first call at/after it, so the first 1G leaf is shown under it
    assert lines[4:10] == [
        "---[ LDT remap ]---",
        "0xff11000000000000-0xff11000040000000           1G     RW         PSE     GLB NX pud",
        "---[ Low Kernel Mapping ]---",
        "0xff11000040000000-0xff11400000000000       65535G     RW         PSE     GLB NX pud",
        "0xff11400000000000-0xff12000000000000         192T                               p4d",
        "0xff12000000000000-0xffa0000000000000       36352T                               pgd"]
    assert "0xffd4000000000000-0xffd4010000000000           1T     RW         PSE     GLB NX pmd" \
        in lines
    assert lines[-1] == "0xffd5000000000000-0x0000000000000000       11008T" + " " * 31 + "pgd"
