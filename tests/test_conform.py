"""``vmemmap conform``: the capture parser, the fact rules, and every shared oracle capture agreeing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.conform import by_category, by_snapshot, conform
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
CAPTURES_612 = SHARED / "oracle" / "captures-6.12"
# the 6.12 captures (Debian 6.12.117 cloud kernel) that agree on every fact of every snapshot, with the
# snapshots that yield facts (dimm-hot-mom: memmap_on_memory per block, tests/test_memmap_on_memory.py)
AGREE_612 = {
    "base-2G": [0],
    "dimm-cold-auto": [0, 1, 2],
    "dimm-hot-mom": [0, 2, 3, 4, 5, 6, 8, 9],
}

# categories every capture must show (all captures have every block conform reads); hot-plug captures
# add the per-step `hotplug` facts
REQUIRED = set(CATEGORIES) - {"hotplug"}

# the hot-plug captures and, for each, the snapshots that yield facts after replaying the steps before
# them (a snapshot of only host blocks or kernel log adds nothing): a regression in the replay shows here
REPLAYED = {
    "dimm-64M-unaligned": [0],
    "dimm-cold": [0, 1, 2],
    "dimm-hot": [0, 2, 3, 4, 5, 6, 8, 9],
    "dimm-hot128": [0, 2, 3, 4, 5, 6, 8, 9],
    "unplug-debug": [0, 1, 2],
    "virtio-mem": [0, 1, 2, 3],
}
STATE_BLOCKS = {"KCORE", "MEMSECTIONS", "MEMORY_BLOCKS", "NODES", "ZONEINFO", "PTWALK_VMEMMAP", "PTWALK_DIRECTMAP"}


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
    cap = load_capture(path)
    want = REQUIRED | ({"hotplug"} if cap.interactive else set())
    assert set(cats) == want, f"missing categories: {want - set(cats)}"
    bad = [f"snapshot {f['snapshot']}: {f['name']}: expected {f['expected']!r}, got {f['got']!r}"
           for f in res["facts"] if not f["ok"]]
    assert not bad, "\n".join(bad[:20])
    snaps = [d["snapshot"] for d in res["snapshots"]]
    if cap.interactive:
        assert snaps == REPLAYED[path.stem]
        # every snapshot showing kernel state was compared
        assert {s.index for s in cap.snapshots if STATE_BLOCKS & set(s.names())} <= set(snaps)
    else:
        assert snaps == [0]


@pytest.mark.skipif(not CAPTURES, reason="shared oracle captures not present")
def test_the_hotplug_captures_are_the_replayed_ones() -> None:
    assert {p.stem for p in CAPTURES if load_capture(p).interactive} == set(REPLAYED)


def _capture(name: str) -> Path:
    p = SHARED / "oracle" / "captures" / f"{name}.log"
    if not p.exists():
        pytest.skip("shared oracle captures not present")
    return p


def _hotplug_facts(res: dict) -> dict[str, dict]:
    return {f["name"]: f for f in res["facts"] if f["name"].startswith("hotplug")}


def test_unaligned_dimm_refused_with_the_kernels_messages() -> None:
    res = conform(_capture("dimm-64M-unaligned"))
    hp = _hotplug_facts(res)
    ref = hp["hotplug[d1 add].refusal"]
    assert ref["ok"] and ref["snapshot"] == 0
    assert ref["got"] == ["Block size [0x8000000] unaligned hotplug range: start 0x100000000, size 0x4000000",
                          "acpi PNP0C80:00: add_memory failed",
                          "acpi PNP0C80:00: acpi_memory_enable_device() error"]
    assert hp["hotplug[d1 add].pmd"]["got"] == []
    facts = {f["name"]: f for f in res["facts"]}
    assert facts["block.blocks"]["got"] == "0-15" and facts["section.present"]["got"] == "0-15"


def test_dimm_hot128_steps_and_snapshots() -> None:
    res = conform(_capture("dimm-hot128"))
    hp = _hotplug_facts(res)
    pmd = hp["hotplug[hd1 add].pmd"]
    assert pmd["ok"] and pmd["snapshot"] == 2
    assert pmd["got"] == [["0xffffea0004000000", "0xffffea0004200000", 0]]
    by = {(f["snapshot"], f["name"]): f for f in res["facts"]}
    # after device_add: offline, Normal Movable; after online_movable: Movable, ONLINE; after device_del: gone
    assert by[(3, "block[memory32].valid_zones")]["got"] == "Normal Movable"
    assert by[(6, "block[memory32].valid_zones")]["got"] == "Movable"
    assert by[(6, "section[32].raw")]["got"] == "0xffffea0000000007"
    assert (8, "block[memory32].state") not in by and by[(8, "block.blocks")]["got"] == "0-15"
    assert by[(9, "vmemmap.leafcount.PMD")]["got"] == 16
    assert by[(9, "max_pfn.max_pfn")]["got"] == "0x108000"  # update_end_of_memory_vars never lowers it
    assert by_snapshot(res)[6] == (139, 139)


def test_virtio_mem_resizes_block_by_block() -> None:
    res = conform(_capture("virtio-mem"))
    hp = _hotplug_facts(res)
    assert hp["hotplug[vm0 requested-size 0x40000000].pmd"]["expected"] == [
        ["0xffffea0004000000", "0xffffea0005000000", 0]]
    assert hp["hotplug[vm0 requested-size 0x80000000].pmd"]["snapshot"] == 1
    assert hp["hotplug[vm0 requested-size 0x20000000].pmd"]["got"] == []  # unplug: no new memmap
    by = {(f["snapshot"], f["name"]): f for f in res["facts"]}
    assert by[(2, "block.blocks")]["got"] == "0-15 32-35"  # the highest blocks went first
    assert all(f["ok"] for f in res["facts"])


def test_later_snapshot_disagreement_is_named_with_its_snapshot(tmp_path: Path) -> None:
    text = _capture("dimm-hot128").read_text()
    lines = text.splitlines(keepends=True)
    # the MEMORY_BLOCKS of snapshot 6 (after online_movable): claim the block stayed offline
    i = max(n for n, ln in enumerate(lines) if "memory32 phys_index=00000020 state=online" in ln)
    lines[i] = lines[i].replace("state=online", "state=offline")
    bad = tmp_path / "bad.log"
    bad.write_text("".join(lines))
    res = conform(bad)
    wrong = [(f["snapshot"], f["name"]) for f in res["facts"] if not f["ok"]]
    assert wrong == [(6, "block[memory32].state")]
    r = CliRunner().invoke(main, ["conform", str(bad), "--json"])
    assert r.exit_code == 1
    assert {"snapshot": 6, "agree": 138, "total": 139} in json.loads(r.output)["snapshots"]


def test_replay_helpers() -> None:
    from vmemmap.conform.capture import Block
    from vmemmap.conform.replay import kernel_log, online_commands, parse_memory_devices, pmd_ranges, qemu_devices

    info = parse_memory_devices(Block("HOST:HMP info memory-devices", [
        'Memory device [dimm]: "hd1"', "  addr: 0x100000000", "  slot: 0", "  node: 0", "  size: 134217728",
        "  memdev: /objects/hm1", "  hotplugged: true"], 1))
    assert info["hd1"]["addr"] == 1 << 32 and info["hd1"]["size"] == 128 << 20 and info["hd1"]["type"] == "dimm"
    devs = qemu_devices("qemu-system-x86_64 -m 2G -object memory-backend-ram,id=m1,size=64M "
                        "-device pc-dimm,id=d1,memdev=m1 -object memory-backend-ram,id=v,size=4G "
                        "-device virtio-mem-pci,id=vm0,memdev=v,node=0,requested-size=1G")
    assert [(d["id"], d["size"]) for d in devs] == [("d1", 64 << 20), ("vm0", 4 << 30)]
    assert devs[1]["virtio"] == "virtio0" and devs[1]["requested"] == 1 << 30
    # adjacent PMD lines of one node merge; the physical side is ignored
    assert pmd_ranges([" [ffffea0004000000-ffffea00041fffff] PMD -> [ffff888005a00000-ffff888005bfffff] on node 0",
                       " [ffffea0004200000-ffffea00043fffff] PMD -> [ffff888007000000-ffff8880071fffff] on node 0"]) \
        == [["0xffffea0004000000", "0xffffea0004400000", 0]]
    text = ("# cmd: qemu-system-x86_64\n@@BEGIN DMESG@@\n[    1.5] a\n[    2.0] b\n@@END DMESG@@\n@@READY 0@@\n"
            "@@BEGIN SH@@\n[    2.0] b\n[    3.0] c\n@@END SH@@\n"
            '# timings: {"cmd_times": [["online online_kernel", 1.0, 0.1], ["quit", 2.0, 0.0]]}\n')
    cap = parse_capture_text(text, "t.log")
    assert kernel_log(cap) == [(1.5, "a"), (2.0, "b"), (3.0, "c")]
    assert online_commands(cap) == ["online_kernel"]


def test_failed_host_command_is_not_replayed(tmp_path: Path) -> None:
    text = _capture("dimm-hot128").read_text()
    head, _, rest = text.partition("@@BEGIN HOST:QMP device_add@@\n{\n \"return\": {}\n}\n")
    bad = tmp_path / "err.log"
    bad.write_text(head + '@@BEGIN HOST:QMP device_add@@\n{\n "error": {"class": "GenericError", "desc": "x"}\n}\n'
                   + rest)
    res = conform(bad)
    assert any("device_add failed on the host" in n for n in res["notes"])
    assert not any(f["name"].startswith("hotplug[hd1 add]") for f in res["facts"])


# ---------------------------------------------------------------------- the era of a capture; 6.12


def _capture_612(name: str) -> Path:
    p = CAPTURES_612 / f"{name}.log"
    if not p.exists():
        pytest.skip("shared 6.12 oracle captures not present")
    return p


@pytest.mark.parametrize("name", sorted(AGREE_612))
def test_612_capture_agrees(name: str) -> None:
    res = conform(_capture_612(name))
    assert res["era"] == "6.12" and res["kernel"] == "6.12.117+deb12-cloud-amd64"
    bad = [f"snapshot {f['snapshot']}: {f['name']}: expected {f['expected']!r}, got {f['got']!r}"
           for f in res["facts"] if not f["ok"]]
    assert not bad, "\n".join(bad[:20])
    assert [d["snapshot"] for d in res["snapshots"]] == AGREE_612[name]
    assert set(by_category(res)) >= REQUIRED
    assert not any("nearest era" in n for n in res["notes"])


def test_612_node_data_is_cache_line_aligned() -> None:
    """mm/numa.c @ 6.12 alloc_node_data(): roundup(sizeof(pg_data_t), SMP_CACHE_BYTES), not PAGE_SIZE."""
    res = conform(_capture_612("base-2G"))
    facts = {f["name"]: f for f in res["facts"]}
    assert facts["placement.node_data[0]"]["got"] == "0x7da37680"
    assert facts["placement.mem_section"]["got"] == "0xffff88807da33680"
    assert facts["placement.usage[0]"]["got"] == "0xffff88807da32300"


def test_612_dimm_cold_auto_onlines_into_normal() -> None:
    res = conform(_capture_612("dimm-cold-auto"))
    by = {(f["snapshot"], f["name"]): f for f in res["facts"]}
    assert by[(0, "block[memory32].state")]["got"] == "online"
    assert by[(0, "block[memory39].valid_zones")]["got"] == "Normal"
    assert by[(0, "zone[0].Normal.spanned")]["got"] == 262144
    assert by[(0, "section[32].raw")]["got"] == "0xffffea0000000007"  # SECTION_IS_ONLINE


def test_612_dimm_hot_mom_boot_snapshot_agrees() -> None:
    res = conform(_capture_612("dimm-hot-mom"))
    assert res["era"] == "6.12"
    assert by_snapshot(res)[0] == (135, 135)


def test_era_for_release() -> None:
    from vmemmap.eras import era_for_release, parse_release

    assert parse_release("6.12.117+deb12-cloud-amd64") == (6, 12, 117)
    assert era_for_release("6.12.117+deb12-cloud-amd64") == ("6.12", None)
    assert era_for_release("6.1.0-56-cloud-amd64") == ("6.1", None)
    assert era_for_release("6.1.192-2") == ("6.1", None)
    era, note = era_for_release("6.6.3")
    assert era == "6.1" and "nearest era, 6.1" in note
    assert era_for_release("6.15.1")[0] == "6.12"
    assert era_for_release("5.10.0-28-amd64")[0] == "4.20"
    assert era_for_release("2.6.25")[0] == "2.6.24"
    era, note = era_for_release("banana")
    assert era == "6.12" and "not understood" in note


def test_unknown_release_uses_the_nearest_era_and_says_so(tmp_path: Path) -> None:
    text = FIXTURE.read_text()
    assert "6.1.0-56-cloud-amd64" in text
    other = tmp_path / "other.log"
    other.write_text(text.replace("6.1.0-56-cloud-amd64", "6.6.3-cloud-amd64"))
    res = conform(other)
    assert res["era"] == "6.1" and res["agree"] == res["total"]
    assert any("6.6.3-cloud-amd64" in n and "nearest era, 6.1" in n for n in res["notes"])
    r = CliRunner().invoke(main, ["conform", str(other)])
    assert r.exit_code == 0 and "nearest era, 6.1" in r.output and "vs the 6.1 model" in r.output


def test_release_from_the_header_line() -> None:
    from vmemmap.conform.compare import capture_era, capture_release

    blocks = "@@BEGIN A@@\nx\n@@END A@@\n"
    cap = parse_capture_text("# cmd: qemu-system-x86_64\n# kernel: flavour=cloud612 "
                             "file=vmlinuz-6.12.117+deb12-cloud-amd64\n" + blocks, "t.log")
    assert capture_release(cap) == ("6.12.117+deb12-cloud-amd64", "kernel header")
    assert capture_era(cap) == ("6.12", [])
    cap = parse_capture_text("# cmd: qemu-system-x86_64\n# package: linux-image-6.1.0-56-cloud-amd64 6.1.192-2 "
                             "(from linux-image-cloud-amd64)\n" + blocks, "t.log")
    assert capture_era(cap)[0] == "6.1"
    # the boot log wins over a header naming another era, and a note says so
    cap = parse_capture_text("# cmd: qemu-system-x86_64\n# kernel: file=vmlinuz-6.12.1\n"
                             "[    0.000000] Linux version 6.1.0-56-cloud-amd64 (x)\n" + blocks, "t.log")
    era, notes = capture_era(cap)
    assert era == "6.1" and any("another era" in n for n in notes)


def test_online_type_per_era() -> None:
    from vmemmap.conform.compare import online_type

    blocks = "@@BEGIN CMDLINE@@\nconsole=ttyS0 {}\nLinux (none) {} #1\n@@END CMDLINE@@\n"
    for release, extra, want in (("6.1.0-56-cloud-amd64", "", "offline"),
                                 ("6.12.117+deb12-cloud-amd64", "", "online"),
                                 ("6.12.117+deb12-cloud-amd64", "memhp_default_state=offline", "offline"),
                                 ("6.1.0-56-cloud-amd64", "memhp_default_state=online_movable", "online_movable")):
        cap = parse_capture_text("# cmd: qemu-system-x86_64\n" + blocks.format(extra, release), "t.log")
        assert online_type(cap) == want, (release, extra)
