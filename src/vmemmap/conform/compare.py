"""``vmemmap conform``: boot the captured machine and compare every fact of a snapshot (DESIGN.md contract 8).

The machine is rebuilt from the capture itself (:func:`vmemmap.machine.capture.parse_capture_text`: e820,
SRAT, command line, the QEMU ``-cpu``) and booted in the era of the captured kernel (:func:`capture_era`:
the ``Linux version`` line, else the capture's ``# kernel:`` / ``# package:`` header; 6.1.x → ``6.1``,
6.12.x → ``6.12``, any other release → the nearest era, with a note) with the capture's settings:

* ``nokaslr`` on the command line: the published layout; otherwise KASLR with the bases the capture's
  KCORE block read (``page_offset_base``, ``vmalloc_base``, ``vmemmap_base``), taken as given;
* Debian's generic flavour (kernel release without ``-cloud``): ``CONFIG_PAGE_EXTENSION=y``, a 32-byte
  ``struct mem_section`` (128 per root);
* ``-cpu max``: LA57 (5-level paging) and GB pages, from the machine's CPU features.

Hot-plug captures are replayed step by step (:mod:`vmemmap.conform.replay`) and every snapshot is compared.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vmemmap.conform.capture import (
    Capture,
    dmesg_lines,
    load_capture,
    parse_initrd,
    parse_iomem_ram,
    parse_kcore,
)
from vmemmap.conform.facts import CATEGORIES, expected_facts, expected_structure, got_facts

_HEADER_RELEASE = {
    # "# kernel: flavour=cloud612 file=vmlinuz-6.12.117+deb12-cloud-amd64"
    "# kernel:": re.compile(r"vmlinuz-(\S+)"),
    # "# package: linux-image-6.1.0-56-cloud-amd64 6.1.192-2 (from ...)"
    "# package:": re.compile(r"linux-image-(\S+)"),
}


def capture_release(cap: Capture) -> tuple[str, str]:
    """The captured kernel's release and where it was read: ``uname -a`` / the ``Linux version`` line,
    else the capture tool's ``# kernel:`` or ``# package:`` header line (line 2)."""
    if cap.kernel != "unknown":
        return cap.kernel, "Linux version"
    for ln in cap.text.splitlines()[1:4]:
        for head, rx in _HEADER_RELEASE.items():
            if ln.startswith(head):
                m = rx.search(ln)
                if m:
                    return m.group(1), head.strip("# :") + " header"
    return "unknown", "nothing"


def capture_era(cap: Capture) -> tuple[str, list[str]]:
    """The era that models the captured kernel (:func:`vmemmap.eras.era_for_release`) and notes: one
    naming the nearest era when the release has no era of its own, one when the header line names a
    kernel of another era than the boot log."""
    from vmemmap.eras import era_for_release

    release, where = capture_release(cap)
    era, note = era_for_release(release)
    notes = [f"era {era}: {note} (release from the {where})"] if note else []
    for ln in cap.text.splitlines()[1:4]:
        for head, rx in _HEADER_RELEASE.items():
            m = rx.search(ln) if ln.startswith(head) else None
            if m and era_for_release(m.group(1))[0] != era:
                notes.append(f"the capture's '{head}' line names {m.group(1)}, another era than the "
                             f"{where} ({release}): era {era} used")
    return era, notes


def boot_options(cap: Capture, machine):  # noqa: ANN001, ANN201
    """The :class:`~vmemmap.kernel.BootOptions` the captured boot used."""
    from vmemmap.kernel import BootOptions

    bases = None
    if cap.kaslr:
        kc = parse_kcore(cap.first.block("KCORE")) if cap.first.block("KCORE") else {}
        try:
            bases = (kc["page_offset_base"], kc["vmalloc_base"], kc["vmemmap_base"])
        except KeyError:
            from vmemmap.errors import InputError

            raise InputError(f"{cap.path}: KASLR boot without page_offset_base/vmalloc_base/vmemmap_base "
                             f"in its KCORE block") from None
    return BootOptions(
        initrd=parse_initrd(dmesg_lines(cap)),
        la57=bool(machine.cpu.la57),
        kaslr_bases=bases,
        mem_section_size=32 if cap.generic_flavour else None,
    )


def online_type(cap: Capture, era: str | None = None) -> str:
    """How hot-added memory is onlined (``mhp_default_online_type``, mm/memory_hotplug.c):
    ``memhp_default_state=`` of the command line, else the era's default
    (``Era.memhp_default_online_type``: Debian 6.1 ``offline`` — CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE not
    set; Debian 6.12 ``online`` — MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO=y, ZONE_NORMAL through
    ``default_zone_for_pfn``)."""
    from vmemmap.eras import load_era
    from vmemmap.kernel import ONLINE_TYPES

    for arg in cap.cmdline.split():
        if arg.startswith("memhp_default_state=") and arg.split("=", 1)[1] in ONLINE_TYPES:
            return arg.split("=", 1)[1]
    return load_era(era or capture_era(cap)[0]).memhp_default_online_type


def boot_hot_adds(cap: Capture, machine) -> list[tuple[int, int, int]]:  # noqa: ANN001
    """Memory added while booting, before the first snapshot: top-level ``System RAM`` of the snapshot's
    /proc/iomem outside the firmware's e820 RAM (a pc-dimm present at boot, found by the ACPI memory
    device driver; a virtio-mem device's plugged blocks).  ``(start, end, nid)``, the node from the SRAT
    hot-pluggable range that holds it (node 0 without one)."""
    blk = cap.first.block("IOMEM")
    if blk is None:
        return []
    from vmemmap.machine.model import intersect_ranges, merge_ranges

    usable = machine.usable()
    out = []
    for s, e, _ in parse_iomem_ram(blk):
        covered = intersect_ranges([(s, e)], usable)
        rest = [(s, e)]
        if covered:
            rest = []
            cur = s
            for a, b in covered:
                if a > cur:
                    rest.append((cur, a))
                cur = b
            if cur < e:
                rest.append((cur, e))
        for a, b in merge_ranges(rest):
            if a < machine.max_phys:
                continue  # e820 trims below the end of RAM (the first page, the legacy area), not hot-add
            nid = next((n.nid for n in machine.nodes for hs, he in n.hotplug + n.ranges if hs <= a < he), 0)
            out.append((a, b, nid))
    return out


def boot_capture(cap: Capture, replay: bool = False):  # noqa: ANN201
    """Rebuild the captured machine and boot it as the capture did; returns the :class:`Kernel`
    (and the :class:`~vmemmap.conform.replay.Replay` driving its hot-plug steps when ``replay``).

    Memory devices on the QEMU command line are added while booting as their drivers do
    (:meth:`Replay.boot`: ACPI pc-dimms, virtio-mem plugging ``requested-size``); any other memory the
    snapshot's /proc/iomem shows above e820 RAM (:func:`boot_hot_adds`) goes through
    :func:`vmemmap.hotplug.add_memory` and is onlined as ``memhp_default_state`` says.
    """
    from vmemmap.conform.replay import Replay
    from vmemmap.hotplug import add_memory
    from vmemmap.kernel import boot
    from vmemmap.machine.capture import parse_capture_text

    machine = parse_capture_text(cap.text, cap.path, cap.name)
    era, _ = capture_era(cap)
    k = boot(machine, era, "vmemmap", boot_options(cap, machine))
    rp = Replay(cap, k)
    # the auto-online decision of add_memory (mhp_default_online_type): the command line, else the era's
    # default -- set before the devices present at boot are added
    online = online_type(cap, era)
    k.hotplug.default_online_type = online
    rp.boot()
    for s, e, nid in boot_hot_adds(cap, machine):
        if any(a < e and s < b for a, b in k.hotplug.resources):
            continue  # added by a device's driver above
        add_memory(k, s, e - s, nid, online)
        rp.notes.append(f"memory hot-added during boot: [mem {s:#x}-{e - 1:#x}] on node {nid}, "
                        f"{online} (memhp_default_state / the era's default; found in /proc/iomem only)")
    return (k, rp) if replay else k


def category(name: str) -> str:
    for c in sorted(CATEGORIES, key=len, reverse=True):
        if name == c or name.startswith((c + ".", c + "[")):
            return c
    return name.split(".")[0].split("[")[0]


def _compare(exp_facts: dict[str, Any], got: dict[str, Any], snapshot: int) -> list[dict[str, Any]]:
    return [{"name": name, "snapshot": snapshot, "ok": want == got.get(name), "expected": want,
             "got": got.get(name)} for name, want in exp_facts.items()]


def conform(path: str | Path) -> dict[str, Any]:
    """Compare every fact of every snapshot with the simulated kernel (contract 8 JSON).

    Snapshot 0 is compared with the boot (plus the devices present at boot); for a hot-plug capture each
    later snapshot is compared after replaying the host's and the guest's actions that precede it
    (:class:`vmemmap.conform.replay.Replay`), and every device-level step adds ``hotplug`` facts."""
    cap = load_capture(path)
    era, era_notes = capture_era(cap)
    k, rp = boot_capture(cap, replay=True)
    notes: list[str] = []
    facts: list[dict[str, Any]] = []
    done_steps = 0

    def step_facts() -> None:
        nonlocal done_steps
        for st in rp.steps[done_steps:]:
            if st.note:
                notes.append(f"snapshot {st.snapshot}: {st.note}")
            for name, (want, have) in st.facts.items():
                facts.append({"name": name, "snapshot": st.snapshot, "ok": want == have, "expected": want,
                              "got": have})
        done_steps = len(rp.steps)

    for snap in cap.snapshots:
        if snap.index:
            rp.apply(snap)
        step_facts()
        exp = expected_facts(cap, snap)
        if snap.index and not exp.facts:
            continue
        got = got_facts(k, exp)
        undone = expected_structure(exp, k)
        notes += exp.notes
        if undone:
            notes.append(f"snapshot {snap.index}: directmap: {undone} large page(s) split by set_memory_*() "
                         f"(mixed permissions) counted at the model's page size")
        facts += _compare(exp.facts, got, snap.index)
    notes = era_notes + rp.notes + notes
    if cap.kaslr:
        notes.append("KASLR boot: page_offset_base/vmalloc_base/vmemmap_base taken from the capture's KCORE")
    res = {
        "capture": cap.name,
        "kernel": capture_release(cap)[0],
        "era": era,
        "machine": k.machine.name,
        "notes": notes,
        "facts": facts,
        "agree": sum(1 for x in facts if x["ok"]),
        "total": len(facts),
    }
    res["snapshots"] = [{"snapshot": s, "agree": a, "total": t} for s, (a, t) in by_snapshot(res).items()]
    return res


def by_snapshot(res: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """``{snapshot: (agree, total)}`` for the snapshots that yielded facts, in capture order."""
    out: dict[int, list[int]] = {}
    for f in res["facts"]:
        c = out.setdefault(f["snapshot"], [0, 0])
        c[1] += 1
        c[0] += int(f["ok"])
    return {s: (a, t) for s, (a, t) in sorted(out.items())}


def by_category(res: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``{category: (agree, total)}`` in contract order."""
    out: dict[str, list[int]] = {c: [0, 0] for c in CATEGORIES}
    for f in res["facts"]:
        c = category(f["name"])
        out.setdefault(c, [0, 0])
        out[c][1] += 1
        out[c][0] += int(f["ok"])
    return {c: (a, t) for c, (a, t) in out.items() if t}
