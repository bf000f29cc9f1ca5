"""``vmemmap capture``: real-kernel captures in the shared oracle format (docs/capture.md).

* :mod:`~vmemmap.capture.kernel_pkg` -- resolve, download and unpack Debian's kernel package;
* :mod:`~vmemmap.capture.kcore_helper` -- the guest's static ``/proc/kcore`` reader (C, ``gcc -static``);
* :mod:`~vmemmap.capture.initramfs` -- the busybox initramfs and its ``/init``;
* :mod:`~vmemmap.capture.qemu` -- the QEMU command line and a guest driven over QMP;
* :mod:`~vmemmap.capture.runner` -- one capture, written to a file.
"""

from vmemmap.capture.qemu import MachineSpec, qemu_argv
from vmemmap.capture.runner import CaptureResult, run_capture

__all__ = ["MachineSpec", "qemu_argv", "CaptureResult", "run_capture"]
