"""PhysMem: frames on first write, fill regions, discard, vectorised reads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemmap.physmem import PhysMem


def test_unwritten_reads_zero() -> None:
    m = PhysMem()
    assert m.read_u64(0x1234_5000) == 0
    assert m.read(0x10, 5) == b"\0" * 5
    assert m.frames_materialised() == 0


def test_write_read_u64_and_bytes() -> None:
    m = PhysMem()
    m.write_u64(0x2008, 0x1122334455667788)
    assert m.read_u64(0x2008) == 0x1122334455667788
    assert m.read(0x2008, 2) == b"\x88\x77"             # little endian
    m.write(0x2ffe, b"abcd")                             # crosses a frame boundary
    assert m.read(0x2ffe, 4) == b"abcd"
    assert m.frames_materialised() == 2
    with pytest.raises(ValueError):
        m.read_u64(0x2004)


def test_table_view_and_pool_growth() -> None:
    m = PhysMem(initial_frames=1)
    t = m.table(7)
    t[3] = 42
    for pfn in range(100, 200):                          # grows the pool several times
        m.write_u64(pfn << 12, pfn)
    assert m.read_u64((7 << 12) + 24) == 42
    assert m.read_u64(150 << 12) == 150
    assert m.frames_materialised() == 101


def test_fill_region_struct_page_pattern() -> None:
    # a memmap of 64-byte struct pages at 0x100000: flags word 0x0240000000000400 at offset 0,
    # refcount word at offset 8 = 1
    m = PhysMem()
    m.fill(0x100000, 0x300000, 0x100000, 64, {0: 0x0240000000000400, 8: 1})
    assert m.read_u64(0x100000) == 0x0240000000000400
    assert m.read_u64(0x100000 + 64 * 1000 + 8) == 1
    assert m.read_u64(0x100000 + 64 * 1000 + 16) == 0
    assert m.read_u64(0x300000) == 0                     # end exclusive
    assert m.frames_materialised() == 0
    # write into the region materialises only that frame, from the pattern
    m.write_u64(0x100000 + 64 * 3 + 16, 0xdead)
    assert m.frames_materialised() == 1
    assert m.read_u64(0x100000 + 64 * 3) == 0x0240000000000400
    assert m.read_u64(0x100000 + 64 * 3 + 16) == 0xdead
    assert m.read_u64(0x100000 + 64 * 3 + 16 + 64) == 0


def test_fill_origin_below_start_and_huge_machine_is_cheap() -> None:
    m = PhysMem()
    # origin below start: record of 56 bytes (2.6.2x struct page), flags at 0
    m.fill(0x1000 + 56 * 10, 0x8000, 0x1000, 56, {0: 7})
    assert m.read_u64(0x1000 + 56 * 10) == 7
    assert m.read_u64(0x1000 + 56 * 11) == 7
    assert m.read_u64(0x1000 + 56 * 11 + 8) == 0
    # a 64 TiB machine's memmap (1 TiB) in 1000 regions: nothing materialised
    big = PhysMem()
    base, step = 1 << 40, (1 << 40) // 1000 & ~63
    for i in range(1000):
        big.fill(base + i * step, base + (i + 1) * step, base, 64, {0: i})
    assert big.frames_materialised() == 0
    assert big.bytes_held() < 1 << 20
    assert big.read_u64(base + 999 * step + 64 * 5) == 999


def test_fill_replaces_and_discard_clips() -> None:
    m = PhysMem()
    m.fill(0, 0x10000, 0, 16, {8: 5})
    m.write_u64(0x5008, 99)
    m.fill(0x4000, 0x6000, 0x4000, 32, {0: 3})           # replaces, drops frame 5
    assert m.frames_materialised() == 0
    assert m.read_u64(0x5008) == 0 and m.read_u64(0x5000) == 3
    assert m.read_u64(0x3008) == 5 and m.read_u64(0x6008) == 5
    assert [(r.start, r.end) for r in m.fill_regions()] == [(0, 0x4000), (0x4000, 0x6000),
                                                            (0x6000, 0x10000)]
    m.discard(0x2000, 0x7000)
    assert m.read_u64(0x3008) == 0 and m.read_u64(0x5000) == 0 and m.read_u64(0x7008) == 5
    assert [(r.start, r.end) for r in m.fill_regions()] == [(0, 0x2000), (0x7000, 0x10000)]


def test_discard_recycles_rows_and_partial_frame() -> None:
    m = PhysMem()
    for pfn in range(10):
        m.write_u64(pfn << 12, pfn + 1)
    m.discard(0x3000, 0x5008)                            # frames 3, 4 dropped; 5 partly zeroed
    assert m.frames_materialised() == 8
    assert m.read_u64(0x5000) == 0 and m.read_u64(0x6000) == 7
    m.write_u64(0x40000, 1)
    m.write_u64(0x41000, 1)
    assert m.frames_materialised() == 10
    assert m.bytes_held() == 10 * 4096


def test_read_u64_array_vectorised() -> None:
    m = PhysMem()
    m.fill(0x10000, 0x20000, 0x10000, 64, {0: 0xAA})
    m.write_u64(0x10040, 0xBB)
    m.write_u64(0x30000, 0xCC)
    addrs = np.array([[0x10000, 0x10040], [0x30000, 0x50000]], dtype=np.uint64)
    got = m.read_u64_array(addrs)
    assert got.shape == (2, 2)
    assert got.tolist() == [[0xAA, 0xBB], [0xCC, 0]]


# ---------------------------------------------------------------- properties
_addr = st.integers(0, (1 << 20) - 8).map(lambda a: a & ~7)
_op = st.one_of(
    st.tuples(st.just("w"), _addr, st.integers(0, (1 << 64) - 1)),
    st.tuples(st.just("f"), _addr, st.integers(0, 1 << 14).map(lambda n: n & ~7),
              st.sampled_from([8, 16, 56, 64, 4096]), st.integers(0, (1 << 64) - 1)),
    st.tuples(st.just("d"), _addr, st.integers(0, 1 << 14).map(lambda n: n & ~7)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=30), st.lists(_addr, min_size=1, max_size=64))
def test_model_equivalence(ops: list[tuple], probes: list[int]) -> None:
    """PhysMem behaves like a plain dict of words: write/fill/discard, read scalar and bulk."""
    m = PhysMem(initial_frames=1)
    ref: dict[int, int] = {}
    for op in ops:
        if op[0] == "w":
            _, a, v = op
            m.write_u64(a, v)
            ref[a] = v
        elif op[0] == "f":
            _, a, n, stride, v = op
            origin = max(0, a - 3 * stride) & ~7
            m.fill(a, a + n, origin, stride, {0: v})
            for w in range(a, a + n, 8):
                ref[w] = v if (w - origin) % stride == 0 else 0
        else:
            _, a, n = op
            m.discard(a, a + n)
            for w in range(a, a + n, 8):
                ref.pop(w, None)
    for a in probes:
        assert m.read_u64(a) == ref.get(a, 0)
    got = m.read_u64_array(np.array(probes, dtype=np.uint64))
    assert got.tolist() == [ref.get(a, 0) for a in probes]
    a0 = probes[0]
    raw = m.read(a0 + 3, 13)
    exp = b"".join(ref.get(w, 0).to_bytes(8, "little") for w in range(a0, a0 + 24, 8))[3:16]
    assert raw == exp


@settings(max_examples=50, deadline=None)
@given(_addr, st.binary(min_size=1, max_size=9000))
def test_bytes_round_trip(a: int, data: bytes) -> None:
    m = PhysMem()
    m.write(a + 1, data)
    assert m.read(a + 1, len(data)) == data
