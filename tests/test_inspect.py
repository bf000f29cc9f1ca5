"""``vmemmap inspect``: our own code reading kernel memory from ELF cores.

The cores are written from our own simulated kernels (:mod:`vmemmap.inspect.elfwrite`), so the
answer is known: every section word, the bases, every walk and pfn_to_page must equal what the
model says.  A real QEMU dump test comes with the capture tool.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vmemmap.cli import main
from vmemmap.errors import InputError
from vmemmap.inspect import DumpMem, DumpReadError, ElfCore, QemuCpuState, parse_vmcoreinfo
from vmemmap.inspect.elfcore import QEMU_CPUSTATE_SIZE
from vmemmap.inspect.elfwrite import START_KERNEL_MAP, export_kernel, write_core
from vmemmap.inspect.kernel import DumpKernel, open_dump, parse_kallsyms
from vmemmap.inspect.render import crash_pte_flags, inspect_text, sections_text, vtop_text
from vmemmap.kernel import CAPTURED_SYMBOLS, BootOptions, boot
from vmemmap.kmem import _dump_mem_sections
from vmemmap.machine import load_machine

SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURE = SHARED / "oracle" / "captures" / "base-2G.log"


@pytest.fixture(scope="module")
def k():  # noqa: ANN201
    return boot(load_machine("qemu-2g"), "6.1")


@pytest.fixture(scope="module")
def core_path(k, tmp_path_factory) -> Path:  # noqa: ANN001
    p = tmp_path_factory.mktemp("cores") / "qemu-2g.core"
    export_kernel(k, p, qemu_note=True)
    return p


@pytest.fixture(scope="module")
def dk(core_path: Path) -> DumpKernel:
    return open_dump(core_path)


def _probe_addresses(k) -> list[int]:  # noqa: ANN001
    lay = k.layout
    return [
        lay.vmemmap_base, lay.vmemmap_base + 0x400000 + 0x40, lay.vmemmap_base + (0x7FFFF * 64),
        lay.vmemmap_base + (0x90000 * 64),                   # beyond RAM: not mapped
        lay.page_offset, lay.page_offset + 0x1000, lay.page_offset + 0x7FFDF123,
        lay.start_kernel_map + 0x1000000, k.symbols["vmemmap_base"], k.symbols["mem_section"],
        k.model.sections.root_array, 0xFFFFC90000000000,
    ]


# ---------------------------------------------------------------------- the ELF core itself


def test_core_has_qemu_shape(core_path: Path, k) -> None:  # noqa: ANN001
    c = ElfCore(core_path)
    assert c.kind == "qemu"
    assert [(s.paddr, s.end) for s in c.segments] == [tuple(r) for r in k.machine.usable()]
    assert all(s.vaddr == 0 for s in c.segments)
    assert len(c.qemu_cpus) == 1 and c.qemu_cpus[0].cr3 == k.tables.pgd_phys
    assert c.qemu_cpus[0].size == QEMU_CPUSTATE_SIZE == 440
    vi = c.vmcoreinfo
    assert vi is not None and vi.osrelease and vi.pagesize == 4096
    assert vi.symbol("mem_section") == k.model.sections.root_array
    assert vi.number("pgtable_l5_enabled") == 0 and vi.number("SECTION_SIZE_BITS") == 27
    assert vi.symbol("init_top_pgt") == START_KERNEL_MAP + k.tables.pgd_phys


def test_dumpmem_reads_what_physmem_holds(dk: DumpKernel, k) -> None:  # noqa: ANN001
    pgd = k.tables.pgd_phys
    assert (dk.phys.frame(pgd >> 12) == k.phys.frame(pgd >> 12)).all()
    st = k.model.sections
    ms = k.tables.translate(st.root_array)
    assert dk.phys.read(ms, 64) == k.phys.read(ms, 64)
    addrs = np.arange(pgd, pgd + 4096, 8, dtype=np.uint64)
    assert (dk.phys.read_u64_array(addrs) == k.phys.read_u64_array(addrs)).all()
    fill = k.phys.fill_regions()[0]
    a = np.arange(fill.start, min(fill.end, fill.start + 1 << 16), 8, dtype=np.uint64)
    assert (dk.phys.read_u64_array(a) == k.phys.read_u64_array(a)).all()
    assert dk.phys.read_u64(0x7FFDF000) == 0          # RAM in the dump, never written: a file hole


def test_dumpmem_refuses_writes_and_missing_memory(dk: DumpKernel) -> None:
    with pytest.raises(DumpReadError):
        dk.phys.read(0xFFFFF000, 8)                    # above RAM: not in the dump
    with pytest.raises(DumpReadError):
        dk.phys.read_u64_array(np.array([0x1000, 0x100000000], dtype=np.uint64))
    with pytest.raises(DumpReadError):
        dk.phys.write_u64(0x1000, 1)
    with pytest.raises((ValueError, DumpReadError)):   # the walker cannot edit a dump's tables
        dk.tables.map(0xFFFFC90000000000, 0x1000, 0x1000, 0x1000, 0x63)


# ---------------------------------------------------------------------- what the model says


def test_header_values_equal_the_model(dk: DumpKernel, k) -> None:  # noqa: ANN001
    assert dk.levels == 4
    assert dk.pgd_phys == k.tables.pgd_phys
    assert dk.page_offset_base == k.layout.page_offset
    assert dk.vmemmap_base == k.layout.vmemmap_base
    assert dk.release == "6.1.0-vmemmap-sim"
    assert not dk.notes


def test_every_section_word_equals_the_model(dk: DumpKernel, k) -> None:  # noqa: ANN001
    st = k.model.sections
    rows = dk.section_rows()
    assert [r.nr for r in rows] == [int(n) for n in st.present_array()]
    for r in rows:
        assert r.raw == st.read_word_nocheck(r.nr)
        assert r.addr == st.section_addr_nocheck(r.nr)
        assert r.coded == st.decode_mem_map(r.raw)
        assert r.usage == st.usage_of(r.nr)
        assert r.subsection_map == st.subsection_map(r.nr)
    # crash's kmem -n section block, byte for byte as the simulator prints it
    assert "\n" + sections_text(rows) == "".join(_dump_mem_sections(k))


def test_walks_equal_the_model(dk: DumpKernel, k) -> None:  # noqa: ANN001
    for v in _probe_addresses(k):
        assert dk.vtop(v) == k.tables.walk(v), hex(v)


def test_pfn_to_page_equals_the_model(dk: DumpKernel, k) -> None:  # noqa: ANN001
    for pfn in (0, 1, 0x9F, 0x100, 0x10000, 0x7FFDF, 0x7FFE0, 0x7FFFF, 0x80000, 0x12345):
        page = dk.pfn_to_page(pfn)
        assert page == k.model.pfn_to_page(pfn).value
        assert dk.page_to_pfn(page) == pfn == k.model.page_to_pfn(page).value
        assert dk.pfn_valid(pfn) == bool(k.model.pfn_valid(pfn).value), hex(pfn)
    with pytest.raises(InputError):
        dk.page_to_pfn(k.layout.vmemmap_base + 8)


# ---------------------------------------------------------------------- other ways to find things


def test_cr3_and_kallsyms_without_vmcoreinfo(k, tmp_path: Path) -> None:  # noqa: ANN001
    p = tmp_path / "novmci.core"
    export_kernel(k, p, vmcoreinfo=False, qemu_note=True)
    syms = tmp_path / "kallsyms"
    syms.write_text("".join(f"{a:016x} D {n}\n" for n, a in sorted(k.symbols.items(), key=lambda x: x[1])))
    d = open_dump(p, syms)
    assert d.release is None
    assert d.sources["pgd"] == "CR3 of CPU 0 (QEMU note)" and d.pgd_phys == k.tables.pgd_phys
    assert "kallsyms" in d.sources["vmemmap_base"] and "pointer read" in d.sources["mem_section"]
    assert (d.page_offset_base, d.vmemmap_base) == (k.layout.page_offset, k.layout.vmemmap_base)
    assert [r.raw for r in d.section_rows()] == [int(k.model.sections.read_word_nocheck(int(n)))
                                                  for n in k.model.sections.present_array()]
    assert d.pfn_valid(0x10000) is True


def test_real_kernel_vmcoreinfo_only_uses_fallbacks(k, tmp_path: Path) -> None:  # noqa: ANN001
    """A real 6.1 VMCOREINFO has no vmemmap_base/page_offset_base: drgn's section rule and the
    page tables give them."""
    p = tmp_path / "real.core"
    export_kernel(k, p, symbols=False)
    d = open_dump(p)
    assert "first HAS_MEM_MAP" in d.sources["vmemmap_base"]
    assert "kernel-half leaf" in d.sources["page_offset_base"]
    assert (d.page_offset_base, d.vmemmap_base) == (k.layout.page_offset, k.layout.vmemmap_base)


def test_kdump_style_page_offset_from_program_headers(k, tmp_path: Path) -> None:  # noqa: ANN001
    p = tmp_path / "vmcore"
    export_kernel(k, p, symbols=False, style="kdump")
    d = open_dump(p)
    assert d.core.kind == "kdump"
    assert d.sources["page_offset_base"] == "kdump PT_LOAD p_vaddr - p_paddr"
    assert d.page_offset_base == k.layout.page_offset


def test_five_level_paging_and_kaslr(tmp_path: Path) -> None:
    m = load_machine("qemu-2g")
    m = dataclasses.replace(m, cpu=dataclasses.replace(m.cpu, la57=True))
    k5 = boot(m, "6.1", options=BootOptions(la57=True, kaslr_seed=7))
    p = tmp_path / "la57.core"
    export_kernel(k5, p, vmcoreinfo=True, qemu_note=True)
    d = open_dump(p)
    assert d.levels == 5 and d.la57
    assert (d.page_offset_base, d.vmemmap_base) == (k5.layout.page_offset, k5.layout.vmemmap_base)
    for v in (k5.layout.vmemmap_base + 0x400000, k5.layout.page_offset + 0x1234000):
        assert d.vtop(v) == k5.tables.walk(v)
        assert "   P4D: " in vtop_text(d, v)
    assert [r.raw for r in d.section_rows()] == [int(k5.model.sections.read_word_nocheck(int(n)))
                                                  for n in k5.model.sections.present_array()]


# ---------------------------------------------------------------------- formats


def test_vtop_text_is_crash_format(dk: DumpKernel, k) -> None:  # noqa: ANN001
    v = k.layout.vmemmap_base + 0x400000
    w = k.tables.walk(v)
    pmd = w.steps[-1]
    text = vtop_text(dk, v)
    lines = text.split("\n")
    assert lines[0] == "VIRTUAL           PHYSICAL        "
    assert lines[1] == f"{v:x}  {w.phys:x}"
    assert lines[3] == f"PGD DIRECTORY: {START_KERNEL_MAP + k.tables.pgd_phys:x}"
    assert lines[4] == f"PAGE DIRECTORY: {w.steps[0].entry:x}"
    assert lines[5] == f"   PUD: {w.steps[1].entry_phys:x} => {w.steps[1].entry:x}"
    assert lines[6] == f"   PMD: {pmd.entry_phys:x} => {pmd.entry:x}"
    assert lines[7] == f"  PAGE: {w.phys:x}  (2MB)"
    assert lines[9] == "      PTE         PHYSICAL  FLAGS"
    assert lines[10] == f"{pmd.entry:x}  {w.phys:x}  (PRESENT|RW|ACCESSED|DIRTY|PSE|GLOBAL|NX)"
    unmapped = vtop_text(dk, 0xFFFFC90000000000).split("\n")
    assert unmapped[1] == "ffffc90000000000  (not mapped)"
    assert crash_pte_flags(0) == "(no mapping)"


def test_qemu_cpu_state_round_trip_and_vmcoreinfo_parsing() -> None:
    st = QemuCpuState(1, QEMU_CPUSTATE_SIZE, {"rip": 0xFFFFFFFF81000000}, {"cs": (0x10, 0xFFFFFFFF, 0xA09B00, 0)},
                      (0x80050033, 0, 0, 0x7DBAE000 | 0x1000 | 5, 0x3606E0 | 1 << 12), 0xFFFF888000000000)
    back = QemuCpuState.parse(st.pack())
    assert back == dataclasses.replace(st, regs={**{r: 0 for r in back.regs}, "rip": 0xFFFFFFFF81000000},
                                       segments={**{s: (0, 0, 0, 0) for s in back.segments},
                                                 "cs": (0x10, 0xFFFFFFFF, 0xA09B00, 0)})
    assert back.la57 and back.cr3 == 0x7DBAF005
    assert struct.unpack_from("<Q", st.pack(), 392 + 24)[0] == st.cr3      # cr[3] offset in QEMUCPUState
    vi = parse_vmcoreinfo(b"OSRELEASE=6.1.0-56-cloud-amd64\nNUMBER(phys_base)=-2147483648\n"
                          b"SYMBOL(init_top_pgt)=ffffffff82a10000\nKERNELOFFSET=0\nNUMBER(x)=0x10\n\0\0")
    assert vi.osrelease == "6.1.0-56-cloud-amd64" and vi.kerneloffset == 0
    assert vi.number("phys_base") == (1 << 64) - (1 << 31) and vi.number("x") == 16
    assert vi.symbol("init_top_pgt") == 0xFFFFFFFF82A10000 and vi.symbol("nope") is None


def test_write_core_holes_read_as_zero(tmp_path: Path) -> None:
    data = {0x1000: b"\x11" * 4096, 0x5000: b"\x22" * 4096}
    p = tmp_path / "small.core"
    write_core(p, [(0, 0x8000)], lambda a, n: b"".join(data[x] for x in range(a, a + n, 4096)),
               data=[(0x1000, 0x2000), (0x5000, 0x6000)])
    c = ElfCore(p)
    m = DumpMem(c)
    assert m.read(0xFF8, 16) == bytes(8) + b"\x11" * 8
    assert m.read_u64(0x5008) == 0x2222222222222222 and m.read_u64(0x3000) == 0
    assert c.vmcoreinfo is None and c.kind == "elf"


def test_pti_user_cr3_is_mapped_to_the_kernel_pgd(k, tmp_path: Path) -> None:  # noqa: ANN001
    """PTI's user pgd is the odd page of an 8 KiB pair; CR3 also carries PCID bits."""
    pgd = k.tables.pgd_phys
    if pgd & 0x1000:
        pytest.skip("the simulated pgd is not 8 KiB aligned")
    p = tmp_path / "pti.core"
    export_kernel(k, p, vmcoreinfo=False, qemu_note=False)
    c = ElfCore(p)
    d = DumpKernel(c, dict(k.symbols), cr3=pgd | 0x1000 | 0x7)
    assert d.pgd_phys == pgd and any("PTI" in n for n in d.notes)


# ---------------------------------------------------------------------- real captures


@pytest.mark.skipif(not CAPTURE.exists(), reason="oracle captures (/work/shared) not available")
def test_kallsyms_from_a_real_capture() -> None:
    text = CAPTURE.read_text()
    syms = parse_kallsyms(text)
    for name, addr in CAPTURED_SYMBOLS["6.1"].items():
        assert syms[name] == addr, name
    assert syms["init_top_pgt"] == 0xFFFFFFFF82A10000
    # the capture's /proc/kcore values: __pa(init_top_pgt) with the captured phys_base
    symval = {line.split()[1]: int(line.split("value=")[1].split()[0], 16)
              for line in text.splitlines() if line.startswith("SYMVAL ")}
    phys_base = symval["phys_base"]
    assert syms["init_top_pgt"] - START_KERNEL_MAP + phys_base == 0x2A10000
    # the capture's MEMSECTIONS decode with the same era rule the inspector uses
    from vmemmap.eras import load_era

    era = load_era("6.1")
    for line in text.splitlines():
        if line.startswith("SECTION "):
            f = dict(x.split("=", 1) for x in line.split()[2:] if "=" in x)
            raw = int(f["raw"], 16)
            assert raw & era.section_map_mask == int(f["coded"], 16)
            names = [n for i, n in enumerate(era.section_flags) if raw >> i & 1]
            assert ",".join(names) + "," == f["flags"].replace("ZONE_DEVICE", "TAINT_ZONE_DEVICE")


# ---------------------------------------------------------------------- the command


def test_cli_text_and_json(core_path: Path, k) -> None:  # noqa: ANN001
    r = CliRunner().invoke(main, ["inspect", str(core_path), "--vtop", f"{k.layout.vmemmap_base:x}",
                                  "--pfn", "0x10000", "--pfn", "7"])
    assert r.exit_code == 0, r.stderr
    assert f"VMEMMAP_BASE: {k.layout.vmemmap_base:#x}" in r.stdout
    assert "NR      SECTION        CODED_MEM_MAP        MEM_MAP       STATE PFN" in r.stdout
    assert "  PAGE: " in r.stdout and "(2MB)" in r.stdout
    r = CliRunner().invoke(main, ["inspect", str(core_path), "--vtop", "0xffff888000001000", "--pfn", "0x10000",
                                  "--json"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["kernel"]["vmemmap_base"] == f"{k.layout.vmemmap_base:#x}"
    assert d["kernel"]["levels"] == 4
    assert len(d["sections"]) == len(k.model.sections.present_array())
    assert d["vtop"][0]["physical"] == "0x1000" and d["vtop"][0]["steps"][-1]["level"] == "pte"
    assert d["pfn"] == [{"pfn": "0x10000", "page": f"{k.model.pfn_to_page(0x10000).value:#x}",
                         "page_to_pfn": "0x10000", "valid": True}]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "not-elf"
    bad.write_text("hello")
    r = CliRunner().invoke(main, ["inspect", str(bad)])
    assert r.exit_code == 2 and r.stderr.startswith("vmemmap: error:") and r.stderr.count("\n") == 1
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "missing")])
    assert r.exit_code == 2


def test_text_report_mentions_sources(dk: DumpKernel) -> None:
    text = inspect_text(dk, [], [])
    assert "pgd: VMCOREINFO SYMBOL(init_top_pgt)" in text
