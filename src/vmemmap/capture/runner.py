"""``vmemmap capture``: boot Debian's kernel under QEMU and write a capture in the shared format.

The file (shared/oracle/README.md, docs/capture.md): line 1 ``# cmd:`` and the QEMU command line, line 2
``# package:`` with the kernel package and its exact version, then the guest's serial console (from the
kernel's ``Linux version`` line on) with the init script's blocks; in hot-plug captures the host's
``HOST:...`` blocks follow the ``@@READY n@@`` marker of the step they belong to.  A last ``# timings:``
line gives seconds since QEMU started.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmemmap.capture import kernel_pkg
from vmemmap.capture.initramfs import build_initramfs
from vmemmap.capture.kcore_helper import build_helper
from vmemmap.capture.qemu import QEMU, GuestRun, MachineSpec, SerialLog, display_cmd, format_size, parse_size, \
    qemu_argv
from vmemmap.errors import VmemmapError

Progress = Callable[[str], None]

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_busybox() -> Path:
    """A statically linked busybox (Debian's ``busybox-static``): no ``PT_INTERP`` program header."""
    from elftools.elf.elffile import ELFFile

    for cand in BUSYBOX_CANDIDATES:
        p = Path(cand)
        if not p.is_file():
            continue
        with p.open("rb") as fh:
            try:
                elf = ELFFile(fh)
                if not any(seg.header.p_type == "PT_INTERP" for seg in elf.iter_segments()):
                    return p
            except Exception:  # noqa: BLE001 - not an ELF file
                continue
    raise VmemmapError("no static busybox found (apt-get install busybox-static, "
                       "or run scripts/install-capture-deps.sh)")


@dataclass
class CaptureResult:
    path: Path
    kernel: kernel_pkg.KernelPackage
    argv: list[str]
    timings: dict[str, Any] = field(default_factory=dict)


def default_output() -> Path:
    return Path(time.strftime("capture-%Y%m%d-%H%M%S.log"))


def run_capture(spec: MachineSpec, series: str = "6.1", out: Path | None = None, timeout: float = 300.0,
                progress: Progress = lambda s: None, cache: Path | None = None, qemu: str = QEMU,
                dump: Path | None = None) -> CaptureResult:
    """Make one capture; returns where it went.  Raises :class:`VmemmapError` when anything is missing."""
    spec.validate()
    t_start = time.monotonic()
    if shutil.which(qemu) is None:
        raise VmemmapError(f"{qemu} not found (apt-get install qemu-system-x86, "
                           "or run scripts/install-capture-deps.sh)")
    busybox = find_busybox()
    cache = cache or kernel_pkg.cache_dir()
    kp = kernel_pkg.fetch(series, cache, progress)
    t_kernel = time.monotonic()
    progress("compiling the static /proc/kcore reader (gcc -static)")
    helper = build_helper(cache / "helper")
    out = out or default_output()
    with tempfile.TemporaryDirectory(prefix="vmemmap-capture-") as tmp:
        work = Path(tmp)
        env = {"MODE": "interactive" if spec.interactive else "boot", "SECTION_SIZE": str(kp.mem_section_size),
               "DUMP": "1" if dump is not None else "0"}
        progress("building the busybox initramfs")
        initrd = build_initramfs(work / "initrd.cpio.gz", busybox, helper, env)
        serial = work / "serial.log"
        qmp_sock = work / "qmp.sock"
        cmd_sock = work / "cmd.sock" if spec.interactive else None
        argv = qemu_argv(spec, str(kp.vmlinuz), str(initrd), str(serial), str(qmp_sock),
                         str(cmd_sock) if cmd_sock else None, qemu=qemu)
        guest = GuestRun(argv, SerialLog(serial), qmp_sock, cmd_sock, stderr_path=work / "qemu.stderr",
                         progress=progress)
        t_boot = time.monotonic()
        error: VmemmapError | None = None
        try:
            asyncio.run(_drive(guest, spec, timeout, dump))
        except VmemmapError as exc:
            error = exc
        text = guest.serial.text()
        raw = guest.serial.raw()
        timings: dict[str, Any] = {
            "kernel_package": round(t_kernel - t_start, 3), "prepare": round(t_boot - t_kernel, 3),
            **guest.marks, "qemu": round(time.monotonic() - t_boot, 3),
            "total": round(time.monotonic() - t_start, 3),
            "rc": guest.proc.returncode if guest.proc is not None else None,
        }
        body = compose(display_cmd(argv, {tmp: "run"}), kp, raw, guest, timings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    if error is not None:
        raise VmemmapError(f"{error} (console so far in {out})")
    if "@@ORACLE_DONE@@" not in text:
        raise VmemmapError(f"the guest never printed @@ORACLE_DONE@@ (console in {out})")
    from vmemmap.conform.capture import parse_capture_text

    parse_capture_text(body, str(out), out.stem)  # the shared format, or an InputError naming the line
    return CaptureResult(out, kp, argv, timings)


def compose(cmd: str, kp: kernel_pkg.KernelPackage, console: str, guest: GuestRun, timings: dict[str, Any]) -> str:
    """The capture file: header lines, the console with HOST blocks after their ``@@READY``, events, timings.

    As in the shared captures, console lines keep the serial console's CR LF and host lines end in LF.
    """
    lines = [f"# cmd: {cmd}", f"# package: {kp.package} {kp.version} (from {kp.metapackage})"]
    ready = re.compile(r"^@@READY (\d+)@@$")
    body = console[:-1] if console.endswith("\n") else console
    for ln in body.split("\n") if body else []:
        lines.append(ln)
        m = ready.match(ln.strip())
        if m:
            for ev in guest.host_blocks:
                if ev.ready == int(m.group(1)):
                    lines.append(f"@@BEGIN HOST:{ev.name}@@")
                    lines.extend(ev.body.split("\n"))
                    lines.append(f"@@END HOST:{ev.name}@@")
    if guest.cmd_path is not None:
        lines.append("@@BEGIN HOST:QMP_EVENTS@@")
        lines.extend(json.dumps(ev) for ev in guest.events)
        lines.append("@@END HOST:QMP_EVENTS@@")
    lines.append(f"# timings: {json.dumps(timings)}")
    return "\n".join(lines) + "\n"


async def _drive(g: GuestRun, spec: MachineSpec, timeout: float, dump: Path | None = None) -> None:
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    try:
        await g.start()
        await g.wait_for(r"Linux version", left(), "QEMU starting the kernel")
        g.mark("linux_version")
        await g.wait_for(r"Run /init as init process", left(), "booting Linux (TCG)")
        g.mark("run_init")
        await g.wait_for(r"^@@BEGIN ", left(), "waiting for /init")
        g.mark("init_dump_start")
        if spec.interactive:
            await _hotplug(g, spec, left)
        await g.wait_for(r"^@@ORACLE_DONE@@$", left(), "guest printing blocks")
        g.mark("done")
        if dump is not None:
            await g.wait_for(r"^@@DUMP_READY@@$", left(), "guest ready for the memory dump")
            await _dump(g, dump, left())
            g.mark("dump")
            await g.stop()
        else:
            await g.wait_exit(min(left(), 30))
        g.mark("exit")
    finally:
        await g.close()


async def _dump(g: GuestRun, path: Path, timeout: float) -> None:
    """QMP ``stop`` then ``dump-guest-memory`` (paging off: an ELF core of guest-physical memory with
    QEMU's CPU-state notes, CR3 included) — what ``vmemmap inspect`` reads."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        await asyncio.wait_for(g.qmp.execute("stop"), 30)
        await asyncio.wait_for(g.qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{path}"}),
                               timeout)
    except asyncio.TimeoutError:
        raise VmemmapError(f"dump-guest-memory did not finish in {timeout:.0f} s") from None
    except Exception as exc:  # noqa: BLE001 - QMP errors arrive as library exceptions
        raise VmemmapError(f"dump-guest-memory failed: {exc}") from None


async def _hotplug(g: GuestRun, spec: MachineSpec, left: Callable[[], float]) -> None:
    """Per hot-plugged DIMM: add -> online_movable -> snapshot -> remove -> snapshot (as dimm-hot.log)."""
    n = 0

    async def step(cmd: str, what: str) -> None:
        nonlocal n
        g.send(cmd)
        n += 1
        await g.wait_for(rf"^@@READY {n}@@$", left(), what)

    await g.wait_for(r"^@@READY 0@@$", left(), "guest printing blocks")
    g.mark("first_ready")
    await g.hmp(n, "info memory-devices")
    await step("dmesgc", "guest printing dmesg")
    for i, size in enumerate(spec.hotplug, start=1):
        nbytes = parse_size(size)
        seen = len(g.events)
        await g.execute(n, "object-add", {"qom-type": "memory-backend-ram", "id": f"hm{i}", "size": nbytes})
        await g.execute(n, "device_add", {"driver": "pc-dimm", "id": f"hd{i}", "memdev": f"hm{i}"})
        await _wait_event(g, seen, "ACPI_DEVICE_OST", min(30.0, left()))
        await g.hmp(n, "info memory-devices")
        await step("dmesgc", f"guest adding the {format_size(nbytes)} DIMM")
        await step("blocks", "guest printing memory blocks")
        await step("syms", "guest reading /proc/kcore")
        await step("online online_movable", "guest onlining the DIMM")
        await step("dump", "guest printing blocks")
        await g.execute(n, "device_del", {"id": f"hd{i}"})
        gone, waited = await _wait_gone(g, f"hd{i}", min(60.0, left()))
        g.host_blocks.append(_host(n, f"WAIT_GONE hd{i}", f"gone={gone} after {waited:.2f} s"))
        await step("dmesgc", "guest removing the DIMM")
        await step("blocks", "guest printing memory blocks")
        await step("syms", "guest reading /proc/kcore")
    await g.hmp(n, "info memory-devices")
    g.send("quit")


def _host(ready: int, name: str, body: str) -> Any:
    from vmemmap.capture.qemu import HostEvent

    return HostEvent(ready, name, body)


async def _wait_event(g: GuestRun, seen: int, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(ev.get("event") == name for ev in g.events[seen:]):
            return True
        await asyncio.sleep(0.05)
    return False


async def _wait_gone(g: GuestRun, dev_id: str, timeout: float) -> tuple[bool, float]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        devs = await g.qmp.execute("query-memory-devices")
        if not any(d.get("data", {}).get("id") == dev_id for d in devs):  # type: ignore[union-attr]
            return True, time.monotonic() - t0
        await asyncio.sleep(0.1)
    return False, time.monotonic() - t0
