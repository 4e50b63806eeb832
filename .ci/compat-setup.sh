#!/usr/bin/env bash
# Sets up the real servers for tests/compat.rs (llama.cpp llama-server with
# SmolLM2-135M, and the LiteLLM proxy), cached under target/compat/.
# Idempotent: a second run only checks the cache. CI calls this before
# `cargo test` and sets LLMPOOL_REQUIRE_ALL=1 so that no compat test skips.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
t0=$(date +%s)
bash "$ROOT/tests/compat/setup-llama.sh"
t1=$(date +%s)
bash "$ROOT/tests/compat/setup-litellm.sh"
t2=$(date +%s)
echo "[compat-setup] llama: $((t1 - t0))s, litellm: $((t2 - t1))s, total: $((t2 - t0))s"
