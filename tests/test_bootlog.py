"""Golden tests for vmemmap.bootlog: the era kernel's boot messages rendered from boot facts.

6.1 facts are the real base-2G / numa2-2G / la57-6G boots (shared/oracle/captures); every rendered
line must appear verbatim, in order, in that boot's dmesg. A copy of the capture lines lives in
tests/data so the comparison also runs without ../shared. Older eras are compared with golden files
whose vmemmap lines were derived by hand from the kernel code (see the comments).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vmemmap.bootlog import (
    BootFacts,
    PopulatedPmd,
    profile_for,
    render_boot_log,
    render_vmemmap_lines,
)
from vmemmap.eras import era_names, load_era

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
SHARED = Path(__file__).resolve().parents[2] / "shared"
M = 1 << 20
PMD = 2 * M

BASE_E820 = (
    (0x0, 0x9FC00, "usable"),
    (0x9FC00, 0xA0000, "reserved"),
    (0xF0000, 0x100000, "reserved"),
    (0x100000, 0x7FFE0000, "usable"),
    (0x7FFE0000, 0x80000000, "reserved"),
    (0xFFFC0000, 0x100000000, "reserved"),
    (0xFD00000000, 0x10000000000, "reserved"),
)
UPDATES_61 = (
    ("update", 0x0, 0x1000, "usable", "reserved"),
    ("remove", 0xA0000, 0x100000, "usable", ""),
)
ZONES_2G_61 = (
    ("DMA", 0x1, 0x1000),
    ("DMA32", 0x1000, 0x7FFE0),
    ("Normal", 0x7FFE0, 0x7FFE0),
    ("Movable", 0, 0),
    ("Device", 0x7FFE0, 0x7FFE0),
)


def _pmds(vstart: int, pstarts: list[int], node: int) -> tuple[PopulatedPmd, ...]:
    return tuple(
        PopulatedPmd(vstart + i * PMD, vstart + (i + 1) * PMD, p, node) for i, p in enumerate(pstarts)
    )


def facts_base_2g_61() -> BootFacts:
    """base-2G in 6.1 (numbers from the capture)."""
    return BootFacts(
        era=load_era("6.1"),
        e820=BASE_E820,
        e820_updates=UPDATES_61,
        max_pfn=0x7FFE0,
        max_arch_pfn=0x400000000,
        numa_nodes=(),
        node_data=((0, 0x7DA28000, 0x7DA53000),),
        zones=ZONES_2G_61,
        early_node_map=((0, 0x1, 0x9F), (0, 0x100, 0x7FFE0)),
        node_spans=((0, 0x1, 0x7FFE0),),
        holes=((0, "DMA", 1), (0, "DMA", 97), (0, "DMA32", 32)),
        vmemmap=_pmds(0xFFFFEA0000000000, [0x7BA00000 + i * PMD for i in range(16)], 0),
        vmemmap_page_size=PMD,
        page_offset=0xFFFF888000000000,
        directmap=((0, 0x7FFE0000, "2M"),),
        gbpages=False,
    )


def facts_numa2_2g_61() -> BootFacts:
    """numa2-2G in 6.1: two 1 GiB nodes, SRAT splits node 0 around the legacy hole."""
    return replace(
        facts_base_2g_61(),
        numa_nodes=((0, 0x0, 0xA0000), (0, 0x100000, 0x40000000), (1, 0x40000000, 0x80000000)),
        node_data=((0, 0x3FFD5000, 0x40000000), (1, 0x7DA28000, 0x7DA53000)),
        early_node_map=((0, 0x1, 0x9F), (0, 0x100, 0x40000), (1, 0x40000, 0x7FFE0)),
        node_spans=((0, 0x1, 0x40000), (1, 0x40000, 0x7FFE0)),
        holes=((0, "DMA", 1), (0, "DMA", 97), (1, "DMA32", 32)),
    )


def facts_la57_6g_61() -> BootFacts:
    """la57-6G in 6.1: RAM above 4 GiB (second last_pfn line) and 1 GiB direct-map pages."""
    e820 = (
        (0x0, 0x9FC00, "usable"),
        (0x9FC00, 0xA0000, "reserved"),
        (0xF0000, 0x100000, "reserved"),
        (0x100000, 0xBFFE0000, "usable"),
        (0xBFFE0000, 0xC0000000, "reserved"),
        (0xFFFC0000, 0x100000000, "reserved"),
        (0x100000000, 0x1C0000000, "usable"),
        (0xFD00000000, 0x10000000000, "reserved"),
    )
    return replace(
        facts_base_2g_61(),
        e820=e820,
        max_pfn=0x1C0000,
        max_arch_pfn=0x10000000000,
        node_data=((0, 0x1BDBD3000, 0x1BDBFE000),),
        zones=(("DMA", 0x1, 0x1000), ("DMA32", 0x1000, 0x100000), ("Normal", 0x100000, 0x1C0000),
               ("Movable", 0, 0), ("Device", 0x1C0000, 0x1C0000)),
        early_node_map=((0, 0x1, 0x9F), (0, 0x100, 0xBFFE0), (0, 0x100000, 0x1C0000)),
        node_spans=((0, 0x1, 0x1C0000),),
        holes=((0, "DMA", 1), (0, "DMA", 97), (0, "Normal", 32)),
        gbpages=True,
    )


def _capture_lines(name: str) -> list[str]:
    """The capture's DMESG lines without timestamps: from ../shared if present, else tests/data."""
    cap = SHARED / "oracle" / "captures" / f"{name}.log"
    if cap.exists():
        out, on = [], False
        for raw in cap.read_text(errors="replace").splitlines():
            raw = raw.rstrip("\r")
            if raw == "@@BEGIN DMESG@@":
                on = True
                continue
            if raw == "@@END DMESG@@":
                break
            if on:
                out.append(raw.split("] ", 1)[1] if raw.startswith("[") else raw)
        return out
    return (DATA / f"oracle-6.1-{name}-dmesg.txt").read_text().splitlines()


def _assert_in_order(rendered: list[str], capture: list[str]) -> None:
    pos = 0
    for line in rendered:
        try:
            pos = capture.index(line, pos) + 1
        except ValueError:
            raise AssertionError(f"not in capture (in order): {line!r}") from None


@pytest.mark.parametrize("name,facts", [
    ("base-2G", facts_base_2g_61),
    ("numa2-2G", facts_numa2_2g_61),
    ("la57-6G", facts_la57_6g_61),
])
@pytest.mark.parametrize("source", ["data", "shared"])
def test_61_lines_verbatim_in_capture(name: str, facts, source: str) -> None:
    if source == "shared":
        if not (SHARED / "oracle" / "captures" / f"{name}.log").exists():
            pytest.skip("../shared not present")
        capture = _capture_lines(name)
    else:
        capture = (DATA / f"oracle-6.1-{name}-dmesg.txt").read_text().splitlines()
    rendered = render_boot_log(facts())
    assert rendered, "nothing rendered"
    _assert_in_order(rendered, capture)


def test_61_base_2g_covers_the_capture_block() -> None:
    """Every e820 / zone / node / unavailable-range line of the capture is rendered."""
    rendered = render_boot_log(facts_base_2g_61())
    capture = (DATA / "oracle-6.1-base-2G-dmesg.txt").read_text().splitlines()
    keys = ("BIOS-e820", "e820: ", "last_pfn", "NUMA", "Faking", "NODE_DATA", "Zone ranges",
            "  DMA", "  Normal", "  Device", "Movable zone", "Early memory", "  node ",
            "Initmem", "unavailable ranges", "BIOS-provided")
    wanted = [line for line in capture if any(line.startswith(k) or k in line for k in keys)]
    assert rendered == wanted


def test_61_numa2_srat_and_node_data() -> None:
    rendered = render_boot_log(facts_numa2_2g_61())
    assert "ACPI: SRAT: Node 1 PXM 1 [mem 0x40000000-0x7fffffff]" in rendered
    assert ("NUMA: Node 0 [mem 0x00000000-0x0009ffff] + [mem 0x00100000-0x3fffffff] -> "
            "[mem 0x00000000-0x3fffffff]") in rendered
    assert "NODE_DATA(1) allocated [mem 0x7da28000-0x7da52fff]" in rendered
    assert not any("NO NUMA" in x.upper() for x in rendered)


def test_61_la57_gbpages_and_two_last_pfn() -> None:
    rendered = render_boot_log(facts_la57_6g_61())
    i = rendered.index("last_pfn = 0x1c0000 max_arch_pfn = 0x10000000000")
    assert rendered[i + 1] == "last_pfn = 0xbffe0 max_arch_pfn = 0x10000000000"
    assert rendered[i + 2] == "Using GB pages for direct mapping"


def test_61_no_populate_lines_at_boot_but_renderable() -> None:
    f = facts_base_2g_61()
    assert not any("PMD ->" in x for x in render_boot_log(f))
    # the 6.x hot-plug form, as in dimm-hot.log: one 16 MiB run for a 128 MiB block's memmap
    hot = replace(f, vmemmap=_pmds(0xFFFFEA0004000000, [0x5800000 + i * PMD for i in range(8)], 0))
    lines = render_vmemmap_lines(hot)
    assert lines == [" [ffffea0004000000-ffffea0004ffffff] PMD -> [ffff888005800000-ffff8880067fffff] on node 0"]
    assert lines[0] in (DATA / "oracle-6.1-pmd-lines.txt").read_text().splitlines()


# ---------------------------------------------------------------- 2.6.26: coalesced (c2b91e2eec96)

def facts_2626_numa() -> BootFacts:
    """Two 1 GiB nodes, 56-byte struct page: 8 sections (7 PMDs of memmap) per node.

    Node 0's PMDs are backed by 0x01400000, 0x01600000, 0x01800000 (contiguous), then 0x02000000 ..
    0x02600000 (a jump: new run); node 1's by 0x7e200000 .. 0x7ee00000.
    """
    node0 = [0x01400000, 0x01600000, 0x01800000, 0x02000000, 0x02200000, 0x02400000, 0x02600000]
    node1 = [0x7E200000 + i * PMD for i in range(7)]
    vm = 0xFFFFE20000000000
    return BootFacts(
        era=load_era("2.6.26"),
        e820=BASE_E820[:5],
        e820_updates=(),
        max_pfn=0x7FFE0,
        max_arch_pfn=1 << (44 - 12),
        numa_nodes=((0, 0x0, 0xA0000), (0, 0x100000, 0x40000000), (1, 0x40000000, 0x80000000)),
        node_data=((0, 0x8000, 0x11000), (1, 0x40000000, 0x40009000)),
        zones=(("DMA", 0, 0x1000), ("DMA32", 0x1000, 0x7FFE0), ("Normal", 0x7FFE0, 0x7FFE0),
               ("Movable", 0, 0)),
        early_node_map=((0, 0x0, 0x9F), (0, 0x100, 0x40000), (1, 0x40000, 0x7FFE0)),
        node_spans=((0, 0x0, 0x40000), (1, 0x40000, 0x7FFE0)),
        holes=(),
        vmemmap=_pmds(vm, node0, 0) + _pmds(vm + 7 * PMD, node1, 1),
        vmemmap_page_size=PMD,
        page_offset=0xFFFF810000000000,
        directmap=((0, 0x80000000, "2M"),),
        gbpages=False,
    )


def test_2626_coalesced_by_hand() -> None:
    # Derived by hand from vmemmap_populate() @ c2b91e2eec96: a run continues while
    # p == p_end && node == node_start; printed addr_end-1 and p_end-1 (ends exclusive + PMD_SIZE).
    assert render_vmemmap_lines(facts_2626_numa()) == [
        " [ffffe20000000000-ffffe200005fffff] PMD -> [ffff810001400000-ffff8100019fffff] on node 0",
        " [ffffe20000600000-ffffe20000dfffff] PMD -> [ffff810002000000-ffff8100027fffff] on node 0",
        " [ffffe20000e00000-ffffe20001bfffff] PMD -> [ffff81007e200000-ffff81007effffff] on node 1",
    ]


def test_2626_node_change_splits_contiguous_backing() -> None:
    vm = 0xFFFFE20000000000
    f = replace(facts_2626_numa(), vmemmap=_pmds(vm, [0x1000000], 0) + _pmds(vm + PMD, [0x1200000], 1))
    assert render_vmemmap_lines(f) == [
        " [ffffe20000000000-ffffe200001fffff] PMD -> [ffff810001000000-ffff8100011fffff] on node 0",
        " [ffffe20000200000-ffffe200003fffff] PMD -> [ffff810001200000-ffff8100013fffff] on node 1",
    ]


def test_2626_run_spans_virtual_gap_when_backing_contiguous() -> None:
    # The kernel tests only the backing's contiguity: a virtual gap does not end a run.
    vm = 0xFFFFE20000000000
    f = replace(facts_2626_numa(),
                vmemmap=_pmds(vm, [0x1000000], 0) + _pmds(vm + 4 * PMD, [0x1200000], 0))
    assert render_vmemmap_lines(f) == [
        " [ffffe20000000000-ffffe200009fffff] PMD -> [ffff810001000000-ffff8100013fffff] on node 0",
    ]


def test_2626_unaligned_section_start_after_a_hole() -> None:
    # Sections 0-1 present (memmap [0, 0x380000)), 2-3 absent, 4 present: its memmap starts at
    # 4 * 0x1c0000 = 0x700000, inside PMD 0x600000, so vmemmap_populate() allocates that PMD with
    # addr = 0x700000 and prints that as addr_start; addr_end = 0x800000 + PMD_SIZE.
    vm = 0xFFFFE20000000000
    f = replace(
        facts_2626_numa(),
        early_node_map=((0, 0x0, 0x10000), (0, 0x20000, 0x28000)),
        vmemmap=_pmds(vm, [0x1000000, 0x1200000], 0) + _pmds(vm + 3 * PMD, [0x3000000, 0x3200000], 0),
    )
    assert render_vmemmap_lines(f) == [
        " [ffffe20000000000-ffffe200003fffff] PMD -> [ffff810001000000-ffff8100013fffff] on node 0",
        " [ffffe20000700000-ffffe200009fffff] PMD -> [ffff810003000000-ffff8100033fffff] on node 0",
    ]


# ---------------------------------------------------------------- 2.6.24: per PMD (0889eba5b38f)

def facts_2624_uma() -> BootFacts:
    vm = 0xFFFFE20000000000
    return replace(
        facts_2626_numa(),
        era=load_era("2.6.24"),
        max_arch_pfn=1 << (40 - 12),
        numa_nodes=(),
        node_data=((0, 0x8000, 0x11000),),
        early_node_map=((0, 0x0, 0x9F), (0, 0x100, 0x7FFE0)),
        node_spans=((0, 0x0, 0x7FFE0),),
        vmemmap=_pmds(vm, [0x1000000, 0x1200000, 0x1600000], 0),
    )


def test_2624_per_pmd_by_hand() -> None:
    # printk(KERN_DEBUG " [%lx-%lx] PMD ->%p on node %d\n", addr, addr + PMD_SIZE - 1, p, node);
    # %p in 2.6.24 lib/vsprintf.c: zero-padded to 16 hex digits, no 0x, and no space after "->".
    assert render_vmemmap_lines(facts_2624_uma()) == [
        " [ffffe20000000000-ffffe200001fffff] PMD ->ffff810001000000 on node 0",
        " [ffffe20000200000-ffffe200003fffff] PMD ->ffff810001200000 on node 0",
        " [ffffe20000400000-ffffe200005fffff] PMD ->ffff810001600000 on node 0",
    ]


# ---------------------------------------------------------------- goldens, every era

def facts_2621_seed() -> BootFacts:
    return replace(facts_2624_uma(), era=load_era("2.6.21-seed"),
                   e820=BASE_E820[:5] + ((0xFEC00000, 0xFEC01000, "unusable"),),
                   zones=(("DMA", 0, 0x1000), ("DMA32", 0x1000, 0x7FFE0), ("Normal", 0x7FFE0, 0x7FFE0)))


def facts_2631() -> BootFacts:
    return replace(facts_2626_numa(), era=load_era("2.6.31"), max_arch_pfn=1 << (46 - 12),
                   page_offset=0xFFFF880000000000,
                   vmemmap=tuple(replace(p, vstart=p.vstart + 0x80000000000, vend=p.vend + 0x80000000000)
                                 for p in facts_2626_numa().vmemmap))


GOLDEN_CASES = {
    "boot-6.1-base-2G.txt": facts_base_2g_61,
    "boot-6.1-numa2-2G.txt": facts_numa2_2g_61,
    "boot-2.6.26-numa2.txt": facts_2626_numa,
    "boot-2.6.24-uma.txt": facts_2624_uma,
    "boot-2.6.21-seed-uma.txt": facts_2621_seed,
    "boot-2.6.31-numa2.txt": facts_2631,
}


@pytest.mark.parametrize("golden", sorted(GOLDEN_CASES))
def test_golden(golden: str) -> None:
    rendered = render_boot_log(GOLDEN_CASES[golden]())
    assert rendered == (GOLDEN / golden).read_text().splitlines()


def test_2621_old_e820_format() -> None:
    rendered = render_boot_log(facts_2621_seed())
    assert rendered[:3] == [
        "BIOS-provided physical RAM map:",
        " BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)",
        " BIOS-e820: 000000000009fc00 - 00000000000a0000 (reserved)",
    ]
    assert " BIOS-e820: 00000000fec00000 - 00000000fec01000 type 5" in rendered
    assert "  DMA32        4096 ->   524256" in rendered
    assert "    0:      256 ->   524256" in rendered
    # the seed's generic populator is recorded as silent (era.vmemmap_message = "none")
    assert not any("PMD" in x for x in rendered)


def test_2631_hex_zone_ranges() -> None:
    rendered = render_boot_log(facts_2631())
    assert "  DMA32    0x00001000 -> 0x0007ffe0" in rendered
    assert "    1: 0x00040000 -> 0x0007ffe0" in rendered
    assert "last_pfn = 0x7ffe0 max_arch_pfn = 0x400000000" in rendered


@pytest.mark.parametrize("era", era_names())
def test_every_era_renders(era: str) -> None:
    for make in (facts_base_2g_61, facts_numa2_2g_61, facts_2626_numa):
        f = replace(make(), era=load_era(era))
        lines = render_boot_log(f)
        assert lines[0] == "BIOS-provided physical RAM map:"
        assert profile_for(f.era) is not None
        render_vmemmap_lines(f)
        if not f.era.vmemmap_message_at_boot:
            assert not any(" PMD ->" in x for x in lines)
