#!/bin/sh
# Installs llmpool's libraries, headers and pkg-config files into PREFIX.
#
#   cargo build --release --lib            # once, where Rust is available
#   examples/legacy/install.sh [options] PREFIX
#
# Installs (under $DESTDIR$PREFIX, DESTDIR optional for staged installs):
#   include/llmpool.h, include/llmpool.hpp
#   lib/libllmpool.a                       the static library
#   lib/libllmpool.so                      the shared library (unless --static-only)
#   lib/pkgconfig/llmpool.pc               Libs: -L${libdir} -lllmpool
#                                          Libs.private: the system libraries
#   lib/pkgconfig/llmpool-static.pc        Libs: ${libdir}/libllmpool.a + system libs
#
# Then, with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig:
#   cc app.c $(pkg-config --cflags --libs llmpool)          # links libllmpool.so
#                                                           # (run with LD_LIBRARY_PATH
#                                                           #  or -Wl,-rpath,PREFIX/lib)
#   cc app.c $(pkg-config --cflags --libs llmpool-static)   # links libllmpool.a
#   # with --static-only (no .so installed), this links statically too:
#   cc app.c $(pkg-config --static --cflags --libs llmpool)
#
# Options:
#   --from DIR         where the built libraries are (default: target/release
#                      of this repository)
#   --static-only      install only the static library
#   --native-libs STR  the system libraries the static library needs
#                      (default below; also $LLMPOOL_NATIVE_LIBS)
#
# The default system libraries are what
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# prints on Linux/glibc. On glibc >= 2.34, -lpthread, -ldl, -lrt and -lutil
# are empty stubs (their functions live in libc), but they are harmless
# and needed on older systems. Needs only a POSIX shell: no Rust toolchain.
set -eu

DEFAULT_NATIVE_LIBS="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

usage() {
    echo "usage: $0 [--from DIR] [--static-only] [--native-libs STR] PREFIX" >&2
    exit 2
}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FROM="$ROOT/target/release"
STATIC_ONLY=0
NATIVE_LIBS="${LLMPOOL_NATIVE_LIBS:-$DEFAULT_NATIVE_LIBS}"
PREFIX=""
while [ $# -gt 0 ]; do
    case "$1" in
        --from) [ $# -ge 2 ] || usage; FROM="$2"; shift 2 ;;
        --from=*) FROM="${1#--from=}"; shift ;;
        --static-only) STATIC_ONLY=1; shift ;;
        --native-libs) [ $# -ge 2 ] || usage; NATIVE_LIBS="$2"; shift 2 ;;
        --native-libs=*) NATIVE_LIBS="${1#--native-libs=}"; shift ;;
        -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
        -*) echo "install.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$PREFIX" ] || usage; PREFIX="$1"; shift ;;
    esac
done
[ -n "$PREFIX" ] || usage
case "$PREFIX" in
    /*) ;;
    *) PREFIX="$(pwd)/$PREFIX" ;;
esac
case "$PREFIX" in
    *[[:space:]]*) echo "install.sh: PREFIX must not contain whitespace (pkg-config cannot quote it)" >&2; exit 2 ;;
esac

if [ ! -f "$FROM/libllmpool.a" ]; then
    echo "install.sh: $FROM/libllmpool.a not found; run \`cargo build --release --lib\` first" >&2
    exit 1
fi
if [ "$STATIC_ONLY" = 0 ] && [ ! -f "$FROM/libllmpool.so" ]; then
    echo "install.sh: $FROM/libllmpool.so not found (use --static-only to install without it)" >&2
    exit 1
fi

VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ -n "$VERSION" ] || VERSION=0.0.0

DEST="${DESTDIR:-}$PREFIX"
mkdir -p "$DEST/include" "$DEST/lib/pkgconfig"
cp "$ROOT/include/llmpool.h" "$DEST/include/llmpool.h"
if [ -f "$ROOT/include/llmpool.hpp" ]; then
    cp "$ROOT/include/llmpool.hpp" "$DEST/include/llmpool.hpp"
fi
cp "$FROM/libllmpool.a" "$DEST/lib/libllmpool.a.tmp"
mv "$DEST/lib/libllmpool.a.tmp" "$DEST/lib/libllmpool.a"
if [ "$STATIC_ONLY" = 0 ]; then
    cp "$FROM/libllmpool.so" "$DEST/lib/libllmpool.so.tmp"
    chmod 755 "$DEST/lib/libllmpool.so.tmp"
    mv "$DEST/lib/libllmpool.so.tmp" "$DEST/lib/libllmpool.so"
else
    rm -f "$DEST/lib/libllmpool.so"
fi

write_pc() { # FILE NAME DESCRIPTION LIBS LIBS_PRIVATE
    {
        echo "prefix=$PREFIX"
        echo "exec_prefix=\${prefix}"
        echo "libdir=\${exec_prefix}/lib"
        echo "includedir=\${prefix}/include"
        echo ""
        echo "Name: $2"
        echo "Description: $3"
        echo "Version: $VERSION"
        echo "Libs: $4"
        [ -z "$5" ] || echo "Libs.private: $5"
        echo "Cflags: -I\${includedir}"
    } >"$1"
}

write_pc "$DEST/lib/pkgconfig/llmpool.pc" llmpool \
    "Pooled, retrying, cost-aware client for OpenAI-compatible AI gateways" \
    "-L\${libdir} -lllmpool" "$NATIVE_LIBS"
write_pc "$DEST/lib/pkgconfig/llmpool-static.pc" llmpool-static \
    "llmpool, always linked statically (libllmpool.a)" \
    "\${libdir}/libllmpool.a $NATIVE_LIBS" ""

echo "installed llmpool $VERSION into $DEST"
echo "  export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig"
echo "  cc app.c \$(pkg-config --cflags --libs llmpool-static)   # static"
if [ "$STATIC_ONLY" = 0 ]; then
    echo "  cc app.c \$(pkg-config --cflags --libs llmpool) -Wl,-rpath,$PREFIX/lib   # shared"
fi
