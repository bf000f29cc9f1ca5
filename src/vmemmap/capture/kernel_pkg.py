"""Debian's real kernel for a capture: resolve the package at run time, download it, extract ``vmlinuz``.

Nothing is hard-coded but the metapackage of each series: ``apt-cache depends`` on the metapackage names
the versioned image package of the day (``linux-image-cloud-amd64`` -> ``linux-image-6.1.0-NN-cloud-amd64``),
``apt-cache policy`` gives its candidate version, ``apt-get download`` fetches the ``.deb`` into the cache
and ``dpkg-deb -x`` unpacks it there.  The host's ``/boot`` is never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmemmap.errors import InputError, VmemmapError

#: kernel series -> Debian metapackage (bookworm: 6.1 is the release kernel, 6.12 the cloud kernel of
#: bookworm-security's ``linux-6.12`` source, ``6.12.NN+deb12``; both found with ``apt-cache search``)
METAPACKAGES: dict[str, str] = {
    "6.1": "linux-image-cloud-amd64",
    "6.12": "linux-image-6.12-cloud-amd64",
}

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd, check=False)
    except FileNotFoundError:
        raise VmemmapError(f"{argv[0]} not found: kernel packages are fetched with Debian's apt tools") from None


@dataclass(frozen=True)
class KernelPackage:
    series: str           # '6.1' or '6.12'
    metapackage: str      # linux-image-cloud-amd64
    package: str          # linux-image-6.1.0-56-cloud-amd64
    version: str          # 6.1.192-2
    deb: Path
    vmlinuz: Path
    config: Path | None   # boot/config-* from the package

    @property
    def page_extension(self) -> bool:
        """``CONFIG_PAGE_EXTENSION=y``: ``struct mem_section`` is 32 bytes, not 16 (include/linux/mmzone.h)."""
        if self.config is None or not self.config.is_file():
            return "-cloud" not in self.package
        return re.search(r"^CONFIG_PAGE_EXTENSION=y$", self.config.read_text(errors="replace"), re.M) is not None

    @property
    def mem_section_size(self) -> int:
        return 32 if self.page_extension else 16


def cache_dir() -> Path:
    """``$VMEMMAP_CACHE``, else ``$XDG_CACHE_HOME/vmemmap``, else ``~/.cache/vmemmap``."""
    if os.environ.get("VMEMMAP_CACHE"):
        return Path(os.environ["VMEMMAP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmemmap"


def metapackage_for(series: str) -> str:
    try:
        return METAPACKAGES[series]
    except KeyError:
        raise InputError(f"unknown kernel series {series!r} (choose from {', '.join(METAPACKAGES)})") from None


def parse_depends(text: str, metapackage: str) -> str:
    """The versioned ``linux-image-*`` package an ``apt-cache depends METAPACKAGE`` output names.

    Virtual packages (``<...>``), ``-dbg`` and ``-unsigned`` variants are skipped; the first real image wins.
    """
    for ln in text.splitlines():
        m = re.match(r"^\s*\|?(?:Pre)?Depends:\s+(\S+)", ln)
        if not m:
            continue
        name = m.group(1)
        if name.startswith("<") or not name.startswith("linux-image-") or name == metapackage:
            continue
        if name.endswith(("-dbg", "-unsigned")):
            continue
        return name
    raise VmemmapError(f"apt-cache depends {metapackage} names no linux-image package")


def parse_candidate(text: str) -> str | None:
    """The ``Candidate:`` version of an ``apt-cache policy PACKAGE`` output (``None`` when there is none)."""
    m = re.search(r"^\s*Candidate:\s*(\S+)", text, re.M)
    if not m or m.group(1) == "(none)":
        return None
    return m.group(1)


def resolve(series: str, run: Runner = _run) -> tuple[str, str, str]:
    """``(metapackage, package, version)`` for a kernel series, asking apt (no download)."""
    meta = metapackage_for(series)
    dep = run(["apt-cache", "depends", meta])
    if dep.returncode != 0 or "Depends:" not in dep.stdout:
        raise VmemmapError(
            f"kernel {series}: apt does not know {meta} (run 'apt-get update', or scripts/install-capture-deps.sh)")
    pkg = parse_depends(dep.stdout, meta)
    pol = run(["apt-cache", "policy", pkg])
    version = parse_candidate(pol.stdout) if pol.returncode == 0 else None
    if version is None:
        raise VmemmapError(f"kernel {series}: {pkg} (from {meta}) has no installable version in apt's lists")
    return meta, pkg, version


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field]).stdout.strip()


def fetch(series: str, cache: Path | None = None, progress: Callable[[str], None] = lambda s: None,
          run: Runner = _run) -> KernelPackage:
    """Resolve, download (once: the cache keeps the ``.deb``) and extract the kernel of ``series``."""
    root = (cache or cache_dir()) / "kernels"
    progress(f"resolving the Debian {series} cloud kernel with apt-cache")
    meta, pkg, version = resolve(series, run)
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = next((d for d in sorted(debs.glob(f"{pkg}_*.deb")) if _deb_field(d, "Version") == version), None)
    if deb is None:
        progress(f"apt-get download {pkg} ({version})")
        proc = _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{pkg}={version}"], cwd=debs)
        deb = next((d for d in sorted(debs.glob(f"{pkg}_*.deb")) if _deb_field(d, "Version") == version), None)
        if proc.returncode != 0 or deb is None:
            why = (proc.stderr.strip().splitlines() or ["no .deb appeared"])[-1]
            raise VmemmapError(f"kernel {series}: apt-get download {pkg}={version} failed: {why}")
    tree = root / f"{pkg}_{version}"
    vmlinuz = next(iter(sorted((tree / "boot").glob("vmlinuz-*"))), None) if tree.is_dir() else None
    if vmlinuz is None:
        progress(f"dpkg-deb -x {deb.name}")
        tmp = root / f".{pkg}_{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        proc = _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        if proc.returncode != 0:
            raise VmemmapError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-200:]}")
        shutil.rmtree(tree, ignore_errors=True)
        tmp.rename(tree)
        vmlinuz = next(iter(sorted((tree / "boot").glob("vmlinuz-*"))), None)
        if vmlinuz is None:
            raise VmemmapError(f"{deb.name} holds no boot/vmlinuz-*")
    config = next(iter(sorted((tree / "boot").glob("config-*"))), None)
    return KernelPackage(series, meta, pkg, version, deb, vmlinuz, config)
