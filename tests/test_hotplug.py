"""Memory hotplug (issue 4): blocks, add/online/offline/remove, errnos, exact undo, the CLI.

The property at the heart of it: a hot-plug step that fails leaves the kernel byte-identical, and an
add followed by its remove restores page tables, section table, usage maps and allocator exactly
(:func:`vmemmap.hotplug.kernel_state`).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vmemmap.cli import main
from vmemmap.errors import InputError
from vmemmap.hotplug import HotplugError, kernel_state, parse_script
from vmemmap.kernel import boot
from vmemmap.machine import load_machine

M = 1 << 20
G = 1 << 30
BLOCK = 128 * M
CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "oracle" / "captures"
#: the one vmemmap line dimm-hot.log prints for its 1 GiB DIMM (copied so the test runs without shared/)
DIMM_HOT_PMD_LINE = ("[    3.988992]  [ffffea0004000000-ffffea0004ffffff] PMD -> "
                     "[ffff888005800000-ffff8880067fffff] on node 0")


def qemu(name: str = "qemu-2g"):  # noqa: ANN201
    return boot(load_machine(name), "6.1", "vmemmap")


def diff(a: dict, b: dict) -> list[str]:
    return [key for key in a if a[key] != b[key]]


# ---------------------------------------------------------------------- blocks


def test_boot_blocks_like_sysfs() -> None:
    k = qemu()
    lines = k.hotplug.sysfs_lines()
    assert lines[0] == "block_size_bytes 8000000"
    assert lines[1] == "auto_online_blocks offline"
    # the dimm-hot128 capture's MEMORY_BLOCKS lines for boot memory, verbatim
    assert lines[2] == ("memory0 phys_index=00000000 state=online online=1 removable=1 phys_device=0 "
                        "valid_zones=none node=node0")
    assert lines[3].endswith("valid_zones=DMA32 node=node0")
    assert len(lines) == 2 + 16


def test_dimm_hot128_add_matches_capture() -> None:
    """The capture's snapshot after device_add: memory32 offline, `Normal Movable`; section 32 word
    PRESENT|HAS_MEM_MAP; one PMD line at ffffea0004000000 on node 0; after online_movable the block is
    Movable, the section ONLINE, ZONE_MOVABLE spans 32768 pages from pfn 0x100000."""
    k = qemu()
    hp = k.hotplug
    r = hp.add_memory(0, 4 * G, BLOCK)
    assert r.ok
    assert len(r.messages) == 1
    assert re.fullmatch(r" \[ffffea0004000000-ffffea00041fffff\] PMD -> \[ffff888[0-9a-f]{9}-ffff888[0-9a-f]{9}\] "
                        r"on node 0", r.messages[0])
    assert hp.sysfs_lines()[-1] == ("memory32 phys_index=00000020 state=offline online=0 removable=1 "
                                    "phys_device=0 valid_zones=Normal Movable node=node0")
    st_ = k.model.sections
    assert st_.read_word_nocheck(32) == 0xFFFFEA0000000003
    assert st_.subsection_map(32) == (1 << 64) - 1
    assert k.mem.peek(k.symbols["max_pfn"], 8) == 0x108000
    assert hp.online("memory32", "movable").ok
    assert st_.read_word_nocheck(32) == 0xFFFFEA0000000007
    mov = next(z for z in k.zones if z.name == "Movable")
    assert (mov.start_pfn, mov.spanned_pages, mov.present_pages) == (0x100000, 32768, 32768)
    assert hp.valid_zones(hp.blocks[32]) == "Movable"
    # page->flags of the new struct pages name ZONE_MOVABLE and node 0
    assert k.model.page_to_nid(k.model.pfn_to_page(0x100000).value).value == 0


def test_dimm_hot_1g_one_coalesced_pmd_line() -> None:
    """dimm-hot.log prints one coalesced line for the 1 GiB DIMM's eight PMDs: our allocator stand-in
    hands out ascending contiguous blocks as the buddy allocator does."""
    want = [DIMM_HOT_PMD_LINE]
    if (CAPTURES / "dimm-hot.log").exists():
        assert want == [ln for ln in (CAPTURES / "dimm-hot.log").read_text().splitlines() if "] PMD -> [" in ln]
    k = qemu()
    r = k.hotplug.add_memory(0, 4 * G, G)
    assert r.ok and len(r.messages) == 1 == len(want)
    shape = re.compile(r" \[([0-9a-f]+)-([0-9a-f]+)\] PMD -> \[([0-9a-f]+)-([0-9a-f]+)\] on node (\d+)")
    got_m, want_m = shape.search(r.messages[0]), shape.search(want[0])
    assert got_m.group(1, 2, 5) == want_m.group(1, 2, 5)  # the virtual range and the node
    # the backing is as long (16 MiB, contiguous); only where it sits differs
    assert int(got_m[4], 16) - int(got_m[3], 16) == int(want_m[4], 16) - int(want_m[3], 16)


# ---------------------------------------------------------------------- errnos, each leaving the state as it was


@pytest.mark.parametrize(("nid", "start", "size", "errno"), [
    (0, 4 * G, 64 * M, -22),           # check_hotplug_memory_range (dimm-64M-unaligned)
    (0, 4 * G + 64 * M, BLOCK, -22),
    (0, 1 * G, BLOCK, -17),            # overlaps boot System RAM
    (0, 1 << 46, BLOCK, -7),           # mhp_range_allowed: beyond MAX_PHYSMEM_BITS
    (5, 4 * G, BLOCK, -22),            # node not possible
])
def test_add_errors_leave_state(nid: int, start: int, size: int, errno: int) -> None:
    k = qemu()
    before = kernel_state(k)
    r = k.hotplug.add_memory(nid, start, size)
    assert not r.ok and r.error.errno == errno
    assert diff(before, kernel_state(k)) == []


def test_unaligned_message_is_the_kernels() -> None:
    k = qemu()
    r = k.hotplug.add_memory(0, 4 * G, 64 * M)
    want = "Block size [0x8000000] unaligned hotplug range: start 0x100000000, size 0x4000000"
    if (CAPTURES / "dimm-64M-unaligned.log").exists():  # the kernel's own words (shared/oracle)
        assert want in (CAPTURES / "dimm-64M-unaligned.log").read_text()
    assert r.messages == [want]


def test_overlap_with_added_memory_and_probe_alignment() -> None:
    k = qemu()
    hp = k.hotplug
    assert hp.add_memory(0, 4 * G, 2 * BLOCK).ok
    before = kernel_state(k)
    assert hp.add_memory(0, 4 * G + BLOCK, BLOCK).error.errno == -17
    assert hp.probe(4 * G + 2 * BLOCK + 4096).error.errno == -22
    assert hp.online(33, "movable").ok and hp.online(33, "movable").error.errno == -22  # already online
    assert hp.remove(4 * G, 2 * BLOCK).error.errno == -16  # one block still online
    assert hp.offline(33).ok and hp.offline(33).error.errno == -22  # already offline
    assert diff(before, kernel_state(k)) == []
    assert hp.remove(4 * G + 4096, BLOCK).error.errno == -22
    with pytest.raises(InputError):
        hp.remove(0, BLOCK)  # boot memory
    with pytest.raises(HotplugError):
        hp.block("memory99")


def test_late_failure_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    """-ENOMEM half-way through a 1 GiB add (after the direct map and some sections): nothing remains."""
    k = qemu()
    hp = k.hotplug
    before = kernel_state(k)
    real = hp.alloc
    for fail_at in (1, 3, 7, 12):
        calls = {"n": 0}

        def flaky(size: int, align: int, nid: int, what: str, _f: int = fail_at) -> int:
            calls["n"] += 1
            if calls["n"] == _f:
                from vmemmap.errors import BootError

                raise BootError("injected allocation failure")
            return real(size, align, nid, what)

        monkeypatch.setattr(hp, "alloc", flaky)
        r = hp.add_memory(0, 8 * G, G)
        assert not r.ok and r.error.errno == -12
        assert diff(before, kernel_state(k)) == []
        assert hp.blocks.keys() == {b for b in range(16)}


def test_add_remove_cycles_identical_and_roots_kept() -> None:
    k = qemu()
    hp = k.hotplug
    s0 = kernel_state(k)
    for kind in ("movable", "kernel", "online"):
        assert hp.add_memory(0, 4 * G, 4 * BLOCK).ok
        for b in range(32, 36):
            assert hp.online(b, kind).ok
        for b in range(35, 31, -1):
            assert hp.offline(b).ok, b
        assert hp.remove(4 * G, 4 * BLOCK).ok
        assert diff(s0, kernel_state(k)) == []
    # a section in a new root (32 GiB per root of 256 sections): the kernel never frees roots
    assert hp.add_memory(0, 40 * G, BLOCK).ok and hp.remove(40 * G, BLOCK).ok
    s1 = kernel_state(k)
    assert diff(s0, s1) == ["roots", "root_words", "free"]
    assert set(dict(s1["roots"])) - set(dict(s0["roots"])) == {1}
    assert hp.add_memory(0, 40 * G, BLOCK).ok and hp.remove(40 * G, BLOCK).ok
    assert diff(s1, kernel_state(k)) == []
    # 64 GiB: a new vmemmap PMD table and a new direct-map PMD table, both freed on remove
    assert hp.add_memory(0, 64 * G, BLOCK).ok and hp.remove(64 * G, BLOCK).ok
    s2 = kernel_state(k)
    tables = len(s2["table_pages"])
    assert hp.add_memory(0, 64 * G, 2 * BLOCK).ok
    assert len(kernel_state(k)["table_pages"]) == tables + 2
    assert hp.remove(64 * G, 2 * BLOCK).ok
    assert diff(s2, kernel_state(k)) == []


def test_offline_ebusy_when_kernel_memory_is_used() -> None:
    """Memory onlined to ZONE_NORMAL serves GFP_KERNEL allocations: the next add's memmap lands in it, and
    offlining it fails with -EBUSY (has_unmovable_pages) until that memory is removed again."""
    k = qemu()
    hp = k.hotplug
    assert hp.add_memory(0, 4 * G, BLOCK).ok and hp.online(32, "kernel").ok
    assert hp.add_memory(0, 8 * G, BLOCK).ok
    w = k.tables.walk(k.layout.vmemmap_base + 0x200000 * 64)
    assert 4 * G <= w.phys < 4 * G + BLOCK
    r = hp.offline(32)
    assert r.error.errno == -16 and r.messages[0].endswith("failed due to failure to isolate range")
    assert hp.remove(8 * G, BLOCK).ok
    assert hp.offline(32).ok and hp.remove(4 * G, BLOCK).ok


def test_numa_memmap_is_node_local() -> None:
    k = qemu("qemu-numa2")
    hp = k.hotplug
    assert hp.add_memory(1, 4 * G, BLOCK).ok
    w = k.tables.walk(k.layout.vmemmap_base + (4 * G >> 12) * 64)
    assert k.memblock.node_of(w.phys) == 1
    assert hp.blocks[32].nid == 1
    assert hp.online(32, "movable").ok
    assert k.nodes[1].end_pfn == (4 * G + BLOCK) >> 12  # resize_pgdat_range
    assert hp.offline(32).ok
    assert k.nodes[1].end_pfn == 0x7FFE0  # update_pgdat_span


def test_old_eras_flatmem_refuses() -> None:
    """Every era hot-plugs as its kernel does (tests/test_hotplug_eras.py); FLATMEM has none: -EINVAL."""
    k = boot(load_machine("qemu-2g"), "2.6.24", "flatmem")
    with pytest.raises(HotplugError):
        k.hotplug.add_memory(0, 4 * G, BLOCK)


# ---------------------------------------------------------------------- mem-on-off-test.sh


def test_mem_on_off_phases() -> None:
    """tools/testing/selftests/memory-hotplug/mem-on-off-test.sh on 2 GiB of hot-added blocks
    (formats.md §6.3): online all, offline 10 %, online all again, then the error-injection phases."""
    k = qemu()
    hp = k.hotplug
    assert hp.add_memory(0, 4 * G, 16 * BLOCK).ok
    hot = list(range(32, 48))
    rnd = random.Random(4)

    def online_all() -> None:
        for b in hot:
            if hp.blocks[b].state == "offline":
                assert hp.online(b).ok and hp.blocks[b].state == "online"

    def offline_ratio(ratio: int) -> list[int]:
        on = [b for b in hot if hp.blocks[b].state == "online"]
        pick = rnd.sample(on, max(1, len(on) * ratio // 100))
        for b in pick:
            r = hp.offline(b)
            # contig-zones puts the first block in Normal; kernel memory may hold later memmaps: -EBUSY
            assert r.ok or r.error.errno == -16
        return pick

    online_all()                    # phase 1
    offline_ratio(10)               # phase 2
    online_all()                    # phase 3
    offline_ratio(10)               # injection off: offline succeeds
    hp.inject["MEM_GOING_ONLINE"] = -12
    for b in hot:
        if hp.blocks[b].state == "offline":
            before = kernel_state(k)
            r = hp.online(b)
            assert not r.ok and r.error.errno == -12 and hp.blocks[b].state == "offline"
            assert diff(before, kernel_state(k)) == []
    hp.inject.clear()
    online_all()
    hp.inject["MEM_GOING_OFFLINE"] = -12
    for b in rnd.sample(hot, 3):
        before = kernel_state(k)
        r = hp.offline(b)
        assert not r.ok and hp.blocks[b].state == "online"
        assert diff(before, kernel_state(k)) == []
    hp.inject.clear()


# ---------------------------------------------------------------------- stateful property


#: 4 GiB.. and 8 GiB.. share root 0 and the boot vmemmap PMD table; 64 GiB (block 512) needs its own
#: vmemmap PMD table (freed again on remove) and root 2 (made once in __init__: the kernel keeps roots)
HOT = [32 + i for i in range(6)] + [64, 65, 512]


class HotplugMachine(RuleBasedStateMachine):
    """Random add/online/offline/remove on qemu-2g: every refused step leaves the state identical, and
    every add immediately undone restores it; invariants tie sections, vmemmap and blocks together."""

    def __init__(self) -> None:
        super().__init__()
        self.k = qemu()
        self.hp = self.k.hotplug
        assert self.hp.add_memory(0, 64 * G, BLOCK).ok and self.hp.remove(64 * G, BLOCK).ok

    def _check(self, r, before) -> None:  # noqa: ANN001
        if not r.ok:
            assert diff(before, kernel_state(self.k)) == [], r.error

    @rule(b=st.sampled_from(HOT), n=st.sampled_from([1, 2]))
    def add(self, b: int, n: int) -> None:
        before = kernel_state(self.k)
        self._check(self.hp.add_memory(0, b * BLOCK, n * BLOCK), before)

    @rule(b=st.sampled_from(HOT), kind=st.sampled_from(["online", "online_kernel", "online_movable"]))
    def online(self, b: int, kind: str) -> None:
        if b not in self.hp.blocks:
            return
        before = kernel_state(self.k)
        self._check(self.hp.online(b, kind), before)

    @rule(b=st.sampled_from(HOT + [3]))
    def offline(self, b: int) -> None:
        before = kernel_state(self.k)
        self._check(self.hp.offline(b), before)

    @rule(b=st.sampled_from(HOT))
    def remove(self, b: int) -> None:
        before = kernel_state(self.k)
        self._check(self.hp.remove(b * BLOCK, BLOCK), before)

    @precondition(lambda self: any(b not in self.hp.blocks for b in HOT))
    @rule(data=st.data())
    def add_then_remove(self, data) -> None:  # noqa: ANN001
        free = [b for b in HOT if b not in self.hp.blocks]
        b = data.draw(st.sampled_from(free))
        before = kernel_state(self.k)
        assert self.hp.add_memory(0, b * BLOCK, BLOCK).ok
        if data.draw(st.booleans()):
            assert self.hp.online(b, "online_movable").ok and self.hp.offline(b).ok
        assert self.hp.remove(b * BLOCK, BLOCK).ok
        assert diff(before, kernel_state(self.k)) == []

    @invariant()
    def sections_vmemmap_blocks_agree(self) -> None:
        k, hp = self.k, self.hp
        sec = k.model.sections
        online_flag = k.era.section_flag("ONLINE")
        present = {int(x) for x in sec.present_array()}
        assert present == set(hp.blocks)  # one section per 128 MiB block
        for nr in present:
            w = sec.read_word_nocheck(nr)
            assert bool(w & online_flag) == (hp.blocks[nr].state == "online")
            assert sec.subsection_map(nr) != 0
            assert k.model.pfn_valid(nr * 32768).value
        for b in HOT:
            if b not in present:
                assert not k.model.pfn_valid(b * 32768).value
        # vmemmap mapped exactly where a section has a memmap (2 MiB of struct pages per section)
        base = k.layout.vmemmap_base
        mapped = set()
        for r in k.tables.runs(base, k.layout.vmemmap_end + 1):
            mapped |= set(range((r.vaddr - base) >> 21, (r.end - base) >> 21))
        assert mapped == present
        # nothing allocated is free: vmemmap backing and every table page are outside the free ranges
        free = [rg for rs in k.memblock.free_ranges().values() for rg in rs]
        used = [(r.phys, r.phys_end) for r in k.tables.runs(base, k.layout.vmemmap_end + 1)]
        used += [(p, p + 4096) for _, p in k.tables.iter_tables()]
        for a, b in used:
            assert not any(s < b and a < e for s, e in free)
        mov = next((z for z in k.zones if z.name == "Movable"), None)
        n_mov = sum(1 for b in hp.blocks.values() if b.state == "online" and b.zone == "Movable")
        assert (mov.present_pages if mov else 0) == n_mov * 32768


TestHotplugStateful = HotplugMachine.TestCase
TestHotplugStateful.settings = settings(max_examples=25, stateful_step_count=16, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------- CLI


SCRIPT = """# dimm-hot128, by hand
add 0 0x100000000 128M
online memory32 movable
show
offline memory0
offline memory32
remove 0x100000000 0x8000000
"""


def test_cli_script(tmp_path: Path) -> None:
    p = tmp_path / "s.txt"
    p.write_text(SCRIPT)
    r = CliRunner().invoke(main, ["hotplug", "-m", "qemu-2g", str(p)])
    assert r.exit_code == 1, r.output  # offline memory0 fails
    assert " [ffffea0004000000-ffffea00041fffff] PMD -> [" in r.output
    assert "memory32 phys_index=00000020 state=online online=1 removable=1 phys_device=0 valid_zones=Movable " \
           "node=node0" in r.output
    assert "errno -22 (EINVAL): memory0 spans several zones (valid_zones none)" in r.output
    assert "Offlined Pages 32768" in r.output
    p.write_text(SCRIPT.replace("offline memory0\n", ""))
    r = CliRunner().invoke(main, ["hotplug", "-m", "qemu-2g", str(p), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["failed"] == 0 and [s["op"] for s in out["steps"]][:2] == ["add", "online"]
    assert out["steps"][1]["blocks"][-1]["valid_zones"] == "Movable"
    assert len(out["blocks"]) == 16


def test_cli_ls_and_bad_input(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["hotplug", "-m", "qemu-2g", "ls"])
    assert r.exit_code == 0 and r.output.splitlines()[0] == "block_size_bytes 8000000"
    p = tmp_path / "bad.txt"
    for text in ("frob 1\n", "add 0 0x1000\n", "add 0 zz 128M\n", "online memory32 sideways\n"):
        p.write_text(text)
        r = CliRunner().invoke(main, ["hotplug", "-m", "qemu-2g", str(p)])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and "vmemmap: error:" in r.output, text
    with pytest.raises(InputError):
        parse_script("inject MEM_BOGUS -12\n")


# ---------------------------------------------------------------------- device drivers (ACPI DIMM, virtio-mem)


def test_acpi_dimm_unaligned_refused_and_state_unchanged() -> None:
    k = qemu()
    before = kernel_state(k)
    r = k.hotplug.acpi_memory_device_add("PNP0C80:00", [(4 * G, 64 * M)], 0)
    assert not r.ok and r.error.errno == -22
    assert r.messages == ["Block size [0x8000000] unaligned hotplug range: start 0x100000000, size 0x4000000",
                          "acpi PNP0C80:00: add_memory failed", "acpi PNP0C80:00: acpi_memory_enable_device() error"]
    assert diff(before, kernel_state(k)) == []
    assert k.hotplug.acpi_memory_device_eject("PNP0C80:00").ok  # never bound: nothing to remove


def test_acpi_dimm_add_online_eject_restores_state() -> None:
    k = qemu()
    before = kernel_state(k)
    r = k.hotplug.acpi_memory_device_add("PNP0C80:00", [(4 * G, 2 * BLOCK)], 0)
    assert r.ok and any("PMD ->" in m for m in r.messages)
    for nr in (32, 33):
        assert k.hotplug.online(nr, "movable").ok
    r = k.hotplug.acpi_memory_device_eject("PNP0C80:00")
    assert r.ok and r.messages.count("Offlined Pages 32768") == 2
    after = kernel_state(k)
    assert [key for key in diff(before, after) if key not in ("roots", "root_words")] == []


def test_virtio_mem_plugs_ascending_and_unplugs_from_the_top() -> None:
    k = qemu()
    hp = k.hotplug
    hp.default_online_type = "online_movable"
    hp.virtio_mem_add_device("virtio0", 4 * G, 4 * G, 0)
    r = hp.virtio_mem_resize("virtio0", 4 * BLOCK)
    assert r.ok and sum("PMD ->" in m for m in r.messages) == 4
    assert [b.nr for b in hp.blocks.values() if not b.early] == [32, 33, 34, 35]
    assert all(hp.blocks[nr].zone == "Movable" for nr in (32, 33, 34, 35))
    r = hp.virtio_mem_resize("virtio0", BLOCK)
    assert r.ok and [b.nr for b in hp.blocks.values() if not b.early] == [32]
    with pytest.raises(InputError, match="sub-block"):
        hp.virtio_mem_resize("virtio0", BLOCK + (2 << 20))
