"""Replay a hot-plug capture step by step on the simulated kernel (``vmemmap conform``, docs/conformance.md).

A hot-plug capture (shared/oracle/README.md) interleaves what the host did (``HOST:...`` blocks: QMP
``object-add``/``device_add``/``device_del``/``qom-set``, HMP ``info memory-devices``) with what the guest
did and printed (``ONLINE``: the init script writing an online type to every offline
``/sys/devices/system/memory/memoryN/state``) and snapshots of kernel state.  :class:`Replay` turns those
into calls on ``k.hotplug`` in capture order and records one :class:`HotStep` per device-level step:

* cold devices on the QEMU command line (``-device pc-dimm``, ``-device virtio-mem-pci``) are added
  while booting, before snapshot 0 (ACPI memory device scan; ``virtio_mem_probe`` plugging
  ``requested-size``);
* ``device_add`` of a ``pc-dimm`` → ACPI memory device add (``acpi_memory_device_add``) of the range HMP
  ``info memory-devices`` shows for it (address, size, node, slot);
* ``device_del`` → ACPI eject (offline the device's blocks, remove its memory);
* ``qom-set requested-size`` of a virtio-mem device → the driver's plug / unplug of whole memory blocks;
* ``ONLINE`` → every offline block, in the shell's glob order, onlined with the type the host asked for
  (the ``online TYPE`` command of the capture's ``# timings`` record).

The kernel log of a capture is read as one timeline: every ``DMESG`` and ``SH`` block of every snapshot,
lines deduplicated by timestamp and text (the init script prints overlapping windows of the log).
Each step's *expected* log lines are taken from that timeline after the previous step's lines: the
``PMD ->`` lines whose virtual range lies in the vmemmap of the step's physical range (for virtio-mem:
after the driver's ``requested size: SIZE`` line for the request), and an ACPI device's refusal lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vmemmap.conform.capture import Block, Capture, Snapshot
from vmemmap.errors import InputError

PAGE_SHIFT = 12
_TS = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
_PMD = re.compile(r"\[([0-9a-f]+)-([0-9a-f]+)\] PMD -> \[([0-9a-f]+)-([0-9a-f]+)\] on node (\d+)")
_SIZE = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _qemu_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kmgtb]?)", text.strip().lower())
    if not m:
        raise InputError(f"QEMU size {text!r} not understood")
    return int(m.group(1)) * _SIZE[m.group(2)]


def parse_memory_devices(blk: Block) -> dict[str, dict[str, Any]]:
    """HMP ``info memory-devices``: ``Memory device [dimm]: "hd1"`` then ``key: value`` lines."""
    out: dict[str, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None
    for ln in blk.lines:
        m = re.match(r'^Memory device \[([\w-]+)\]: "([^"]+)"', ln.strip())
        if m:
            cur = {"type": m.group(1)}
            out[m.group(2)] = cur
            continue
        m = re.match(r"^\s+([\w-]+): (.*)$", ln)
        if m and cur is not None:
            v = m.group(2).strip()
            cur[m.group(1)] = int(v, 0) if re.fullmatch(r"0x[0-9a-f]+|\d+", v) else v
    return out


def qemu_devices(cmd: str) -> list[dict[str, Any]]:
    """Memory devices on the QEMU command line: ``-device pc-dimm|virtio-mem-pci`` with their backend size."""
    words = cmd.split()
    backends: dict[str, int] = {}
    devs: list[dict[str, Any]] = []
    virtio = 0
    for i, w in enumerate(words[:-1]):
        arg = words[i + 1]
        props = dict(p.split("=", 1) for p in arg.split(",")[1:] if "=" in p)
        if w == "-object" and arg.startswith("memory-backend") and "id" in props and "size" in props:
            backends[props["id"]] = _qemu_size(props["size"])
        elif w == "-device":
            drv = arg.split(",")[0]
            if drv.startswith("virtio"):
                virtio += 1
            if drv == "pc-dimm" or drv.startswith("virtio-mem"):
                d: dict[str, Any] = {"id": props.get("id", drv), "driver": drv,
                                     "size": backends.get(props.get("memdev", ""), 0),
                                     "node": int(props["node"]) if "node" in props else None}
                if drv.startswith("virtio-mem"):
                    d["virtio"] = f"virtio{virtio - 1}"
                    d["requested"] = _qemu_size(props.get("requested-size", "0"))
                devs.append(d)
    return devs


def kernel_log(cap: Capture) -> list[tuple[float, str]]:
    """Every timestamped kernel line of every DMESG/SH block, deduplicated, in time order."""
    seen: set[tuple[float, str]] = set()
    out: list[tuple[float, str]] = []
    for snap in cap.snapshots:
        for blk in snap.blocks:
            if blk.name not in ("DMESG", "SH"):
                continue
            for ln in blk.lines:
                m = _TS.match(ln.strip())
                if not m:
                    continue
                key = (float(m.group(1)), m.group(2).strip())
                if key not in seen:
                    seen.add(key)
                    out.append(key)
    out.sort(key=lambda x: x[0])
    return out


def online_commands(cap: Capture) -> list[str]:
    """The online types the host asked the guest for, in order (``online TYPE`` in ``# timings``)."""
    import json

    for ln in reversed(cap.text.splitlines()):
        if ln.startswith("# timings:"):
            try:
                d = json.loads(ln[len("# timings:"):])
            except ValueError:
                return []
            return [c[0].split(None, 1)[1] for c in d.get("cmd_times", [])
                    if isinstance(c, list) and c and str(c[0]).startswith("online ")]
    return []


def pmd_ranges(lines: list[str]) -> list[list[Any]]:
    """``PMD ->`` lines as virtual ranges with their node, adjacent ranges of one node merged
    (``[vstart, vend)`` hex strings, node): the physical side is not compared (docs/conformance.md)."""
    runs: list[list[Any]] = []
    for ln in lines:
        m = _PMD.search(ln)
        if not m:
            continue
        vs, ve, nid = int(m.group(1), 16), int(m.group(2), 16) + 1, int(m.group(5))
        if runs and runs[-1][1] == vs and runs[-1][2] == nid:
            runs[-1][1] = ve
        else:
            runs.append([vs, ve, nid])
    return [[f"{a:#x}", f"{b:#x}", n] for a, b, n in runs]


@dataclass
class HotStep:
    """One device-level step: its label, the snapshot it belongs to, and the facts it yields."""

    label: str
    snapshot: int
    facts: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (expected, got)
    note: str = ""


class Replay:
    """Drive ``k.hotplug`` through a capture's steps."""

    def __init__(self, cap: Capture, k) -> None:  # noqa: ANN001
        self.cap, self.k, self.hp = cap, k, k.hotplug
        self.log = kernel_log(cap)
        self.pos = -1  # index in self.log of the last line a step consumed
        self.info: dict[str, dict[str, Any]] = {}
        for snap in cap.snapshots:
            for blk in snap.blocks:
                if blk.name == "HOST:HMP info memory-devices":
                    for dev_id, d in parse_memory_devices(blk).items():
                        self.info.setdefault(dev_id, d)
        self.cmd_devices = qemu_devices(cap.cmd)
        self.dimms: dict[str, dict[str, Any]] = {}  # QEMU id -> {acpi, addr, size, node}
        self.online_types = online_commands(cap)
        self.onlines = 0
        self.notes: list[str] = []
        self.steps: list[HotStep] = []

    # ------------------------------------------------------------------ helpers
    def _vmemmap(self, start: int, end: int) -> tuple[int, int]:
        sp = self.k.era.struct_page_size
        base = self.k.layout.vmemmap_base
        return base + (start >> PAGE_SHIFT) * sp, base + (end >> PAGE_SHIFT) * sp

    def _take(self, pred, lo: int | None = None, hi: int | None = None) -> list[str]:  # noqa: ANN001
        """Timeline lines after the cursor (and inside ``[lo, hi)`` indices) matching ``pred``; moves the cursor."""
        lo = self.pos + 1 if lo is None else lo
        hi = len(self.log) if hi is None else hi
        idx = [i for i in range(lo, hi) if pred(self.log[i][1])]
        if idx:
            self.pos = max(self.pos, idx[-1])
        return [self.log[i][1] for i in idx]

    def _pmd_in(self, ranges: list[tuple[int, int]]):  # noqa: ANN202
        vr = [self._vmemmap(s, s + n) for s, n in ranges]

        def pred(text: str) -> bool:
            m = _PMD.search(text)
            return bool(m) and any(a <= int(m.group(1), 16) < b for a, b in vr)
        return pred

    def _free_slot(self) -> int:
        used = {d["slot"] for d in self.dimms.values()}
        return next(i for i in range(256) if i not in used)

    def _dimm_place(self, dev_id: str, size: int | None) -> dict[str, Any] | None:
        """Address, size, node and slot of a pc-dimm: HMP ``info memory-devices``; without it, QEMU's
        first free address in the device-memory region (the SRAT hot-pluggable range)."""
        info = self.info.get(dev_id)
        if info is not None and "addr" in info:
            return {"addr": info["addr"], "size": info.get("size", size), "node": info.get("node"),
                    "slot": info.get("slot", self._free_slot())}
        hot = [r for n in self.k.machine.nodes for r in n.hotplug]
        if not hot or not size:
            return None
        addr = min(s for s, _ in hot)
        for d in self.dimms.values():
            addr = max(addr, d["addr"] + d["size"])
        self.notes.append(f"{dev_id}: no HMP info memory-devices for it: placed at QEMU's first free device-memory "
                          f"address {addr:#x}, size {size:#x}")
        return {"addr": addr, "size": size, "node": None, "slot": self._free_slot()}

    def _offlined_size(self) -> int | None:
        """Size of a DIMM the host added without saying how big: the first run of ``Offlined Pages N``
        lines after the cursor (its removal), in bytes."""
        total, started = 0, False
        for _, text in self.log[self.pos + 1:]:
            m = re.match(r"Offlined Pages (\d+)", text)
            if m:
                total += int(m.group(1)) << PAGE_SHIFT
                started = True
            elif started and "PMD ->" in text:
                break
        return total or None

    # ------------------------------------------------------------------ steps
    def acpi_add(self, dev_id: str, snapshot: int, size: int | None = None) -> None:
        place = self._dimm_place(dev_id, size)
        if place is None:
            size = self._offlined_size()
            if size:
                self.notes.append(f"{dev_id}: size {size:#x} taken from the kernel's 'Offlined Pages' at its removal "
                                  f"(the capture records no size)")
                place = self._dimm_place(dev_id, size)
        if place is None:
            self.notes.append(f"{dev_id}: address and size unknown: device_add not replayed")
            return
        name = f"PNP0C80:{place['slot']:02x}"
        start, length = place["addr"], place["size"]
        self.dimms[dev_id] = {**place, "acpi": name}
        r = self.hp.acpi_memory_device_add(name, [(start, length)], place["node"])
        label = f"{dev_id} add"
        step = HotStep(label, snapshot)
        exp_pmd = self._take(self._pmd_in([(start, length)]))
        step.facts[f"hotplug[{label}].pmd"] = (pmd_ranges(exp_pmd), pmd_ranges(r.messages))
        pats = (f"acpi {name}: ", f"unaligned hotplug range: start {start:#x}",
                f"Unable to reserve System RAM region: {start:016x}", f"Hotplug memory [{start:#x}-")

        def refusal(text: str) -> bool:
            return any(p in text for p in pats) and "PMD ->" not in text
        exp_ref = self._take(refusal)
        step.facts[f"hotplug[{label}].refusal"] = (exp_ref, [m for m in r.messages if refusal(m)])
        step.note = (f"{dev_id}: ACPI memory device {name} [mem {start:#x}-{start + length - 1:#x}]: "
                     + ("added" if r.ok else f"refused ({r.error})"))
        self.steps.append(step)

    def acpi_eject(self, dev_id: str, snapshot: int) -> None:
        d = self.dimms.pop(dev_id, None)
        if d is None:
            self.notes.append(f"device_del {dev_id}: not a memory device the replay added")
            return
        r = self.hp.acpi_memory_device_eject(d["acpi"])
        self.steps.append(HotStep(f"{dev_id} del", snapshot, note=f"{dev_id}: ACPI eject of {d['acpi']}: "
                                  + ("offlined and removed" if r.ok else f"failed ({r.error})")))

    def virtio_add(self, dev: dict[str, Any]) -> None:
        info = self.info.get(dev["id"], {})
        addr = info.get("memaddr")
        if addr is None:
            hot = [r for n in self.k.machine.nodes for r in n.hotplug]
            addr = min(s for s, _ in hot) if hot else None
        if addr is None:
            self.notes.append(f"{dev['id']}: virtio-mem region unknown: not replayed")
            return
        node = info.get("node", dev["node"])
        nid = node if node is not None else self.hp.memory_add_physaddr_to_nid(addr)
        self.hp.virtio_mem_add_device(dev["virtio"], addr, dev["size"], nid, info.get("block-size", 2 << 20))
        dev["addr"] = addr

    def virtio_resize(self, dev: dict[str, Any], requested: int, snapshot: int) -> None:
        name = dev["virtio"]
        if name not in self.hp.virtio_mem:
            return
        r = self.hp.virtio_mem_resize(name, requested)
        label = f"{dev['id']} requested-size {requested:#x}"
        step = HotStep(label, snapshot, note=f"{dev['id']} ({name}): requested size {requested:#x}")
        marker = f"virtio_mem {name}: requested size: {requested:#x}"
        lo = next((i for i in range(self.pos + 1, len(self.log)) if self.log[i][1] == marker), None)
        hi = None
        if lo is not None:
            hi = next((i for i in range(lo + 1, len(self.log))
                       if self.log[i][1].startswith(f"virtio_mem {name}: requested size:")), len(self.log))
        pred = self._pmd_in([(dev["addr"], dev["size"])])
        exp = self._take(pred, lo, hi) if lo is not None else []
        if lo is not None:
            self.pos = max(self.pos, lo)
        step.facts[f"hotplug[{label}].pmd"] = (pmd_ranges(exp), pmd_ranges(r.messages))
        self.steps.append(step)

    def online_all(self, blk: Block, snapshot: int) -> None:
        """The init script's ``online_blocks``: every offline block, glob order, ``echo TYPE > state``."""
        if self.onlines < len(self.online_types):
            kind = self.online_types[self.onlines]
        else:
            kind = "online_movable"
            self.notes.append("ONLINE step without an 'online TYPE' command in the capture's timings: "
                              "online_movable assumed")
        self.onlines += 1
        failed = []
        for name in sorted(b.name for b in self.hp.blocks.values()):
            if self.hp.blocks[int(name[6:])].state == "offline":
                r = self.hp.online(name, kind)
                if not r.ok:
                    failed.append(f"failed {name}")
        label = f"online {kind} #{self.onlines}"
        step = HotStep(label, snapshot, note=f"guest: {kind} written to every offline block")
        step.facts[f"hotplug[{label}].failed"] = ([ln.strip() for ln in blk.lines if ln.startswith("failed ")],
                                                   failed)
        self.steps.append(step)

    # ------------------------------------------------------------------ drivers
    def boot(self) -> None:
        """Memory devices present at boot: ACPI DIMMs in slot order, then virtio-mem devices plugging
        their ``requested-size`` (``virtio_mem_probe``)."""
        for dev in self.cmd_devices:
            if dev["driver"] == "pc-dimm":
                self.acpi_add(dev["id"], 0, dev["size"])
        for dev in self.cmd_devices:
            if dev["driver"].startswith("virtio-mem"):
                self.virtio_add(dev)
                if dev.get("addr") is not None and dev["requested"]:
                    self.virtio_resize(dev, dev["requested"], 0)

    def apply(self, snap: Snapshot) -> None:
        """The host's and the guest's actions of one snapshot, in capture order."""
        blocks = snap.blocks
        for i, blk in enumerate(blocks):
            if blk.name.startswith("HOST:QMP ") and '"error"' in " ".join(blk.lines):
                self.notes.append(f"snapshot {snap.index}: {blk.name[5:]} failed on the host: nothing to replay")
                continue
            if blk.name == "HOST:QMP device_add":
                nxt = next((b for b in blocks[i + 1:] if b.name == "HOST:HMP info memory-devices"), None)
                new = [d for d, v in (parse_memory_devices(nxt).items() if nxt else [])
                       if d not in self.dimms and v.get("type") == "dimm"]
                if nxt is None or not new:
                    known = {d for d in self.dimms} | {d["id"] for d in self.cmd_devices}
                    new = [f"hd{j}" for j in range(1, 64) if f"hd{j}" not in known][:1]
                    self.notes.append(f"snapshot {snap.index}: device_add without HMP info memory-devices: "
                                      f"device {new[0]} assumed (the capture tool's naming)")
                for dev_id in new:
                    self.acpi_add(dev_id, snap.index)
            elif blk.name == "HOST:QMP device_del":
                body = " ".join(blk.lines)
                m = re.search(r'"id":\s*"([^"]+)"', body)
                ids = [m.group(1)] if m else list(self.dimms)[-1:]
                for dev_id in ids:
                    self.acpi_eject(dev_id, snap.index)
            elif blk.name == "HOST:QMP qom-set":
                nxt = next((b for b in blocks[i + 1:] if b.name == "HOST:HMP info memory-devices"), None)
                info = parse_memory_devices(nxt) if nxt else {}
                for dev in self.cmd_devices:
                    if dev["driver"].startswith("virtio-mem") and "requested-size" in info.get(dev["id"], {}):
                        self.virtio_resize(dev, info[dev["id"]]["requested-size"], snap.index)
            elif blk.name == "ONLINE":
                self.online_all(blk, snap.index)


__all__ = ["Replay", "HotStep", "kernel_log", "online_commands", "parse_memory_devices", "pmd_ranges",
           "qemu_devices"]
