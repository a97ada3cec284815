"""The C extensions: the multi-buffer md5 engine (store/_md5lanes.c) and the content
scanner's per-chunk step (store/_textscan.c).

Both are optional: where they cannot be built (no compiler) the package installs without
them, md5 runs on libcrypto alone (store/md5_lanes.py) and the scanner on bytes methods
(store/scanner.py). No -march or -mavx flags: each vector kernel carries its own target
attribute and is chosen at run time by CPU features, so one build runs on any x86-64 (and
elsewhere builds with the portable kernel only); the scanner vectorizes with the baseline.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "store._md5lanes",
            ["store/_md5lanes.c"],
            # -O3: built with -O2 instead, lanes cost 1.2-1.3x the CPU per GB (GCC 12, AMD
            # Zen 4, bench/bench_md5_lanes.py).
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "store._textscan", ["store/_textscan.c"], extra_compile_args=["-O3"], optional=True
        ),
    ]
)
