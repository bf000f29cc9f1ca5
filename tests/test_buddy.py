"""The buddy allocator workloads (vmemmap.cost.buddy): counts worked out from mm/page_alloc.c, the
era's pageblock lookups, the store journal, and bulk relocation == the scalar operations."""

from __future__ import annotations

import numpy as np
import pytest

from vmemmap.cost.buddy import BuddyOp, Val, block_pfns, scalar_op
from vmemmap.cost.trace import KIND_LOAD, KIND_STRUCT_PAGE
from vmemmap.cost.workloads import TraceBuilder, build_trace, make_ops, scalar_trace
from vmemmap.errors import InputError
from vmemmap.kernel import boot
from vmemmap.machine import load_machine


@pytest.fixture(scope="module")
def flat21():
    return boot(load_machine("qemu-2g"), "2.6.21-seed", "flatmem")


@pytest.fixture(scope="module")
def flat24():
    return boot(load_machine("qemu-2g"), "2.6.24", "flatmem")


def _block(k) -> int:  # noqa: ANN001
    b = block_pfns(k)
    return int(b[len(b) // 2])


@pytest.mark.parametrize("order", [0, 1, 4, 10])
def test_flatmem_2_6_21_counts_by_hand(flat21, order: int) -> None:
    """FLATMEM 2.6.21, MAX_ORDER 11, order K on a MAX_ORDER block at the head of free_area[10]:

    kernel loads: list_empty for orders K..10 (11-K), nr_free-- (1), per expand step free_list.next +
    nr_free++ (2 x (10-K)), page_to_pfn's mem_map (1), per merge nr_free-- (10-K), final list_add's
    free_list.next + nr_free++ (2): 45 - 4K.  struct page loads: list_del + __ClearPageBuddy (3), per
    expand step __SetPageBuddy (10-K), __free_one_page's PageCompound (1), per merge page_is_buddy's
    2 page_zone_id + PageBuddy + page_order + page_count's PageCompound and _count (6) + list_del (2)
    + __ClearPageBuddy (1), final __SetPageBuddy (1): 105 - 10K; K > 0 adds prep_new_page (5 + the
    flags clear 1), put_page_testzero (1), free_pages_check per page (5 x 2^K) and page_zone's
    page_zonenum (1): 113 - 10K + 5 x 2^K."""
    acc = scalar_op(flat21, order, _block(flat21))
    loads = sum(a.kind == KIND_LOAD for a in acc)
    sp = sum(a.kind == KIND_STRUCT_PAGE for a in acc)
    assert loads == 45 - 4 * order
    assert sp == (105 - 10 * order if order == 0 else 113 - 10 * order + 5 * 2 ** order)
    # one page_is_buddy call per merge: orders K .. MAX_ORDER-2
    assert sum(a.what == "buddy->private (page_order)" for a in acc) == 10 - order
    assert sum(a.what == "mem_map" for a in acc) == 1


def test_pageblock_lookup_per_era_and_model(flat21, flat24) -> None:
    """2.6.24 __free_one_page reads the migratetype: FLATMEM from zone->pageblock_flags (and
    zone_start_pfn for pfn_to_bitidx), SPARSEMEM from the section's pageblock_flags; 2.6.21 has none."""
    w21 = [a.what for a in scalar_op(flat21, 4, _block(flat21))]
    assert not any("pageblock" in w for w in w21)
    w24 = [a.what for a in scalar_op(flat24, 4, _block(flat24))]
    assert w24.count("zone->pageblock_flags") == 1 and w24.count("zone->zone_start_pfn") == 1
    assert w24.count("pageblock_flags word") == 3      # NR_PAGEBLOCK_BITS test_bit calls
    ks = boot(load_machine("qemu-2g"), "2.6.24", "sparsemem-extreme")
    ws = [a.what for a in scalar_op(ks, 4, _block(ks))]
    assert ws.count("ms->pageblock_flags") == 1 and "zone->pageblock_flags" not in ws
    assert ws.count("pageblock_flags word") == 3
    # the section lookup is the model's own code: the root pointer of SPARSEMEM_EXTREME
    assert "mem_section[root]" in ws


def test_op_leaves_memory_as_it_found_it(flat24) -> None:
    k = flat24
    blk = _block(k)
    page = int(k.model.pfn_to_page_array(np.array([blk], dtype=np.uint64))[0])
    before = (k.phys.frames_materialised(), k.mem.peek(page, 8), k.mem.peek(page + 16, 8))
    a = scalar_op(k, 3, blk)
    b = scalar_op(k, 3, blk)
    assert [x.vaddr for x in a] == [x.vaddr for x in b]
    assert (k.phys.frames_materialised(), k.mem.peek(page, 8), k.mem.peek(page + 16, 8)) == before


def test_journal_restores_bytes_and_drops_frames(flat21) -> None:
    k = flat21
    sym = k.sym("max_pfn")
    old = k.mem.peek(sym, 8)
    fresh = k.page_offset + (int(block_pfns(k)[-1]) << 12)
    n = k.phys.frames_materialised()
    with k.mem.journal():
        k.mem.store(sym, 12345)
        k.mem.store(fresh, 7)
        assert k.mem.peek(sym, 8) == 12345 and k.phys.frames_materialised() == n + 1
    assert k.mem.peek(sym, 8) == old and k.mem.peek(fresh, 8) == 0 and k.phys.frames_materialised() == n


def test_dependencies_follow_the_data(flat21) -> None:
    """The page taken from the free list depends on the list head load; the allocation's zone loads
    (a constant zone) wait for nothing; the free's wait for page_zone's page->flags load."""
    acc = scalar_op(flat21, 2, _block(flat21))
    head = next(i for i, a in enumerate(acc) if a.what == "page->lru.next")
    assert acc[head].deps == 1 << (head - 1)            # the list head's next pointer
    prep = next(i for i, a in enumerate(acc) if a.what == "page->_mapcount")
    assert all(a.deps == 0 for a in acc[:prep] if a.what.startswith("area->"))
    zf = next(i for i, a in enumerate(acc) if a.what == "page->flags (page_zonenum)")
    assert all(a.deps == 1 << zf for a in acc[zf:] if a.what.startswith("area->"))


@pytest.mark.parametrize("machine,era,models", [
    ("qemu-2g", "2.6.21-seed", ["flatmem", "vmemmap"]),
    ("qemu-2g", "2.6.24", ["flatmem", "sparsemem-extreme"]),
    ("opteron-2007", "2.6.21-seed", ["discontigmem", "sparsemem", "vmemmap"]),
    ("opteron-2007", "2.6.24", ["discontigmem", "sparsemem-extreme", "vmemmap"]),
])
def test_relocated_trace_equals_scalar_runs(machine: str, era: str, models: list[str]) -> None:
    for model in models:
        k = boot(load_machine(machine), era, model)
        for order in (0, 3):
            ops = make_ops(k, f"buddy-order-{order}", 12, 5)
            tr = build_trace(k, ops)
            tr.validate()
            assert tr.equals(scalar_trace(k, ops)), (model, order)


def test_chunks_equal_the_whole_trace(flat24) -> None:
    ops = make_ops(flat24, "buddy-order-2", 30, 9)
    whole = build_trace(flat24, ops)
    b = TraceBuilder(flat24, ops)
    parts = [b.build(a, min(30, a + 7)) for a in range(0, 30, 7)]
    from vmemmap.cost.trace import concat

    assert concat(parts).equals(whole)


def test_deterministic_for_a_seed(flat21) -> None:
    a = make_ops(flat21, "buddy-order-5", 50, 3)
    b = make_ops(flat21, "buddy-order-5", 50, 3)
    c = make_ops(flat21, "buddy-order-5", 50, 4)
    assert np.array_equal(a.pfns, b.pfns) and not np.array_equal(a.pfns, c.pfns)
    assert np.all(a.pfns % 1024 == 0)


def test_refusals() -> None:
    k = boot(load_machine("qemu-2g"), "4.20", "vmemmap")
    with pytest.raises(InputError, match="buddy"):
        make_ops(k, "buddy-order-4", 10, 1)
    k = boot(load_machine("qemu-2g"), "2.6.21-seed", "flatmem")
    with pytest.raises(InputError, match="MAX_ORDER"):
        make_ops(k, "buddy-order-11", 10, 1)


# ---------------------------------------------------------------------- 6.1 / 6.12


@pytest.fixture(scope="module")
def vm61():
    return boot(load_machine("qemu-2g"), "6.1", "vmemmap")


@pytest.fixture(scope="module")
def vm612():
    return boot(load_machine("qemu-2g"), "6.12", "vmemmap")


def _counts(acc) -> tuple[int, int]:  # noqa: ANN001
    return sum(a.kind == KIND_LOAD for a in acc), sum(a.kind == KIND_STRUCT_PAGE for a in acc)


@pytest.mark.parametrize("order", [4, 5, 8])
def test_6_1_vmemmap_buddy_path_counts_by_hand(vm61, order: int) -> None:
    """6.1 SPARSEMEM_VMEMMAP, MAX_ORDER 11, order K not on the pcp lists (4..8), the block at the head of
    free_area[10] of a DMA32 zone (NUMA config: node_data[] is loaded).

    kernel loads -- allocation: __rmqueue's CMA balance (zone->vm_stat[NR_FREE_CMA_PAGES],
    [NR_FREE_PAGES]) 2, get_page_from_free_area for orders K..10 (11-K), del_page_from_free_list's
    nr_free-- 1, per expand step free_list.next + nr_free++ 2(10-K), rmqueue's zone->flags 1; free:
    page_to_pfn's vmemmap_base 1, page_zone (page_to_nid's page->flags, node_data[nid]) 2,
    get_pfnblock_migratetype (mem_section, mem_section[root], ms->usage, the bitmap word) 4,
    has_isolate_pageblock 1, per merge nr_free-- (10-K), at order 9 the buddy's
    get_pageblock_migratetype (vmemmap_base + 4) 5, add_to_free_list's free_list.next + nr_free++ 2:
    60 - 4K.

    struct page loads -- allocation: list_del 2 + __ClearPageBuddy's page_type 1, per expand step
    __SetPageBuddy (10-K), get_pcppage_migratetype's page->index 1, check_new_pages 5 per page
    (_mapcount, mapping, _refcount, memcg_data, flags) 5 x 2^K, prep_new_page's clear_page_pfmemalloc
    (ClearPageActive: compound_head, flags) 2; free: put_page_testzero 1,
    page_zonenum 1, free_pages_prepare: PageHWPoison 1, PageCompound (flags, compound_head) 2, per tail
    page check_free_page 5 + flags clear 1: 6 x (2^K - 1), PageMappingFlags 1, the head's
    check_free_page 5, page_cpupid_reset_last 1 (34 bits of node/zone/cpupid fit beside 26 flags), the
    flags clear 1; per merge page_is_buddy (page_type, private, both flags) 4 + list_del 2 +
    __ClearPageBuddy 1 = 7 (10-K); set_buddy_order's __SetPageBuddy 1: 94 - 8K + 11 x 2^K."""
    acc = scalar_op(vm61, order, _block(vm61))
    assert _counts(acc) == (60 - 4 * order, 94 - 8 * order + 11 * 2 ** order)
    assert sum(a.what == "buddy->private (buddy_order)" for a in acc) == 10 - order
    assert sum(a.what == "pageblock_flags word" for a in acc) == 2


@pytest.mark.parametrize("order", [0, 1, 3, 9])
def test_6_1_pcp_orders_count_the_refill_and_drain(vm61, order: int) -> None:
    """pcp_allowed_order (0..3 and pageblock_order 9): rmqueue_bulk's __rmqueue + check_pcp_refill and
    free_pcppages_bulk's get_pcppage_migratetype, check_free_page (head), page_to_pfn, __free_one_page.

    kernel loads: 2 + (11-K) + 1 + 2(10-K) = 34 - 3K, then vmemmap_base 1 + (10-K) + 5 + 2: 52 - 4K.
    struct page loads: 3 + (10-K) + 5 x 2^K, then page->index 1 + check 5 + 7(10-K) + 1: 90 - 8K + 5 x 2^K."""
    acc = scalar_op(vm61, order, _block(vm61))
    assert _counts(acc) == (52 - 4 * order, 90 - 8 * order + 5 * 2 ** order)
    assert not any(a.what.startswith("page->_refcount (put") for a in acc)


def test_6_1_pageblock_bitmap_is_ms_usage_pageblock_flags(vm61) -> None:
    """get_pageblock_bitmap @ 6.1 (SPARSEMEM): section_to_usemap(__pfn_to_section(pfn)) =
    ms->usage->pageblock_flags, 24 bytes into struct mem_section_usage (rcu_head, subsection_map[1]);
    pfn_to_bitidx: ((pfn & (PAGES_PER_SECTION-1)) >> 9) * 4, one word read."""
    k = vm61
    blk = _block(k)
    acc = scalar_op(k, 4, blk)
    ws = [a.what for a in acc]
    assert "zone->pageblock_flags" not in ws and "ms->pageblock_flags" not in ws
    ms = k.model.sections.section_addr_nocheck(blk >> k.era.pfn_section_shift)
    usage = k.mem.peek(ms + 8, 8)
    i = ws.index("ms->usage")
    assert acc[i].vaddr == ms + 8
    word = acc[i + 1]
    assert word.what == "pageblock_flags word"
    bitidx = ((blk & (k.era.pages_per_section - 1)) >> 9) * 4
    assert word.vaddr == usage + 24 + (bitidx >> 6) * 8
    assert word.deps >> i & 1                       # the word waits for ms->usage
    # the set-up state marks every pageblock of the block MIGRATE_MOVABLE (1) in that bitmap
    op = BuddyOp(k, 4, blk)
    with k.mem.journal():
        op.setup()
        for pb in range(blk, blk + 1024, 512):
            assert op.pfnblock_migratetype(Val(op.page0), Val(pb)) == 1


def test_page_type_encodings(vm61, vm612) -> None:
    """PageBuddy: 6.1 clears PG_buddy (0x80) in page_type (PAGE_TYPE_BASE 0xf0000000 kept); 6.12 puts
    PGTY_buddy (0xf0) in the top byte; __ClearPageBuddy leaves -1 (the _mapcount of a free page)."""
    for k, value in ((vm61, 0xFFFFFF7F), (vm612, 0xF0000000)):
        blk = _block(k)
        op = BuddyOp(k, 3, blk)
        page0 = op.page0
        with k.mem.journal():
            op.setup()
            assert k.mem.peek(page0 + 48, 4) == value
            assert k.mem.peek(page0 + 40, 8) == 10
            op.rmqueue(Val(op.zone_addr()), 3)
            assert k.mem.peek(page0 + 48, 4) == 0xFFFFFFFF
            assert k.mem.peek(page0 + 8 * 64 + 48, 4) == value        # expand: page[8] on free_area[3]
            assert k.mem.peek(page0 + 8 * 64 + 40, 8) == 3


def test_6_12_split_large_buddy_and_buddy_pfn(vm612, vm61) -> None:
    """6.12 frees order 10 one pageblock at a time (split_large_buddy): two get_pfnblock_migratetype, the
    second half's pfn_to_page, then the merge at order 9 reads the buddy's pageblock with buddy_pfn (no
    page_to_pfn). 6.1 frees it whole: one lookup, no merge.

    6.12 kernel loads: allocation 2 + 1 + 1 + zone->flags 1; free page_to_pfn 1 + page_zone 2, chunk 1:
    pageblock 4, free_list.next + nr_free 2, pfn_to_page's vmemmap_base 1; chunk 2: pageblock 4, the
    buddy's pageblock 4, nr_free-- 1, free_list.next + nr_free 2: 26."""
    acc = scalar_op(vm612, 10, _block(vm612))
    ws = [a.what for a in acc]
    assert _counts(acc)[0] == 26
    assert ws.count("pageblock_flags word") == 3 and ws.count("vmemmap_base") == 2
    assert ws[:2] == ["zone->vm_stat[NR_FREE_CMA_PAGES]", "zone->vm_stat[NR_FREE_PAGES]"]
    assert ws.index("page->flags (PageHead)") < ws.index("page->_refcount (put_page_testzero)")
    w61 = [a.what for a in scalar_op(vm61, 10, _block(vm61))]
    assert w61.count("pageblock_flags word") == 1 and "page->flags (PageHead)" not in w61


def test_6_12_checks_run_per_page_and_pcp_refill_skips_them(vm612) -> None:
    """check_pages_enabled (init_on_alloc): check_new_pages and the tail checks of free_pages_prepare run
    on every page for a buddy-path order; the 6.12 pcp refill (order 3) runs __rmqueue only."""
    acc = scalar_op(vm612, 5, _block(vm612))
    assert sum(a.what == "page->memcg_data" for a in acc) == 2 * 32
    assert sum(a.what == "page->flags (&= ~PAGE_FLAGS_CHECK_AT_PREP)" for a in acc) == 31 + 1
    acc3 = scalar_op(vm612, 3, _block(vm612))
    assert not any(a.what == "page->memcg_data" for a in acc3)


@pytest.mark.parametrize("machine", ["qemu-2g", "qemu-numa2"])
@pytest.mark.parametrize("era", ["6.1", "6.12"])
def test_6x_relocated_trace_equals_scalar_runs(machine: str, era: str) -> None:
    for model in ("vmemmap", "sparsemem-extreme"):
        k = boot(load_machine(machine), era, model)
        for order in (0, 4, 10):
            ops = make_ops(k, f"buddy-order-{order}", 6, 11)
            tr = build_trace(k, ops)
            tr.validate()
            assert tr.equals(scalar_trace(k, ops)), (model, order)


def test_bulk_page_checks_equal_scalar_loads(flat24) -> None:
    """The per-page check loop read in bulk records exactly the loads of check_page, page by page."""
    k = flat24
    blk = _block(k)
    a = BuddyOp(k, 3, blk)
    b = BuddyOp(k, 3, blk)
    page = Val(a.page0, 1)
    with k.mem.journal():
        a.setup()
        a.check_pages(page, 1, 7, "free_check")      # page 0 is PageBuddy: the tail pages
        for i in range(1, 8):
            b.check_page(Val(b.page0 + i * k.era.struct_page_size, 1), "free_check")
    assert [(x.vaddr, x.kind, x.deps, x.what, x.cls, x.off) for x in a.acc] == \
        [(x.vaddr, x.kind, x.deps, x.what, x.cls, x.off) for x in b.acc]
