#!/usr/bin/env bash
# Builds examples/c/bench.c against the release library and runs it.
#
#   examples/c/bench.sh [bench options...]
#
# Without --url, it starts a local nginx (Debian's; `apt-get install -y nginx
# libcurl4-openssl-dev`) serving a fixed chat-completion JSON with `return
# 200` on 127.0.0.1 over plain HTTP and TLS 1.3 (a generated CA + leaf
# certificate with SAN IP:127.0.0.1; rustls rejects a self-signed certificate
# used as its own CA), runs the benchmark against both, and stops nginx by
# PID. With --url, it runs the benchmark against that server only.
#
# Examples:
#   examples/c/bench.sh --requests 2000
#   examples/c/bench.sh --requests 500 --concurrency 100 --no-sequential
#   examples/c/bench.sh --requests 200 --rtt-ms 20 --svg docs/latency.svg
#   examples/c/bench.sh --url https://gateway.example/v1 --requests 50
#   examples/c/bench.sh --memory [--idle 256] [--inflight 1000]
#   examples/c/bench.sh --async [--calls 1000] [--delay-ms 1000]
#   examples/c/bench.sh --streams 5000 [--tls]
#
# --async runs examples/c/asyncbench.c instead: N calls in flight submitted
# from one thread, llmpool's async API vs libcurl multi, against the
# loopback test server (llmpool-testserver, started and stopped by PID here)
# answering every request after --delay-ms.
#
# --streams N runs examples/c/streambench.c instead: N chat streams in
# flight at once, each 200 chunks that nginx trickles over about 4.5 s
# (`limit_rate`), llmpool's async API against libcurl multi, each on one
# thread in a child process of its own (CPU, threads, KiB per stream, wall
# time). --tls streams over TLS 1.3 instead of plain HTTP. `--only llmpool`
# (or libcurl) runs one side; BENCH_WRAP is put before the benchmark's
# command (a profiler: BENCH_WRAP="heaptrack" or "perf record -g").
#
# --memory runs examples/c/membench.c instead: KiB per idle pooled
# connection and per call in flight, llmpool vs libcurl multi, with glibc's
# thread-stack cache off (GLIBC_TUNABLES) so that only connections count.
#
# With --embeddings it runs examples/c/bench_embeddings.c instead: nginx
# serves a 4 MB embeddings answer (256 x 1536 floats as JSON numbers) and the
# same vectors as base64, and llmpool, libcurl and (with --openai-python
# PYTHON, a Python with the openai package) openai-python fetch them:
#   examples/c/bench.sh --embeddings --requests 50 --openai-python .venv/bin/python
#
# With --gzip it runs examples/c/gzipbench.c instead: nginx with `gzip on`
# serves a generated ~5 MB embeddings answer (300 x 1536 floats) over HTTP
# and TLS; llmpool with and without compression and libcurl with and
# without gzip fetch it, and nginx's access log gives the bytes on the wire:
#   examples/c/bench.sh --gzip --requests 20 [--rtt-ms 20]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

cargo build --release --lib --quiet
BIN="$ROOT/target/release/bench-c"
MEMORY=""
STREAMS=""
STREAMS_TLS=""
prev=""
for a in "$@"; do
  if [ "$a" = "--memory" ]; then MEMORY=1; fi
  if [ "$prev" = "--streams" ]; then STREAMS="$a"; fi
  if [ "$a" = "--tls" ]; then STREAMS_TLS=1; fi
  prev="$a"
done
if [ -n "$STREAMS" ]; then
  SBIN="$ROOT/target/release/streambench-c"
  cc -O2 -Wall -Wextra -std=c11 -o "$SBIN" examples/c/streambench.c -I include \
    -L target/release -Wl,-rpath,"$ROOT/target/release" -lllmpool -lcurl -lpthread
fi
for a in "$@"; do
  if [ "$a" = "--async" ]; then
    args=()
    for b in "$@"; do [ "$b" = "--async" ] || args+=("$b"); done
    cargo build --release --quiet -p llmpool-testserver
    BIN="$ROOT/target/release/asyncbench-c"
    cc -O2 -Wall -Wextra -std=c11 -o "$BIN" examples/c/asyncbench.c -I include \
      -L target/release -Wl,-rpath,"$ROOT/target/release" -lllmpool -lcurl -lpthread -lm
    OUT="$(mktemp "${TMPDIR:-/tmp}/llmpool-asyncbench.XXXXXX")"
    "$ROOT/target/release/llmpool-testserver" --port 0 >"$OUT" &
    SERVER_PID=$!
    trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -f "$OUT"' EXIT
    for _ in $(seq 50); do [ -s "$OUT" ] && break; sleep 0.1; done
    URL="$(awk '/^LISTENING/ {print $2; exit}' "$OUT")"
    [ -n "$URL" ] || { echo "bench.sh: the test server did not start" >&2; exit 2; }
    status=0
    "$BIN" --url "$URL" "${args[@]+"${args[@]}"}" || status=$?
    exit $status
  fi
done
if [ -n "$MEMORY" ]; then
  BIN="$ROOT/target/release/membench-c"
  SRC=examples/c/membench.c
  args=()
  for a in "$@"; do [ "$a" = "--memory" ] || args+=("$a"); done
  set -- "${args[@]+"${args[@]}"}"
  export GLIBC_TUNABLES=glibc.pthread.stack_cache_size=0
else
  SRC=examples/c/bench.c
fi
cc -O2 -Wall -Wextra -std=c11 -o "$BIN" "$SRC" -I include \
  -L target/release -Wl,-rpath,"$ROOT/target/release" -lllmpool -lcurl -lpthread -lm

EMB=""
GZIP=""
for a in "$@"; do
  if [ "$a" = "--url" ]; then
    exec "$BIN" "$@"
  fi
  [ "$a" = "--embeddings" ] && EMB=1
  [ "$a" = "--gzip" ] && GZIP=1
done
if [ -n "$GZIP" ]; then
  GBIN="$ROOT/target/release/gzipbench-c"
  cc -O2 -Wall -Wextra -std=c11 -o "$GBIN" examples/c/gzipbench.c -I include \
    -L target/release -Wl,-rpath,"$ROOT/target/release" -lllmpool -lcurl -lpthread
fi
if [ -n "$EMB" ]; then
  EBIN="$ROOT/target/release/bench-embeddings"
  FLOATS=""
  grep -q 'llmpool_response_embeddings' include/llmpool.h && FLOATS="-DLLMPOOL_BENCH_FLOATS"
  cc -O2 -Wall -Wextra -std=c11 $FLOATS -o "$EBIN" examples/c/bench_embeddings.c -I include \
    -L target/release -Wl,-rpath,"$ROOT/target/release" -lllmpool -lcurl -lm
fi

command -v nginx >/dev/null || { echo "bench.sh: nginx not found (apt-get install -y nginx)" >&2; exit 2; }
DIR="$(mktemp -d "${TMPDIR:-/tmp}/llmpool-bench.XXXXXX")"
NGINX_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT

# CA + leaf (ECDSA P-256), the leaf valid for IP 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -subj "/CN=llmpool bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$DIR/leaf.key" -out "$DIR/leaf.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$DIR/leaf.ext"
openssl x509 -req -in "$DIR/leaf.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
  -days 2 -extfile "$DIR/leaf.ext" -out "$DIR/leaf.pem" 2>/dev/null

BODY='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"

[ -n "$EMB" ] && "$EBIN" --write "$DIR"

# --streams: a chat stream of 200 chunks, as gateways send them.
python3 - "$DIR/stream.sse" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    def ev(delta, finish=None):
        c = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
             "model": "bench", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        f.write("data: " + json.dumps(c, separators=(",", ":")) + "\n\n")
    ev({"role": "assistant", "content": ""})
    for i in range(198):
        ev({"content": "tok%d " % i})
    ev({}, "stop")
    f.write("data: [DONE]\n\n")
PY
# About 4.5 s per stream.
STREAM_RATE=$(( $(stat -c %s "$DIR/stream.sse") * 2 / 9 ))

ACCESS_LOG="access_log off;"
if [ -n "$GZIP" ]; then
  # An embeddings answer as gateways send it: 300 x 1536 floats, ~5 MB.
  python3 - "$DIR/emb-gzip.json" <<'PY'
import json, random, sys
random.seed(7)
data = [{"object": "embedding", "index": i,
         "embedding": [round(random.gauss(0, 0.03), 9) for _ in range(1536)]}
        for i in range(300)]
body = {"object": "list", "data": data, "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 3000, "total_tokens": 3000}}
with open(sys.argv[1], "w") as f:
    json.dump(body, f, separators=(",", ":"))
PY
  echo "embeddings answer: $(stat -c %s "$DIR/emb-gzip.json") bytes" >&2
  ACCESS_LOG="log_format wire '\$request_uri \$status \$bytes_sent'; access_log $DIR/access.log wire;"
fi

started=""
for _ in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 20000)); TLS_PORT=$((PORT + 1)); HOLD_PORT=$((PORT + 2))
  mkdir -p "$DIR/tmp"
  cat >"$DIR/nginx.conf" <<EOF
$USER_LINE
worker_processes 2;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  $ACCESS_LOG
  client_body_temp_path $DIR/tmp/body;
  proxy_temp_path $DIR/tmp/proxy;
  fastcgi_temp_path $DIR/tmp/fastcgi;
  uwsgi_temp_path $DIR/tmp/uwsgi;
  scgi_temp_path $DIR/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$PORT backlog=16384;
    listen 127.0.0.1:$TLS_PORT ssl backlog=16384;
    ssl_certificate $DIR/leaf.pem;
    ssl_certificate_key $DIR/leaf.key;
    ssl_protocols TLSv1.3;
    location = /v1/chat/completions {
      default_type application/json;
      return 200 '$BODY';
    }
    # Static files answer POST with 405; the error page redirects to the
    # same URI as a GET, which serves the file with status 200.
    location = /f32/v1/embeddings {
      default_type application/json;
      alias $DIR/emb-float.json;
      error_page 405 =200 \$uri;
    }
    location = /b64/v1/embeddings {
      default_type application/json;
      alias $DIR/emb-b64.json;
      error_page 405 =200 \$uri;
    }
    # gzipbench: gzip level 1 (nginx's default) for application/json.
    location = /gz/v1/embeddings.json {
      default_type application/json;
      alias $DIR/emb-gzip.json;
      gzip on;
      gzip_types application/json;
      gzip_min_length 1000;
    }
    # streambench: the stream, trickled (limit_rate), to POST as well.
    location = /sse/v1/chat/completions {
      default_type text/event-stream;
      alias $DIR/stream.sse;
      error_page 405 =200 \$uri;
      sendfile off;
      output_buffers 1 4k;
      limit_rate $STREAM_RATE;
    }
    location = /v1/models {
      default_type application/json;
      return 200 '{"object":"list","data":[]}';
    }
    # membench's hold server: answers once all its requests have arrived.
    location /hold/ {
      proxy_pass http://127.0.0.1:$HOLD_PORT/;
    }
  }
}
EOF
  if nginx -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log" 2>"$DIR/start.log"; then
    for _ in $(seq 50); do [ -s "$DIR/nginx.pid" ] && break; sleep 0.1; done
    NGINX_PID="$(cat "$DIR/nginx.pid")"
    started=1
    break
  fi
done
[ -n "$started" ] || { cat "$DIR/start.log" >&2; exit 2; }
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///') on 127.0.0.1:$PORT (http) and :$TLS_PORT (TLS 1.3), pid $NGINX_PID" >&2

status=0
if [ -n "$STREAMS" ]; then
  args=()
  for a in "$@"; do [ "$a" = "--tls" ] || args+=("$a"); done
  if [ -n "$STREAMS_TLS" ]; then
    ${BENCH_WRAP:-} "$SBIN" --url "https://127.0.0.1:$TLS_PORT/sse/v1" --ca "$DIR/ca.pem" "${args[@]}" || status=$?
  else
    ${BENCH_WRAP:-} "$SBIN" --url "http://127.0.0.1:$PORT/sse/v1" "${args[@]}" || status=$?
  fi
  exit $status
fi
if [ -n "$EMB" ]; then
  args=()
  for a in "$@"; do [ "$a" = "--embeddings" ] || args+=("$a"); done
  LLMPOOL_ROOT="$ROOT" "$EBIN" --float-url "http://127.0.0.1:$PORT/f32/v1" \
    --b64-url "http://127.0.0.1:$PORT/b64/v1" "${args[@]+"${args[@]}"}" || status=$?
  exit $status
fi
if [ -n "$GZIP" ]; then
  args=()
  for a in "$@"; do [ "$a" = "--gzip" ] || args+=("$a"); done
  "$GBIN" --url "http://127.0.0.1:$PORT/gz/v1" --url "https://127.0.0.1:$TLS_PORT/gz/v1" \
    --ca "$DIR/ca.pem" --path /embeddings.json --access-log "$DIR/access.log" \
    "${args[@]+"${args[@]}"}" || status=$?
  exit $status
fi
EXTRA=()
if [ -n "$MEMORY" ]; then EXTRA=(--hold-port "$HOLD_PORT"); fi
"$BIN" "${EXTRA[@]+"${EXTRA[@]}"}" --url "http://127.0.0.1:$PORT/v1" --url "https://127.0.0.1:$TLS_PORT/v1" --ca "$DIR/ca.pem" "$@" || status=$?
exit $status
