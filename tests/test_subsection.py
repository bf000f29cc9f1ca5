"""6.x sub-section (2 MiB granular) hot-add and remove of device memory (``Hotplug.add_pages`` /
``remove_pages``): ``__add_pages`` → ``check_pfn_span`` → ``sparse_add_section`` → ``section_activate``
(``fill_subsection_map``, -EEXIST) → ``vmemmap_populate`` with base pages below a section's memmap, and
``section_deactivate`` back; ``pfn_valid`` answers per sub-section from ``ms->usage->subsection_map``.

Device ranges sit at 16 GiB (section 128, root 0 of the section table, which boot already allocated, so
remove restores the table byte for byte: a root allocated by an add is kept, as the kernel keeps it).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmemmap.errors import InputError
from vmemmap.hotplug import kernel_state, parse_script, run_script
from vmemmap.kernel import boot
from vmemmap.machine import load_machine

M = 1 << 20
G = 1 << 30
SUB = 2 * M
SECTION = 128 * M
BASE = 16 * G  # section 128: beyond qemu-2g's RAM, inside the direct map
SP = 64  # sizeof(struct page) @ 6.1


def qemu(era: str = "6.1"):  # noqa: ANN201
    return boot(load_machine("qemu-2g"), era, "vmemmap")


def valid(k, addr: int) -> bool:  # noqa: ANN001
    return bool(k.model.pfn_valid(addr >> 12).value)


def section_valid_bits(k, base: int = BASE) -> int:  # noqa: ANN001
    """pfn_valid of the first and last pfn of each of the section's 64 sub-sections, as a bitmap
    (asserting both agree)."""
    pfns = (base >> 12) + np.arange(64, dtype=np.uint64) * np.uint64(512)
    first = k.model.pfn_valid_array(pfns)
    last = k.model.pfn_valid_array(pfns + np.uint64(511))
    assert (first == last).all()
    return sum(1 << i for i in range(64) if first[i])


def vmemmap_va(k, addr: int) -> int:  # noqa: ANN001
    return k.layout.vmemmap_base + (addr >> 12) * SP


def diff(a: dict, b: dict) -> list[str]:
    return [key for key in a if a[key] != b[key]]


@pytest.mark.parametrize("era", ["6.1", "6.12"])
def test_one_subsection_in_an_empty_section(era: str) -> None:
    k = qemu(era)
    st_ = k.model.sections
    nr = BASE // SECTION
    assert not st_.is_present(nr)
    r = k.hotplug.add_pages(0, BASE, SUB)
    assert r.ok and r.messages == []  # base pages: no "PMD ->" line from vmemmap_populate_print_last
    # exactly one sub-section bit; the section word encodes the memmap at the section's start
    assert st_.subsection_map(nr) == 1
    word = st_.read_word_nocheck(nr)
    assert word & k.era.section_flag("PRESENT") and word & k.era.section_flag("HAS_MEM_MAP")
    assert not word & k.era.section_flag("EARLY")
    assert st_.decode_mem_map(word) + (nr << 15) * SP == vmemmap_va(k, BASE)
    # 512 struct pages x 64 bytes = 32 KiB of memmap: 8 PTEs of 4 KiB, nothing after them
    v0 = vmemmap_va(k, BASE)
    walks = [k.tables.walk(v0 + i * 4096) for i in range(9)]
    assert [w.page_size for w in walks[:8]] == [4096] * 8
    assert all(w.steps[-1].level == "pte" for w in walks[:8])
    assert walks[8].phys is None
    assert len({w.phys for w in walks[:8]}) == 8
    assert k.tables.walk(v0 - 4096).phys is None
    # pfn_valid: true inside, false just outside on both sides
    assert valid(k, BASE) and valid(k, BASE + SUB - 4096)
    assert not valid(k, BASE + SUB) and not valid(k, BASE - 4096)
    assert section_valid_bits(k) == 1


def test_two_adjacent_subsections_remove_one() -> None:
    k = qemu()
    hp = k.hotplug
    assert hp.add_pages(0, BASE, SUB).ok
    after_first = kernel_state(k)
    assert hp.add_pages(0, BASE + SUB, SUB).ok
    nr = BASE // SECTION
    assert k.model.sections.subsection_map(nr) == 0b11
    assert section_valid_bits(k) == 0b11
    # both memmaps share one PTE table: 16 consecutive 4 KiB pages
    v0 = vmemmap_va(k, BASE)
    assert all(k.tables.walk(v0 + i * 4096).page_size == 4096 for i in range(16))
    assert hp.remove_pages(BASE + SUB, SUB).ok
    assert section_valid_bits(k) == 0b01
    assert valid(k, BASE) and not valid(k, BASE + SUB)
    assert k.model.sections.is_present(nr)
    assert k.tables.walk(vmemmap_va(k, BASE + SUB)).phys is None
    assert k.tables.walk(v0).page_size == 4096
    assert diff(after_first, kernel_state(k)) == []
    # removing the other one empties the section: word zeroed, usage map freed
    assert hp.remove_pages(BASE, SUB).ok
    assert not k.model.sections.is_present(nr)
    assert k.model.sections.read_word_nocheck(nr) == 0
    assert not valid(k, BASE)


def test_overlap_is_eexist_and_changes_nothing() -> None:
    k = qemu()
    hp = k.hotplug
    assert hp.add_pages(0, BASE + 4 * SUB, 2 * SUB).ok
    before = kernel_state(k)
    for start, size in [(BASE + 4 * SUB, SUB), (BASE + 5 * SUB, 4 * SUB), (BASE, 8 * SUB), (BASE, SECTION)]:
        r = hp.add_pages(0, start, size)
        assert not r.ok and r.error.errno == -17 and r.error.name == "EEXIST"
        assert diff(before, kernel_state(k)) == []
    # an add spanning two sections whose second part overlaps: nothing of the first is left behind
    assert hp.add_pages(0, BASE + SECTION + SUB, SUB).ok
    before = kernel_state(k)
    r = hp.add_pages(0, BASE + SECTION - SUB, 3 * SUB)
    assert r.error.errno == -17
    assert diff(before, kernel_state(k)) == []


@pytest.mark.parametrize(("start", "size"), [
    (BASE + 4096, SUB),     # start not sub-section aligned
    (BASE, SUB + 4096),     # size not a multiple of 2 MiB
    (BASE + M, SUB),        # 1 MiB offset
    (BASE, M),
    (BASE, 0),
])
def test_misaligned_is_einval(start: int, size: int) -> None:
    k = qemu()
    before = kernel_state(k)
    r = k.hotplug.add_pages(0, start, size)
    assert not r.ok and r.error.errno == -22
    assert diff(before, kernel_state(k)) == []
    if size:
        assert r.messages[0].startswith("Misaligned __add_pages start: ")
    assert k.hotplug.add_pages(0, BASE, SUB).ok
    before = kernel_state(k)
    r = k.hotplug.remove_pages(start, size)
    assert not r.ok and r.error.errno == -22
    assert diff(before, kernel_state(k)) == []


def test_other_errors() -> None:
    k = qemu()
    hp = k.hotplug
    before = kernel_state(k)
    assert hp.add_pages(0, G, SUB).error.errno == -6  # System RAM: pagemap_range -ENXIO
    assert hp.remove_pages(BASE, SUB).error.errno == -22  # never added: section already deactivated
    assert hp.add_pages(0, 1 << 46, SUB).error.errno == -7  # mhp_range_allowed
    assert diff(before, kernel_state(k)) == []
    with pytest.raises(InputError):
        hp.remove_pages(G, SUB)  # boot memory
    # a device range blocks add_memory of its block (the device's resource is busy)
    assert hp.add_pages(0, BASE, SUB).ok
    assert hp.add_memory(0, BASE, SECTION).error.errno == -17


@pytest.mark.parametrize(("start", "size"), [
    (BASE, SUB),
    (BASE + 7 * SUB, 5 * SUB),
    (BASE, SECTION),                         # a whole section: one 2 MiB PMD
    (BASE + SECTION - SUB, 2 * SUB),          # straddles two sections
    (BASE + 3 * SUB, 2 * SECTION),            # part of one section, a whole one, part of a third
])
def test_add_then_remove_is_byte_identical(start: int, size: int) -> None:
    k = qemu()
    before = kernel_state(k)
    assert k.hotplug.add_pages(0, start, size).ok
    assert diff(before, kernel_state(k)) != []
    assert valid(k, start) and valid(k, start + size - 4096)
    assert k.hotplug.remove_pages(start, size).ok
    assert diff(before, kernel_state(k)) == []
    assert k.hotplug.device_ranges == []


def test_whole_section_pmd_freed_after_piecewise_remove() -> None:
    """A whole-section add maps one 2 MiB PMD; removing it a sub-section at a time fills the memmap with
    PAGE_UNUSED (vmemmap_pmd_is_unused) and frees the PMD with the last piece."""
    k = qemu()
    before = kernel_state(k)
    r = k.hotplug.add_pages(0, BASE, SECTION)
    assert r.ok and len(r.messages) == 1 and "PMD ->" in r.messages[0]
    v0 = vmemmap_va(k, BASE)
    assert k.tables.walk(v0).page_size == 2 * M
    for i in range(63):
        assert k.hotplug.remove_pages(BASE + i * SUB, SUB).ok
        assert k.tables.walk(v0).page_size == 2 * M
    assert section_valid_bits(k) == 1 << 63
    # re-adding in another granularity than the remove is refused (not modelled)
    with pytest.raises(InputError):
        k.hotplug.add_pages(0, BASE, SUB)
    assert k.hotplug.remove_pages(BASE + 63 * SUB, SUB).ok
    assert k.tables.walk(v0).phys is None
    assert diff(before, kernel_state(k)) == []


def test_script_steps() -> None:
    k = qemu()
    before = kernel_state(k)
    steps = parse_script("addpages 0 16G 2M\naddpages 0 0x400200000 2M\naddpages 0 16G 4M\n"
                         "removepages 16G 2M\nremovepages 0x400200000 2M\nremovepages 16G 2M\n")
    assert [s.op for s in steps] == ["addpages"] * 3 + ["removepages"] * 3
    assert steps[0].args == (0, BASE, SUB)
    out = run_script(k, steps)
    assert [s["ok"] for s in out["steps"]] == [True, True, False, True, True, False]
    assert out["steps"][2]["errno"] == -17 and out["steps"][5]["errno"] == -22
    assert diff(before, kernel_state(k)) == []
    with pytest.raises(InputError):
        parse_script("addpages 0 16G\n")


def test_refused_without_subsections() -> None:
    k = boot(load_machine("qemu-2g"), "4.20", "vmemmap")
    with pytest.raises(InputError):
        k.hotplug.add_pages(0, BASE, SUB)


ops = st.lists(st.tuples(st.booleans(), st.integers(0, 63), st.integers(1, 8)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_subsection_sequences(seq: list[tuple[bool, int, int]]) -> None:
    """Random sub-section adds and removes inside one section: each succeeds exactly when the model
    says (add: no sub-section active yet; remove: all active), pfn_valid answers the set of added
    sub-sections, and removing what is left restores the kernel byte for byte."""
    k = qemu()
    before = kernel_state(k)
    added: set[int] = set()
    for add, first, n in seq:
        n = min(n, 64 - first)
        subs = set(range(first, first + n))
        start, size = BASE + first * SUB, n * SUB
        if add:
            r = k.hotplug.add_pages(0, start, size)
            assert r.ok == (not subs & added), (add, first, n, sorted(added))
            if r.ok:
                added |= subs
            else:
                assert r.error.errno == -17
        else:
            r = k.hotplug.remove_pages(start, size)
            assert r.ok == (subs <= added), (add, first, n, sorted(added))
            if r.ok:
                added -= subs
            else:
                assert r.error.errno == -22
        assert section_valid_bits(k) == sum(1 << i for i in added)
        assert k.model.sections.is_present(BASE // SECTION) == bool(added)
    for i in sorted(added):
        assert k.hotplug.remove_pages(BASE + i * SUB, SUB).ok
    assert diff(before, kernel_state(k)) == []
