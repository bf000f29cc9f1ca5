"""--machine this: the host reader on fixture trees (tests/data/host-*/, made by
tests/data/make_host_fixtures.py), never on the host running the tests.

* host-root: root on a Debian 12 (6.1) 2 GiB guest: /proc/iomem readable;
* host-nonroot: a user on a 6.6 kernel: /proc/iomem all zeros, /sys/firmware/memmap, 2 blocks offline;
* host-numa: a 2-node 5.10 box seen from a container: no /proc/iomem, no /sys/firmware/memmap.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.eras import era_for_release
from vmemmap.errors import InputError
from vmemmap.machine import load_machine
from vmemmap.machine.this import host_era, inspect_host, parse_zoneinfo, read_this, set_note_sink

DATA = Path(__file__).parent / "data"
ROOT, NONROOT, NUMA = DATA / "host-root", DATA / "host-nonroot", DATA / "host-numa"
G = 1 << 30
BLOCK = 128 << 20


def status(rep, path: str) -> str:  # noqa: ANN001
    return next(s.status for s in rep.sources if s.path == path)


def test_root_host_reads_iomem() -> None:
    rep = inspect_host(ROOT)
    m = rep.machine
    assert rep.map_source == "/proc/iomem" and status(rep, "/proc/iomem") == "read"
    assert status(rep, "/sys/firmware/memmap") == "unused"
    assert m.usable() == [(0x1000, 0x9FC00), (0x100000, 0x7FFE0000)]  # iomem: page 0 is Reserved
    assert m.nodes == () and m.cpu.hypervisor and not m.cpu.gbpages
    assert rep.release == "6.1.0-56-cloud-amd64" and (rep.era, rep.era_note) == ("6.1", None)
    assert rep.blocks is not None and rep.blocks.block_size == BLOCK
    assert len(rep.blocks.online) == 16 and rep.blocks.offline == ()
    assert [(z.zone, z.start_pfn, z.spanned) for z in rep.zones[:2]] == [("DMA", 1, 4095), ("DMA32", 4096, 520160)]
    # nothing went wrong, so the only note is the era
    assert rep.notes(era=False) == []
    assert rep.notes() == ["this: kernel 6.1.0-56-cloud-amd64 is modelled with era 6.1"]


def test_nonroot_host_zeroed_iomem_falls_back_to_firmware_memmap() -> None:
    rep = inspect_host(NONROOT)
    m = rep.machine
    assert status(rep, "/proc/iomem") == "zeroed"
    assert rep.map_source == "/sys/firmware/memmap" and status(rep, "/sys/firmware/memmap") == "read"
    assert m.usable() == [(0, 0x9FC00), (0x100000, 0xBFFE0000), (1 << 32, 0x140000000)]
    assert rep.blocks is not None and rep.blocks.offline == (38, 39) and rep.blocks.count == 32
    assert rep.era == "6.1" and "6.6.13+bpo-amd64" in rep.era_note and "nearest era, 6.1" in rep.era_note
    notes = rep.notes()
    assert any("/proc/iomem" in n and "zeroed" in n and "not root" in n for n in notes)
    assert any("2 of 32 memory blocks are offline (256 MiB)" in n for n in notes)
    assert notes[0] == "this: memory map from /sys/firmware/memmap"


def test_numa_host_from_memory_blocks() -> None:
    rep = inspect_host(NUMA)
    m = rep.machine
    assert status(rep, "/proc/iomem") == "absent" and status(rep, "/sys/firmware/memmap") == "absent"
    assert rep.map_source.startswith("/sys/devices/system/memory")
    assert m.usable() == [(0, 2 * G)]  # 16 blocks of 128 MiB
    assert m.numa and m.node_ranges() == {0: [(0, G)], 1: [(G, 2 * G)]}
    assert m.nodes[0].cpus == (0, 1, 2, 3) and m.nodes[1].cpus == (4, 5, 6, 7)
    assert rep.era == "4.20" and "5.10.0-28-amd64" in rep.era_note
    assert {z.nid for z in rep.zones} == {0, 1}


def test_numa_from_zoneinfo_without_node_directory(tmp_path: Path) -> None:
    root = tmp_path / "h"
    shutil.copytree(NUMA, root, symlinks=True)
    shutil.rmtree(root / "sys/devices/system/node")
    rep = inspect_host(root)
    assert status(rep, "/sys/devices/system/node") == "absent"
    # zone spans: node 0 DMA starts at pfn 1, DMA32 ends at pfn 0x40000; node 1 DMA32 [0x40000, 0x80000);
    # rounded out to the 128 MiB block
    assert rep.machine.node_ranges() == {0: [(0, G)], 1: [(G, 2 * G)]}
    assert any("from /proc/zoneinfo" in n for n in rep.notes())


def test_permission_denied_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "h"
    shutil.copytree(ROOT, root, symlinks=True)
    real = Path.read_text

    def read_text(self: Path, *a, **kw) -> str:  # noqa: ANN002, ANN003
        if self == root / "proc/iomem":  # the tests may run as root, who is never refused: simulate
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", read_text)
    rep = inspect_host(root)
    assert status(rep, "/proc/iomem") == "permission denied"
    assert rep.map_source == "/sys/firmware/memmap"
    assert rep.machine.usable() == [(0, 0x9FC00), (0x100000, 0x7FFE0000)]
    assert any("/proc/iomem not used: permission denied (not root?)" in n for n in rep.notes())


def test_nothing_readable_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/iomem").write_text("00000000-00000000 : System RAM\n")
    with pytest.raises(InputError, match=r"^this: cannot read the memory map \(/proc/iomem: zeroed; "
                                         r"/sys/firmware/memmap: absent; /sys/devices/system/memory: absent\)$"):
        inspect_host(tmp_path)


def test_read_this_sends_notes_to_the_sink() -> None:
    got: list[str] = []
    set_note_sink(got.append)
    try:
        m = read_this(NONROOT)
    finally:
        set_note_sink(None)
    assert m.name == "this" and m.ram_bytes == 0x9FC00 + 0xBFEE0000 + G
    assert got == inspect_host(NONROOT).notes(era=False)  # the era note is the command line's


def test_loader_this_colon_root() -> None:
    assert load_machine(f"this:{NUMA}") == inspect_host(NUMA).machine


def test_parse_zoneinfo() -> None:
    text = ("Node 0, zone      DMA\n  per-node stats\n      nr_inactive_anon 15863\n  pages free     3840\n"
            "        spanned  4095\n        present  3998\n        managed  3840\n  start_pfn:           1\n"
            "Node 0, zone  Movable\n  pages free     0\n        spanned  0\n        present  0\n        managed  0\n")
    zs = parse_zoneinfo(text)
    assert [(z.nid, z.zone, z.start_pfn, z.spanned, z.present, z.managed) for z in zs] == [
        (0, "DMA", 1, 4095, 3998, 3840), (0, "Movable", 0, 0, 0, 0)]


@pytest.mark.parametrize("release,era", [
    ("6.1.0-56-cloud-amd64", "6.1"),          # Debian 12
    ("6.12.48+deb13-cloud-amd64", "6.12"),    # Debian 13
    ("6.18.44-fc-v782", "6.12"),              # newer than every era
    ("6.6.13+bpo-amd64", "6.1"),              # 6.6 is 5 minors from 6.1, 6 from 6.12
    ("5.10.0-28-amd64", "4.20"),              # 5.10 sits 10 releases after 4.20 (ordinal 90 vs 80); 6.1 is 110
    ("4.19.0-20-amd64", "4.20"),
    ("3.16.0-4-amd64", "4.20"),               # 3.16 = ordinal 56: 24 from 4.20 (80), 25 from 2.6.31
    ("2.6.32-5-amd64", "2.6.31"),
    ("2.6.18-6-xen-amd64", "2.6.21-seed"),
    ("2.6.26-2-amd64", "2.6.26"),
])
def test_era_nearest_to_release(release: str, era: str) -> None:
    assert era_for_release(release)[0] == era


def test_host_era_reads_osrelease() -> None:
    assert host_era(NONROOT)[:2] == ("6.1", "6.6.13+bpo-amd64")
    assert host_era(ROOT) == ("6.1", "6.1.0-56-cloud-amd64", None)


# ---------------------------------------------------------------------- command line

def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_boot_this_notes_on_stderr_and_era_of_the_kernel() -> None:
    code, out, err = run("boot", "-m", f"this:{NONROOT}")
    assert code == 0, err
    assert "BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] usable" in out  # modern e820 print: 6.1
    assert "note: this: /proc/iomem not used: zeroed" in err
    assert "note: this: modelled with era 6.1, the era nearest the running kernel 6.6.13+bpo-amd64" in err
    assert err.count("zeroed") == 1  # each note once


def test_boot_this_explicit_era_and_quiet() -> None:
    code, out, err = run("-q", "boot", "-m", f"this:{NUMA}", "--era", "2.6.24")
    assert code == 0 and err == ""
    assert " BIOS-e820: 0000000000000000 - 0000000080000000 (usable)" in out  # the 2.6 print: era honoured


def test_boot_this_json_has_notes() -> None:
    code, out, err = run("boot", "-m", f"this:{NONROOT}", "--json")
    d = json.loads(out)
    assert d["notes"] == inspect_host(NONROOT).notes()


def test_machines_this_report() -> None:
    code, out, err = run("machines", f"this:{NONROOT}", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["era"] == "6.1" and d["release"] == "6.6.13+bpo-amd64" and d["map_source"] == "/sys/firmware/memmap"
    assert {s["path"]: s["status"] for s in d["sources"]}["/proc/iomem"] == "zeroed"
    assert d["memory_blocks"] == {"block_size": "0x8000000", "count": 32, "online": 30, "offline": 2,
                                  "offline_blocks": [38, 39]}
    code, out, err = run("machines", f"this:{NUMA}")
    assert code == 0 and "node 1: [mem 0x40000000-0x7fffffff] cpus 4,5,6,7" in out
    assert re.search(r"/sys/firmware/memmap +│ absent", out)


def test_this_on_the_real_host_works_or_fails_in_one_line() -> None:
    code, out, err = run("machines", "this", "--json")
    if code == 0:
        assert json.loads(out)["name"] == "this"
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1


def test_block_id_comes_from_phys_index(tmp_path: Path) -> None:
    root = tmp_path / "h"
    shutil.copytree(NONROOT, root, symlinks=True)
    (root / "sys/devices/system/memory/memory0/phys_index").write_text("00000050\n")
    rep = inspect_host(root)
    assert 0x50 in rep.blocks.online and 0 not in rep.blocks.online
    (root / "sys/devices/system/memory/memory0/phys_index").write_text("zz\n")
    with pytest.raises(InputError, match="phys_index: bad value 'zz'"):
        inspect_host(root)
