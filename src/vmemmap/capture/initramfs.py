"""The guest's initramfs: a static busybox, the ``kcoredump`` helper and a shell ``/init`` printing the blocks.

The archive is written here in the kernel's ``newc`` cpio format (Documentation/driver-api/early-userspace/
buffer-format.rst: ``070701`` headers of thirteen 8-digit hex fields, name and data padded to 4 bytes,
``TRAILER!!!`` last), gzip-compressed -- no ``cpio`` binary needed.

``/init`` (busybox ``sh``) mounts proc, sysfs, devtmpfs and debugfs, quiets the console (so that kernel
messages do not land inside a block; they stay in the ring buffer and come out in DMESG), prints the
blocks of the shared capture format (``shared/oracle/README.md``) and ``@@ORACLE_DONE@@``, and powers off.
In interactive mode (hot-plug captures) it prints ``@@READY n@@`` and reads one command per step from
the second serial port ``/dev/ttyS1``, which the host drives (see :mod:`vmemmap.capture.runner`).
"""

from __future__ import annotations

import gzip
import io
import stat
from dataclasses import dataclass
from pathlib import Path

from vmemmap.errors import VmemmapError

#: Symbols whose ``/proc/kallsyms`` lines the KALLSYMS block shows (as in the shared captures).
KALLSYMS = (
    "_stext", "_text", "vmemmap_populate", "vmemmap_base", "vmalloc_base", "page_offset_base", "ptrs_per_p4d",
    "pgdir_shift", "__pgtable_l5_enabled", "memmap_on_memory", "init_top_pgt", "level4_kernel_pgt", "phys_base",
    "node_data", "memory_block_size_probed", "max_possible_pfn", "max_pfn", "max_low_pfn", "mem_section", "_end",
)

INIT_SCRIPT = r"""#!/bin/busybox sh
# vmemmap capture /init: print what the kernel exposes between @@BEGIN NAME@@ / @@END NAME@@ markers.
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
MODE=boot
SECTION_SIZE=16
DUMP=0
[ -f /etc/capture.env ] && . /etc/capture.env
# keep kernel messages off the console while blocks print (they stay in dmesg)
echo N > /sys/module/printk/parameters/ignore_loglevel 2>/dev/null
echo 1 > /proc/sys/kernel/printk 2>/dev/null

b() { echo "@@BEGIN $1@@"; }
e() { echo "@@END $1@@"; }
rd() { v=; read -r v < "$1" 2>/dev/null; echo "$v"; }

cmdline_blk() { b CMDLINE; cat /proc/cmdline; uname -a; e CMDLINE; }
dmesg_blk() { b DMESG; dmesg $1; e DMESG; }
file_blk() { b $1; cat $2 2>&1; e $1; }

firmware_memmap() {
    b FIRMWARE_MEMMAP
    for n in $(ls /sys/firmware/memmap 2>/dev/null | sort -n); do
        d=/sys/firmware/memmap/$n
        echo "$n $(rd $d/start) $(rd $d/end) $(rd $d/type)"
    done
    e FIRMWARE_MEMMAP
}

memory_blocks() {
    b MEMORY_BLOCKS
    m=/sys/devices/system/memory
    echo "block_size_bytes $(rd $m/block_size_bytes)"
    echo "auto_online_blocks $(rd $m/auto_online_blocks)"
    for p in /sys/module/memory_hotplug/parameters/*; do
        [ -f "$p" ] && echo "param ${p##*/} $(rd $p)"
    done
    for n in $(ls -d $m/memory[0-9]* 2>/dev/null | sed 's,.*/memory,,' | sort -n); do
        d=$m/memory$n
        node=
        for x in $d/node[0-9]*; do [ -e "$x" ] && node=${x##*/}; done
        echo "memory$n phys_index=$(rd $d/phys_index) state=$(rd $d/state) online=$(rd $d/online) removable=$(rd $d/removable) phys_device=$(rd $d/phys_device) valid_zones=$(rd $d/valid_zones) node=$node"
    done
    e MEMORY_BLOCKS
}

nodes() {
    b NODES
    s=/sys/devices/system/node
    for k in possible online has_memory has_normal_memory has_cpu; do
        [ -f $s/$k ] && echo "$k $(rd $s/$k)"
    done
    for n in $(ls -d $s/node[0-9]* 2>/dev/null | sed 's,.*/node,,' | sort -n); do
        blocks=$(ls -d $s/node$n/memory[0-9]* 2>/dev/null | sed 's,.*/memory,,' | sort -n | tr '\n' ' ')
        echo "--- node$n cpulist=$(cat $s/node$n/cpulist) blocks=$blocks"
        cat $s/node$n/meminfo
    done
    e NODES
}

kallsyms() {
    b KALLSYMS
    grep -E ' (@KALLSYMS@)$' /proc/kallsyms | sort
    e KALLSYMS
}

kernel_memory() {
    kallsyms
    b KCORE; /bin/kcoredump kcore 2>&1; e KCORE
    b MEMSECTIONS; /bin/kcoredump sections $SECTION_SIZE 2>&1; e MEMSECTIONS
    b PTWALK_VMEMMAP; /bin/kcoredump ptwalk vmemmap 2>&1; e PTWALK_VMEMMAP
    b PTWALK_DIRECTMAP; /bin/kcoredump ptwalk directmap 2>&1; e PTWALK_DIRECTMAP
}

debugfs() {
    b DEBUGFS
    ls -C /sys/kernel/debug 2>&1
    ls /sys/kernel/debug/page_tables 2>&1
    ls /sys/kernel/debug/memblock 2>&1
    e DEBUGFS
}

dump() {
    cmdline_blk
    dmesg_blk "$1"
    file_blk IOMEM /proc/iomem
    firmware_memmap
    file_blk MEMINFO /proc/meminfo
    file_blk ZONEINFO /proc/zoneinfo
    file_blk BUDDYINFO /proc/buddyinfo
    file_blk PAGETYPEINFO /proc/pagetypeinfo
    memory_blocks
    nodes
    kernel_memory
    debugfs
}

online_blocks() {
    b ONLINE
    for d in /sys/devices/system/memory/memory[0-9]*; do
        [ "$(rd $d/state)" = offline ] && { echo "$1" > $d/state || echo "failed ${d##*/}"; }
    done
    echo done
    e ONLINE
}

dump
if [ "$MODE" = interactive ]; then
    dmesg -c > /dev/null
    stty -F /dev/ttyS1 -echo 2>/dev/null
    exec 3< /dev/ttyS1
    step=0
    while :; do
        echo "@@READY $step@@"
        step=$((step + 1))
        read -r cmd arg <&3 || break
        case "$cmd" in
            dmesgc) dmesg_blk -c ;;
            blocks) memory_blocks; nodes ;;
            syms) kernel_memory ;;
            online) online_blocks "$arg" ;;
            dump) dump -c ;;
            quit) break ;;
            *) b ERROR; echo "unknown command $cmd"; e ERROR ;;
        esac
    done
fi
echo "@@ORACLE_DONE@@"
echo 4 > /proc/sys/kernel/printk 2>/dev/null
if [ "$DUMP" = 1 ]; then
    # the host stops the VM and takes dump-guest-memory, then quits QEMU
    echo "@@DUMP_READY@@"
    sleep 3600
fi
poweroff -f
""".replace("@KALLSYMS@", "|".join(KALLSYMS))


@dataclass(frozen=True)
class CpioEntry:
    name: str  # path inside the archive, no leading '/'
    mode: int  # full st_mode (type and permission bits)
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def newc_archive(entries: list[CpioEntry]) -> bytes:
    """A ``newc`` (``070701``) cpio archive of ``entries`` followed by ``TRAILER!!!``."""
    out = io.BytesIO()
    for ino, ent in enumerate([*entries, CpioEntry("TRAILER!!!", 0)], start=1):
        name = ent.name.encode() + b"\0"
        trailer = ent.name == "TRAILER!!!"
        nlink = 2 if stat.S_ISDIR(ent.mode) else 1
        # c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize c_devmajor c_devminor c_rdevmajor c_rdevminor
        # c_namesize c_check
        fields = (0 if trailer else ino, ent.mode, 0, 0, nlink, 0, len(ent.data), 0, 0, ent.rdev[0], ent.rdev[1],
                  len(name), 0)
        head = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
        out.write(head + name + _pad4(len(head) + len(name)))
        out.write(ent.data + _pad4(len(ent.data)))
    return out.getvalue()


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """Parse a ``newc`` archive (for tests and checks): name -> (mode, data)."""
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"bad cpio magic at offset {pos}")
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def build_initramfs(out: Path, busybox: Path, helper: Path | None, env: dict[str, str]) -> Path:
    """Write the gzip'd initramfs to ``out``: ``/init``, ``/bin/busybox``, ``/bin/kcoredump``, ``/etc/capture.env``.

    ``env`` becomes ``/etc/capture.env`` (``MODE=boot|interactive``, ``SECTION_SIZE=16|32``).
    """
    if not busybox.is_file():
        raise VmemmapError(f"{busybox} not found: the guest needs a static busybox "
                           "(apt-get install busybox-static, or run scripts/install-capture-deps.sh)")
    dirs = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp"]
    entries = [CpioEntry(d, stat.S_IFDIR | 0o755) for d in dirs]
    # /dev/console (char 5:1): the kernel opens it for /init's stdin/stdout before devtmpfs is mounted
    entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(CpioEntry("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode()))
    entries.append(CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    entries.append(CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    if helper is not None:
        entries.append(CpioEntry("bin/kcoredump", stat.S_IFREG | 0o755, helper.read_bytes()))
    text = "".join(f"{k}={v}\n" for k, v in sorted(env.items()))
    entries.append(CpioEntry("etc/capture.env", stat.S_IFREG | 0o644, text.encode()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(newc_archive(entries), compresslevel=6))
    return out
