"""crash ``kmem -n`` (vmemmap.kmem).

The golden file ``golden/kmem-n-qemu-2g-6.1.txt`` was generated once by ``kmem_n`` and then read line
by line against crash-utility/crash ``memory.c`` @ 489093c2183f and ``tools.c`` ``mkstring()``:

* lines 1-8 (node header, node row, zone addresses, MEM_MAP row): ``dump_memory_nodes()``,
  ``"%sNODE  %s  %s  %s  %s\\n"`` with ``mkstring(buf1, 8, CENTER, "SIZE")`` and three
  ``mkstring(.., flen=16, CENTER|LJUST, ..)``; ``" %2d   %s  %s  %s  %s\\n"`` (``----`` for a kernel
  without ``pglist_data.bdata``); ``INDENT(j)`` + ``"%lx\\n"`` with ``j = 12 + strlen(buf1) +
  strlen(buf2) + strlen(buf3) + count_leading_spaces(buf4)`` = 52; ``"%s     START_PADDR    START_MAPNR\\n"``
  and ``"%s  %s  %s\\n"`` (CENTER|LONGLONG_HEX|RJUST in ``strlen("   START_PADDR  ")``, CENTER|LONG_DEC|RJUST
  in ``strlen("START_MAPNR")`` — hence the trailing blanks);
* the zone table: ``"\\n%s\\n"`` of ``node_zone_hdr`` + ``mkstring(VADDR_PRLEN, CENTER|RJUST, "MEM_MAP")``,
  rows ``" %2d   %-9s %7ld  "`` + ``"%s  %s  %s\\n"`` (RJUST 16 / 11 / 11);
* the dashed line: ``dump_mem_sections()``'s ``fprintf("\\n"); pad_line(fp, 67, '-')``, header
  ``"\\n\\nNR  %s  %s  %s  %s PFN\\n"``, rows ``"%2ld  %s  %s  %s  %s %s\\n"`` (the PFN LJUST in 16 and
  decimal: default ``output_radix`` 10), state letters from ``fill_mem_section_state()``;
* the memory blocks: ``dump_memory_blocks()``'s ``"\\n%s %s   %s   %s  %s %s\\n"`` header (nid variant,
  "PHYSICAL RANGE" because ``memory_block_size_probed`` exists) and ``print_memory_block()``'s
  ``" %s %s %s %s  %s %s\\n"`` rows (``fill_memory_block_parange()``: two RJUST PADDR_PRLEN=8 fields).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from vmemmap.kernel import Kernel, boot
from vmemmap.kmem import (
    CENTER,
    LJUST,
    LONG_HEX,
    MIN_MEMORY_BLOCK_SIZE,
    RJUST,
    boot_memory_blocks,
    kmem_n,
    memory_block_size,
    mkstring,
    probe_memory_block_size,
    section_lines,
)
from vmemmap.machine import load_machine

GOLDEN = Path(__file__).parent / "golden"
G = 1 << 30
M = 1 << 20


@cache
def _boot(machine: str, era: str, model: str | None = None) -> Kernel:
    return boot(load_machine(machine), era, model)


def _section_rows(text: str) -> list[list[str]]:
    lines = text.split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("NR      SECTION"))
    rows = []
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        rows.append(ln.split())
    return rows


def test_golden_qemu_2g_61() -> None:
    k = _boot("qemu-2g", "6.1")
    assert kmem_n(k) == (GOLDEN / "kmem-n-qemu-2g-6.1.txt").read_text()


def test_mkstring_matches_crash_padding() -> None:
    assert mkstring("SIZE", 8, CENTER) == "  SIZE  "
    assert mkstring("PGLIST_DATA", 16, CENTER | LJUST) == "  PGLIST_DATA   "  # odd extra → right
    assert mkstring("MEM_MAP", 16, CENTER | RJUST) == "     MEM_MAP    "  # odd extra → left
    assert mkstring("PMOE", 5, CENTER) == "PMOE "  # no justify flag behaves as LJUST
    assert mkstring(0x1000, 11, LONG_HEX | RJUST) == "       1000"
    assert mkstring("START_SECTION_NO", 12, LJUST) == "START_SECTION_NO"  # longer: as is


@pytest.mark.parametrize(
    "machine,era,model",
    [("qemu-2g", "6.1", None), ("qemu-numa2", "6.1", None), ("qemu-2g", "2.6.24", "sparsemem-extreme"),
     ("qemu-2g", "4.20", None)],
)
def test_sections_match_section_table(machine: str, era: str, model: str | None) -> None:
    k = _boot(machine, era, model)
    st = k.model.sections
    text = kmem_n(k)
    rows = _section_rows(text)
    present = [int(x) for x in st.present_array()]
    assert [int(r[0]) for r in rows] == present
    letters = {"PRESENT": "P", "HAS_MEM_MAP": "M", "ONLINE": "O", "EARLY": "E", "TAINT_ZONE_DEVICE": "D"}
    for r in rows:
        nr = int(r[0])
        raw = st.read_word_nocheck(nr)
        assert int(r[1], 16) == st.section_addr_nocheck(nr)
        assert int(r[2], 16) == raw & k.era.section_map_mask  # CODED_MEM_MAP
        assert int(r[3], 16) == k.model.pfn_to_page(nr << k.era.pfn_section_shift).value  # MEM_MAP
        assert r[4] == "".join(letters[f] for f in st.flag_names(raw))  # STATE
        assert int(r[5]) == nr << k.era.pfn_section_shift  # PFN, decimal
    # only the era's flags: 2.6.24 has no O/E/D, 4.20 no E/D
    allowed = {letters[f] for f in k.era.section_flags}
    assert all(set(r[4]) <= allowed for r in rows)
    assert [x[0] for x in section_lines(k)] == present


def test_node_block_values() -> None:
    k = _boot("qemu-numa2", "6.1")
    text = kmem_n(k)
    assert text.count("NODE    SIZE") == 2
    for nid, node in k.nodes.items():
        mm = k.model.pfn_to_page(node.start_pfn).value
        assert f"{mm:016x}  " in text
        assert f" {nid:2d}   " in text
        assert f"{node.pgdat:x}" in text
    # 5 zones (MAX_NR_ZONES) per node in the zone table
    assert text.count("  Movable         0") == 2


def test_memory_blocks_qemu() -> None:
    k = _boot("qemu-2g", "6.1")
    assert memory_block_size(k) == 128 * M
    blocks = boot_memory_blocks(k)
    assert [b.name for b in blocks] == [f"memory{i}" for i in range(16)]
    assert all(b.state == "ONLINE" for b in blocks)
    k2 = _boot("qemu-numa2", "6.1")
    assert [b.nid for b in boot_memory_blocks(k2)] == [0] * 8 + [1] * 8
    text = kmem_n(k2)
    assert " memory8    40000000 - 47ffffff  1    ONLINE  8" in text


def test_memory_block_size_big_bare_metal_61() -> None:
    k = _boot("numa-2s-256g", "6.1")
    assert not k.machine.cpu.hypervisor and k.max_pfn << 12 >= 64 * G
    assert memory_block_size(k) == 2 * G
    blocks = boot_memory_blocks(k)
    assert all(b.start_section_nr % 16 == 0 for b in blocks)
    assert all(b.block_id == b.start_section_nr // 16 for b in blocks)


def test_probe_memory_block_size_rules() -> None:
    # generic default before 4.12
    assert probe_memory_block_size((2, 6, 24), 256 * G, False) == MIN_MEMORY_BLOCK_SIZE
    # 4.20: below 64 GiB → 128 MiB; else largest power of two ≤ 2 GiB aligned to the end of memory
    assert probe_memory_block_size((4, 20), 32 * G, False) == 128 * M
    assert probe_memory_block_size((4, 20), 64 * G, False) == 2 * G
    assert probe_memory_block_size((4, 20), 64 * G + 512 * M, False) == 512 * M
    assert probe_memory_block_size((4, 20), 64 * G + 128 * M, True) == 128 * M
    # 6.x: bare metal ≥ 64 GiB → 2 GiB whatever the alignment (fe124c95df9e); a guest keeps 4.20's rule
    assert probe_memory_block_size((6, 1), 64 * G + 128 * M, False) == 2 * G
    assert probe_memory_block_size((6, 1), 64 * G + 128 * M, True) == 128 * M
    assert probe_memory_block_size((6, 1), 2 * G, False) == 128 * M


def test_no_sparsemem_prints_only_nodes() -> None:
    k = _boot("qemu-2g", "2.6.24", "flatmem")
    text = kmem_n(k)
    assert "NODE    SIZE" in text and "ZONE  NAME" in text
    assert "NR      SECTION" not in text and "MEM_BLOCK" not in text
    # FLATMEM: crash reads pgdat->node_mem_map and adds the cumulative zone sizes
    assert f"{k.model.pfn_to_page(k.nodes[0].start_pfn).value:016x}" in text
    # 2.6.x pglist_data has bdata: a pointer, not ----
    assert "----" not in text.split("\n")[1]


def test_old_sparse_has_no_memory_blocks() -> None:
    k = _boot("qemu-2g", "2.6.24", "sparsemem-extreme")
    text = kmem_n(k)
    assert "NR      SECTION" in text and "MEM_BLOCK" not in text
