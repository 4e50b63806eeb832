#!/bin/sh
# Installs llmpool for C and C++ (headers, libraries, pkg-config files and a
# CMake package config) into PREFIX.
#
#   cargo build --release --lib            # once, where Rust is available
#   scripts/install.sh [options] PREFIX    # DESTDIR=/stage for staged installs
#
# A POSIX sh script rather than a Makefile or cargo-c: it needs nothing but
# sh and coreutils (no make, no cmake, no Rust toolchain at install time), so
# it runs the same on a build host, in a packaging chroot and from the
# release's C tarball, and scripts/dist.sh uses it to lay that tarball out.
#
# Installs (under $DESTDIR$PREFIX; the files name PREFIX, never DESTDIR):
#   include/llmpool.h, include/llmpool.hpp
#   lib/libllmpool.so.X.Y.Z                the shared library, SONAME libllmpool.so.X
#   lib/libllmpool.so.X -> libllmpool.so.X.Y.Z
#   lib/libllmpool.so   -> libllmpool.so.X  (the link-time name)
#   lib/libllmpool.a                       the static library
#   lib/pkgconfig/llmpool.pc               Libs: -L${libdir} -lllmpool
#                                          Libs.private: the system libraries
#   lib/pkgconfig/llmpool-static.pc        Libs: ${libdir}/libllmpool.a + system libs
#   lib/cmake/llmpool/llmpoolConfig.cmake, llmpoolConfigVersion.cmake
#                                          imported targets llmpool::llmpool (the
#                                          .so, or the .a with --static-only) and
#                                          llmpool::llmpool_static
#
# Then, with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig:
#   cc app.c $(pkg-config --cflags --libs llmpool)          # links libllmpool.so
#                                                           # (run with LD_LIBRARY_PATH
#                                                           #  or -Wl,-rpath,PREFIX/lib)
#   cc app.c $(pkg-config --cflags --libs llmpool-static)   # links libllmpool.a
#   # with --static-only (no .so installed), this links statically too:
#   cc app.c $(pkg-config --static --cflags --libs llmpool)
# or, with CMAKE_PREFIX_PATH=PREFIX:
#   find_package(llmpool 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE llmpool::llmpool)
#
# Options:
#   --from DIR         where the built libraries are (default: target/release
#                      of this repository)
#   --static-only      install only the static library
#   --relocatable      write llmpool.pc with prefix=${pcfiledir}/../.. (a tree
#                      that may be unpacked anywhere: the release's C tarball)
#   --native-libs STR  the system libraries the static library needs
#                      (default below; also $LLMPOOL_NATIVE_LIBS)
#
# The default system libraries are what
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# prints on Linux/glibc. On glibc >= 2.34, -lpthread, -ldl, -lrt and -lutil
# are empty stubs (their functions live in libc), but they are harmless
# and needed on older systems.
set -eu

DEFAULT_NATIVE_LIBS="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

usage() {
    echo "usage: $0 [--from DIR] [--static-only] [--relocatable] [--native-libs STR] PREFIX" >&2
    exit 2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FROM="$ROOT/target/release"
STATIC_ONLY=0
RELOCATABLE=0
NATIVE_LIBS="${LLMPOOL_NATIVE_LIBS:-$DEFAULT_NATIVE_LIBS}"
PREFIX=""
while [ $# -gt 0 ]; do
    case "$1" in
        --from) [ $# -ge 2 ] || usage; FROM="$2"; shift 2 ;;
        --from=*) FROM="${1#--from=}"; shift ;;
        --static-only) STATIC_ONLY=1; shift ;;
        --relocatable) RELOCATABLE=1; shift ;;
        --native-libs) [ $# -ge 2 ] || usage; NATIVE_LIBS="$2"; shift 2 ;;
        --native-libs=*) NATIVE_LIBS="${1#--native-libs=}"; shift ;;
        -h|--help) sed -n '2,54p' "$0"; exit 0 ;;
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
MAJOR=${VERSION%%.*}

DEST="${DESTDIR:-}$PREFIX"
mkdir -p "$DEST/include" "$DEST/lib/pkgconfig" "$DEST/lib/cmake/llmpool"
cp "$ROOT/include/llmpool.h" "$DEST/include/llmpool.h"
if [ -f "$ROOT/include/llmpool.hpp" ]; then
    cp "$ROOT/include/llmpool.hpp" "$DEST/include/llmpool.hpp"
fi
cp "$FROM/libllmpool.a" "$DEST/lib/libllmpool.a.tmp"
mv "$DEST/lib/libllmpool.a.tmp" "$DEST/lib/libllmpool.a"
rm -f "$DEST/lib/libllmpool.so" "$DEST/lib/libllmpool.so.$MAJOR" "$DEST/lib/libllmpool.so.$VERSION"
if [ "$STATIC_ONLY" = 0 ]; then
    cp "$FROM/libllmpool.so" "$DEST/lib/libllmpool.so.$VERSION.tmp"
    chmod 755 "$DEST/lib/libllmpool.so.$VERSION.tmp"
    mv "$DEST/lib/libllmpool.so.$VERSION.tmp" "$DEST/lib/libllmpool.so.$VERSION"
    ln -s "libllmpool.so.$VERSION" "$DEST/lib/libllmpool.so.$MAJOR"
    ln -s "libllmpool.so.$MAJOR" "$DEST/lib/libllmpool.so"
fi

if [ "$RELOCATABLE" = 1 ]; then
    PC_PREFIX='${pcfiledir}/../..'
else
    PC_PREFIX="$PREFIX"
fi
write_pc() { # FILE NAME DESCRIPTION LIBS LIBS_PRIVATE
    {
        echo "prefix=$PC_PREFIX"
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

# CMake: the config finds its prefix from its own place (lib/cmake/llmpool),
# so the same file works installed, staged with DESTDIR and unpacked.
CMAKE_LIBS=$(echo "$NATIVE_LIBS" | sed 's/-l//g' | tr -s ' ' ';')
{
    echo "# llmpool $VERSION: imported targets llmpool::llmpool and llmpool::llmpool_static."
    echo "# Written by scripts/install.sh."
    echo "get_filename_component(_llmpool_prefix \"\${CMAKE_CURRENT_LIST_DIR}/../../..\" ABSOLUTE)"
    echo "if(NOT TARGET llmpool::llmpool_static)"
    echo "  add_library(llmpool::llmpool_static STATIC IMPORTED)"
    echo "  set_target_properties(llmpool::llmpool_static PROPERTIES"
    echo "    IMPORTED_LOCATION \"\${_llmpool_prefix}/lib/libllmpool.a\""
    echo "    INTERFACE_INCLUDE_DIRECTORIES \"\${_llmpool_prefix}/include\""
    echo "    INTERFACE_LINK_LIBRARIES \"$CMAKE_LIBS\")"
    echo "endif()"
    echo "if(NOT TARGET llmpool::llmpool)"
    if [ "$STATIC_ONLY" = 0 ]; then
        echo "  add_library(llmpool::llmpool SHARED IMPORTED)"
        echo "  set_target_properties(llmpool::llmpool PROPERTIES"
        echo "    IMPORTED_LOCATION \"\${_llmpool_prefix}/lib/libllmpool.so.$VERSION\""
        echo "    IMPORTED_SONAME \"libllmpool.so.$MAJOR\""
        echo "    INTERFACE_INCLUDE_DIRECTORIES \"\${_llmpool_prefix}/include\")"
    else
        echo "  add_library(llmpool::llmpool INTERFACE IMPORTED)"
        echo "  set_target_properties(llmpool::llmpool PROPERTIES"
        echo "    INTERFACE_LINK_LIBRARIES llmpool::llmpool_static)"
    fi
    echo "endif()"
    echo "set(llmpool_INCLUDE_DIRS \"\${_llmpool_prefix}/include\")"
    echo "set(llmpool_LIBRARIES llmpool::llmpool)"
    echo "unset(_llmpool_prefix)"
} >"$DEST/lib/cmake/llmpool/llmpoolConfig.cmake"
{
    echo "# llmpool $VERSION: compatible with a request for the same major version"
    echo "# (for 0.x: the same minor) that is not newer. Written by scripts/install.sh."
    echo "set(PACKAGE_VERSION \"$VERSION\")"
    echo "if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)"
    echo "  set(PACKAGE_VERSION_COMPATIBLE FALSE)"
    echo "elseif(NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL \"$MAJOR\")"
    echo "  set(PACKAGE_VERSION_COMPATIBLE FALSE)"
    echo "elseif(\"$MAJOR\" STREQUAL \"0\" AND PACKAGE_FIND_VERSION_COUNT GREATER 1"
    echo "       AND NOT PACKAGE_FIND_VERSION_MINOR STREQUAL \"$(echo "$VERSION" | cut -d. -f2)\")"
    echo "  set(PACKAGE_VERSION_COMPATIBLE FALSE)"
    echo "else()"
    echo "  set(PACKAGE_VERSION_COMPATIBLE TRUE)"
    echo "  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)"
    echo "    set(PACKAGE_VERSION_EXACT TRUE)"
    echo "  endif()"
    echo "endif()"
    echo "if(NOT CMAKE_SIZEOF_VOID_P STREQUAL \"\" AND NOT CMAKE_SIZEOF_VOID_P STREQUAL \"8\")"
    echo "  set(PACKAGE_VERSION \"$VERSION (64-bit)\")"
    echo "  set(PACKAGE_VERSION_UNSUITABLE TRUE)"
    echo "endif()"
} >"$DEST/lib/cmake/llmpool/llmpoolConfigVersion.cmake"

echo "installed llmpool $VERSION into $DEST"
echo "  export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig CMAKE_PREFIX_PATH=$PREFIX"
echo "  cc app.c \$(pkg-config --cflags --libs llmpool-static)   # static"
if [ "$STATIC_ONLY" = 0 ]; then
    echo "  cc app.c \$(pkg-config --cflags --libs llmpool) -Wl,-rpath,$PREFIX/lib   # shared"
fi
