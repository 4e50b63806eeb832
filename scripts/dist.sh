#!/usr/bin/env bash
# The release command: builds the glibc-2.17 library and writes every
# package into dist/ (gitignored):
#
#   bash scripts/dist.sh
#
#   dist/llmpool-V-py3-none-manylinux2014_x86_64.whl  Python wheel (bundles libllmpool.so)
#   dist/llmpool-V.tar.gz                             Python sdist (builds with cargo)
#   dist/llmpool-V.tgz                                npm package llmpool (JS, ESM, index.d.ts)
#   dist/llmpool-linux-x64-gnu-V.tgz                  npm package @llmpool/linux-x64-gnu (the .so)
#   dist/llmpool-V-linux-x86_64-gnu.tar.gz            C/C++: include/, lib/ (.so + links, .a),
#                                                     lib/pkgconfig, lib/cmake/llmpool
#
# The library is built with cargo-zigbuild for x86_64-unknown-linux-gnu.2.17
# (zig links against glibc 2.17's symbol versions), so it loads on every
# x86_64 Linux since glibc 2.17 (RHEL/CentOS 7, Amazon Linux 2, ...).
# ziglang, cargo-zigbuild, auditwheel and the Python build tools come from
# PyPI into a throwaway venv (target/dist/venv); everything is built under
# CARGO_TARGET_DIR=target/dist, so the development builds in target/ are
# untouched. Needs cargo, python3 (with venv), npm, objdump and readelf.
# tests/dist.rs checks what this writes (cargo test --test dist).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$ROOT/target/dist"
DIST="$ROOT/dist"
VENV="$WORK/venv"
TRIPLE=x86_64-unknown-linux-gnu
GLIBC=2.17
start=$(date +%s)
step() { echo "==> [dist $(( $(date +%s) - start ))s] $*" >&2; }

VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
[ -n "$VERSION" ] || { echo "dist.sh: no version in Cargo.toml" >&2; exit 1; }

step "tools: ziglang, cargo-zigbuild, auditwheel, build, setuptools (PyPI, into $VENV)"
if [ ! -x "$VENV/bin/cargo-zigbuild" ] || [ ! -x "$VENV/bin/auditwheel" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "ziglang==0.17.1" "cargo-zigbuild==0.24.1" "auditwheel==6.8.2" "build==1.6.1" "setuptools>=77"
fi

step "libllmpool for $TRIPLE, glibc $GLIBC (cargo zigbuild --release, no debug info)"
# The shipped libraries carry no debug info (the release profile keeps
# line tables for local profiling): a third of the size.
PATH="$VENV/bin:$PATH" CARGO_TARGET_DIR="$WORK" \
  CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
  cargo zigbuild --release --lib -p llmpool --target "$TRIPLE.$GLIBC"
LIB="$WORK/$TRIPLE/release"
SO="$LIB/libllmpool.so"

floor=$(objdump -T "$SO" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
soname=$(readelf -d "$SO" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
step "built $SO: needs $floor at most, SONAME $soname"
if [ "$(printf '%s\n' "$floor" "GLIBC_$GLIBC" | sort -V | tail -n 1)" != "GLIBC_$GLIBC" ]; then
  echo "dist.sh: $SO needs $floor, newer than GLIBC_$GLIBC" >&2
  exit 1
fi
[ "$soname" = "libllmpool.so.${VERSION%%.*}" ] || { echo "dist.sh: SONAME is '$soname'" >&2; exit 1; }

rm -rf "$DIST" "$WORK/stage"
mkdir -p "$DIST" "$WORK/stage"

step "C/C++ tarball (scripts/install.sh --relocatable)"
C_NAME="llmpool-$VERSION-linux-x86_64-gnu"
sh scripts/install.sh --from "$LIB" --relocatable "$WORK/stage/$C_NAME" >/dev/null
cat >"$WORK/stage/$C_NAME/README.txt" <<TXT
llmpool $VERSION for Linux x86_64 (glibc $GLIBC or newer), C and C++.

Unpack anywhere, then:
  export PKG_CONFIG_PATH=\$PWD/$C_NAME/lib/pkgconfig
  cc app.c \$(pkg-config --cflags --libs llmpool)            # shared (LD_LIBRARY_PATH or -Wl,-rpath)
  cc app.c \$(pkg-config --cflags --libs llmpool-static)     # static
CMake: -DCMAKE_PREFIX_PATH=\$PWD/$C_NAME, then
  find_package(llmpool REQUIRED)
  target_link_libraries(app PRIVATE llmpool::llmpool)
TXT
tar -C "$WORK/stage" -czf "$DIST/$C_NAME.tar.gz" "$C_NAME"

step "Python wheel and sdist (setuptools)"
PY="$WORK/stage/python"
mkdir -p "$PY/rust/tests"
cp -R bindings/python/pyproject.toml bindings/python/setup.py bindings/python/MANIFEST.in \
  bindings/python/README.md bindings/python/llmpool "$PY/"
find "$PY/llmpool" -name '__pycache__' -prune -exec rm -rf {} +
# The crate and what its manifest names (workspace member, bench), for the sdist.
cp -R Cargo.toml Cargo.lock build.rs cbindgen.toml src include benches "$PY/rust/"
mkdir -p "$PY/rust/tests/server"
cp -R tests/server/Cargo.toml tests/server/src "$PY/rust/tests/server/"
(cd "$PY" && LLMPOOL_PREBUILT_LIB="$SO" LLMPOOL_WHEEL_PLAT=manylinux2014_x86_64 \
  "$VENV/bin/python" -m build --no-isolation --wheel --outdir "$DIST" >/dev/null)
(cd "$PY" && "$VENV/bin/python" -m build --no-isolation --sdist --outdir "$DIST" >/dev/null)
WHEEL="$DIST/llmpool-$VERSION-py3-none-manylinux2014_x86_64.whl"
"$VENV/bin/auditwheel" show "$WHEEL" | tr -s ' \n' ' ' | grep -q 'manylinux_2_17_x86_64' || {
  "$VENV/bin/auditwheel" show "$WHEEL" >&2
  echo "dist.sh: auditwheel does not accept $WHEEL as manylinux2014" >&2
  exit 1
}

step "npm packages (llmpool, @llmpool/linux-x64-gnu)"
NODE="$WORK/stage/node"
mkdir -p "$NODE/llmpool" "$NODE/linux-x64-gnu"
cp bindings/node/llmpool.js bindings/node/llmpool.mjs bindings/node/index.d.ts \
  bindings/node/package.json bindings/node/README.md "$NODE/llmpool/"
cp bindings/node/npm/linux-x64-gnu/package.json "$NODE/linux-x64-gnu/"
cp "$SO" "$NODE/linux-x64-gnu/libllmpool.so"
# One version (Cargo.toml's) everywhere; the platform packages become the
# main package's optionalDependencies (as napi-rs's prepublish does).
VERSION="$VERSION" PLATFORMS="$ROOT/bindings/node/npm" node -e '
  const fs = require("fs"), path = require("path");
  const v = process.env.VERSION, dir = process.argv[1];
  const edit = (f, fn) => { const j = JSON.parse(fs.readFileSync(f)); fn(j); fs.writeFileSync(f, JSON.stringify(j, null, 2) + "\n"); };
  const opt = {};
  for (const p of fs.readdirSync(process.env.PLATFORMS)) {
    const name = JSON.parse(fs.readFileSync(path.join(process.env.PLATFORMS, p, "package.json"))).name;
    opt[name] = v;
  }
  edit(path.join(dir, "llmpool/package.json"), (j) => { j.version = v; j.optionalDependencies = opt; delete j.scripts; });
  edit(path.join(dir, "linux-x64-gnu/package.json"), (j) => { j.version = v; });
' "$NODE"
(cd "$NODE/llmpool" && npm pack --silent --pack-destination "$DIST" >/dev/null)
(cd "$NODE/linux-x64-gnu" && npm pack --silent --pack-destination "$DIST" >/dev/null)

step "done: $floor at most, SONAME $soname"
(cd "$DIST" && ls -l)
