#!/usr/bin/env bash
# Install what `vmemmap capture` needs on Debian (run as root): QEMU (TCG is enough), a static busybox
# for the guest's initramfs, cpio, gcc + static libc for the /proc/kcore reader, and the apt tools that
# fetch and unpack Debian's kernel package; then chromium for the report's browser test. Idempotent:
# apt-get install skips what is already there.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-capture-deps.sh: must run as root (apt-get install)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-capture-deps.sh: apt-get not found (Debian/Ubuntu only)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for try in 1 2 3; do
    apt-get update -qq && break
    [ "$try" = 3 ] && exit 1
    sleep 5
done
apt-get install -y -qq --no-install-recommends \
    qemu-system-x86 busybox-static cpio gzip gcc libc6-dev dpkg apt ca-certificates >/dev/null

command -v qemu-system-x86_64 >/dev/null
test -x /bin/busybox
echo "install-capture-deps.sh: $(qemu-system-x86_64 --version | head -1); busybox-static $(dpkg-query -W -f='${Version}' busybox-static)"

# `vmemmap report`'s browser test (tests/test_report_browser.py) opens the report in Debian's chromium through
# playwright (never `playwright install`: no browser download); a font so text renders in headless mode.
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
echo "install-capture-deps.sh: $(chromium --version 2>/dev/null | head -1)"
