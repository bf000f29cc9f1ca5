"""What pfn_to_page and friends cost: CPU presets, workloads as traces, a TLB/walk/cache simulator.

``cpu.py`` (presets as data, ``cpus/*.toml``), ``trace.py`` (an operation's accesses and their
dependencies), ``workloads.py`` (workload → trace), ``sim.py`` (scalar and bulk simulators),
``run.py`` (``vmemmap cost``: every legal model side by side).
"""
