"""The QEMU side of a capture: the command line, and a running guest driven over QMP (``qemu.qmp``).

The guest's console (ttyS0) goes to a file (``-serial file:``); interactive captures add a second serial
port (ttyS1, a UNIX socket) on which the host sends the init script one command per ``@@READY n@@``.
QMP (``-qmp unix:...,server=on,wait=off``) is how the host watches and steers the machine: SHUTDOWN
events, ``quit`` on timeout, and memory hot-plug (``object-add`` / ``device_add`` / ``device_del``,
HMP ``info memory-devices``).  Software emulation (TCG): no KVM needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmemmap.errors import InputError, VmemmapError

QEMU = "qemu-system-x86_64"

#: what the shared captures pass (shared/oracle/README.md), before nokaslr / extras
BASE_APPEND = "console=ttyS0 loglevel=8 ignore_loglevel panic=-1 log_buf_len=8M no_hash_pointers"
#: the hot-plug captures' dynamic debug: the vmemmap "PMD -> [...] on node N" lines for hot-added memory
HOTPLUG_DYNDBG = 'dyndbg="file arch/x86/mm/init_64.c +p; file mm/memory_hotplug.c +p; file mm/sparse.c +p"'

_UNITS = {"": 1 << 20, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """A QEMU size (``2G``, ``512M``, ``2000M``; a bare number is MiB, as for ``-m``) in bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([BKMGT]?)(?:i?B)?\s*", text, re.I)
    if not m or int(m.group(1)) == 0:
        raise InputError(f"bad size {text!r} (expected e.g. 2G, 512M)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def format_size(n: int) -> str:
    """Bytes as QEMU's shortest exact unit: ``2G``, ``2000M``, ``64M``."""
    for unit in ("T", "G", "M", "K"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{n}B"


@dataclass(frozen=True)
class MachineSpec:
    """The guest: what ``vmemmap capture``'s options describe."""

    mem: str = "2G"
    numa: int = 1                     # nodes; memory split evenly, one CPU each
    dimms: tuple[str, ...] = ()       # pc-dimm sizes present at boot
    hotplug: tuple[str, ...] = ()     # pc-dimm sizes hot-added after boot (interactive)
    cpu: str | None = None            # e.g. 'max' (LA57, 1 GiB pages)
    kaslr: bool = False
    append: str = ""
    maxmem: str | None = None
    smp: int | None = None

    @property
    def interactive(self) -> bool:
        return bool(self.hotplug)

    @property
    def slots(self) -> bool:
        return bool(self.dimms or self.hotplug or self.maxmem)

    def validate(self) -> None:
        mem = parse_size(self.mem)
        if self.numa < 1 or self.numa > 64:
            raise InputError(f"--numa {self.numa}: expected 1..64 nodes")
        if self.numa > 1 and mem % (self.numa << 20):
            raise InputError(f"--numa {self.numa}: --mem {self.mem} does not split evenly into MiB per node")
        if len(self.dimms) + len(self.hotplug) > 4:
            raise InputError("at most 4 DIMMs (-m ...,slots=4)")
        for s in (*self.dimms, *self.hotplug):
            parse_size(s)
        if self.maxmem and parse_size(self.maxmem) < self.memory_needed():
            raise InputError(f"--maxmem {self.maxmem} is below --mem plus the DIMMs")

    def memory_needed(self) -> int:
        """Boot memory plus every DIMM."""
        return parse_size(self.mem) + sum(parse_size(s) for s in (*self.dimms, *self.hotplug))

    def maxmem_bytes(self) -> int:
        """``maxmem``: the given one, else 4 x ``mem`` (as the shared captures: 2G -> 8G) or more if the DIMMs need it."""
        need = self.memory_needed()
        if self.maxmem:
            return parse_size(self.maxmem)
        g = 1 << 30
        return max(4 * parse_size(self.mem), -(-need // g) * g)

    def kernel_cmdline(self) -> str:
        parts = [BASE_APPEND]
        if not self.kaslr:
            parts.append("nokaslr")
        if self.dimms or self.hotplug:
            parts.append(HOTPLUG_DYNDBG)
        if self.append.strip():
            parts.append(self.append.strip())
        return " ".join(parts)


def qemu_argv(spec: MachineSpec, kernel: str, initrd: str, serial_log: str, qmp_sock: str,
              cmd_sock: str | None = None, qemu: str = QEMU) -> list[str]:
    """The QEMU command line (same option order as the shared captures, ``-serial file:`` for the log)."""
    spec.validate()
    argv = [qemu, "-display", "none", "-serial", f"file:{serial_log}"]
    if cmd_sock:
        argv += ["-serial", f"unix:{cmd_sock},server=on,wait=off"]
    argv += ["-monitor", "none", "-no-reboot", "-qmp", f"unix:{qmp_sock},server=on,wait=off", "-accel", "tcg",
             "-kernel", kernel, "-initrd", initrd, "-append", spec.kernel_cmdline()]
    if spec.cpu:
        argv += ["-cpu", spec.cpu]
    smp = spec.smp or (spec.numa if spec.numa > 1 else None)
    if smp:
        argv += ["-smp", str(smp)]
    mem = spec.mem
    if spec.slots:
        mem = f"{spec.mem},slots=4,maxmem={format_size(spec.maxmem_bytes())}"
    argv += ["-m", mem]
    if spec.numa > 1:
        per = format_size(parse_size(spec.mem) // spec.numa)
        for n in range(spec.numa):
            argv += ["-object", f"memory-backend-ram,id=m{n},size={per}"]
        for n in range(spec.numa):
            argv += ["-numa", f"node,nodeid={n},cpus={n},memdev=m{n}"]
    for i, size in enumerate(spec.dimms, start=1):
        argv += ["-object", f"memory-backend-ram,id=dm{i},size={format_size(parse_size(size))}",
                 "-device", f"pc-dimm,id=d{i},memdev=dm{i}"]
    return argv


def display_cmd(argv: list[str], replacements: dict[str, str]) -> str:
    """``argv`` as one shell line, with host folders replaced (``{'/tmp/xyz': 'run'}``)."""
    out = []
    for a in argv:
        for old, new in replacements.items():
            a = a.replace(old, new)
        out.append(a)
    return shlex.join(out)


# ---------------------------------------------------------------------- a running guest


class SerialLog:
    """The growing console file: lines so far, and which markers have appeared."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def raw(self) -> str:
        """The console as the guest wrote it (the kernel's serial console ends lines with CR LF)."""
        try:
            return self.path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def text(self) -> str:
        """The console with plain LF line ends (for matching)."""
        return self.raw().replace("\r\n", "\n").replace("\r", "")


@dataclass
class HostEvent:
    """A ``HOST:NAME`` block the host adds after ``@@READY n@@``."""

    ready: int
    name: str
    body: str


@dataclass
class GuestRun:
    """A QEMU process with its QMP client (``qemu.qmp.QMPClient``)."""

    argv: list[str]
    serial: SerialLog
    qmp_path: Path
    cmd_path: Path | None = None
    stderr_path: Path | None = None
    progress: Any = None  # Callable[[str], None]
    proc: asyncio.subprocess.Process | None = None
    qmp: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)
    host_blocks: list[HostEvent] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0
    _cmd: socket.socket | None = None
    _event_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from qemu.qmp import QMPClient

        self.t0 = time.monotonic()
        err = open(self.stderr_path, "wb") if self.stderr_path else asyncio.subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err)
        except FileNotFoundError:
            raise VmemmapError(f"{self.argv[0]} not found (apt-get install qemu-system-x86, "
                               "or run scripts/install-capture-deps.sh)") from None
        finally:
            if not isinstance(err, int):
                err.close()
        self.qmp = QMPClient("vmemmap-capture")
        deadline = time.monotonic() + 15
        while True:
            if self.proc.returncode is not None:
                await self._fail_early()
            try:
                await self.qmp.connect(str(self.qmp_path))
                break
            except Exception:  # noqa: BLE001 - socket not there yet
                if time.monotonic() > deadline:
                    await self._fail_early("QMP socket never answered")
                await asyncio.sleep(0.05)
        self._event_task = asyncio.create_task(self._collect_events())

    async def _fail_early(self, why: str = "") -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                if self.proc.returncode is None:
                    self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 5)
        err = ""
        if self.stderr_path is not None and self.stderr_path.exists():
            err = self.stderr_path.read_text(errors="replace")
        msg = (err.strip().splitlines() or [why or "exited"])[-1]
        raise VmemmapError(f"QEMU failed to start: {msg}")

    async def _collect_events(self) -> None:
        with contextlib.suppress(Exception):
            async for ev in self.qmp.events:
                self.events.append(dict(ev))

    async def wait_for(self, pattern: str, timeout: float, what: str) -> str:
        """Poll the console until ``pattern`` (a regex) appears; the text so far."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            text = self.serial.text()
            if rx.search(text):
                return text
            if self.progress is not None:
                blocks = re.findall(r"^@@BEGIN (\S+)@@$", text, re.M)
                where = f", block {blocks[-1]}" if blocks else ""
                self.progress(f"{what}{where} ({time.monotonic() - self.t0:.0f} s)")
            if self.proc is not None and self.proc.returncode is not None:
                raise VmemmapError(f"the guest stopped before {what} (exit {self.proc.returncode}); "
                                   f"last console line: {_last_line(text)}")
            if time.monotonic() > deadline:
                raise VmemmapError(f"timed out after {time.monotonic() - self.t0:.0f} s of QEMU waiting for {what}; "
                                   f"last console line: {_last_line(text)}")
            await asyncio.sleep(0.05)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, round(time.monotonic() - self.t0, 3))

    async def execute(self, ready: int, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """A QMP command, recorded as ``HOST:QMP cmd`` after ``@@READY ready@@``."""
        from qemu.qmp import ExecuteError

        try:
            res = await self.qmp.execute(cmd, args)
            body = json.dumps({"return": res}, indent=1)
        except ExecuteError as exc:
            res = None
            body = json.dumps({"error": {"class": exc.error_class, "desc": str(exc)}}, indent=1)
        self.host_blocks.append(HostEvent(ready, f"QMP {cmd}", body))
        return res

    async def hmp(self, ready: int, line: str) -> str:
        out = await self.qmp.execute("human-monitor-command", {"command-line": line})
        text = str(out)
        self.host_blocks.append(HostEvent(ready, f"HMP {line}", text))
        return text

    def send(self, line: str) -> None:
        """One command to the guest's init on ttyS1."""
        if self.cmd_path is None:
            raise VmemmapError("this guest has no command channel")
        if self._cmd is None:
            self._cmd = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._cmd.connect(str(self.cmd_path))
        self._cmd.sendall((line + "\n").encode())

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.stop()
        return self.proc.returncode if self.proc.returncode is not None else -1

    async def stop(self) -> None:
        """``quit`` over QMP, then kill if QEMU is still there."""
        if self.proc is None:
            return
        if self.proc.returncode is None and self.qmp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.qmp.execute("quit"), 5)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def close(self) -> None:
        if self._cmd is not None:
            with contextlib.suppress(OSError):
                self._cmd.close()
        if self.qmp is not None:
            with contextlib.suppress(Exception):
                await self.qmp.disconnect()
        if self._event_task is not None:
            self._event_task.cancel()
            with contextlib.suppress(BaseException):
                await self._event_task
        await self.stop()


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(console empty)"
