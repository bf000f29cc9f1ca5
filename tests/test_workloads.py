"""Workloads: pfn_to_page-numa-local, page_address-random, and the `vmemmap cost buddy-order-4` JSON
contract on opteron-2007 (2.6.21-seed, 2.6.24) and qemu-numa2 (6.12, every legal model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.cost.trace import KIND_LOAD, KIND_PAGE
from vmemmap.cost.workloads import build_trace, make_ops, scalar_trace
from vmemmap.kernel import boot
from vmemmap.machine import load_machine


def test_numa_local_on_one_node_is_the_random_workload() -> None:
    k = boot(load_machine("qemu-2g"), "2.6.24", "flatmem")
    a = make_ops(k, "pfn_to_page-numa-local", 500, 7)
    b = make_ops(k, "pfn_to_page-random", 500, 7)
    assert np.array_equal(a.pfns, b.pfns)


def test_numa_local_stays_on_one_node() -> None:
    k = boot(load_machine("opteron-2007"), "2.6.21-seed", "discontigmem")
    nodes = set()
    for seed in range(6):
        o = make_ops(k, "pfn_to_page-numa-local", 300, seed)
        nids = {k.nid_of_pfn(int(p)) for p in o.pfns}
        assert len(nids) == 1
        nodes |= nids
    assert len(nodes) > 1       # the seed chooses the node


@pytest.mark.parametrize("era,model,loads", [
    ("2.6.21-seed", "flatmem", 1),              # mem_map (page_to_pfn); __PAGE_OFFSET is a constant
    ("2.6.21-seed", "vmemmap", 0),              # the seed's constant vmemmap
    ("2.6.24", "sparsemem-extreme", 3),         # page->flags, mem_section[root], ms->section_mem_map
    ("6.1", "vmemmap", 2),                      # vmemmap_base, page_offset_base
])
def test_page_address_touches_the_page(era: str, model: str, loads: int) -> None:
    k = boot(load_machine("qemu-2g"), era, model)
    ops = make_ops(k, "page_address-random", 60, 2)
    tr = build_trace(k, ops)
    assert tr.equals(scalar_trace(k, ops))
    last = np.flatnonzero(np.r_[tr.pos[1:] == 0, True])
    assert np.all(tr.kind[last] == KIND_PAGE)
    va = np.uint64(k.layout.page_offset) + (ops.pfns << np.uint64(12))
    assert np.array_equal(tr.vaddr[last], va)
    assert np.count_nonzero(tr.kind == KIND_LOAD) == loads * 60


@pytest.mark.parametrize("era", ["2.6.21-seed", "2.6.24"])
def test_cli_buddy_order_4_json_contract(era: str) -> None:
    r = CliRunner().invoke(main, ["cost", "buddy-order-4", "--machine", "opteron-2007", "--era", era,
                                  "--ops", "40", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) == {"workload", "cpu", "machine", "results"}
    assert (d["workload"], d["cpu"], d["machine"]) == ("buddy-order-4", "k8", "opteron-2007")
    keys = {"model", "ops", "loads_per_op", "tlb_misses_per_op", "walk_refs_per_op", "cache_misses_per_op",
            "cycles_per_op"}
    models = [x["model"] for x in d["results"]]
    assert "discontigmem" in models and "vmemmap" in models
    for x in d["results"]:
        assert set(x) == keys and x["ops"] == 40 and x["loads_per_op"] > 25 and x["cycles_per_op"] > 0
    by = {x["model"]: x["loads_per_op"] for x in d["results"]}
    # DISCONTIGMEM's page_to_pfn (page_to_nid, node_data, node_mem_map, node_start_pfn) costs more loads
    # than the constant vmemmap's, which has none
    assert by["discontigmem"] > by["vmemmap"]


def test_cli_buddy_refusals() -> None:
    r = CliRunner().invoke(main, ["cost", "buddy-order-4", "--machine", "qemu-2g", "--era", "4.20", "--ops", "5"])
    assert r.exit_code != 0 and "buddy" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["cost", "buddy-order-12", "--machine", "qemu-2g", "--era", "2.6.24", "--ops", "5"])
    assert r.exit_code != 0 and "MAX_ORDER" in r.output


def test_cli_buddy_order_4_6_12_numa2_every_legal_model() -> None:
    from vmemmap.eras import load_era
    from vmemmap.kernel import legal_models

    r = CliRunner().invoke(main, ["cost", "buddy-order-4", "--machine", "qemu-numa2", "--era", "6.12",
                                  "--ops", "200", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert (d["workload"], d["machine"]) == ("buddy-order-4", "qemu-numa2")
    by = {x["model"]: x for x in d["results"]}
    assert set(by) == set(legal_models(load_era("6.12"), load_machine("qemu-numa2")))
    for x in by.values():
        assert x["ops"] == 200 and x["cycles_per_op"] > 0
    # SPARSEMEM_EXTREME's section lookups (mem_section, the root) cost more loads than the vmemmap's
    # vmemmap_base; the 4 KiB vmemmap has the same loads but more TLB misses
    assert by["sparsemem-extreme"]["loads_per_op"] > by["vmemmap"]["loads_per_op"]
    assert by["vmemmap-4k"]["loads_per_op"] == by["vmemmap"]["loads_per_op"]
    assert by["vmemmap-4k"]["tlb_misses_per_op"] > by["vmemmap"]["tlb_misses_per_op"]
