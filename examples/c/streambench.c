/*
 * Stream benchmark: N chat streams in flight at once, each trickled by the
 * server over seconds, llmpool's async API against libcurl's multi
 * interface, side by side in one run, each in a child process of its own.
 *
 * Run it with `examples/c/bench.sh --streams N [--tls]`, which starts nginx
 * serving a 200-chunk chat stream (text/event-stream) at a limited rate
 * (`limit_rate`), so a stream lasts about 4.5 s. Directly:
 *
 *   streambench --url http://127.0.0.1:P/sse/v1 --streams N [--ca FILE]
 *               [--only llmpool|libcurl]   (one side, in this process)
 *
 * llmpool: every stream submitted from one thread with
 * llmpool_chat_stream_async; its chunks are parsed and assembled by
 * llmpool (each delta counted in the callback); completions come back
 * through an llmpool_queue drained with poll() on the same thread.
 * libcurl: the same N transfers on one multi handle driven by
 * curl_multi_poll on one thread, counting the "data:" lines it receives
 * (it parses no JSON).
 *
 * Per client it prints: streams ok, failures, wall time (first submit to
 * last completion), CPU time (user + system, from getrusage of the child),
 * the most threads of the process while streams were in flight, and RSS
 * growth per stream in flight (peak RSS minus RSS before the first submit,
 * over N). The last lines are the ratios llmpool/libcurl. llmpool runs with
 * its default options (a pool of up to 100 idle connections).
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmpool.h"

static const char *REQUEST =
    "{\"model\":\"bench\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"go\"}]}";

/* What a child reports to the parent through a pipe. */
struct result {
  long ok, failed, chunks;
  double wall_s;
  long peak_threads;
  long rss_before_kib, rss_peak_kib;
  char first_error[200];
};

static void die(const char *msg) {
  fprintf(stderr, "streambench: %s\n", msg);
  exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long status_field(const char *name) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(name);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, name, n) == 0) v = strtol(line + n, NULL, 10);
  if (f) fclose(f);
  return v;
}

static void sample(struct result *r) {
  long t = status_field("Threads:");
  long rss = status_field("VmRSS:");
  if (t > r->peak_threads) r->peak_threads = t;
  if (rss > r->rss_peak_kib) r->rss_peak_kib = rss;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- llmpool ---- */

/* Deltas seen by the stream callbacks (library threads). */
static _Atomic long lp_deltas;

static int on_event(void *ud, const char *delta, size_t delta_len, const char *event,
                    size_t event_len) {
  (void)ud;
  (void)delta;
  (void)event;
  (void)event_len;
  if (delta_len > 0) lp_deltas++;
  return 0;
}

static void run_llmpool(const char *url, const char *ca, long n, struct result *r) {
  char opts[8192];
  char ca_json[6000] = "";
  if (ca) {
    FILE *f = fopen(ca, "r");
    if (!f) die("cannot read --ca");
    char pem[4096];
    size_t len = fread(pem, 1, sizeof pem - 1, f);
    fclose(f);
    pem[len] = 0;
    char *o = ca_json + sprintf(ca_json, ",\"ca_pem\":\"");
    for (size_t i = 0; i < len; i++) {
      if (pem[i] == '\n') {
        *o++ = '\\';
        *o++ = 'n';
      } else {
        *o++ = pem[i];
      }
    }
    *o++ = '"';
    *o = 0;
  }
  snprintf(opts, sizeof opts,
           "{\"base_url\":\"%s\",\"api_key\":\"sk-bench\",\"max_retries\":0%s}", url,
           ca_json);
  llmpool_client *c = NULL;
  char err[512];
  if (llmpool_client_new(opts, &c, err, sizeof err) != LLMPOOL_OK) die(err);
  llmpool_queue *q = NULL;
  if (llmpool_queue_new(&q) != LLMPOOL_OK) die("queue");
  r->rss_before_kib = status_field("VmRSS:");
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    if (llmpool_chat_stream_async(c, REQUEST, on_event, llmpool_queue_done, q, NULL) !=
        LLMPOOL_OK)
      die("submit");
  }
  long done = 0;
  struct pollfd pfd = {.fd = llmpool_queue_fd(q), .events = POLLIN};
  double last_sample = 0;
  while (done < n) {
    poll(&pfd, 1, 50);
    llmpool_response *resp;
    while ((resp = llmpool_queue_pop(q)) != NULL) {
      done++;
      if (llmpool_response_code(resp) == LLMPOOL_OK && llmpool_response_status(resp) == 200) {
        r->ok++;
      } else {
        r->failed++;
        if (!r->first_error[0])
          snprintf(r->first_error, sizeof r->first_error, "%s",
                   llmpool_response_error(resp));
      }
      llmpool_response_free(resp);
    }
    double t = now_s();
    if (t - last_sample > 0.05) {
      sample(r);
      last_sample = t;
    }
  }
  r->wall_s = now_s() - t0;
  r->chunks = lp_deltas;
  llmpool_client_free(c);
  llmpool_queue_free(q);
}

/* ---- libcurl multi ---- */

struct cu_stream {
  long data_lines;
  int at_line_start;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud) {
  struct cu_stream *s = ud;
  size_t len = size * nmemb;
  for (size_t i = 0; i < len; i++) {
    if (s->at_line_start && i + 5 <= len && memcmp(p + i, "data:", 5) == 0) s->data_lines++;
    s->at_line_start = p[i] == '\n';
  }
  return len;
}

static void run_curl(const char *url, const char *ca, long n, struct result *r) {
  char full[1024];
  snprintf(full, sizeof full, "%s/chat/completions", url);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM *m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, n);
  struct cu_stream *streams = calloc((size_t)n, sizeof *streams);
  struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, "Authorization: Bearer sk-bench");
  r->rss_before_kib = status_field("VmRSS:");
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    CURL *e = curl_easy_init();
    streams[i].at_line_start = 1;
    curl_easy_setopt(e, CURLOPT_URL, full);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, REQUEST);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &streams[i]);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &streams[i]);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    curl_multi_add_handle(m, e);
  }
  int running = 1;
  double last_sample = 0;
  while (running) {
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE) continue;
      long code = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      struct cu_stream *s;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      if (msg->data.result == CURLE_OK && code == 200) {
        r->ok++;
        r->chunks += s->data_lines;
      } else {
        r->failed++;
        if (!r->first_error[0])
          snprintf(r->first_error, sizeof r->first_error, "%s (HTTP %ld)",
                   curl_easy_strerror(msg->data.result), code);
      }
      curl_multi_remove_handle(m, msg->easy_handle);
      curl_easy_cleanup(msg->easy_handle);
    }
    double t = now_s();
    if (t - last_sample > 0.05) {
      sample(r);
      last_sample = t;
    }
    if (running) curl_multi_poll(m, NULL, 0, 50, NULL);
  }
  r->wall_s = now_s() - t0;
  curl_slist_free_all(hdrs);
  curl_multi_cleanup(m);
  free(streams);
}

/* Runs one contender in a child; its result and CPU time come back. */
static double run_child(int which, const char *url, const char *ca, long n, struct result *r) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    raise_nofile();
    struct result mine;
    memset(&mine, 0, sizeof mine);
    if (which == 0)
      run_llmpool(url, ca, n, &mine);
    else
      run_curl(url, ca, n, &mine);
    if (write(fds[1], &mine, sizeof mine) != (ssize_t)sizeof mine) _exit(3);
    _exit(0);
  }
  close(fds[1]);
  memset(r, 0, sizeof *r);
  ssize_t got = read(fds[0], r, sizeof *r);
  close(fds[0]);
  int status;
  struct rusage ru;
  wait4(pid, &status, 0, &ru);
  if (got != (ssize_t)sizeof *r || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die(which == 0 ? "the llmpool child failed" : "the libcurl child failed");
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void print(const char *name, const struct result *r, double cpu, long n) {
  printf("%-8s ok %6ld  failed %4ld  chunks %8ld  wall %6.2f s  CPU %6.2f s  threads %5ld  %6.1f KiB/stream",
         name, r->ok, r->failed, r->chunks, r->wall_s, cpu, r->peak_threads,
         (double)(r->rss_peak_kib - r->rss_before_kib) / (double)n);
  if (r->first_error[0]) printf("  first error: %s", r->first_error);
  printf("\n");
}

int main(int argc, char **argv) {
  const char *url = NULL, *ca = NULL, *only = NULL;
  long n = 500;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--url") && i + 1 < argc)
      url = argv[++i];
    else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
      ca = argv[++i];
    else if (!strcmp(argv[i], "--streams") && i + 1 < argc)
      n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else
      die("usage: streambench --url URL --streams N [--ca FILE] [--only llmpool|libcurl]");
  }
  if (!url || n <= 0) die("--url and --streams are required");
  printf("%ld concurrent streams from %s on %ld cores\n", n, url, sysconf(_SC_NPROCESSORS_ONLN));
  struct result lp, cu;
  /* One side alone, in this process (no child): for a profiler wrapped
     around it. */
  if (only) {
    int curl = !strcmp(only, "libcurl");
    if (!curl && strcmp(only, "llmpool")) die("--only: llmpool or libcurl");
    raise_nofile();
    memset(&lp, 0, sizeof lp);
    if (curl)
      run_curl(url, ca, n, &lp);
    else
      run_llmpool(url, ca, n, &lp);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    print(only, &lp,
          ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
              ru.ru_stime.tv_usec / 1e6,
          n);
    return lp.failed ? 1 : 0;
  }
  double cpu_lp = run_child(0, url, ca, n, &lp);
  print("llmpool", &lp, cpu_lp, n);
  double cpu_cu = run_child(1, url, ca, n, &cu);
  print("libcurl", &cu, cpu_cu, n);
  printf("llmpool/libcurl: CPU %.2fx  memory %.2fx  wall %.2fx\n", cpu_lp / cpu_cu,
         (double)(lp.rss_peak_kib - lp.rss_before_kib) /
             (double)(cu.rss_peak_kib - cu.rss_before_kib),
         lp.wall_s / cu.wall_s);
  return lp.failed || cu.failed ? 1 : 0;
}
