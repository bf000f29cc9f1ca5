"""``kcoredump``: the guest's reader of ``/proc/kcore`` (C source, compiled with ``gcc -static`` on the host).

The guest's busybox can read files but not kernel memory.  This small static program reads the ELF
program headers of ``/proc/kcore`` (fs/proc/kcore.c: one ``PT_LOAD`` per kernel text, vmalloc, modules,
each System RAM range of the direct map and each populated vmemmap range) and the addresses of
``/proc/kallsyms``, and prints the bodies of the capture blocks that need kernel memory:

* ``kcoredump kcore``: ``KCORE_PHDRS``, ``PT_LOAD ...`` and ``SYMVAL name addr= value=`` (8-byte values);
* ``kcoredump sections SIZEOF``: the MEMSECTIONS block -- ``mem_section`` roots (SPARSEMEM_EXTREME,
  ``NR_SECTION_ROOTS`` pointers), every present section's ``section_mem_map`` word decoded as
  ``sparse_decode_mem_map`` does, and the first three words of its ``mem_section_usage``;
* ``kcoredump ptwalk vmemmap|directmap``: a walk of ``init_top_pgt`` over the vmemmap window or the
  direct map, runs of leaves with the same level and flags and contiguous frames.

The line formats are those of ``shared/oracle/captures`` (see docs/capture.md); the constants are the
x86-64 ones of include/linux/mmzone.h and arch/x86/include/asm/{pgtable_types,sparsemem}.h @ 6.1 and 6.12.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from vmemmap.errors import VmemmapError

SOURCE = r"""
/* kcoredump: read kernel values through /proc/kcore (vmemmap capture helper, see kcore_helper.py). */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef uint64_t u64;

static int kfd = -1;
static Elf64_Phdr *ph;
static int nph;

static void die(const char *msg) { fprintf(stderr, "kcoredump: %s\n", msg); exit(1); }

static void open_kcore(void) {
    Elf64_Ehdr eh;
    kfd = open("/proc/kcore", O_RDONLY);
    if (kfd < 0) die("cannot open /proc/kcore");
    if (pread(kfd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh) die("cannot read the ELF header");
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) die("/proc/kcore is not ELF");
    nph = eh.e_phnum;
    ph = calloc(nph, sizeof *ph);
    if (pread(kfd, ph, nph * sizeof *ph, eh.e_phoff) != (ssize_t)(nph * sizeof *ph)) die("cannot read phdrs");
}

/* read len bytes of kernel virtual memory; 0 on success */
static int kread(u64 va, void *buf, size_t len) {
    for (int i = 0; i < nph; i++) {
        if (ph[i].p_type != PT_LOAD) continue;
        if (va >= ph[i].p_vaddr && va - ph[i].p_vaddr + len <= ph[i].p_memsz) {
            ssize_t n = pread(kfd, buf, len, (off_t)(ph[i].p_offset + (va - ph[i].p_vaddr)));
            return n == (ssize_t)len ? 0 : -1;
        }
    }
    return -1;
}

static u64 kread8(u64 va, int *ok) {
    u64 v = 0;
    int r = kread(va, &v, 8);
    if (ok) *ok = (r == 0);
    return v;
}

#define NSYM 13
static const char *symnames[NSYM] = {
    "vmemmap_base", "page_offset_base", "vmalloc_base", "max_pfn", "max_low_pfn", "max_possible_pfn",
    "__pgtable_l5_enabled", "pgdir_shift", "ptrs_per_p4d", "phys_base", "mem_section",
    "memory_block_size_probed", "init_top_pgt",
};
static u64 symaddr[NSYM];

static void load_kallsyms(void) {
    FILE *f = fopen("/proc/kallsyms", "r");
    char line[512];
    if (!f) die("cannot open /proc/kallsyms");
    while (fgets(line, sizeof line, f)) {
        char name[256], type;
        unsigned long long a;
        if (strchr(line, '[')) continue; /* module symbols */
        if (sscanf(line, "%llx %c %255s", &a, &type, name) != 3) continue;
        for (int i = 0; i < NSYM; i++)
            if (!symaddr[i] && strcmp(name, symnames[i]) == 0) symaddr[i] = a;
    }
    fclose(f);
}

static u64 sym(const char *name) {
    for (int i = 0; i < NSYM; i++)
        if (strcmp(name, symnames[i]) == 0) {
            if (!symaddr[i]) { fprintf(stderr, "kcoredump: no symbol %s\n", name); exit(1); }
            return symaddr[i];
        }
    die("unknown symbol");
    return 0;
}

static u64 symval(const char *name) {
    int ok;
    u64 v = kread8(sym(name), &ok);
    if (!ok) { fprintf(stderr, "kcoredump: cannot read %s\n", name); exit(1); }
    return v;
}

static int l5(void) { return (uint32_t)symval("__pgtable_l5_enabled") != 0; }
static int max_physmem_bits(void) { return l5() ? 52 : 46; } /* asm/sparsemem.h */

static void cmd_kcore(void) {
    printf("KCORE_PHDRS n=%d\n", nph);
    for (int i = 0; i < nph; i++) {
        if (ph[i].p_type != PT_LOAD) continue;
        printf("PT_LOAD vaddr=%016llx end=%016llx memsz=%016llx paddr=%016llx\n",
               (unsigned long long)ph[i].p_vaddr, (unsigned long long)(ph[i].p_vaddr + ph[i].p_memsz),
               (unsigned long long)ph[i].p_memsz, (unsigned long long)ph[i].p_paddr);
    }
    for (int i = 0; i < NSYM - 1; i++) { /* init_top_pgt: an address, not a value */
        int ok;
        if (!symaddr[i]) { printf("SYMVAL %s missing\n", symnames[i]); continue; }
        u64 v = kread8(symaddr[i], &ok);
        if (!ok) { printf("SYMVAL %s addr=%016llx unreadable\n", symnames[i], (unsigned long long)symaddr[i]); continue; }
        printf("SYMVAL %s addr=%016llx value=%016llx\n", symnames[i], (unsigned long long)symaddr[i],
               (unsigned long long)v);
    }
}

/* include/linux/mmzone.h: section_mem_map flag bits */
#define SECTION_MAP_LAST_BIT 5
#define SECTION_MAP_MASK (~((1ULL << SECTION_MAP_LAST_BIT) - 1))
#define SECTION_SIZE_BITS 27
#define PFN_SECTION_SHIFT (SECTION_SIZE_BITS - 12)
#define SIZEOF_STRUCT_PAGE 64

static void cmd_sections(int sizeof_ms) {
    u64 ms = symval("mem_section"), vmemmap_base = symval("vmemmap_base");
    int per_root = 4096 / sizeof_ms;
    u64 nr_sections = 1ULL << (max_physmem_bits() - SECTION_SIZE_BITS);
    u64 nr_roots = nr_sections / per_root;
    printf("MEMSECTION mem_section=0x%llx sizeof=%d per_root=%d vmemmap_base=0x%llx\n",
           (unsigned long long)ms, sizeof_ms, per_root, (unsigned long long)vmemmap_base);
    if (!ms) return;
    u64 *roots = calloc(nr_roots, 8);
    if (kread(ms, roots, nr_roots * 8) != 0) die("cannot read the mem_section root array");
    for (u64 r = 0; r < nr_roots; r++)
        if (roots[r]) printf("ROOT %llu at 0x%llx\n", (unsigned long long)r, (unsigned long long)roots[r]);
    static unsigned char buf[4096];
    static const char *fl[] = {"PRESENT", "HAS_MEM_MAP", "ONLINE", "EARLY", "ZONE_DEVICE"};
    for (u64 r = 0; r < nr_roots; r++) {
        if (!roots[r]) continue;
        if (kread(roots[r], buf, 4096) != 0) { printf("ROOT %llu unreadable\n", (unsigned long long)r); continue; }
        for (int i = 0; i < per_root; i++) {
            u64 raw, usage, u[3] = {0, 0, 0};
            memcpy(&raw, buf + i * sizeof_ms, 8);
            memcpy(&usage, buf + i * sizeof_ms + 8, 8);
            if (!(raw & 1)) continue; /* SECTION_MARKED_PRESENT */
            u64 nr = r * per_root + i, pfn = nr << PFN_SECTION_SHIFT, coded = raw & SECTION_MAP_MASK;
            char flags[128] = "";
            for (int b = 0; b < 5; b++)
                if (raw & (1ULL << b)) { strcat(flags, fl[b]); strcat(flags, ","); }
            if (usage) kread(usage, u, sizeof u);
            printf("SECTION %llu pfn=0x%llx raw=0x%llx flags=%s coded=0x%llx memmap=0x%llx (%s) ",
                   (unsigned long long)nr, (unsigned long long)pfn, (unsigned long long)raw, flags,
                   (unsigned long long)coded, (unsigned long long)(coded + pfn * SIZEOF_STRUCT_PAGE),
                   coded == vmemmap_base ? "coded==vmemmap_base" : "coded!=vmemmap_base");
            if (usage) printf("usage=0x%llx ", (unsigned long long)usage);
            else printf("usage=(nil) ");
            printf("u[0..2]=%016llx,%016llx,%016llx\n", (unsigned long long)u[0], (unsigned long long)u[1],
                   (unsigned long long)u[2]);
        }
    }
}

/* arch/x86/include/asm/pgtable_types.h */
#define _PAGE_PRESENT (1ULL << 0)
#define _PAGE_RW (1ULL << 1)
#define _PAGE_USER (1ULL << 2)
#define _PAGE_PSE (1ULL << 7)
#define _PAGE_GLOBAL (1ULL << 8)
#define _PAGE_NX (1ULL << 63)
#define FLAG_BITS (_PAGE_RW | _PAGE_USER | _PAGE_PSE | _PAGE_GLOBAL | _PAGE_NX)
#define PHYS_MASK 0x000ffffffffff000ULL

static u64 page_offset;
static int levels;
static const char *lvname5[] = {"PGD", "P4D", "PUD", "PMD", "PTE"};
static int shifts5[] = {48, 39, 30, 21, 12};
static long long leafcount[5];
static struct { int active, lv; u64 vs, ve, ps, pe, fl; } run;

static void flush(void) {
    if (!run.active) return;
    u64 f = run.fl;
    printf("MAP 0x%016llx-0x%016llx %8lluK %s -> pa 0x%012llx-0x%012llx %s %s %s %s %s\n",
           (unsigned long long)run.vs, (unsigned long long)run.ve, (unsigned long long)((run.ve - run.vs) >> 10),
           lvname5[run.lv], (unsigned long long)run.ps, (unsigned long long)run.pe,
           (f & _PAGE_RW) ? "RW" : "ro", (f & _PAGE_USER) ? "USR" : "   ", (f & _PAGE_PSE) ? "PSE" : "   ",
           (f & _PAGE_GLOBAL) ? "GLB" : "   ", (f & _PAGE_NX) ? "NX" : "x ");
    run.active = 0;
}

static void leaf(int lv, u64 va, u64 size, u64 pa, u64 fl) {
    leafcount[lv]++;
    if (run.active && run.lv == lv && run.fl == fl && run.ve == va && run.pe == pa) {
        run.ve += size;
        run.pe += size;
        return;
    }
    flush();
    run.active = 1; run.lv = lv; run.vs = va; run.ve = va + size; run.ps = pa; run.pe = pa + size; run.fl = fl;
}

/* walk one table (at kernel va tbl) of level lv (index into lvname5) over [lo, last] */
static void walk(u64 tbl, int lv, u64 lo, u64 last) {
    u64 ent[512];
    if (kread(tbl, ent, sizeof ent) != 0) { flush(); printf("UNREADABLE %s table at 0x%llx\n", lvname5[lv], (unsigned long long)tbl); return; }
    int shift = shifts5[lv];
    u64 size = 1ULL << shift;
    u64 va = lo;
    for (;;) {
        u64 e = ent[(va >> shift) & 511];
        u64 start = va & ~(size - 1), next = start + size;
        u64 sub_last = (next == 0 || next - 1 > last) ? last : next - 1;
        if (!(e & _PAGE_PRESENT)) {
            flush();
        } else if (lv == 4 || ((lv == 2 || lv == 3) && (e & _PAGE_PSE))) {
            u64 mask = lv == 4 ? PHYS_MASK : (PHYS_MASK & ~(size - 1));
            leaf(lv, start, size, e & mask, e & FLAG_BITS);
        } else {
            walk(page_offset + (e & PHYS_MASK), lv + 1, va, sub_last);
        }
        if (sub_last == last) break;
        va = next;
    }
}

static void cmd_ptwalk(const char *what) {
    u64 pgd = sym("init_top_pgt");
    int bits = max_physmem_bits();
    u64 start, span;
    page_offset = symval("page_offset_base");
    levels = l5() ? 5 : 4;
    if (strcmp(what, "vmemmap") == 0) {
        start = symval("vmemmap_base");
        span = 1ULL << (bits - 12 + 6); /* one 64-byte struct page per possible frame */
    } else if (strcmp(what, "directmap") == 0) {
        start = page_offset;
        span = 1ULL << bits;
    } else {
        die("ptwalk: vmemmap or directmap");
        return;
    }
    u64 last = start + span - 1;
    printf("PTWALK levels=%d range 0x%016llx-0x%016llx init_top_pgt=0x%llx page_offset_base=0x%llx\n", levels,
           (unsigned long long)start, (unsigned long long)last, (unsigned long long)pgd,
           (unsigned long long)page_offset);
    walk(pgd, levels == 5 ? 0 : 1, start, last);
    flush();
    for (int lv = 2; lv < 5; lv++)
        if (leafcount[lv]) printf("LEAFCOUNT %s %lld\n", lvname5[lv], leafcount[lv]);
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: kcoredump kcore | sections SIZEOF | ptwalk vmemmap|directmap");
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    open_kcore();
    load_kallsyms();
    if (strcmp(argv[1], "kcore") == 0) cmd_kcore();
    else if (strcmp(argv[1], "sections") == 0) cmd_sections(argc > 2 ? atoi(argv[2]) : 16);
    else if (strcmp(argv[1], "ptwalk") == 0 && argc > 2) cmd_ptwalk(argv[2]);
    else die("unknown command");
    fflush(stdout);
    return 0;
}
"""


def build_helper(cache_dir: Path, cc: str = "gcc") -> Path:
    """Compile :data:`SOURCE` with ``gcc -static -O2`` into ``cache_dir`` (cached by the source's hash)."""
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:12]
    out = cache_dir / f"kcoredump-{digest}"
    if out.exists():
        return out
    if shutil.which(cc) is None:
        raise VmemmapError(f"{cc} not found: the /proc/kcore reader is compiled at capture time "
                           "(run scripts/install-capture-deps.sh)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    src = cache_dir / f"kcoredump-{digest}.c"
    src.write_text(SOURCE)
    tmp = out.with_suffix(".tmp")
    proc = subprocess.run([cc, "-static", "-O2", "-Wall", "-o", str(tmp), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise VmemmapError(f"cannot build the static /proc/kcore reader with {cc} -static: {first} "
                           "(static libc: apt-get install libc6-dev)")
    tmp.replace(out)
    return out
