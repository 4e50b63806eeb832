#!/usr/bin/env bash
# Installs the LiteLLM proxy (litellm[proxy] from PyPI) into a venv at
# target/compat/litellm-venv. Idempotent: skipped when the venv already has a
# working `litellm` entry point. The config is tests/compat/litellm.yaml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
C="${LLMPOOL_COMPAT_DIR:-$ROOT/target/compat}"
VENV="$C/litellm-venv"
PY="${PYTHON:-python3}"
log() { echo "[setup-litellm] $*"; }
t0=$(date +%s)

mkdir -p "$C"
if [ -x "$VENV/bin/litellm" ] && [ -f "$VENV/.llmpool-ok" ]; then
    log "venv present: $VENV"
else
    rm -rf "$VENV"
    log "creating venv $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    log "installing litellm[proxy]"
    "$VENV/bin/python" -m pip install --quiet 'litellm[proxy]'
    # Import check: the proxy server module must load.
    LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/python" -c 'import litellm.proxy.proxy_server' >/dev/null
    "$VENV/bin/python" -m pip show litellm 2>/dev/null | grep -i '^version' || true
    touch "$VENV/.llmpool-ok"
fi
log "litellm step: $(( $(date +%s) - t0 ))s"
