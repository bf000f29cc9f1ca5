"""vmemmap explain: the steps are the model's own loads, values and walks, with numbers from the kernel
reference (§2.2-§2.6), and bad values are one-line errors."""

from __future__ import annotations

import json
import re
from functools import cache

import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.cost.cpu import load_cpu
from vmemmap.errors import InputError
from vmemmap.explain import explain
from vmemmap.kernel import Kernel, boot
from vmemmap.machine import load_machine

# (machine, era, model) covering every model and both kinds of vmemmap (constant, vmemmap_base)
CASES = [
    ("qemu-2g", "6.1", "vmemmap"),
    ("qemu-2g", "2.6.21-seed", "vmemmap"),
    ("qemu-2g", "2.6.21-seed", "flatmem"),
    ("opteron-2007", "2.6.21-seed", "discontigmem"),
    ("opteron-2007", "2.6.21-seed", "sparsemem-extreme"),
    ("qemu-2g", "6.1", "sparsemem-extreme"),
    ("qemu-2g", "2.6.24", "sparsemem"),
]


@cache
def kern(machine: str, era: str, model: str) -> Kernel:
    return boot(load_machine(machine), era, model)


def load_steps(res: dict) -> list[dict]:
    return [s for s in res["steps"] if "load" in s]


def test_vmemmap_61_one_load_of_vmemmap_base() -> None:
    k = kern("qemu-2g", "6.1", "vmemmap")
    res = explain(k, "pfn", 0x10000)
    # kernel-reference §2.5: vmemmap_base 0xffffea0000000000 (4-level, nokaslr) + pfn * 64
    assert res["value"] == "0xffffea0000400000"
    first = res["steps"][0]
    assert first["macro"] == "__pfn_to_page" and first["source"] == "include/asm-generic/memory_model.h"
    assert "(vmemmap + (pfn))" in first["definition"] and first["vmemmap_is_constant"] is False
    (ld,) = load_steps(res)
    assert ld["load"] == {"what": "vmemmap_base", "vaddr": hex(k.sym("vmemmap_base")), "size": 8,
                          "value": "0xffffea0000000000"}
    # the walk shown is the MMU's: it lands where the page tables put the variable
    assert ld["walk"]["phys"] == hex(k.tables.translate(k.sym("vmemmap_base")))
    assert [lv["level"] for lv in ld["walk"]["levels"]] == ["pgd", "pud", "pmd"]  # a 2 MiB image page
    assert [s["n"] for s in res["steps"]] == list(range(1, len(res["steps"]) + 1))
    result = res["steps"][-1]
    assert result["result"]["section"] == 2 and result["result"]["zone"] == "DMA32"
    assert result["walk"]["page_size"] == 1 << 21  # the vmemmap is mapped with 2 MiB PMD leaves
    json.dumps(res)


def test_seed_vmemmap_is_a_constant_no_loads() -> None:
    k = kern("qemu-2g", "2.6.21-seed", "vmemmap")
    res = explain(k, "pfn", 0x10000)
    # the seed's VMEMMAP_START 0xffffe20000000000, struct page 56 bytes: 0x10000 * 56 = 0x380000
    assert res["value"] == "0xffffe20000380000"
    assert res["loads"] == [] and load_steps(res) == []
    arith = next(s for s in res["steps"] if s["title"] == "the arithmetic")
    assert "no memory was read" in arith["text"][0]
    assert res["steps"][0]["vmemmap_is_constant"] is True


def test_flatmem_loads_mem_map() -> None:
    k = kern("qemu-2g", "2.6.21-seed", "flatmem")
    res = explain(k, "pfn", 0x12345)
    (ld,) = load_steps(res)
    assert ld["load"]["what"] == "mem_map"
    assert int(res["value"], 16) == int(ld["load"]["value"], 16) + 0x12345 * 56


def test_sparsemem_decodes_the_section_word() -> None:
    k = kern("opteron-2007", "2.6.21-seed", "sparsemem-extreme")
    res = explain(k, "pfn", 0x100000)
    whats = [s["load"]["what"] for s in load_steps(res)]
    assert whats == ["mem_section[root]", "ms->section_mem_map"]  # 2.6.21: a static root array
    word = int(load_steps(res)[1]["load"]["value"], 16)
    assert word & 3 == 3  # SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP (kernel-reference §2.4, v2.6.21)
    assert int(res["value"], 16) == (word & ~3) + 0x100000 * 56
    arith = next(s for s in res["steps"] if s["title"] == "the arithmetic")
    assert "section number = pfn >> 15 = 32" in arith["text"]


def test_sparsemem_61_mem_section_is_a_pointer() -> None:
    res = explain(kern("qemu-2g", "6.1", "sparsemem-extreme"), "pfn", 0x10000)
    assert [s["load"]["what"] for s in load_steps(res)][:3] == ["mem_section", "mem_section[root]",
                                                               "ms->section_mem_map"]


def test_discontigmem_memnodemap() -> None:
    k = kern("opteron-2007", "2.6.21-seed", "discontigmem")
    res = explain(k, "pfn", 0x100000)
    whats = [s["load"]["what"] for s in load_steps(res)]
    assert whats == ["memnode_shift", "memnodemap", "memnodemap[addr >> shift]", "node_data[nid]",
                     "pgdat->node_mem_map", "pgdat->node_start_pfn"]
    vals = {s["load"]["what"]: int(s["load"]["value"], 16) for s in load_steps(res)}
    assert vals["memnodemap[addr >> shift]"] == k.nid_of_pfn(0x100000)
    assert int(res["value"], 16) == vals["pgdat->node_mem_map"] + (0x100000 - vals["pgdat->node_start_pfn"]) * 56


@pytest.mark.parametrize("case", CASES, ids=["/".join(c) for c in CASES])
def test_steps_are_the_models_own_loads_and_page_round_trips(case: tuple[str, str, str]) -> None:
    k = kern(*case)
    pfn = k.ram_pfn_ranges()[-1][0] + 5
    res = explain(k, "pfn", pfn)
    r = k.model.pfn_to_page(pfn)
    assert res["value"] == hex(r.value)
    assert [(d["what"], d["vaddr"], d["size"]) for d in res["loads"]] == [(ld.what, hex(ld.vaddr), ld.size)
                                                                          for ld in r.loads]
    for s in load_steps(res):
        va = int(s["load"]["vaddr"], 16)
        assert int(s["load"]["value"], 16) == k.mem.peek(va, s["load"]["size"])
        assert int(s["walk"]["phys"], 16) == k.tables.translate(va)
    back = explain(k, "page", r.value)
    assert back["value"] == hex(pfn) and back["op"] == "page_to_pfn"
    assert [d["what"] for d in back["loads"]] == [ld.what for ld in k.model.page_to_pfn(r.value).loads]


@pytest.mark.parametrize("case", CASES[:4], ids=["/".join(c) for c in CASES[:4]])
def test_virt_splits_pa_and_pfn_to_page(case: tuple[str, str, str]) -> None:
    k = kern(*case)
    va = k.layout.page_offset + 0x1234_5678
    res = explain(k, "virt", va)
    full = k.model.virt_to_page(va)
    assert res["value"] == hex(full.value)
    assert [(d["what"], d["vaddr"]) for d in res["loads"]] == [(ld.what, hex(ld.vaddr)) for ld in full.loads]
    pa = next(s for s in res["steps"] if s["title"] == "__pa done")
    assert pa["phys"] == "0x12345678" and pa["pfn"] == "0x12345"
    macros = [s.get("macro") for s in res["steps"] if s.get("macro")]
    assert macros == ["virt_to_page", "__pfn_to_page"]


def test_virt_61_loads_page_offset_base_first() -> None:
    k = kern("qemu-2g", "6.1", "vmemmap")
    res = explain(k, "virt", 0xFFFF888012345678)
    assert [d["what"] for d in res["loads"]] == ["page_offset_base", "vmemmap_base"]
    assert res["value"] == hex(0xFFFFEA0000000000 + 0x12345 * 64)


def test_cpu_narration_cold_k8() -> None:
    k = kern("qemu-2g", "6.1", "vmemmap")
    cpu = load_cpu("k8")
    res = explain(k, "pfn", 0x10000, cpu)
    step = res["steps"][-1]
    assert step["cpu"] == "k8" and res["cost"]["cycles"] == step["cycles"]
    # cold: each of the two dependent accesses (vmemmap_base, then page->flags) misses both TLBs, walks
    # pgd, pud, pmd (2 MiB leaves) from DRAM and reads its data from DRAM: 2 * (L2 TLB + 4 DRAM)
    assert step["cycles"] == 2 * (cpu.l2_tlb_latency + 4 * cpu.dram_cycles)
    assert step["counters"]["walk_refs"] == 6
    assert any("page walk" in ln for ln in step["narration"])


def test_cpu_narration_page_to_pfn_with_no_loads_costs_nothing() -> None:
    k = kern("qemu-2g", "2.6.21-seed", "vmemmap")
    res = explain(k, "page", 0xFFFFE20000380000, load_cpu("k8"))
    assert res["value"] == "0x10000" and res["cost"]["cycles"] == 0


@pytest.mark.parametrize("kind,value,msg", [
    ("pfn", 1 << 40, "beyond MAX_PHYSMEM_BITS"),
    ("pfn", 0x7FFFF00, "pfn_valid() is false"),
    ("page", 0xFFFFEA0000400001, "not at the start of a struct page"),
    ("page", 0xFFFFEA7000000000, "not a struct page address"),
    ("virt", 0xFFFFC90000000000, "not a direct-map or kernel-image address"),
])
def test_bad_values(kind: str, value: int, msg: str) -> None:
    with pytest.raises(InputError, match=re.escape(msg)):
        explain(kern("qemu-2g", "6.1", "vmemmap"), kind, value)


def test_cli_text_and_json_agree() -> None:
    r = CliRunner().invoke(main, ["explain", "pfn", "0x10000", "-m", "qemu-2g", "--era", "6.1"])
    assert r.exit_code == 0, r.output
    assert "1. the kernel code: __pfn_to_page" in r.stdout and "= 0xffffea0000400000" in r.stdout
    assert "\x1b[" not in r.stdout  # not a terminal: plain text
    r = CliRunner().invoke(main, ["explain", "pfn", "0x10000", "-m", "qemu-2g", "--era", "6.1", "--json"])
    d = json.loads(r.stdout)
    assert d["op"] == "pfn_to_page" and d["value"] == "0xffffea0000400000"


@pytest.mark.parametrize("args", [
    ["explain", "pfn", "0x7fffff00", "-m", "qemu-2g"],
    ["explain", "page", "0x1000", "-m", "qemu-2g"],
    ["explain", "virt", "banana", "-m", "qemu-2g"],
    ["explain", "pfn", "0x10", "-m", "qemu-2g", "--cpu", "pentium"],
])
def test_cli_bad_values_one_line_exit_2(args: list[str]) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmemmap: error: ") and "Traceback" not in r.stderr
