"""memmap_on_memory (``memory_hotplug.memmap_on_memory=``, kernel-reference §4.5): a hot-added memory block's
memmap in the block's own first pages (``vmem_altmap``).

* 6.12 ``create_altmaps_and_memory_blocks``: one altmap per memory block, so a 1 GiB DIMM gets eight 2 MiB
  PMDs, each at the start of its own 128 MiB block (captures-6.12/dimm-hot-mom);
* 6.1 ``mhp_supports_memmap_on_memory(size)``: only an add of exactly one memory block;
* online/offline keep the memmap pages out of the page allocator but in the zone's span and present
  pages (``mhp_init_memmap_on_memory`` + ``adjust_present_page_count``); remove gives them back to the
  altmap and frees it: add-then-remove restores the kernel byte for byte.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vmemmap.hotplug import kernel_state
from vmemmap.kernel import boot
from vmemmap.machine import load_machine

M = 1 << 20
G = 1 << 30
BLOCK = 128 * M
DIMM = 4 * G  # first address above 4 GiB on the 2 GiB QEMU machine
SHARED = Path(__file__).resolve().parents[2] / "shared"


def _kernel(era: str, param: str | None = "1"):  # noqa: ANN202
    m = load_machine("qemu-2g")
    m = dataclasses.replace(m, cmdline=(m.cmdline + " memhp_default_state=offline").strip())  # as dimm-hot-mom
    if param is not None:
        extra = "memory_hotplug.memmap_on_memory" + ("" if param == "" else f"={param}")
        m = dataclasses.replace(m, cmdline=(m.cmdline + " " + extra).strip())
    return boot(m, era, "vmemmap")


def _pmds(k, start: int, size: int) -> list[tuple[int, int]]:  # noqa: ANN001
    """(vmemmap virtual address, physical backing) of every run of leaves (physically contiguous ones are
    coalesced) describing [start, start+size)."""
    sp = k.era.struct_page_size
    v0 = k.layout.vmemmap_base + (start >> 12) * sp
    v1 = k.layout.vmemmap_base + ((start + size) >> 12) * sp
    return sorted((lf.vstart, lf.pstart) for lf in k.vmemmap_leaves if v0 <= lf.vstart < v1)


def _diff(a: dict, b: dict) -> list[str]:
    return [key for key in a if a[key] != b[key]]


def test_parameter_parsing_per_era() -> None:
    assert _kernel("6.12").hotplug.memmap_mode == "enable"
    assert _kernel("6.12", "force").hotplug.memmap_mode == "force"
    assert _kernel("6.12", "n").hotplug.memmap_mode == "disable"
    assert _kernel("6.12", "").hotplug.memmap_mode == "disable"  # set_memmap_mode needs a value
    assert _kernel("6.12", None).hotplug.memmap_mode == "disable"
    assert _kernel("6.1", "y").hotplug.memmap_mode == "enable"
    assert _kernel("6.1", "").hotplug.memmap_mode == "enable"  # param_set_bool: bare is true
    assert _kernel("6.1", "force").hotplug.memmap_mode == "disable"  # kstrtobool('f'): 6.1 has no force
    assert _kernel("4.20").hotplug.memmap_mode == "disable"  # no memmap_on_memory in that era's model


def test_supports_checks() -> None:
    hp = _kernel("6.12").hotplug
    assert hp.mhp_supports_memmap_on_memory()  # 32768 pages x 64 B = 2 MiB: PMD- and pageblock-aligned
    assert hp.memmap_on_memory_pages() == 512
    hp61 = _kernel("6.1").hotplug
    assert hp61.mhp_supports_memmap_on_memory(BLOCK)
    assert not hp61.mhp_supports_memmap_on_memory(8 * BLOCK)  # 6.1: exactly one memory block
    assert not _kernel("6.12", "0").hotplug.mhp_supports_memmap_on_memory()


def test_612_each_block_memmap_at_its_own_start() -> None:
    k = _kernel("6.12", "1")
    hp = k.hotplug
    r = hp.acpi_memory_device_add("PNP0C80:00", [(DIMM, 1 * G)], 0)
    assert r.ok, r.error
    pmds = _pmds(k, DIMM, 1 * G)
    assert [p for _, p in pmds] == [DIMM + i * BLOCK for i in range(8)]  # block i's first 2 MiB
    assert {lf.page_size for lf in k.vmemmap_leaves if lf.pstart >= DIMM} == {2 * M}
    assert len([m for m in r.messages if "PMD ->" in m]) == 8
    for i in range(8):
        b = hp.blocks[DIMM // BLOCK + i]
        assert b.nr_vmemmap_pages == 512 and hp.altmaps[b.nr].alloc == 512
    # online movable: present pages cover the whole block (adjust_present_page_count), zone spans it
    for i in range(8):
        assert hp.online(DIMM // BLOCK + i, "online_movable").ok
    z = next(z for z in k.zones if z.name == "Movable")
    assert z.present_pages == z.spanned_pages == (1 * G) >> 12
    # offline: the memmap pages are not part of offline_pages
    r = hp.offline(DIMM // BLOCK)
    assert r.ok and r.messages == [f"Offlined Pages {32768 - 512}"]


def test_612_kernel_zone_keeps_memmap_pages_out_of_the_allocator() -> None:
    k = _kernel("6.12", "1")
    hp = k.hotplug
    assert hp.acpi_memory_device_add("PNP0C80:00", [(DIMM, BLOCK)], 0).ok
    assert hp.online(DIMM // BLOCK, "online_kernel").ok
    assert not k.memblock.is_free(DIMM, DIMM + 2 * M)
    assert k.memblock.is_free(DIMM + 2 * M, DIMM + BLOCK)
    assert hp.offline(DIMM // BLOCK).ok


@pytest.mark.parametrize("era,size,kind", [("6.12", 1 * G, "online_movable"), ("6.12", 1 * G, "online_kernel"),
                                           ("6.1", BLOCK, "online_movable")])
def test_add_then_remove_is_byte_identical(era: str, size: int, kind: str) -> None:
    k = _kernel(era, "1")
    hp = k.hotplug
    before = kernel_state(k)
    assert hp.acpi_memory_device_add("PNP0C80:00", [(DIMM, size)], 0).ok
    assert any(p == DIMM for _, p in _pmds(k, DIMM, size))  # the memmap really is on the memory
    for nr in range(DIMM // BLOCK, (DIMM + size) // BLOCK):
        assert hp.online(nr, kind).ok
    r = hp.acpi_memory_device_eject("PNP0C80:00")
    assert r.ok, r.error
    assert not hp.altmaps
    after = kernel_state(k)
    assert _diff(before, after) == []


def test_61_multi_block_add_ignores_the_setting() -> None:
    k = _kernel("6.1", "1")
    hp = k.hotplug
    assert hp.acpi_memory_device_add("PNP0C80:00", [(DIMM, 1 * G)], 0).ok
    runs = [lf for lf in k.vmemmap_leaves if lf.vstart >= k.layout.vmemmap_base + (DIMM >> 12) * 64]
    assert sum(lf.vend - lf.vstart for lf in runs) == 16 * M  # eight 2 MiB PMDs ...
    assert all(lf.pstart + (lf.vend - lf.vstart) <= 2 * G for lf in runs)  # ... from boot memory
    assert all(hp.blocks[nr].nr_vmemmap_pages == 0 for nr in range(DIMM // BLOCK, DIMM // BLOCK + 8))
    assert not hp.altmaps
    # ... while a one-block DIMM on the same kernel hosts its own memmap
    assert hp.acpi_memory_device_add("PNP0C80:01", [(DIMM + 1 * G, BLOCK)], 0).ok
    assert [p for _, p in _pmds(k, DIMM + 1 * G, BLOCK)] == [DIMM + 1 * G]


def test_61_refuses_removing_a_memmap_on_memory_block_in_a_larger_range() -> None:
    k = _kernel("6.1", "1")
    hp = k.hotplug
    assert hp.acpi_memory_device_add("PNP0C80:00", [(DIMM, BLOCK)], 0).ok
    assert hp.add_memory(0, DIMM + BLOCK, BLOCK).ok  # MHP_NONE
    r = hp.remove(DIMM, 2 * BLOCK)
    assert r.error is not None and r.error.errno == -22 and "wrong granularity" in r.messages[0]
    assert hp.remove(DIMM + BLOCK, BLOCK).ok and hp.remove(DIMM, BLOCK).ok


def test_probe_never_uses_memmap_on_memory() -> None:
    k = _kernel("6.12", "1")
    assert k.hotplug.probe(DIMM).ok  # probe_store: __add_memory(..., MHP_NONE)
    assert all(not DIMM <= p < DIMM + BLOCK for _, p in _pmds(k, DIMM, BLOCK))


def test_dimm_hot_mom_capture_agrees() -> None:
    p = SHARED / "oracle" / "captures-6.12" / "dimm-hot-mom.log"
    if not p.exists():
        pytest.skip("shared 6.12 oracle captures not present")
    from vmemmap.conform import conform

    res = conform(p)
    bad = [f"snapshot {f['snapshot']}: {f['name']}: expected {f['expected']!r}, got {f['got']!r}"
           for f in res["facts"] if not f["ok"]]
    assert not bad, "\n".join(bad[:20])
    assert len(res["facts"]) == 594


def test_force_mode_waste_report() -> None:
    """6.12 set_memmap_mode(): force prints how many pages each block wastes to pageblock padding —
    none with a 64-byte struct page and 128 MiB blocks (512 memmap pages = one pageblock)."""
    from vmemmap.machine import Machine

    base = load_machine("qemu-2g")
    m = Machine(name="force", description="force", e820=base.e820, nodes=base.nodes, cpu=base.cpu,
                cmdline="memory_hotplug.memmap_on_memory=force")
    k = boot(m, "6.12")
    assert k.hotplug.memmap_mode == "force"
    assert k.hotplug.boot_messages == ["Memory hotplug will waste 0 pages in each memory block"]
    assert boot(m, "6.1").hotplug.boot_messages == []  # 6.1's bool parameter has no force mode
