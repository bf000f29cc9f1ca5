"""Generate tests/data/host-*/ fixture trees (run once; the trees are committed data)."""
import os, shutil
from pathlib import Path

D = Path(__file__).resolve().parent
BS = 0x8000000

def w(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)

def zone_block(nid, name, start, spanned, present, managed):
    s = f"Node {nid}, zone {name:>8}\n  pages free     {managed // 2}\n        min      100\n        spanned  {spanned}\n        present  {present}\n        managed  {managed}\n        cma      0\n        protection: (0, 0, 0, 0, 0)\n"
    if spanned:
        s += f"  pagesets\n    cpu: 0\n              count: 10\n  node_unreclaimable:  0\n  start_pfn:           {start}\n"
    return s

def common(root, release, flags, host, zones):
    w(root, "proc/cpuinfo", f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    w(root, "proc/cmdline", "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro console=ttyS0\n")
    w(root, "proc/sys/kernel/hostname", host + "\n")
    w(root, "proc/sys/kernel/osrelease", release + "\n")
    w(root, "proc/zoneinfo", "".join(zone_block(*z) for z in zones))

def blocks(root, present, offline=(), nodes=None, cpus=None):
    w(root, "sys/devices/system/memory/block_size_bytes", f"{BS:x}\n")
    w(root, "sys/devices/system/memory/auto_online_blocks", "offline\n")
    for b in present:
        st = "offline" if b in offline else "online"
        w(root, f"sys/devices/system/memory/memory{b}/state", st + "\n")
        w(root, f"sys/devices/system/memory/memory{b}/online", ("0" if b in offline else "1") + "\n")
        w(root, f"sys/devices/system/memory/memory{b}/phys_index", f"{b:08x}\n")
    nodes = nodes or {0: present}
    for nid, bl in nodes.items():
        nd = root / f"sys/devices/system/node/node{nid}"
        nd.mkdir(parents=True, exist_ok=True)
        w(root, f"sys/devices/system/node/node{nid}/cpulist", (cpus or {0: "0-1"})[nid] + "\n")
        for b in bl:
            os.symlink(f"../../memory/memory{b}", nd / f"memory{b}")

def memmap(root, entries):
    for i, (s, e, t) in enumerate(entries):
        w(root, f"sys/firmware/memmap/{i}/start", f"{s:#x}\n")
        w(root, f"sys/firmware/memmap/{i}/end", f"{e - 1:#x}\n")
        w(root, f"sys/firmware/memmap/{i}/type", t + "\n")

# ---- host-root: root on a Debian 12 (6.1) 2 GiB QEMU guest: /proc/iomem readable
r = D / "host-root"; shutil.rmtree(r, ignore_errors=True)
common(r, "6.1.0-56-cloud-amd64", "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall nx lm rep_good nopl cpuid pni hypervisor", "guest61",
       [(0, "DMA", 1, 4095, 3998, 3840), (0, "DMA32", 4096, 520160, 520160, 503476), (0, "Normal", 0, 0, 0, 0),
        (0, "Movable", 0, 0, 0, 0), (0, "Device", 0, 0, 0, 0)])
w(r, "proc/iomem", """00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000c0000-000c99ff : Video ROM
000ca000-000cadff : Adapter ROM
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  01000000-01e00e26 : Kernel code
  02000000-0259dfff : Kernel rodata
  02600000-02762eff : Kernel data
  02c2c000-02ffffff : Kernel bss
7ffe0000-7fffffff : Reserved
80000000-afffffff : PCI Bus 0000:00
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
  b0000000-bfffffff : Reserved
c0000000-febfffff : PCI Bus 0000:00
fec00000-fec003ff : IOAPIC 0
fed00000-fed003ff : HPET 0
fee00000-fee00fff : Local APIC
fffc0000-ffffffff : Reserved
""")
memmap(r, [(0, 0x9FC00, "System RAM"), (0x9FC00, 0xA0000, "Reserved"), (0xF0000, 0x100000, "Reserved"),
           (0x100000, 0x7FFE0000, "System RAM"), (0x7FFE0000, 0x80000000, "Reserved"),
           (0xB0000000, 0xC0000000, "Reserved"), (0xFFFC0000, 0x100000000, "Reserved")])
blocks(r, list(range(16)))

# ---- host-nonroot: a user on a 6.6 host: /proc/iomem zeroed, firmware memmap readable, 2 blocks offline
r = D / "host-nonroot"; shutil.rmtree(r, ignore_errors=True)
common(r, "6.6.13+bpo-amd64", "fpu pse pae nx pdpe1gb lm constant_tsc hypervisor", "laptop",
       [(0, "DMA", 1, 4095, 3998, 3840), (0, "DMA32", 4096, 1044480, 782304, 760000),
        (0, "Normal", 1048576, 262144, 262144, 250000), (0, "Movable", 0, 0, 0, 0), (0, "Device", 0, 0, 0, 0)])
w(r, "proc/iomem", "".join(f"00000000-00000000 : {n}\n" for n in
   ("Reserved", "System RAM", "Reserved", "PCI Bus 0000:00", "System RAM", "  Kernel code", "Reserved", "System RAM")))
memmap(r, [(0, 0x9FC00, "System RAM"), (0x9FC00, 0xA0000, "Reserved"), (0xF0000, 0x100000, "Reserved"),
           (0x100000, 0xBFFE0000, "System RAM"), (0xBFFE0000, 0xC0000000, "Reserved"),
           (0xFFFC0000, 0x100000000, "Reserved"), (0x100000000, 0x140000000, "System RAM")])
blocks(r, list(range(24)) + list(range(32, 40)), offline=(38, 39))

# ---- host-numa: a 2-node 5.10 server seen from a container: no /proc/iomem, no /sys/firmware/memmap
r = D / "host-numa"; shutil.rmtree(r, ignore_errors=True)
common(r, "5.10.0-28-amd64", "fpu pse pae nx pdpe1gb lm constant_tsc", "numa-box",
       [(0, "DMA", 1, 4095, 3998, 3840), (0, "DMA32", 4096, 258048, 258048, 250000), (0, "Normal", 0, 0, 0, 0),
        (0, "Movable", 0, 0, 0, 0), (1, "DMA", 0, 0, 0, 0), (1, "DMA32", 262144, 262144, 262144, 255000),
        (1, "Normal", 0, 0, 0, 0), (1, "Movable", 0, 0, 0, 0)])
blocks(r, list(range(16)), nodes={0: list(range(8)), 1: list(range(8, 16))}, cpus={0: "0-3", 1: "4-7"})
