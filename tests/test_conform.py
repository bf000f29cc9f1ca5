"""``vmemmap conform``: the capture parser, the fact rules, and every shared oracle capture agreeing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.conform import by_category, conform
from vmemmap.conform.capture import (
    load_capture,
    parse_capture_text,
    parse_iomem_ram,
    parse_memory_blocks,
    parse_memsections,
    parse_ptwalk,
    parse_zoneinfo,
)
from vmemmap.conform.facts import CATEGORIES, Leafrun, compress, directmap_structure
from vmemmap.errors import InputError

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "oracle-6.1-odd-2000M-capture.log"
SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURES = sorted((SHARED / "oracle" / "captures").glob("*.log")) if SHARED.is_dir() else []

# categories every capture must show (all captures have every block conform reads)
REQUIRED = set(CATEGORIES)


# ---------------------------------------------------------------------- parser (fixture)


def test_fixture_parses_into_blocks() -> None:
    cap = load_capture(FIXTURE)
    assert cap.kernel == "6.1.0-56-cloud-amd64"
    assert not cap.kaslr and not cap.generic_flavour and not cap.interactive
    assert cap.first.names()[:2] == ["CMDLINE", "DMESG"]
    assert "nokaslr" in cap.cmdline


def test_fixture_memsections_and_subsections() -> None:
    cap = load_capture(FIXTURE)
    ms = parse_memsections(cap.first.block("MEMSECTIONS"))
    assert (ms.sizeof, ms.per_root) == (16, 256)
    assert list(ms.roots) == [0]
    assert sorted(ms.sections) == list(range(16))
    assert ms.sections[0].raw == 0xFFFFEA000000000F
    assert ms.sections[0].flags == ("PRESENT", "HAS_MEM_MAP", "ONLINE", "EARLY")
    # 2000 MiB: the last section holds 40 of its 64 sub-sections
    assert ms.sections[15].u[2] == (1 << 40) - 1


def test_fixture_blocks_zones_walks() -> None:
    cap = load_capture(FIXTURE)
    mb = parse_memory_blocks(cap.first.block("MEMORY_BLOCKS"))
    assert mb.block_size == 128 << 20 and mb.auto_online == "offline"
    assert mb.blocks[0].valid_zones == "none" and mb.blocks[1].valid_zones == "DMA32"
    assert mb.blocks[15].state == "online" and mb.blocks[15].node == 0
    zones = {(z.nid, z.zone): z for z in parse_zoneinfo(cap.first.block("ZONEINFO"))}
    assert zones[(0, "DMA")].spanned == 4095 and zones[(0, "DMA")].start_pfn == 1
    assert zones[(0, "Normal")].start_pfn is None
    vw = parse_ptwalk(cap.first.block("PTWALK_VMEMMAP"))
    assert vw.levels == 4 and vw.leafcount == {"PMD": 16}
    assert {r.level for r in vw.runs} == {"PMD"}
    dw = parse_ptwalk(cap.first.block("PTWALK_DIRECTMAP"))
    assert dw.runs[0].pstart == 0 and "RW" in dw.runs[0].flags
    assert parse_iomem_ram(cap.first.block("IOMEM"))[0][:2] == (0x1000, 0x9FC00)


def test_snapshots_split_at_ready_markers() -> None:
    text = (
        "# cmd: qemu-system-x86_64 -m 2G\nboot line\n@@BEGIN A@@\na\n@@END A@@\n@@READY 0@@\n"
        "@@BEGIN HOST:QMP device_add@@\n{}\n@@END HOST:QMP device_add@@\n@@BEGIN A@@\nb\n@@END A@@\n@@READY 1@@\n"
    )
    cap = parse_capture_text(text, "t.log", "t")
    assert cap.interactive and [s.index for s in cap.snapshots] == [0, 1, 2]
    assert cap.snapshots[0].block("A").lines == ["a"]
    assert cap.snapshots[1].names() == ["HOST:QMP device_add", "A"]
    assert cap.console == ["boot line"]


@pytest.mark.parametrize(
    "text, msg",
    [
        ("hello\n", "not an oracle capture"),
        ("# cmd: qemu-system-x86_64\n@@BEGIN A@@\nx\n", "never closed"),
        ("# cmd: qemu-system-x86_64\n@@BEGIN A@@\n@@END B@@\n", "closes block A"),
        ("# cmd: qemu-system-x86_64\nno blocks\n", "no @@BEGIN"),
    ],
)
def test_bad_captures_are_input_errors(text: str, msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        parse_capture_text(text, "bad.log")


def test_compress() -> None:
    assert compress([3, 0, 1, 2, 5, 7, 8]) == "0-3 5 7-8"
    assert compress([]) == ""


def test_directmap_unsplits_only_permission_splits() -> None:
    M2 = 1 << 21
    model = [Leafrun(0, 4 * M2, M2)]
    # a 2 MiB page split by set_memory_ro (mixed permissions) counts as 2M
    split = [Leafrun(0, M2, M2, ("RW",)), Leafrun(M2, M2 + 0x1000, 4096, ("ro",)),
             Leafrun(M2 + 0x1000, 2 * M2, 4096, ("RW",)), Leafrun(2 * M2, 4 * M2, M2, ("RW",))]
    got, undone = directmap_structure(split, model)
    assert undone == 1 and got["2M"] == [["0x0", "0x800000"]] and got["4K"] == []
    # uniform 4 KiB mapping is a real difference, kept as 4K
    uniform = [Leafrun(0, M2, M2, ("RW",)), Leafrun(M2, 2 * M2, 4096, ("RW",)), Leafrun(2 * M2, 4 * M2, M2, ("RW",))]
    got, undone = directmap_structure(uniform, model)
    assert undone == 0 and got["4K"] == [["0x200000", "0x400000"]]


# ---------------------------------------------------------------------- conform on the fixture


def test_fixture_conforms_fully() -> None:
    res = conform(FIXTURE)
    assert res["agree"] == res["total"] > 100
    assert set(by_category(res)) == REQUIRED
    names = {f["name"] for f in res["facts"]}
    assert {"section[15].raw", "subsection[15]", "block[memory0].valid_zones", "directmap.2M"} <= names


def test_cli_conform_json_and_exit_codes(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["conform", str(FIXTURE), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert {"capture", "kernel", "facts", "agree", "total"} <= set(d)
    assert set(d["facts"][0]) >= {"name", "snapshot", "ok", "expected", "got"}
    # a capture whose kernel disagrees: exit 1, the disagreement named with expected and got
    bad = tmp_path / "bad.log"
    bad.write_text(FIXTURE.read_text().replace("max_pfn addr=ffffffff8334e5b8 value=000000000007cfe0",
                                               "max_pfn addr=ffffffff8334e5b8 value=000000000007cfe1"))
    r = CliRunner().invoke(main, ["conform", str(bad)])
    assert r.exit_code == 1
    assert "max_pfn.max_pfn: expected 0x7cfe1, got 0x7cfe0" in r.output
    r = CliRunner().invoke(main, ["conform", str(tmp_path / "missing.log")])
    assert r.exit_code == 2 and "vmemmap: error:" in r.output


# ---------------------------------------------------------------------- every shared capture


@pytest.mark.skipif(not CAPTURES, reason="shared oracle captures not present")
@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_shared_capture_agrees(path: Path) -> None:
    res = conform(path)
    cats = by_category(res)
    assert set(cats) == REQUIRED, f"missing categories: {REQUIRED - set(cats)}"
    bad = [f"{f['name']}: expected {f['expected']!r}, got {f['got']!r}" for f in res["facts"] if not f["ok"]]
    assert not bad, "\n".join(bad[:20])
    cap = load_capture(path)
    if cap.interactive:
        assert any("only snapshot 0" in n for n in res["notes"])
