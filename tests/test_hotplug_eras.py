"""Memory hotplug in every era and memory model (issue 4 item 5): what each era's kernel does.

* probe: one section per write in 2.6.2x (``add_memory(nid, addr, PAGES_PER_SECTION << PAGE_SHIFT)``),
  a whole aligned memory block later (2 GiB = 16 sections on a large bare-metal 6.1 machine);
* FLATMEM refuses (-EINVAL, one line); classic SPARSEMEM takes each section's memmap from the direct
  map (``__kmalloc_section_memmap``, vmalloc fallback); DISCONTIGMEM in 2.6.21 only inside a hot-add
  range reserved at boot (MEMORY_HOTPLUG_RESERVE);
* why the virtual memmap made hotplug simple: its memmap is exactly at ``vmemmap + pfn``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vmemmap.errors import BootError, InputError
from vmemmap.hotplug import HotplugError, kernel_state
from vmemmap.kernel import boot
from vmemmap.machine import load_machine

M = 1 << 20
G = 1 << 30
SECTION = 128 * M


def diff(a: dict, b: dict) -> list[str]:
    return [key for key in a if a[key] != b[key]]


def test_probe_one_section_in_2_6_but_a_whole_block_in_6_1() -> None:
    old = boot(load_machine("numa-2s-256g"), "2.6.24", "sparsemem-extreme")
    new = boot(load_machine("numa-2s-256g"), "6.1", "vmemmap")
    assert old.hotplug.block_size == SECTION and new.hotplug.block_size == 2 * G  # kmem.probe_memory_block_size
    top = 512 * G
    assert old.hotplug.probe(top).ok
    assert [int(x) for x in old.model.sections.present_array() if int(x) >= top // SECTION] == [top // SECTION]
    assert new.hotplug.probe(top).ok
    added = [int(x) for x in new.model.sections.present_array() if int(x) >= top // SECTION]
    assert added == list(range(top // SECTION, top // SECTION + 16))
    assert new.hotplug.probe(top + 2 * G + SECTION).error.errno == -22  # not block aligned


@pytest.mark.parametrize("era", ["2.6.21-seed", "2.6.24"])
def test_flatmem_refuses_hotplug(era: str) -> None:
    k = boot(load_machine("qemu-2g"), era, "flatmem")
    before = kernel_state_flat(k)
    with pytest.raises(HotplugError) as e:
        k.hotplug.add_memory(0, 4 * G, SECTION)
    assert e.value.errno == -22 and "depends on SPARSEMEM" in e.value.reason and "\n" not in str(e.value)
    assert kernel_state_flat(k) == before
    from vmemmap.hotplug import parse_script, run_script

    out = run_script(k, parse_script("probe 0x100000000\nshow\n"))
    assert out["failed"] == 1 and out["steps"][0]["errno"] == -22 and out["blocks"] == []


def kernel_state_flat(k) -> tuple:  # noqa: ANN001
    t = k.tables
    return ([(r.vaddr, r.end, r.phys) for r in t.runs(0, 1 << 64)], k.memblock.free_ranges(),
            sorted((z.nid, z.idx, z.start_pfn, z.end_pfn, z.present_pages) for z in k.zones))


def test_classic_sparsemem_memmap_lands_in_the_direct_map_vmemmap_at_vmemmap_plus_pfn() -> None:
    """Why the virtual memmap made hotplug simple: with classic SPARSEMEM the hot-added section's memmap
    is a kmalloc'd (alloc_pages) block of unrelated direct-map memory, reachable only through the encoded
    section word; with SPARSEMEM_VMEMMAP it is exactly at ``vmemmap + pfn``, mapped into the window."""
    pfn = (4 * G) >> 12
    cls = boot(load_machine("qemu-2g"), "2.6.24", "sparsemem-extreme")
    vm = boot(load_machine("qemu-2g"), "2.6.24", "vmemmap")
    for k in (cls, vm):
        assert k.hotplug.probe(4 * G).ok
    page_cls = cls.model.pfn_to_page(pfn).value
    page_vm = vm.model.pfn_to_page(pfn).value
    assert page_vm == vm.layout.vmemmap_base + pfn * 56  # vmemmap + pfn, 56-byte struct page (2.6.24)
    dm = cls.layout.region("direct-map")
    assert dm.start <= page_cls < dm.start + 2 * G  # inside boot RAM's direct map: unrelated to the pfn
    phys = page_cls - cls.page_offset
    assert phys % (2 * M) == 0  # alloc_pages(order 9): 1.75 MiB memmap rounded to 2 MiB
    assert page_cls - pfn * 56 == cls.model.sections.read_word_nocheck(32) & cls.era.section_map_mask
    # no vmemmap mapping for the classic model, one PMD for the virtual one
    assert not any(r.vaddr >= cls.layout.vmemmap_base for r in cls.tables.runs(cls.layout.vmemmap_base,
                                                                                cls.layout.vmemmap_end + 1))
    assert vm.tables.walk(page_vm).phys is not None
    # both translate back and say the pfn is valid; struct pages were initialised into ZONE_NORMAL at add
    assert cls.model.page_to_pfn(page_cls).value == pfn == vm.model.page_to_pfn(page_vm).value
    assert cls.model.pfn_valid(pfn).value and vm.model.pfn_valid(pfn).value
    assert cls.era.zone_names[cls.model.page_zonenum(page_cls)] == "Normal"


def test_2_6_x_rules_online_movable_is_online_no_offline_no_remove() -> None:
    k = boot(load_machine("qemu-2g"), "2.6.24", "vmemmap")
    hp = k.hotplug
    r = hp.probe(4 * G)
    # 2.6.24's per-PMD KERN_DEBUG line: " [%lx-%lx] PMD ->%p on node %d" (0889eba5b38f)
    assert r.ok and len(r.messages) == 1
    assert r.messages[0].startswith(" [ffffe20003800000-ffffe200039fffff] PMD ->ffff81")
    normal = next(z for z in k.zones if z.name == "Normal")  # __add_zone grew ZONE_NORMAL at add
    assert (normal.start_pfn, normal.spanned_pages, normal.present_pages) == (0x100000, 32768, 0)
    assert "valid_zones" not in hp.sysfs_lines()[-1]
    assert hp.online("memory32", "movable").ok  # strncmp(buf, "online", 6)
    assert hp.blocks[32].zone == "Normal" and normal.present_pages == 32768
    before = kernel_state(k)
    assert hp.offline(32).error.errno == -22
    assert hp.remove(4 * G, SECTION).error.errno == -22
    assert diff(before, kernel_state(k)) == []


def test_classic_sparsemem_vmalloc_fallback_and_exact_undo(monkeypatch: pytest.MonkeyPatch) -> None:
    """No free order-9 block: ``__kmalloc_section_memmap`` falls back to vmalloc (448 single pages
    mapped by PTEs in the vmalloc area); a 4.20 remove then vfree()s it and restores everything."""
    k = boot(load_machine("qemu-2g"), "4.20", "sparsemem-extreme")
    hp = k.hotplug
    s0 = kernel_state(k)
    real = hp.alloc

    def no_big_blocks(size: int, align: int, nid: int, what: str) -> int:
        if what == "section memmap":
            raise BootError("no free order-9 block")
        return real(size, align, nid, what)

    monkeypatch.setattr(hp, "alloc", no_big_blocks)
    assert hp.add_memory(0, 4 * G, SECTION).ok
    page = k.model.pfn_to_page((4 * G) >> 12).value
    vmalloc = k.layout.region("vmalloc")
    assert vmalloc.start <= page <= vmalloc.end
    assert k.tables.walk(page).page_size == 4096
    assert hp.online(32, "movable").ok and hp.offline(32).ok and hp.remove(4 * G, SECTION).ok
    assert diff(s0, kernel_state(k)) == []


@pytest.mark.parametrize(("era", "model"), [("4.20", "vmemmap"), ("4.20", "sparsemem-extreme"),
                                            ("6.1", "sparsemem-extreme"), ("6.12", "vmemmap")])
def test_add_then_remove_identical_in_later_eras(era: str, model: str) -> None:
    k = boot(load_machine("qemu-2g"), era, model)
    hp = k.hotplug
    s0 = kernel_state(k)
    # added offline explicitly: 6.12 Debian would online it by itself (era memhp_default_online_type)
    assert hp.add_memory(0, 4 * G, 3 * SECTION, online="offline").ok
    for nr in (32, 33, 34):
        assert hp.online(nr, "movable").ok
    for nr in (32, 33, 34):
        assert hp.offline(nr).ok
    assert hp.remove(4 * G, 3 * SECTION).ok
    assert diff(s0, kernel_state(k)) == []


def _numa_with_hotadd(reserve: bool):  # noqa: ANN202
    m = load_machine("qemu-numa2")
    if reserve:
        nodes = tuple(dataclasses.replace(n, hotplug=((4 * G, 5 * G),)) if n.nid == 1 else n for n in m.nodes)
        m = dataclasses.replace(m, nodes=nodes)
    return m


def test_discontigmem_2_6_21_needs_a_reserved_hot_add_range() -> None:
    k = boot(_numa_with_hotadd(False), "2.6.21-seed", "discontigmem")
    before = kernel_state_flat(k)
    r = k.hotplug.add_memory(1, 4 * G, SECTION)
    assert r.error.errno == -22 and "reserved at boot" in r.error.reason and "has none" in r.error.reason
    assert kernel_state_flat(k) == before
    assert k.hotplug.probe(4 * G).error.errno == -2  # no memory sysfs without MEMORY_HOTPLUG_SPARSE
    with pytest.raises(InputError):
        boot(_numa_with_hotadd(False), "2.6.24", "discontigmem").hotplug.add_memory(1, 4 * G, SECTION)


def test_discontigmem_reserve_scheme_onlines_into_the_presized_node_mem_map() -> None:
    k = boot(_numa_with_hotadd(True), "2.6.21-seed", "discontigmem")
    pfn = (4 * G) >> 12
    nmm = k.model.node_mem_map[1]
    n1 = k.nodes[1]
    assert n1.end_pfn == (5 * G) >> 12  # reserve_hotadd: the node spans its hot-add area
    page = k.model.pfn_to_page(pfn).value
    assert page == nmm + (pfn - n1.start_pfn) * 56  # the struct pages exist before the memory does
    assert k.model.pfn_valid(pfn).value  # pfn_valid: inside the node span, below num_physpages
    r = k.hotplug.add_memory(1, 4 * G, 256 * M)
    assert r.ok
    normal = next(z for z in k.zones if z.nid == 1 and z.name == "Normal")
    assert normal.present_pages == 65536
    assert k.memblock.is_free(4 * G, 4 * G + 256 * M)  # online_page(): the pages went to the allocator
    assert k.tables.walk(k.page_offset + 4 * G).phys == 4 * G  # init_memory_mapping
    assert k.hotplug.add_memory(1, 4 * G, SECTION).error.errno == -17
    assert k.hotplug.add_memory(1, 6 * G, SECTION).error.errno == -22  # outside the reserved area
    assert np.all(k.model.pfn_valid_array(np.arange(pfn, pfn + 16, dtype=np.uint64)))


def test_612_onlines_hot_added_memory_by_itself() -> None:
    """Debian 6.12: MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO (captures-6.12: auto_online_blocks online)."""
    k = boot(load_machine("qemu-2g"), "6.12", "vmemmap")
    assert k.hotplug.default_online_type == "online"
    assert k.hotplug.add_memory(0, 4 * G, SECTION).ok
    assert k.hotplug.blocks[32].state == "online"
    k61 = boot(load_machine("qemu-2g"), "6.1", "vmemmap")
    assert k61.hotplug.add_memory(0, 4 * G, SECTION).ok
    assert k61.hotplug.blocks[32].state == "offline"


def test_612_eject_fails_busy_and_changes_nothing() -> None:
    """Debian 6.12 onlines a DIMM into ZONE_NORMAL; a later DIMM's memmap lands in it (kernel memory),
    so ejecting the first cannot offline it: acpi_scan_try_to_offline() re-onlines and the eject fails
    with -EBUSY, leaving everything as it was (issue 7)."""
    k = boot(load_machine("qemu-2g"), "6.12", "vmemmap")
    hp = k.hotplug
    assert hp.acpi_memory_device_add("d1", [(4 * G, 2 * SECTION)], 0).ok
    assert all(hp.blocks[nr].state == "online" for nr in (32, 33))
    assert hp.acpi_memory_device_add("d2", [(4 * G + 2 * SECTION, 2 * SECTION)], 0).ok
    before = kernel_state(k)
    r = hp.acpi_memory_device_eject("d1")
    assert not r.ok and r.error.errno == -16
    assert diff(before, kernel_state(k)) == []
