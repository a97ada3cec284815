"""The one C extension: the multi-buffer md5 engine (store/_md5lanes.c).

It is optional: where it cannot be built (no compiler) the package installs without it
and md5 runs on libcrypto alone (store/md5_lanes.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "store._md5lanes",
            ["store/_md5lanes.c"],
            # -O3: GCC unrolls the 64 vector steps fully only there (1.6x faster lanes).
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
