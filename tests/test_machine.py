"""Tests of vmemmap.machine: the model, TOML files, importers (dmesg, iomem, capture, this), loader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemmap.errors import InputError
from vmemmap.machine import (
    CpuFeatures,
    E820Entry,
    Machine,
    NumaNode,
    builtin_machines,
    builtin_names,
    format_e820_table,
    get_builtin,
    load_capture,
    load_dmesg,
    load_iomem,
    load_machine,
    load_machine_file,
    parse_capture_text,
    parse_dmesg_text,
    parse_iomem_text,
    parse_size,
    parse_toml_text,
    qemu_cpu_features,
    read_this,
)
from vmemmap.machine.dmesg import e820_range_remove, e820_range_update

DATA = Path(__file__).resolve().parent / "data" / "machine"
SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURES = SHARED / "oracle" / "captures"

G = 1 << 30
T = 1 << 40

QEMU_2G_E820 = [
    (0x0, 0x9FC00, "usable"),
    (0x9FC00, 0xA0000, "reserved"),
    (0xF0000, 0x100000, "reserved"),
    (0x100000, 0x7FFE0000, "usable"),
    (0x7FFE0000, 0x80000000, "reserved"),
    (0xFFFC0000, 0x100000000, "reserved"),
    (0xFD00000000, 0x10000000000, "reserved"),
]


def triples(entries: tuple[E820Entry, ...] | None) -> list[tuple[int, int, str]]:
    assert entries is not None
    return [(e.start, e.end, e.type) for e in entries]


def need_captures() -> Path:
    if not CAPTURES.is_dir():
        pytest.skip(f"oracle captures not present at {CAPTURES}")
    return CAPTURES


def check_invariants(m: Machine) -> None:
    usable = m.usable()
    assert usable, m.name
    for (s1, e1), (s2, e2) in zip(usable, usable[1:]):
        assert s1 < e1 < s2 < e2  # sorted, disjoint, merged (gaps between)
    assert m.ram_bytes == sum(e - s for s, e in usable)
    nr = m.node_ranges()
    flat = sorted(r for rs in nr.values() for r in rs)
    # node ranges cover exactly usable RAM, without overlap
    total = sum(e - s for s, e in flat)
    assert total == m.ram_bytes
    for (s1, e1), (s2, e2) in zip(flat, flat[1:]):
        assert e1 <= s2
    for s, e in flat:
        assert any(us <= s and e <= ue for us, ue in usable)
    assert m.max_phys == usable[-1][1]
    for nid, rs in nr.items():
        for s, e in rs:
            assert m.node_of(s) == nid and m.node_of(e - 1) == nid
    for e in m.e820:
        assert e.start < e.end


# ------------------------------------------------------------------------------ built-ins

def test_builtin_names_and_order() -> None:
    names = builtin_names()
    assert set(names) >= {"opteron-2007", "qemu-2g", "qemu-numa2", "sparse-holes", "server-64t", "desktop-32g", "numa-2s-256g"}
    rams = [m.ram_bytes for m in builtin_machines()]
    assert rams == sorted(rams)
    for m in builtin_machines():
        check_invariants(m)
        assert m.source == "builtin" and m.description
        s = m.summary()
        assert s["name"] == m.name and s["ram"] == hex(m.ram_bytes) and isinstance(s["nodes"], int)


def test_opteron_2007() -> None:
    m = load_machine("opteron-2007")
    assert m.numa and m.nr_nodes == 4
    assert m.cpu == CpuFeatures(pse=True, gbpages=False, la57=False, nx=True, hypervisor=False)
    assert 16 * G - 4 * (1 << 20) < m.ram_bytes <= 16 * G
    nr = m.node_ranges()
    assert nr[0][0][0] == 0 and nr[0][-1] == (4 * G, 4 * G + G // 2)
    assert max(e for _, e in nr[0]) == 0x120000000
    for nid in (1, 2, 3):
        assert nr[nid] == [(0x120000000 + (nid - 1) * 4 * G, 0x120000000 + nid * 4 * G)]
    assert sum(e - s for s, e in nr[0] if e <= 4 * G) > 3 * G + 400 * (1 << 20)  # ~3.5 GiB below the hole
    assert m.e820_type_at(0xDFEF0000) == "ACPI data" and m.e820_type_at(0xDFEF8000) == "ACPI NVS"
    assert m.e820_type_at(0xFEC00000) == "reserved" and m.e820_type_at(0xE8000000) == "reserved" and m.e820_type_at(0xF0000000) is None


def test_qemu_builtins_match_capture_e820() -> None:
    m = get_builtin("qemu-2g")
    assert triples(m.e820) == QEMU_2G_E820
    assert not m.nodes and m.cpu.hypervisor and not m.cpu.gbpages and not m.cpu.la57 and m.cpu.pse
    n = get_builtin("qemu-numa2")
    assert triples(n.e820) == QEMU_2G_E820
    assert [(x.nid, x.ranges, x.cpus) for x in n.nodes] == [
        (0, ((0, 0xA0000), (0x100000, 0x40000000)), (0,)),
        (1, ((0x40000000, 0x80000000),), (1,)),
    ]
    assert n.max_possible_phys == 0x80000000  # max_possible_pfn 0x80000 in the capture


def test_sparse_holes() -> None:
    m = get_builtin("sparse-holes")
    assert not m.nodes
    span = m.max_phys
    assert span < T and span >= 30 * G
    memmap = span // 4096 * 56
    lowest = max((e - s for s, e in m.usable() if e <= 4 * G))
    assert memmap < lowest // 2
    assert m.ram_bytes < span // 4


def test_server_64t() -> None:
    m = get_builtin("server-64t")
    assert m.nr_nodes == 8 and m.cpu.la57 and m.cpu.gbpages
    assert 64 * T - G < m.ram_bytes <= 64 * T
    nr = m.node_ranges()
    assert nr[0][-1] == (4 * G, 8 * T + 2 * G)
    for nid in range(1, 8):
        assert nr[nid] == [(nid * 8 * T + 2 * G, (nid + 1) * 8 * T + 2 * G)]
    assert m.max_phys == 64 * T + 2 * G


def test_other_builtins() -> None:
    d = get_builtin("desktop-32g")
    assert not d.nodes and d.cpu.gbpages and 31 * G < d.ram_bytes <= 32 * G
    s = get_builtin("numa-2s-256g")
    assert s.nr_nodes == 2 and 255 * G < s.ram_bytes <= 256 * G
    assert abs(sum(e - b for b, e in s.node_ranges()[1]) - 128 * G) == 0


# ---------------------------------------------------------------------------------- TOML

def test_parse_size() -> None:
    assert parse_size("4G") == 4 * G
    assert parse_size("128M") == 128 << 20
    assert parse_size("0x1000") == 4096
    assert parse_size(4096) == 4096
    assert parse_size("1.5G") == 3 * G // 2
    assert parse_size("2TiB") == 2 * T
    assert parse_size("1_000") == 1000
    for bad in ("4Q", "-1", "0xZZ", True, 1.5, "", "1.0000000001K"):
        with pytest.raises(ValueError):
            parse_size(bad)


MINIMAL = """
name = "tiny"
[[e820]]
start = "0"
end = "640K"
type = "usable"
[[e820]]
start = "1M"
size = "1G"
"""


def test_toml_minimal_and_defaults() -> None:
    m = parse_toml_text(MINIMAL, "tiny.toml")
    assert m.name == "tiny" and m.cpu == CpuFeatures() and m.nodes == ()
    assert m.usable() == [(0, 640 << 10), (1 << 20, (1 << 20) + G)]
    assert m.source == "tiny.toml" and m.e820_kernel is None


def test_toml_ram_shorthand() -> None:
    text = """
[[ram]]
start = "0"
size = "2G"
node = 0
[[ram]]
start = "4G"
size = "2G"
node = 1
[[e820]]
start = "0xfec00000"
end = "0xfec01000"
type = "reserved"
[[node]]
nid = 1
cpus = [2, 3]
"""
    m = parse_toml_text(text, "s.toml", "s")
    assert m.name == "s" and m.numa
    assert m.node_ranges() == {0: [(0, 2 * G)], 1: [(4 * G, 6 * G)]}
    assert m.nodes[1].cpus == (2, 3)
    assert [e.type for e in m.e820] == ["usable", "reserved", "usable"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('name = "x"\n', "no [[e820]] or [[ram]]"),
        ('[[e820]]\nstart = "4Q"\nend = "1G"\n', "e820[0].start"),
        ('[[e820]]\nstart = "0"\nend = "1G"\ncolour = 1\n', "e820[0].colour: unknown field"),
        ('[[e820]]\nend = "1G"\n', "e820[0].start: required field missing"),
        ('[[e820]]\nstart = "0"\n', "exactly one of 'end'"),
        ('[[e820]]\nstart = "1G"\nend = "1M"\n', "not above start"),
        ('[[e820]]\nstart = "0"\nend = "1G"\ntype = "weird"\n', "unknown e820 type"),
        ('[[e820]]\nstart = "0"\nend = "1G"\n[[e820]]\nstart = "512M"\nend = "2G"\ntype = "reserved"\n', "overlaps e820[0]"),
        ('[[e820]]\nstart = "0"\nend = "1G"\n[[node]]\nnid = 0\nranges = [["2G", "3G"]]\n', "contains no usable RAM"),
        ('[[e820]]\nstart = "0"\nend = "2G"\n[[node]]\nnid = 0\nranges = [["0", "1G"]]\n', "do not cover"),
        (
            '[[e820]]\nstart = "0"\nend = "2G"\n[[node]]\nnid = 0\nranges = [["0", "1G"]]\n'
            '[[node]]\nnid = 1\nranges = [["512M", "2G"]]\n',
            "overlaps with node",
        ),
        ('[[e820]]\nstart = "0"\nend = "2G"\n[[node]]\nnid = 0\n[[node]]\nnid = 0\n', "given twice"),
        ('[[e820]]\nstart = "0"\nend = "2G"\n[cpu]\ngbpages = "maybe"\n', "cpu.gbpages"),
        ('[[e820]\nstart = 0\n', "invalid TOML"),
        ('[[e820]]\nstart = "0"\nend = "8P"\n', "52-bit"),
        ('[[ram]]\nstart = "0"\nsize = "1G"\nnode = 0\n[[ram]]\nstart = "1G"\nsize = "1G"\n', "ram[1].node"),
    ],
)
def test_toml_errors(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as ei:
        parse_toml_text(text, "bad.toml")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("bad.toml"), msg
    assert fragment in msg, msg


def test_toml_same_type_overlap_merges() -> None:
    m = parse_toml_text('[[e820]]\nstart = "0"\nend = "1G"\n[[e820]]\nstart = "512M"\nend = "2G"\n', "m.toml")
    assert triples(m.e820) == [(0, 2 * G, "usable")]


@pytest.mark.parametrize("name", ["opteron-2007", "qemu-2g", "qemu-numa2", "sparse-holes", "server-64t", "desktop-32g", "numa-2s-256g"])
def test_builtin_toml_round_trip(name: str) -> None:
    m = get_builtin(name)
    back = parse_toml_text(m.to_toml(), "rt.toml")
    assert back == m


_ranges = st.lists(st.integers(min_value=1, max_value=1 << 20), min_size=2, max_size=16)
_types = st.sampled_from(["usable", "usable", "reserved", "ACPI data", "ACPI NVS", "unusable", "persistent (type 7)", "type 9"])
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def machines(draw: st.DrawFn) -> Machine:
    sizes = draw(_ranges)
    gaps = draw(st.lists(st.integers(min_value=0, max_value=1 << 20), min_size=len(sizes), max_size=len(sizes)))
    entries: list[E820Entry] = []
    pos = 0
    for size, gap in zip(sizes, gaps):
        pos += gap
        entries.append(E820Entry(pos * 4096, (pos + size) * 4096, draw(_types)))
        pos += size
    if not any(e.type == "usable" for e in entries):
        entries[0] = replace(entries[0], type="usable")
    m0 = Machine("m", "", tuple(entries), (), CpuFeatures())
    nodes: tuple[NumaNode, ...] = ()
    if draw(st.booleans()):
        usable = m0.usable()
        k = draw(st.integers(min_value=1, max_value=min(4, len(usable))))
        cuts = sorted(draw(st.sets(st.integers(1, len(usable) - 1), min_size=k - 1, max_size=k - 1))) if k > 1 else []
        bounds = [0, *cuts, len(usable)]
        nodes = tuple(
            NumaNode(i, tuple(usable[bounds[i] : bounds[i + 1]]), tuple(draw(st.lists(st.integers(0, 63), max_size=3, unique=True))))
            for i in range(k)
        )
    cpu = CpuFeatures(*(draw(st.booleans()) for _ in range(5)))
    kernel = None
    if draw(st.booleans()):
        kernel = tuple(entries[1:]) if len(entries) > 1 and any(e.type == "usable" for e in entries[1:]) else tuple(entries)
    return Machine(
        name=draw(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)),
        description=draw(_text),
        e820=tuple(entries),
        nodes=nodes,
        cpu=cpu,
        cmdline=draw(_text),
        e820_kernel=kernel,
    )


@settings(max_examples=150, deadline=None)
@given(machines())
def test_toml_round_trip_property(m: Machine) -> None:
    check_invariants(m)
    back = parse_toml_text(m.to_toml(), "rt.toml")
    assert back == m


# ----------------------------------------------------------------------------------- dmesg

def test_e820_range_update_and_remove() -> None:
    base = [(0, 0x9FC00, "usable"), (0x9FC00, 0xA0000, "reserved"), (0x100000, 0x200000, "usable")]
    up = e820_range_update(base, 0, 0x1000, "usable", "reserved")
    assert up == [(0, 0x1000, "reserved"), (0x1000, 0x9FC00, "usable"), (0x9FC00, 0xA0000, "reserved"), (0x100000, 0x200000, "usable")]
    rm = e820_range_remove(up, 0xA0000, 0x100000, "usable")
    assert rm == up
    rm2 = e820_range_remove(up, 0x150000, 0x160000, None)
    assert (0x100000, 0x150000, "usable") in rm2 and (0x160000, 0x200000, "usable") in rm2
    # adjacent same-type entries merge (e820__update_table)
    assert e820_range_update([(0, 10, "usable"), (10, 20, "reserved")], 0, 10, "usable", "reserved") == [(0, 20, "reserved")]


def test_dmesg_base_2g() -> None:
    m = load_dmesg(DATA / "base-2G.dmesg")
    assert triples(m.e820) == QEMU_2G_E820
    assert len(m.e820) == 7
    assert m.nodes == ()  # "No NUMA configuration found" / "Faking a node"
    assert m.cmdline.startswith("console=ttyS0") and m.cmdline.endswith("nokaslr")
    assert triples(m.e820_kernel) == [
        (0x0, 0x1000, "reserved"),
        (0x1000, 0x9FC00, "usable"),
        (0x9FC00, 0xA0000, "reserved"),
        (0xF0000, 0x100000, "reserved"),
        (0x100000, 0x7FFE0000, "usable"),
        (0x7FFE0000, 0x80000000, "reserved"),
        (0xFFFC0000, 0x100000000, "reserved"),
        (0xFD00000000, 0x10000000000, "reserved"),
    ]
    assert m.cpu.hypervisor and m.cpu.nx and not m.cpu.gbpages and not m.cpu.la57  # DMI: QEMU
    assert m.name == "base-2G" and "6.1.0-56-cloud-amd64" in m.description


def test_dmesg_numa2() -> None:
    m = load_dmesg(DATA / "numa2-2G.dmesg")
    assert m.numa and [n.nid for n in m.nodes] == [0, 1]
    assert m.nodes == get_builtin("qemu-numa2").nodes
    assert m.node_ranges() == get_builtin("qemu-numa2").node_ranges()


def test_dmesg_2_6_21_srat_matches_opteron() -> None:
    m = load_dmesg(DATA / "opteron-2.6.21.dmesg")
    o = get_builtin("opteron-2007")
    assert m.e820 == o.e820
    assert m.nodes == o.nodes
    assert m.e820_kernel is None
    assert m.cmdline == "root=/dev/sda1 ro console=ttyS0,115200"
    assert not m.cpu.hypervisor and not m.cpu.gbpages


def test_dmesg_2_6_21_k8_northbridge() -> None:
    m = load_dmesg(DATA / "opteron-k8-2.6.21.dmesg")
    o = get_builtin("opteron-2007")
    assert m.node_ranges() == o.node_ranges()


def test_dmesg_syslog_prefix_and_old_update_lines() -> None:
    text = "\n".join(
        [
            "May  8 12:00:00 host kernel: [    0.000000] BIOS-e820: 0000000000000000 - 000000000009f000 (usable)",
            "May  8 12:00:00 host kernel: [    0.000000] BIOS-e820: 0000000000100000 - 0000000040000000 (usable)",
            "May  8 12:00:00 host kernel: [    0.000000] BIOS-e820: 00000000fec00000 - 00000000fec01000 type 9",
            "May  8 12:00:00 host kernel: [    0.000000] e820 update range: 0000000000000000 - 0000000000010000 (usable) ==> (reserved)",
            "May  8 12:00:00 host kernel: [    0.000000] e820 remove range: 00000000000a0000 - 0000000000100000 (usable)",
            "May  8 12:00:00 host kernel: [    0.000000] Using GB pages for direct mapping",
        ]
    )
    m = parse_dmesg_text(text, "kern.log")
    assert triples(m.e820) == [(0, 0x9F000, "usable"), (0x100000, 0x40000000, "usable"), (0xFEC00000, 0xFEC01000, "type 9")]
    assert triples(m.e820_kernel)[:2] == [(0, 0x10000, "reserved"), (0x10000, 0x9F000, "usable")]
    assert m.cpu.gbpages


def test_dmesg_modified_map_replaces_kernel_copy() -> None:
    text = "\n".join(
        [
            "BIOS-e820: [mem 0x0000000000000000-0x000000003fffffff] usable",
            "e820: update [mem 0x00000000-0x00000fff] usable ==> reserved",
            "user-defined physical RAM map:",
            "user: [mem 0x0000000000000000-0x000000001fffffff] usable",
            "user: [mem 0x0000000020000000-0x000000003fffffff] reserved",
            "e820: remove [mem 0x1f000000-0x1fffffff]",
        ]
    )
    m = parse_dmesg_text(text, "x.log")
    assert triples(m.e820) == [(0, G, "usable")]
    assert triples(m.e820_kernel) == [(0, 0x1F000000, "usable"), (0x20000000, G, "reserved")]


def test_dmesg_stops_at_second_boot() -> None:
    one = "Linux version 6.1.0\nBIOS-e820: [mem 0x0000000000000000-0x000000003fffffff] usable\n"
    two = "Linux version 6.1.0\nBIOS-e820: [mem 0x0000000000000000-0x000000007fffffff] usable\n"
    m = parse_dmesg_text(one + two, "two-boots.log")
    assert m.ram_bytes == G


def test_dmesg_errors() -> None:
    with pytest.raises(InputError, match=r"^empty\.log: no BIOS-e820 lines"):
        parse_dmesg_text("hello\nworld\n", "empty.log")
    text = (
        "BIOS-e820: [mem 0x0000000000000000-0x000000003fffffff] usable\n"
        "BIOS-e820: [mem 0x0000000020000000-0x000000002fffffff] reserved\n"
    )
    with pytest.raises(InputError, match=r"^c\.log:2: e820 entry .* overlaps line 1"):
        parse_dmesg_text(text, "c.log")
    with pytest.raises(InputError, match=r"^t\.log:1: unknown e820 type"):
        parse_dmesg_text("BIOS-e820: [mem 0x0000000000000000-0x000000003fffffff] weird\n", "t.log")
    # an SRAT range with no RAM behind it
    srat = (
        "BIOS-e820: [mem 0x0000000000000000-0x000000003fffffff] usable\n"
        "ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x3fffffff]\n"
        "ACPI: SRAT: Node 1 PXM 1 [mem 0x80000000-0xbfffffff]\n"
    )
    with pytest.raises(InputError, match="node 1 range .* contains no usable RAM"):
        parse_dmesg_text(srat, "s.log")


@settings(max_examples=100, deadline=None)
@given(machines(), st.sampled_from(["modern", "2.6"]))
def test_dmesg_print_parse_round_trip(m: Machine, style: str) -> None:
    lines = ["Linux version 6.1.0 (test)", "BIOS-provided physical RAM map:"]
    lines += [f"[    0.000000] {ln}" for ln in format_e820_table(m.e820, style=style)]
    back = parse_dmesg_text("\n".join(lines), "p.log")
    assert back.e820 == m.e820


def test_format_e820_table_matches_capture() -> None:
    text = (DATA / "base-2G.dmesg").read_text()
    printed = [ln.split("] ", 1)[1] for ln in text.splitlines() if "BIOS-e820" in ln]
    assert format_e820_table(get_builtin("qemu-2g").e820) == printed
    old = (DATA / "opteron-2.6.21.dmesg").read_text()
    assert format_e820_table(get_builtin("opteron-2007").e820, style="2.6") == [ln for ln in old.splitlines() if "BIOS-e820" in ln]


# ----------------------------------------------------------------------------------- iomem

def test_iomem_hole_6g() -> None:
    m = load_iomem(DATA / "hole-6G.iomem")
    assert triples(m.e820) == [
        (0x0, 0x1000, "reserved"),
        (0x1000, 0x9FC00, "usable"),
        (0x9FC00, 0xA0000, "reserved"),
        (0xF0000, 0x100000, "reserved"),
        (0x100000, 0xBFFE0000, "usable"),
        (0xBFFE0000, 0xC0000000, "reserved"),
        (0xFFFC0000, 0x100000000, "reserved"),
        (0x100000000, 0x1C0000000, "usable"),
        (0xFD00000000, 0x10000000000, "reserved"),
    ]
    assert m.nodes == ()
    check_invariants(m)


def test_iomem_types_and_errors() -> None:
    text = (
        "00000000-0009ffff : System RAM\n"
        "00100000-3fffffff : System RAM\n"
        "  01000000-01ffffff : Kernel code\n"
        "40000000-4000ffff : ACPI Tables\n"
        "40010000-4001ffff : ACPI Non-volatile Storage\n"
        "100000000-13fffffff : Persistent Memory (legacy)\n"
        "140000000-17fffffff : Persistent Memory\n"
        "180000000-1bfffffff : Soft Reserved\n"
        "fec00000-fec003ff : IOAPIC 0\n"
    )
    m = parse_iomem_text(text, "i.txt")
    assert [e.type for e in m.e820] == ["usable", "usable", "ACPI data", "ACPI NVS", "persistent (type 12)", "persistent (type 7)", "soft reserved"]
    with pytest.raises(InputError, match="all /proc/iomem addresses are zero"):
        parse_iomem_text("00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n", "z.txt")
    with pytest.raises(InputError, match=r"^o\.txt:2: .* overlaps line 1"):
        parse_iomem_text("00000000-3fffffff : System RAM\n20000000-2fffffff : Reserved\n", "o.txt")


# --------------------------------------------------------------------------------- capture

def test_capture_fixture_la57() -> None:
    m = load_capture(DATA / "la57-6G.capture")
    assert m.cpu == CpuFeatures(pse=True, gbpages=True, la57=True, nx=True, hypervisor=True)
    assert m.name == "la57-6G" and "-cpu max" in m.description
    assert m.usable()[-1] == (0x100000000, 0x1C0000000)


def test_capture_fixture_dimm_cold_hotplug() -> None:
    m = load_capture(DATA / "dimm-cold.capture")
    assert len(m.nodes) == 1 and not m.numa
    assert m.nodes[0].hotplug == ((0x100000000, 0x380000000),)
    assert m.max_possible_phys == 0x380000000  # max_possible_pfn 0x380000 in the capture
    assert m.max_phys == 0x7FFE0000


def test_qemu_cpu_features() -> None:
    assert qemu_cpu_features("qemu-system-x86_64 -m 2G") == CpuFeatures(True, False, False, True, True)
    assert qemu_cpu_features("qemu-system-x86_64 -cpu max -m 6G").la57
    f = qemu_cpu_features("qemu-system-x86_64 -cpu max,-la57,pdpe1gb=off")
    assert not f.la57 and not f.gbpages
    assert qemu_cpu_features("qemu-system-x86_64 -cpu qemu64,+pdpe1gb").gbpages


def test_capture_errors() -> None:
    with pytest.raises(InputError, match="not an oracle capture"):
        parse_capture_text("hello\n", "x.log")
    with pytest.raises(InputError, match="no BIOS-e820"):
        parse_capture_text("# cmd: qemu-system-x86_64 -m 2G\n@@BEGIN DMESG@@\nhi\n@@END DMESG@@\n", "x.log")


def test_real_capture_base_2g() -> None:
    caps = need_captures()
    m = load_machine(str(caps / "base-2G.log"))
    assert len(m.e820) == 7
    assert triples(m.e820) == QEMU_2G_E820
    assert m.e820 == get_builtin("qemu-2g").e820
    assert m.cpu == get_builtin("qemu-2g").cpu
    assert m.cmdline == get_builtin("qemu-2g").cmdline


def test_real_capture_numa2() -> None:
    caps = need_captures()
    m = load_machine(str(caps / "numa2-2G.log"))
    assert len(m.nodes) == 2 and m.numa
    n = get_builtin("qemu-numa2")
    assert m.e820 == n.e820 and m.nodes == n.nodes


def test_real_captures_all_load() -> None:
    caps = need_captures()
    logs = sorted(caps.glob("*.log")) + sorted((SHARED / "oracle" / "captures-6.12").glob("*.log"))
    assert logs
    for log in logs:
        m = load_machine(str(log))
        check_invariants(m)
        assert m.cpu.hypervisor
        assert m.e820_kernel is not None and m.e820_kernel[0] == E820Entry(0, 0x1000, "reserved")
        assert m.cpu.la57 == ("-cpu max" in log.read_text().split("\n", 1)[0])


# ------------------------------------------------------------------------------------ this

def make_root(tmp: Path, iomem: str | None, memmap: list[tuple[int, int, str]] | None, nodes: dict[int, list[int]] | None,
              flags: str = "fpu pse pae nx pdpe1gb lm hypervisor") -> Path:
    root = tmp / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    if iomem is not None:
        (root / "proc/iomem").write_text(iomem)
    (root / "proc/cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/vda1\n")
    (root / "proc/sys/kernel/hostname").write_text("testhost\n")
    if memmap is not None:
        for i, (s, e, t) in enumerate(memmap):
            d = root / f"sys/firmware/memmap/{i}"
            d.mkdir(parents=True)
            (d / "start").write_text(f"{s:#x}\n")
            (d / "end").write_text(f"{e - 1:#x}\n")
            (d / "type").write_text(t + "\n")
    if nodes is not None:
        (root / "sys/devices/system/memory").mkdir(parents=True)
        (root / "sys/devices/system/memory/block_size_bytes").write_text("8000000\n")
        for nid, blocks in nodes.items():
            d = root / f"sys/devices/system/node/node{nid}"
            d.mkdir(parents=True)
            (d / "cpulist").write_text(f"{2 * nid}-{2 * nid + 1}\n")
            for b in blocks:
                (d / f"memory{b}").mkdir()
    return root


def test_this_from_iomem(tmp_path: Path) -> None:
    root = make_root(tmp_path, (DATA / "hole-6G.iomem").read_text(), None, None)
    m = read_this(root)
    assert m.name == "this" and m.source == "this" and "testhost" in m.description
    assert m.usable()[-1] == (0x100000000, 0x1C0000000)
    assert m.cpu == CpuFeatures(pse=True, gbpages=True, la57=False, nx=True, hypervisor=True)
    assert m.cmdline == "BOOT_IMAGE=/vmlinuz root=/dev/vda1"
    assert m.nodes == ()


def test_this_falls_back_to_firmware_memmap_with_nodes(tmp_path: Path) -> None:
    zeros = "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n"
    memmap = [(0, 0x9FC00, "System RAM"), (0x9FC00, 0xA0000, "Reserved"), (0x100000, 0x80000000, "System RAM"),
              (0x80000000, 0x80010000, "ACPI Tables")]
    # 128 MiB blocks: node 0 = blocks 0-7 (first GiB), node 1 = blocks 8-15
    root = make_root(tmp_path, zeros, memmap, {0: list(range(8)), 1: list(range(8, 16))}, flags="fpu pse nx la57")
    m = read_this(root)
    assert triples(m.e820) == [(0, 0x9FC00, "usable"), (0x9FC00, 0xA0000, "reserved"), (0x100000, 0x80000000, "usable"),
                               (0x80000000, 0x80010000, "ACPI data")]
    assert m.numa and m.node_ranges() == {0: [(0, 0x9FC00), (0x100000, G)], 1: [(G, 2 * G)]}
    assert m.nodes[1].cpus == (2, 3)
    assert m.cpu.la57 and not m.cpu.gbpages and not m.cpu.hypervisor


def test_this_unreadable(tmp_path: Path) -> None:
    root = make_root(tmp_path, "00000000-00000000 : System RAM\n", None, None)
    with pytest.raises(InputError, match="^this: cannot read the memory map"):
        read_this(root)


def test_this_on_host_is_machine_or_input_error() -> None:
    try:
        m = load_machine("this")
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        check_invariants(m)


# ---------------------------------------------------------------------------------- loader

def test_loader_recognises_content_not_extension(tmp_path: Path) -> None:
    t = tmp_path / "machine.log"
    t.write_text(MINIMAL)
    assert load_machine(str(t)).name == "tiny"
    d = tmp_path / "boot.toml"
    d.write_text((DATA / "base-2G.dmesg").read_text())
    assert triples(load_machine(str(d)).e820) == QEMU_2G_E820
    i = tmp_path / "iomem.toml"
    i.write_text((DATA / "hole-6G.iomem").read_text())
    assert load_machine(str(i)).ram_bytes == get_builtin("qemu-2g").ram_bytes * 0 + load_iomem(DATA / "hole-6G.iomem").ram_bytes
    c = tmp_path / "cap.txt"
    c.write_text((DATA / "la57-6G.capture").read_text())
    assert load_machine(str(c)).cpu.la57
    assert load_machine_file(DATA / "numa2-2G.dmesg").numa


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as ei:
        load_machine("no-such-machine")
    msg = str(ei.value)
    assert "\n" not in msg and "opteron-2007" in msg and "qemu-2g" in msg and "'this'" in msg
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage\nmore\n")
    with pytest.raises(InputError, match="not a recognised machine file"):
        load_machine(str(junk))
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\n[[e820]\nstart = 0\n')
    with pytest.raises(InputError, match="invalid TOML"):
        load_machine(str(broken))
    with pytest.raises(InputError, match="is not a file"):
        load_machine(str(tmp_path))
    bad = tmp_path / "bad.toml"
    bad.write_text('[[e820]]\nstart = "0"\nend = "1G"\n[[node]]\nnid = 0\nranges = [["2G", "3G"]]\n')
    with pytest.raises(InputError, match=rf"^{bad}: node 0 range"):
        load_machine(str(bad))


def test_machine_direct_construction_errors() -> None:
    with pytest.raises(InputError, match="no usable RAM"):
        Machine("x", "", (E820Entry(0, 4096, "reserved"),), (), CpuFeatures())
    with pytest.raises(InputError, match="overlaps or is out of order"):
        Machine("x", "", (E820Entry(0, 8192, "usable"), E820Entry(4096, 16384, "reserved")), (), CpuFeatures())
    with pytest.raises(InputError, match="should be written 'ACPI data'"):
        Machine("x", "", (E820Entry(0, 8192, "acpi"),), (), CpuFeatures())
