"""The command line: DESIGN.md contracts 1-7, golden text outputs, one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmemmap.cli import main

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("VMEMMAP_UPDATE_GOLDEN") == "1"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def run_json(*args: str) -> dict:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def golden(name: str, text: str) -> None:
    p = GOLDEN / name
    if UPDATE:
        p.write_text(text)
    assert p.exists(), f"missing golden file {p.name}: run with VMEMMAP_UPDATE_GOLDEN=1 and review it"
    assert text == p.read_text()


# ---------------------------------------------------------------------- contract 1: layout


def test_layout_seed_has_the_seed_vmemmap_region() -> None:
    d = run_json("layout", "--era", "2.6.21-seed")
    vm = [r for r in d["regions"] if r["name"] == "vmemmap"]
    assert vm and vm[0]["start"] == "0xffffe20000000000" and vm[0]["end"] == "0xffffe2ffffffffff"
    assert vm[0]["size"] == "0x10000000000"
    starts = [int(r["start"], 16) for r in d["regions"]]
    assert starts == sorted(starts)
    for a, b in zip(d["regions"], d["regions"][1:]):
        assert int(a["end"], 16) < int(b["start"], 16)


@pytest.mark.parametrize("era", ["2.6.21-seed", "2.6.24", "2.6.26", "2.6.31", "4.20", "6.1", "6.12"])
def test_layout_every_era_json(era: str) -> None:
    d = run_json("layout", "--era", era)
    assert d["era"] == era
    assert any(r["name"] == "vmemmap" for r in d["regions"])
    for r in d["regions"]:
        for key in ("start", "end", "size"):
            assert r[key] == r[key].lower() and r[key].startswith("0x")


# ---------------------------------------------------------------------- contract 2: translate


def test_translate_seed_vmemmap_zero_loads() -> None:
    d = run_json("translate", "-m", "qemu-2g", "--era", "2.6.21-seed", "--model", "vmemmap", "pfn", "0x10000")
    assert d["op"] == "pfn_to_page" and d["loads"] == []
    assert d["page"] == hex(0xFFFFE20000000000 + 0x10000 * 56)
    assert [s["level"] for s in d["walk"]] == ["pgd", "pud", "pmd"]
    assert d["walk"][0]["index"] == 452
    for key in ("pfn", "phys", "virt", "page", "section", "nid", "zone", "valid", "op", "loads", "walk"):
        assert key in d
    assert d["section"] == 2 and d["valid"] is True and d["zone"] == "DMA32"


def test_translate_flatmem_one_load() -> None:
    d = run_json("translate", "-m", "qemu-2g", "--era", "2.6.24", "--model", "flatmem", "pfn", "0x10000")
    assert [ld["what"] for ld in d["loads"]] == ["mem_map"]
    assert d["section"] is None


def test_translate_61_vmemmap_loads_vmemmap_base() -> None:
    d = run_json("translate", "-m", "qemu-2g", "--era", "6.1", "pfn", "0x10000")
    assert [ld["what"] for ld in d["loads"]] == ["vmemmap_base"]
    assert d["loads"][0] == {"what": "vmemmap_base", "vaddr": "0xffffffff82398470", "size": 8}
    assert d["page"] == "0xffffea0000400000"


def test_translate_classic_sparsemem_root_and_section() -> None:
    d = run_json("translate", "-m", "qemu-2g", "--era", "2.6.24", "--model", "sparsemem-extreme", "pfn", "0x10000")
    assert [ld["what"] for ld in d["loads"]] == ["mem_section[root]", "ms->section_mem_map"]


def test_translate_virt_and_page() -> None:
    d = run_json("translate", "-m", "qemu-2g", "--era", "6.1", "virt", "0xffff888010000000")
    assert d["op"] == "virt_to_page" and d["pfn"] == "0x10000"
    assert [ld["what"] for ld in d["loads"]] == ["page_offset_base", "vmemmap_base"]
    d = run_json("translate", "-m", "qemu-2g", "--era", "6.1", "page", "0xffffea0000400000")
    assert d["op"] == "page_to_pfn" and d["pfn"] == "0x10000"


def test_translate_text() -> None:
    code, out, _ = run("translate", "-m", "qemu-2g", "--era", "2.6.21-seed", "--model", "vmemmap", "pfn", "0x10000")
    assert code == 0 and "none: the conversion is address arithmetic on constants" in out


# ---------------------------------------------------------------------- contract 3: boot


def test_boot_json_contract() -> None:
    d = run_json("boot", "-m", "qemu-2g", "--era", "6.1")
    for key in ("sections", "vmemmap", "memmap_bytes", "pagetable_bytes", "nodes", "zones"):
        assert key in d
    assert d["sections"][0] == {"nr": 0, "raw": "0xffffea000000000f",
                                "flags": ["PRESENT", "HAS_MEM_MAP", "ONLINE", "EARLY"],
                                "subsection_map": "0xffffffffffffffff"}
    assert d["vmemmap"][0]["start"] == "0xffffea0000000000" and d["vmemmap"][0]["page_size"] == 2 << 20
    assert d["memmap_bytes"] == 16 * 32768 * 64


def test_boot_text_golden_61() -> None:
    code, out, _ = run("boot", "-m", "qemu-2g", "--era", "6.1")
    assert code == 0
    golden("cli-boot-qemu-2g-6.1.txt", out)


def test_boot_text_golden_2626_numa() -> None:
    code, out, _ = run("boot", "-m", "qemu-numa2", "--era", "2.6.26", "--model", "vmemmap")
    assert code == 0 and "PMD -> [" in out
    golden("cli-boot-qemu-numa2-2.6.26.txt", out)


def test_ptdump_golden() -> None:
    code, out, _ = run("ptdump", "-m", "qemu-2g", "--era", "6.1")
    assert code == 0 and "---[ Vmemmap ]---" in out
    golden("cli-ptdump-qemu-2g-6.1.txt", out)


# ---------------------------------------------------------------------- contracts 4, 5


def test_machines_json() -> None:
    code, out, _ = run("machines", "--json")
    d = json.loads(out)
    names = {m["name"] for m in d}
    assert {"opteron-2007", "qemu-2g", "qemu-numa2", "sparse-holes", "server-64t"} <= names
    for m in d:
        assert set(m) == {"name", "description", "ram", "nodes"} and m["ram"].startswith("0x")


def test_compare_default_machine_json() -> None:
    d = run_json("compare")
    assert d["machine"]["name"] == "opteron-2007" and d["era"] == "2.6.21-seed"
    by = {r["model"]: r for r in d["results"]}
    assert by["vmemmap"]["loads_per_op"]["pfn_to_page"] == 0
    assert by["discontigmem"]["loads_per_op"]["pfn_to_page"] == 6
    assert any(r["model"] == "flatmem" for r in d["refused"])


def test_compare_sparse_holes_flatmem_wastes_memmap() -> None:
    d = run_json("compare", "-m", "sparse-holes", "--era", "2.6.24")
    by = {r["model"]: r for r in d["results"]}
    flat = by["flatmem"]
    assert flat["memmap_hole_bytes"] > flat["memmap_bytes"] // 2
    assert by["vmemmap"]["memmap_hole_bytes"] < flat["memmap_hole_bytes"] // 100
    assert flat["loads_per_op"]["pfn_to_page"] == 1


def test_machine_from_capture_file(tmp_path: Path) -> None:
    log = tmp_path / "boot.log"
    log.write_text(
        "[    0.000000] BIOS-provided physical RAM map:\n"
        "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n"
        "[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000003fffffff] usable\n"
    )
    d = run_json("translate", "-m", str(log), "--era", "6.1", "pfn", "0x1000")
    assert d["valid"] is True


# ---------------------------------------------------------------------- contract 7: errors


@pytest.mark.parametrize(
    "args",
    [
        ("translate", "-m", "no-such-machine", "pfn", "1"),
        ("translate", "-m", "opteron-2007", "--era", "2.6.21-seed", "--model", "flatmem", "pfn", "1"),
        ("translate", "-m", "opteron-2007", "--era", "2.6.26", "--model", "discontigmem", "pfn", "1"),
        ("translate", "-m", "qemu-2g", "pfn", "zz"),
        ("layout", "--era", "9.9"),
        ("layout", "--era", "2.6.24", "--la57"),
        ("layout", "--era", "2.6.24", "--kaslr-seed", "3"),
        ("boot", "-m", "qemu-2g", "--model", "nonsense"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...]) -> None:
    code, out, err = run(*args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmemmap: error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("cmd", ["layout", "machines", "boot", "sections", "ptdump", "translate", "compare"])
def test_every_command_has_help_with_example(cmd: str) -> None:
    code, out, _ = run(cmd, "--help")
    assert code == 0 and "Example" in out
