"""`vmemmap capture`: initramfs, kernel package resolution, QEMU command lines; one real QEMU boot.

The unit tests always run.  The ``qemu`` test boots Debian's real 6.1 cloud kernel in a 2 GiB TCG guest
and checks the fresh capture with ``vmemmap conform``: it is skipped when ``qemu-system-x86_64`` is
absent, except under CI (``CI=true``), where it fails so that a machine without the capture
dependencies (scripts/install-capture-deps.sh) cannot pass silently.
"""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from click.testing import CliRunner

from vmemmap.capture import kernel_pkg
from vmemmap.capture.initramfs import INIT_SCRIPT, KALLSYMS, build_initramfs, newc_archive, read_newc, CpioEntry
from vmemmap.capture.qemu import GuestRun, HostEvent, MachineSpec, SerialLog, display_cmd, format_size, parse_size, \
    qemu_argv
from vmemmap.capture.runner import compose
from vmemmap.cli import main
from vmemmap.conform.capture import parse_capture_text
from vmemmap.errors import InputError, VmemmapError
from vmemmap.machine.capture import qemu_cpu_features

BLOCKS = ("CMDLINE", "DMESG", "IOMEM", "FIRMWARE_MEMMAP", "MEMINFO", "ZONEINFO", "BUDDYINFO", "PAGETYPEINFO",
          "MEMORY_BLOCKS", "NODES", "KALLSYMS", "KCORE", "MEMSECTIONS", "PTWALK_VMEMMAP", "PTWALK_DIRECTMAP",
          "DEBUGFS")


# ---------------------------------------------------------------------- initramfs


def test_initramfs_is_a_newc_archive_with_init_and_busybox(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake busybox" * 100)
    helper = tmp_path / "kcoredump"
    helper.write_bytes(b"\x7fELF fake helper")
    out = build_initramfs(tmp_path / "initrd.cpio.gz", busybox, helper, {"MODE": "boot", "SECTION_SIZE": "16"})
    data = gzip.decompress(out.read_bytes())
    assert data.startswith(b"070701")
    files = read_newc(data)
    mode, init = files["init"]
    assert stat.S_ISREG(mode) and mode & 0o111
    assert init.startswith(b"#!/bin/busybox sh\n")
    assert files["bin/busybox"][1] == busybox.read_bytes()
    assert files["bin/kcoredump"][1] == helper.read_bytes()
    assert stat.S_ISLNK(files["bin/sh"][0]) and files["bin/sh"][1] == b"busybox"
    assert stat.S_ISCHR(files["dev/console"][0])
    assert files["etc/capture.env"][1] == b"MODE=boot\nSECTION_SIZE=16\n"
    for d in ("proc", "sys", "dev", "bin"):
        assert stat.S_ISDIR(files[d][0])
    if shutil.which("cpio"):  # the real tool agrees
        listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True).stdout
        assert b"init\n" in listing and b"bin/busybox\n" in listing


def test_newc_device_node_and_padding() -> None:
    raw = newc_archive([CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
                        CpioEntry("a", stat.S_IFREG | 0o644, b"xyz")])
    assert len(raw) % 4 == 0
    head = raw[:110]
    assert int(head[6 + 8 * 9: 6 + 8 * 10], 16) == 5 and int(head[6 + 8 * 10: 6 + 8 * 11], 16) == 1
    assert read_newc(raw)["a"][1] == b"xyz"
    assert raw.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_initramfs_needs_busybox(tmp_path: Path) -> None:
    with pytest.raises(VmemmapError, match="busybox-static"):
        build_initramfs(tmp_path / "i.gz", tmp_path / "missing", None, {})


def test_init_script_prints_every_block_and_parses() -> None:
    for name in BLOCKS:
        assert f"{name}" in INIT_SCRIPT
    assert "@@ORACLE_DONE@@" in INIT_SCRIPT and "poweroff -f" in INIT_SCRIPT
    assert "|".join(KALLSYMS) in INIT_SCRIPT
    # POSIX shell syntax (busybox ash is a superset of what the script uses)
    subprocess.run(["sh", "-n", "-c", INIT_SCRIPT], check=True)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_kcore_helper_compiles_static(tmp_path: Path) -> None:
    from vmemmap.capture.kcore_helper import build_helper

    try:
        exe = build_helper(tmp_path)
    except VmemmapError as exc:  # gcc without static libc
        pytest.skip(str(exc))
    assert os.access(exe, os.X_OK)
    assert build_helper(tmp_path) == exe  # cached
    from elftools.elf.elffile import ELFFile

    with exe.open("rb") as fh:
        assert not any(s.header.p_type == "PT_INTERP" for s in ELFFile(fh).iter_segments())


# ---------------------------------------------------------------------- kernel package


DEPENDS_61 = """linux-image-cloud-amd64
  Depends: linux-image-6.1.0-56-cloud-amd64
"""
DEPENDS_612 = """linux-image-6.12-cloud-amd64
  Depends: <linux-image-6.12-virtual>
 |Depends: linux-image-6.12.117+deb12-cloud-amd64-dbg
  Depends: linux-image-6.12.117+deb12-cloud-amd64
  Recommends: firmware-linux-free
"""
POLICY = """linux-image-6.1.0-56-cloud-amd64:
  Installed: (none)
  Candidate: 6.1.192-2
  Version table:
     6.1.192-2 500
"""


def fake_apt(outputs: dict[tuple[str, ...], str]):
    def run(argv):
        key = tuple(argv[:3])
        if key not in outputs:
            return CompletedProcess(argv, 0, "", "")
        return CompletedProcess(argv, 0, outputs[key], "")
    return run


def test_parse_depends() -> None:
    assert kernel_pkg.parse_depends(DEPENDS_61, "linux-image-cloud-amd64") == "linux-image-6.1.0-56-cloud-amd64"
    assert kernel_pkg.parse_depends(DEPENDS_612, "linux-image-6.12-cloud-amd64") == \
        "linux-image-6.12.117+deb12-cloud-amd64"
    with pytest.raises(VmemmapError, match="names no linux-image"):
        kernel_pkg.parse_depends("linux-image-cloud-amd64\n  Recommends: x\n", "linux-image-cloud-amd64")


def test_parse_candidate() -> None:
    assert kernel_pkg.parse_candidate(POLICY) == "6.1.192-2"
    assert kernel_pkg.parse_candidate("x:\n  Installed: (none)\n  Candidate: (none)\n") is None


def test_resolve_series() -> None:
    run = fake_apt({("apt-cache", "depends", "linux-image-cloud-amd64"): DEPENDS_61,
                    ("apt-cache", "policy", "linux-image-6.1.0-56-cloud-amd64"): POLICY})
    assert kernel_pkg.resolve("6.1", run) == ("linux-image-cloud-amd64", "linux-image-6.1.0-56-cloud-amd64",
                                              "6.1.192-2")


def test_resolve_unknown_or_missing_kernel_is_an_error() -> None:
    with pytest.raises(VmemmapError, match=r"kernel 6\.12: apt does not know linux-image-6\.12-cloud-amd64"):
        kernel_pkg.resolve("6.12", fake_apt({}))
    with pytest.raises(InputError, match="unknown kernel series"):
        kernel_pkg.resolve("5.10", fake_apt({}))
    run = fake_apt({("apt-cache", "depends", "linux-image-cloud-amd64"): DEPENDS_61})
    with pytest.raises(VmemmapError, match="no installable version"):
        kernel_pkg.resolve("6.1", run)


def test_mem_section_size_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_SPARSEMEM_VMEMMAP=y\n# CONFIG_PAGE_EXTENSION is not set\n")
    kp = kernel_pkg.KernelPackage("6.1", "m", "linux-image-6.1.0-56-cloud-amd64", "1", tmp_path, tmp_path, cfg)
    assert kp.mem_section_size == 16
    cfg.write_text("CONFIG_PAGE_EXTENSION=y\n")
    assert kp.mem_section_size == 32


# ---------------------------------------------------------------------- QEMU command line


def argv_for(spec: MachineSpec, cmd_sock: str | None = None) -> list[str]:
    return qemu_argv(spec, "K", "I", "run/serial.log", "run/qmp.sock", cmd_sock)


def opt(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]


def test_default_command_line() -> None:
    argv = argv_for(MachineSpec())
    assert argv[:5] == ["qemu-system-x86_64", "-display", "none", "-serial", "file:run/serial.log"]
    assert opt(argv, "-qmp") == ["unix:run/qmp.sock,server=on,wait=off"]
    assert opt(argv, "-monitor") == ["none"] and "-no-reboot" in argv
    assert opt(argv, "-accel") == ["tcg"]
    assert opt(argv, "-m") == ["2G"] and opt(argv, "-kernel") == ["K"] and opt(argv, "-initrd") == ["I"]
    assert opt(argv, "-append") == ["console=ttyS0 loglevel=8 ignore_loglevel panic=-1 log_buf_len=8M "
                                    "no_hash_pointers nokaslr"]
    assert not opt(argv, "-cpu") and not opt(argv, "-smp") and not opt(argv, "-numa")


def test_numa_split_evenly() -> None:
    argv = argv_for(MachineSpec(mem="2G", numa=2))
    assert opt(argv, "-smp") == ["2"]
    assert opt(argv, "-object") == ["memory-backend-ram,id=m0,size=1G", "memory-backend-ram,id=m1,size=1G"]
    assert opt(argv, "-numa") == ["node,nodeid=0,cpus=0,memdev=m0", "node,nodeid=1,cpus=1,memdev=m1"]
    assert opt(argv_for(MachineSpec(mem="3G", numa=4)), "-object")[0] == "memory-backend-ram,id=m0,size=768M"
    with pytest.raises(InputError, match="split evenly"):
        argv_for(MachineSpec(mem="2G", numa=3))


def test_dimm_at_boot() -> None:
    argv = argv_for(MachineSpec(dimms=("1G",)))
    assert opt(argv, "-m") == ["2G,slots=4,maxmem=8G"]
    assert opt(argv, "-object") == ["memory-backend-ram,id=dm1,size=1G"]
    assert opt(argv, "-device") == ["pc-dimm,id=d1,memdev=dm1"]
    assert "dyndbg=" in opt(argv, "-append")[0]
    assert opt(argv_for(MachineSpec(mem="4G", dimms=("16G",))), "-m") == ["4G,slots=4,maxmem=20G"]
    with pytest.raises(InputError, match="below"):
        argv_for(MachineSpec(dimms=("1G",), maxmem="2G"))


def test_cpu_kaslr_append_and_hotplug() -> None:
    argv = argv_for(MachineSpec(cpu="max", kaslr=True, append="memblock=debug"))
    assert opt(argv, "-cpu") == ["max"]
    assert "nokaslr" not in opt(argv, "-append")[0].split()
    assert opt(argv, "-append")[0].endswith(" memblock=debug")
    hp = argv_for(MachineSpec(hotplug=("1G",)), cmd_sock="run/cmd.sock")
    assert opt(hp, "-serial") == ["file:run/serial.log", "unix:run/cmd.sock,server=on,wait=off"]
    assert opt(hp, "-m") == ["2G,slots=4,maxmem=8G"]


def test_command_line_reads_back_as_the_machine() -> None:
    """The ``# cmd:`` line is what machine/capture.py reads the CPU from."""
    cmd = display_cmd(argv_for(MachineSpec(cpu="max", mem="6G")), {"run/": "x/"})
    assert shlex.split(cmd)[0] == "qemu-system-x86_64" and "file:x/serial.log" in cmd
    feats = qemu_cpu_features(cmd)
    assert feats.la57 and feats.gbpages
    assert not qemu_cpu_features(display_cmd(argv_for(MachineSpec()), {})).la57


def test_sizes() -> None:
    assert parse_size("2G") == 2 << 30 and parse_size("2000M") == 2000 << 20 and parse_size("512") == 512 << 20
    assert format_size(2 << 30) == "2G" and format_size(2000 << 20) == "2000M" and format_size(768 << 20) == "768M"
    with pytest.raises(InputError):
        parse_size("lots")


def test_capture_cli_bad_option_is_one_line() -> None:
    res = CliRunner().invoke(main, ["capture", "--numa", "3"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == ["vmemmap: error: --numa 3: --mem 2G does not split evenly into MiB "
                                               "per node"]
    assert "Example:" in CliRunner().invoke(main, ["capture", "--help"]).output


# ---------------------------------------------------------------------- the file


def test_compose_keeps_the_shared_format(tmp_path: Path) -> None:
    console = ("[    0.000000] Linux version 6.1.0-56-cloud-amd64 (x)\r\n"
               "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\r\n"
               "@@BEGIN CMDLINE@@\r\nconsole=ttyS0 nokaslr\r\n"
               "Linux (none) 6.1.0-56-cloud-amd64 #1 SMP x86_64 GNU/Linux\r\n@@END CMDLINE@@\r\n"
               "@@READY 0@@\r\n@@BEGIN DMESG@@\r\nx\r\n@@END DMESG@@\r\n@@ORACLE_DONE@@\r\n")
    g = GuestRun(["qemu-system-x86_64"], SerialLog(tmp_path / "s"), tmp_path / "q", tmp_path / "c")
    g.host_blocks.append(HostEvent(0, "QMP device_add", '{\n "return": {}\n}'))
    kp = kernel_pkg.KernelPackage("6.1", "linux-image-cloud-amd64", "linux-image-6.1.0-56-cloud-amd64",
                                  "6.1.192-2", tmp_path, tmp_path, None)
    text = compose("qemu-system-x86_64 -m 2G", kp, console, g, {"total": 1.0})
    lines = text.split("\n")
    assert lines[0] == "# cmd: qemu-system-x86_64 -m 2G"
    assert lines[1] == "# package: linux-image-6.1.0-56-cloud-amd64 6.1.192-2 (from linux-image-cloud-amd64)"
    assert lines[2].startswith("[    0.000000] Linux version") and lines[2].endswith("\r")
    i = lines.index("@@READY 0@@\r")
    assert lines[i + 1: i + 6] == ["@@BEGIN HOST:QMP device_add@@", "{", ' "return": {}', "}",
                                   "@@END HOST:QMP device_add@@"]
    assert lines[-2].startswith("# timings: ")
    cap = parse_capture_text(text)
    assert cap.kernel == "6.1.0-56-cloud-amd64" and len(cap.snapshots) == 2
    assert [b.name for b in cap.snapshots[1].blocks] == ["HOST:QMP device_add", "DMESG", "HOST:QMP_EVENTS"]


# ---------------------------------------------------------------------- a real boot


@pytest.mark.qemu
def test_capture_real_kernel_conforms(tmp_path: Path) -> None:
    """Boot Debian's 6.1 cloud kernel (2 GiB, TCG), capture, and conform the capture."""
    if shutil.which("qemu-system-x86_64") is None:
        msg = "qemu-system-x86_64 not installed (run scripts/install-capture-deps.sh as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: {msg}")
        pytest.skip(msg)
    from vmemmap.capture import MachineSpec as Spec
    from vmemmap.capture import run_capture
    from vmemmap.conform import by_category, conform

    out = tmp_path / "base-2G.log"
    core = tmp_path / "base-2G.core"
    res = run_capture(Spec(mem="2G"), "6.1", out, timeout=240, dump=core)
    text = out.read_text()
    assert text.startswith("# cmd: qemu-system-x86_64 ")
    assert text.split("\n")[1].startswith(f"# package: {res.kernel.package} {res.kernel.version}")
    cap = parse_capture_text(text, str(out), out.stem)
    assert set(BLOCKS) <= set(cap.first.names())
    assert cap.kernel.endswith("-cloud-amd64")
    result = conform(str(out))
    cats = by_category(result)
    for cat in ("base", "max_pfn", "node", "zone", "block", "root", "section", "subsection", "vmemmap",
                "directmap"):
        assert cat in cats and cats[cat][1] > 0, f"no {cat} facts"
    bad = [f"{f['name']}: expected {f['expected']}, got {f['got']}" for f in result["facts"] if not f["ok"]]
    assert not bad, "\n".join(bad)
    assert result["agree"] == result["total"]

    # vmemmap inspect over the guest's own memory (QMP dump-guest-memory) agrees with what the guest
    # printed about itself: every section word and address, and the page-table walk of the vmemmap
    from vmemmap.conform.capture import parse_memsections, parse_ptwalk
    from vmemmap.inspect.kernel import open_dump

    ms = parse_memsections(cap.first.block("MEMSECTIONS"))
    dk = open_dump(core, kallsyms=out)
    try:
        assert dk.vmemmap_base == ms.vmemmap_base
        rows = {r.nr: r for r in dk.section_rows()}
        assert set(rows) == set(ms.sections)
        for nr, row in ms.sections.items():
            assert rows[nr].raw == row.raw, nr
        walk = parse_ptwalk(cap.first.block("PTWALK_VMEMMAP"))
        for run in walk.runs:
            for va in (run.vstart, run.vend - 8):
                assert dk.vtop(va).phys == run.pstart + (va - run.vstart), hex(va)
    finally:
        dk.close()
        core.unlink()
