"""Conformance with the real kernel: oracle captures parsed into facts and compared with a simulated
boot of the same machine (DESIGN.md contract 8, docs/conformance.md)."""

from vmemmap.conform.capture import Capture, load_capture, parse_capture_text
from vmemmap.conform.compare import boot_capture, by_category, by_snapshot, conform

__all__ = ["Capture", "load_capture", "parse_capture_text", "conform", "boot_capture", "by_category", "by_snapshot"]
