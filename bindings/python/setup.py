"""Build glue for the llmpool wheel and sdist (metadata: pyproject.toml).

- The version is read from the Rust crate's Cargo.toml (one version for
  every package).
- build_py puts libllmpool.so into the package: the file named by
  $LLMPOOL_PREBUILT_LIB when set (scripts/dist.sh passes the glibc-2.17
  build), else it runs `cargo build --release --lib` on the crate (rust/ in
  an sdist, ../.. in the repository; $CARGO_TARGET_DIR is honoured).
- bdist_wheel tags the wheel py3-none-<platform> (ctypes: no CPython ABI);
  $LLMPOOL_WHEEL_PLAT overrides the platform (manylinux2014_x86_64 for a
  release, checked with `auditwheel show`).
"""

import os
import re
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))


def crate_dir():
    for d in (os.path.join(HERE, "rust"), os.path.normpath(os.path.join(HERE, "..", ".."))):
        if os.path.exists(os.path.join(d, "Cargo.toml")):
            return d
    raise RuntimeError("llmpool: no Cargo.toml in rust/ or ../.. (an incomplete sdist?)")


def crate_version():
    with open(os.path.join(crate_dir(), "Cargo.toml"), encoding="utf-8") as f:
        text = f.read()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    m = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
    if not m:
        raise RuntimeError("llmpool: no version in Cargo.toml's [package]")
    return m.group(1)


def built_library():
    prebuilt = os.environ.get("LLMPOOL_PREBUILT_LIB")
    if prebuilt:
        return prebuilt
    crate = crate_dir()
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(crate, "target")
    cmd = ["cargo", "build", "--release", "--lib", "-p", "llmpool",
           "--manifest-path", os.path.join(crate, "Cargo.toml"), "--target-dir", target]
    print("llmpool: " + " ".join(cmd))
    subprocess.check_call(cmd)
    return os.path.join(target, "release", "libllmpool.so")


class BuildPy(build_py):
    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "llmpool", "libllmpool.so")
        shutil.copyfile(built_library(), dest)
        os.chmod(dest, 0o755)


class BinaryDistribution(Distribution):
    """Carries a shared library: a platlib (not purelib) wheel."""

    def has_ext_modules(self):
        return True


class BdistWheel(bdist_wheel):

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", os.environ.get("LLMPOOL_WHEEL_PLAT") or plat


setup(version=crate_version(), distclass=BinaryDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
