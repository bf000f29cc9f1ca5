"""`vmemmap experiment`: structure of the quick sweeps, numbers equal to direct cost() calls,
determinism, valid SVG, and the era what-ifs the experiments rely on (eras.what_if)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.cost.cpu import load_cpu
from vmemmap.cost.run import cost
from vmemmap.cost.workloads import WORKLOADS
from vmemmap.eras import load_era, what_if
from vmemmap.errors import InputError
from vmemmap.experiments import EXPERIMENTS, run_experiment
from vmemmap.experiments.common import GiB, TiB, flat_machine, md_table
from vmemmap.kernel import BootOptions, boot
from vmemmap.machine import load_machine

OPS = 300
RUN_KEYS = {"machine", "era", "cpu", "workload", "model", "ops", "loads_per_op", "tlb_misses_per_op",
            "walk_refs_per_op", "cache_misses_per_op", "cycles_per_op", "detail", "what_if"}


def _svg_ok(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    text = path.read_text()
    assert "<dc:date>" not in text     # metadata Date dropped: reproducible files


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_quick_structure(name: str, tmp_path: Path) -> None:
    obj = run_experiment(name, tmp_path, OPS, 5, quick=True)
    on_disk = json.loads((tmp_path / f"{name}.json").read_text())
    assert on_disk["experiment"] == name and on_disk["ops"] == OPS and on_disk["seed"] == 5
    assert on_disk["command"].startswith(f"vmemmap experiment {name} --ops {OPS} --seed 5 --quick")
    assert obj["runs"] and obj["tables"] and obj["figures"]
    for r in obj["runs"]:
        assert RUN_KEYS <= set(r) and r["workload"] in WORKLOADS
        assert r["cycles_per_op"] > 0
        assert r["ops"] == (max(1, OPS // 10) if r["workload"].startswith("buddy-order-") else OPS)
    for t in obj["tables"]:
        assert t["rows"] and all(len(row) == len(t["columns"]) for row in t["rows"])
    md = (tmp_path / f"{name}.md").read_text()
    assert obj["command"] in md and md.count("|---") >= 1
    for f in obj["figures"]:
        _svg_ok(tmp_path / f)


def test_tlb_pressure_numbers_are_cost_results(tmp_path: Path) -> None:
    obj = run_experiment("tlb-pressure", tmp_path, OPS, 7, quick=True)
    w = obj["setup"]["workloads"][0]
    direct = cost(flat_machine(4 * GiB), what_if(load_era("6.1"), flatmem=True), load_cpu("skylake"), w, OPS, 7,
                  ["flatmem", "vmemmap"])
    for d in direct["results"]:
        row = next(r for r in obj["runs"] if r["size"] == 4 * GiB and r["model"] == d["model"])
        for k in ("loads_per_op", "tlb_misses_per_op", "walk_refs_per_op", "cache_misses_per_op", "cycles_per_op"):
            assert row[k] == d[k]
    # the table shows the same cycles
    t = obj["tables"][1]
    r0 = next(r for r in t["rows"] if r[0] == "4 GiB")
    assert r0[7] == next(d["cycles_per_op"] for d in direct["results"] if d["model"] == "flatmem")


def test_seed_claim_models_per_machine(tmp_path: Path) -> None:
    obj = run_experiment("seed-claim", tmp_path, OPS, 1, quick=True)
    models = {m: {r["model"] for r in obj["runs"] if r["machine"] == m} for m in obj["setup"]["machines"]}
    assert "flatmem" in models["opteron-2007-up"] and "flatmem" in models["opteron-2007-smp"]
    assert "flatmem" not in models["opteron-2007"] and "discontigmem" in models["opteron-2007"]
    assert {"vmemmap", "sparsemem-extreme"} <= models["opteron-2007"]


def test_deterministic(tmp_path: Path) -> None:
    a = run_experiment("kaslr", tmp_path / "a", OPS, 11, quick=True)
    b = run_experiment("kaslr", tmp_path / "b", OPS, 11, quick=True)
    assert a["runs"] == b["runs"]
    for f in a["figures"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    c = run_experiment("kaslr", tmp_path / "c", OPS, 12, quick=True)
    assert [r["cycles_per_op"] for r in c["runs"]] != [r["cycles_per_op"] for r in a["runs"]]


def test_kaslr_constant_layout_drops_the_load(tmp_path: Path) -> None:
    obj = run_experiment("kaslr", tmp_path, OPS, 1, quick=True)
    row = obj["tables"][0]["rows"][0]
    assert row[3] == 1.0 and row[4] == 0.0          # one load of vmemmap_base per op, none with the constant


def test_struct_page_table_arithmetic(tmp_path: Path) -> None:
    obj = run_experiment("struct-page", tmp_path, OPS, 1, quick=True)
    per_gib = {r[0]: r[1] for r in obj["tables"][0]["rows"]}
    assert per_gib == {56: 14 << 20, 64: 16 << 20, 32: 8 << 20, 8: 2 << 20}
    # Skylake: 32 L1 + 1536 shared L2 2 MiB entries; 64-byte struct pages: 2 MiB of memmap = 32768 pages = 128 MiB
    reach = next(r for r in obj["tables"][1]["rows"] if r[0] == "skylake" and r[1] == 64)
    assert reach[2] == 32 and reach[3] == 1536 and reach[4] == "4 GiB" and reach[5] == "196 GiB"


def test_cli_json_and_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["experiment", "kaslr", "--quick", "--ops", "200", "--json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["experiment"] == "kaslr" and obj["ops"] == 200
    bad = CliRunner().invoke(main, ["experiment", "nope", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown experiment" in bad.output and "Traceback" not in bad.output


# ---------------------------------------------------------------------- era what-ifs

def test_what_if_constant_layout() -> None:
    e = what_if(load_era("6.1"), constant_layout=True)
    k = boot(flat_machine(8 * GiB), e, "vmemmap")
    assert k.layout.vmemmap_is_constant and not k.layout.dynamic_layout
    r = k.model.pfn_to_page(0x12345)
    assert r.value == 0xffffea0000000000 + 0x12345 * 64 and r.loads == ()   # __VMEMMAP_BASE_L4 + pfn * 64
    dyn = boot(flat_machine(8 * GiB), load_era("6.1"), "vmemmap").model.pfn_to_page(0x12345)
    assert dyn.value == r.value and len(dyn.loads) == 1                       # vmemmap_base, nokaslr
    with pytest.raises(InputError):
        boot(flat_machine(8 * GiB), e, "vmemmap", BootOptions(kaslr_seed=1))


def test_what_if_struct_page_and_flatmem() -> None:
    e = what_if(load_era("6.1"), struct_page_size=32, flatmem=True)
    assert e.name == "6.1" and len(e.what_ifs) == 2 and load_era("6.1").struct_page_size == 64
    k = boot(flat_machine(4 * GiB), e, "vmemmap")
    assert k.model.pfn_to_page(1000).value - k.model.pfn_to_page(0).value == 32000
    f = boot(flat_machine(4 * GiB), e, "flatmem")
    assert f.model.pfn_to_page(7).value - f.model.pfn_to_page(0).value == 7 * 32
    with pytest.raises(InputError):
        what_if(load_era("6.1"), struct_page_size=12)
    with pytest.raises(InputError):          # FLATMEM stays non-NUMA
        boot(load_machine("numa-2s-256g"), e, "flatmem")


def test_flat_machine() -> None:
    m = flat_machine(64 * TiB)
    assert not m.numa and m.max_phys == 64 * TiB and m.cpu.gbpages
    assert m.ram_bytes == 64 * TiB - (1 << 20) + 0x9fc00
    assert not flat_machine(4 * GiB, gbpages=False).cpu.gbpages


def test_md_table() -> None:
    assert md_table(["a", "b"], [["x", 1.5]]) == "| a | b |\n|---|---:|\n| x | 1.500 |"
