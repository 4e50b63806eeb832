#!/usr/bin/env bash
# Builds llmpool and runs examples/c/quickstart.c.
#
#   bash examples/c/quickstart.sh
#
# With LLMPOOL_API_KEY or HOLYSHEEP_API_KEY set, it calls the real gateway
# (LLMPOOL_BASE_URL, default https://api.holysheep.ai/v1). Without a key, it
# starts the bundled loopback test server (llmpool-testserver) on
# 127.0.0.1, points LLMPOOL_BASE_URL at it, runs the quickstart there and
# stops the server again. Needs only cargo and a C compiler (cc, or $CC).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CC="${CC:-cc}"

echo "==> cargo build --release (library and test server)" >&2
cargo build --release
cargo build --release -p llmpool-testserver

OUT="$ROOT/target/release/quickstart-c"
echo "==> $CC examples/c/quickstart.c -> $OUT" >&2
"$CC" -std=c11 -Wall -Wextra -Werror -O2 -Iinclude examples/c/quickstart.c -o "$OUT" \
  -Ltarget/release -lllmpool -Wl,-rpath,"$ROOT/target/release"

if [ -n "${LLMPOOL_API_KEY:-}" ] || [ -n "${HOLYSHEEP_API_KEY:-}" ]; then
  echo "==> running against ${LLMPOOL_BASE_URL:-https://api.holysheep.ai/v1}" >&2
  exec "$OUT"
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/llmpool-quickstart.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> no API key set: starting the bundled test server on 127.0.0.1" >&2
"$ROOT/target/release/llmpool-testserver" --port 0 >"$DIR/server.out" &
SERVER_PID=$!

URL=""
for _ in $(seq 100); do
  if read -r word url <"$DIR/server.out" 2>/dev/null && [ "$word" = "LISTENING" ]; then
    URL="$url"
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "quickstart.sh: test server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "quickstart.sh: test server did not start" >&2; exit 1; }

echo "==> running against $URL" >&2
env -u LLMPOOL_CA_FILE LLMPOOL_BASE_URL="$URL" "$OUT"
