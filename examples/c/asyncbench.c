/*
 * Async benchmark: N calls in flight submitted from ONE thread, llmpool's
 * async API (completion queue + poll) against libcurl's multi interface
 * (one thread, N transfers), side by side in one run, against a server
 * that answers every request after --delay-ms (default 1000).
 *
 * Run it with `examples/c/bench.sh --async [--calls 1000] [--delay-ms 1000]`,
 * which starts the loopback test server (llmpool-testserver, plain HTTP;
 * each request's delay is a queued "delay" fault) and builds this file.
 * Directly:
 *
 *   asyncbench --url http://127.0.0.1:P/v1 [--calls N] [--delay-ms MS]
 *              [--retry-after] [--threads K]
 *
 * --retry-after: every call is first answered at once with HTTP 429 and
 * "Retry-After: MS" (retry-after-ms), then answered at once. llmpool
 * retries by itself (max_retries 1); the libcurl program re-adds each
 * transfer to its multi handle when the wait is over, as an event loop
 * would. --threads K caps llmpool's library threads (async_max_threads):
 * a waiting call holds none, so 1,000 waits need no 1,000 threads.
 *
 * Per client it prints: calls, errors, wall time (first submit to last
 * completion), submit latency (median, p99, max: the time one submit call
 * takes on the submitting thread), threads of the process while the calls
 * are in flight, and RSS growth per call in flight (RSS sampled halfway
 * through the delay, minus RSS before the first submit, over N).
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

/* --retry-after: answered 429 + Retry-After first; --threads: async_max_threads. */
static int retry_after = 0;
static int max_threads = 1024;

static const char *REQUEST_BODY =
    "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"ping\"}]}";

static void die(const char *msg) {
  fprintf(stderr, "asyncbench: %s\n", msg);
  exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status, e.g. "VmRSS:" (KiB) or "Threads:". */
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

/* RSS (KiB) of llmpool's thread stacks: anonymous rw mappings of its
 * 512 KiB stack size less the guard page. */
static long stacks_rss_kib(void) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  long total = 0;
  int in_stack = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[8];
    int path_at = 0;
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &path_at) == 3) {
      unsigned long kib = (hi - lo) / 1024;
      int anon = path_at == 0 || line[path_at] == '\n' || line[path_at] == '\0';
      in_stack = anon && !strcmp(perms, "rw-p") && kib >= 500 && kib <= 512;
    } else if (in_stack && !strncmp(line, "Rss:", 4)) {
      total += strtol(line + 4, NULL, 10);
    }
  }
  if (f) fclose(f);
  return total;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  const char *client;
  int calls, errors;
  double wall_s, submit_med_us, submit_p99_us, submit_max_us;
  long threads, rss_per_call_b, stack_per_call_b;
} result_t;

static void finish_latencies(result_t *r, double *lat, int n) {
  qsort(lat, (size_t)n, sizeof *lat, cmp_double);
  r->submit_med_us = lat[n / 2] * 1e6;
  r->submit_p99_us = lat[(int)(n * 0.99)] * 1e6;
  r->submit_max_us = lat[n - 1] * 1e6;
}

/* Queues one fault per call on the test server: a delay of `ms`, or with
 * --retry-after a 429 telling the client to retry after `ms`. */
static void push_delays(llmpool_client *control, int n, int ms) {
  char body[160];
  if (retry_after)
    snprintf(body, sizeof body,
             "{\"type\":\"status\",\"code\":429,\"headers\":{\"retry-after-ms\":\"%d\"},"
             "\"times\":%d}",
             ms, n);
  else
    snprintf(body, sizeof body, "{\"type\":\"delay\",\"ms\":%d,\"times\":%d}", ms, n);
  llmpool_response *r = NULL;
  if (llmpool_request(control, "POST", "/_test/faults", body, &r) != LLMPOOL_OK) {
    fprintf(stderr, "asyncbench: pushing faults: %s\n", llmpool_response_error(r));
    die("the server must be llmpool-testserver (it takes delay faults)");
  }
  llmpool_response_free(r);
}

/* Sleeps until `t`, then samples threads and RSS. */
static void sample_at(double t, long *threads, long *rss_kib) {
  double d = t - now_s();
  if (d > 0) {
    struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
    nanosleep(&ts, NULL);
  }
  *threads = status_field("Threads:");
  *rss_kib = status_field("VmRSS:");
}

static result_t run_llmpool(llmpool_client *control, const char *url, int n, int delay_ms) {
  char opts[512], err[256];
  snprintf(opts, sizeof opts,
           "{\"base_url\":\"%s\",\"max_retries\":%d,\"timeout_ms\":60000,"
           "\"async_max_threads\":%d}",
           url, retry_after ? 1 : 0, max_threads);
  llmpool_client *c = NULL;
  if (llmpool_client_new(opts, &c, err, sizeof err) != LLMPOOL_OK) die(err);
  llmpool_queue *q = NULL;
  if (llmpool_queue_new(&q) != LLMPOOL_OK) die("queue");
  /* Warm-up: code paths and the allocator, not measured. */
  llmpool_response *w = NULL;
  if (llmpool_chat(c, REQUEST_BODY, &w) != LLMPOOL_OK) die(llmpool_response_error(w));
  llmpool_response_free(w);
  push_delays(control, n, delay_ms);

  result_t r = {.client = "llmpool async (queue fd)", .calls = n};
  double *lat = calloc((size_t)n, sizeof *lat);
  long rss0 = status_field("VmRSS:");
  double t0 = now_s();
  for (int i = 0; i < n; i++) {
    double s = now_s();
    llmpool_code rc = llmpool_chat_async(c, REQUEST_BODY, llmpool_queue_done, q, NULL);
    lat[i] = now_s() - s;
    if (rc != LLMPOOL_OK) die("submit refused");
  }
  long rss1 = 0, stacks0 = stacks_rss_kib();
  sample_at(t0 + delay_ms / 2000.0, &r.threads, &rss1);
  r.rss_per_call_b = (rss1 - rss0) * 1024 / n;
  r.stack_per_call_b = (stacks_rss_kib() - stacks0) * 1024 / n;
  struct pollfd p = {.fd = llmpool_queue_fd(q), .events = POLLIN};
  int done = 0;
  while (done < n) {
    if (poll(&p, 1, 30000) <= 0) die("no completion for 30 s");
    llmpool_response *resp;
    while ((resp = llmpool_queue_pop(q)) != NULL) {
      if (llmpool_response_code(resp) != LLMPOOL_OK) {
        if (!r.errors) fprintf(stderr, "asyncbench: llmpool: %s\n", llmpool_response_error(resp));
        r.errors++;
      }
      llmpool_response_free(resp);
      done++;
    }
  }
  r.wall_s = now_s() - t0;
  finish_latencies(&r, lat, n);
  free(lat);
  llmpool_client_free(c);
  llmpool_queue_free(q);
  return r;
}

static size_t sink(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static result_t run_curl(llmpool_client *control, const char *url, int n, int delay_ms) {
  char chat_url[512];
  snprintf(chat_url, sizeof chat_url, "%s/chat/completions", url);
  struct curl_slist *hdr = curl_slist_append(NULL, "content-type: application/json");
  CURLM *m = curl_multi_init();
  CURL **easy = calloc((size_t)n, sizeof *easy);
  for (int i = 0; i < n; i++) {
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, chat_url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, REQUEST_BODY);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
    easy[i] = h;
  }
  push_delays(control, n, delay_ms);

  result_t r = {.client = "libcurl multi (1 thread)", .calls = n};
  double *lat = calloc((size_t)n, sizeof *lat);
  long rss0 = status_field("VmRSS:");
  double t0 = now_s();
  for (int i = 0; i < n; i++) {
    double s = now_s();
    curl_multi_add_handle(m, easy[i]);
    lat[i] = now_s() - s;
  }
  int running = 1, done = 0, sampled = 0;
  long rss1 = 0;
  double half = t0 + delay_ms / 2000.0;
  /* --retry-after: transfers answered 429, re-added at their due time. */
  CURL **again = calloc((size_t)n, sizeof *again);
  double *due = calloc((size_t)n, sizeof *due);
  int waiting = 0, retried = 0;
  while (running || waiting || done < n) {
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      long status = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (retry_after && status == 429 && retried < n) {
        CURL *h = msg->easy_handle;
        curl_multi_remove_handle(m, h);
        again[waiting] = h;
        due[waiting++] = now_s() + delay_ms / 1000.0;
        retried++;
        continue;
      }
      if (msg->data.result != CURLE_OK || status != 200) {
        if (!r.errors) fprintf(stderr, "asyncbench: curl: %s (HTTP %ld)\n",
                               curl_easy_strerror(msg->data.result), status);
        r.errors++;
      }
      done++;
    }
    if (!sampled && now_s() >= half) {
      sampled = 1;
      r.threads = status_field("Threads:");
      rss1 = status_field("VmRSS:");
    }
    /* Due retries go back in (they were queued in due order). */
    int k = 0;
    while (k < waiting && due[k] <= now_s()) curl_multi_add_handle(m, again[k++]);
    if (k) {
      memmove(again, again + k, (size_t)(waiting - k) * sizeof *again);
      memmove(due, due + k, (size_t)(waiting - k) * sizeof *due);
      waiting -= k;
      running = 1;
    }
    if (running) curl_multi_poll(m, NULL, 0, 20, NULL);
    else if (waiting) usleep(1000);
    if (now_s() - t0 > 60) die("libcurl: not done after 60 s");
  }
  free(again);
  free(due);
  r.wall_s = now_s() - t0;
  r.rss_per_call_b = (rss1 - rss0) * 1024 / n;
  finish_latencies(&r, lat, n);
  free(lat);
  for (int i = 0; i < n; i++) {
    curl_multi_remove_handle(m, easy[i]);
    curl_easy_cleanup(easy[i]);
  }
  free(easy);
  curl_multi_cleanup(m);
  curl_slist_free_all(hdr);
  return r;
}

static void row(const result_t *r) {
  printf("| %s | %d | %d | %.2f | %.1f | %.1f | %.1f | %ld | %.1f | %.1f |\n", r->client,
         r->calls, r->errors, r->wall_s, r->submit_med_us, r->submit_p99_us, r->submit_max_us,
         r->threads, r->rss_per_call_b / 1024.0, r->stack_per_call_b / 1024.0);
}

int main(int argc, char **argv) {
  const char *url = NULL;
  int n = 1000, delay_ms = 1000;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--url") && i + 1 < argc) url = argv[++i];
    else if (!strcmp(argv[i], "--calls") && i + 1 < argc) n = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc) delay_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--retry-after")) retry_after = 1;
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) max_threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: asyncbench --url URL [--calls N] [--delay-ms MS] "
                      "[--retry-after] [--threads K]\n");
      return 2;
    }
  }
  if (!url || n < 1) die("--url is required and --calls must be >= 1");
  /* N sockets here (and N in the server): lift the soft fd limit. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  char opts[512], err[256];
  snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"max_retries\":0}", url);
  llmpool_client *control = NULL;
  if (llmpool_client_new(opts, &control, err, sizeof err) != LLMPOOL_OK) die(err);

  if (retry_after)
    printf("%d calls submitted from one thread to %s, each answered 429 with Retry-After %d ms "
           "first, then at once; llmpool async_max_threads %d\n\n",
           n, url, delay_ms, max_threads);
  else
    printf("%d calls submitted from one thread to %s, each answered after %d ms\n\n", n, url,
           delay_ms);
  printf("| client | calls | errors | wall s | submit median us | submit p99 us | submit max us | threads in flight | RSS KiB per call in flight | of which thread stacks |\n");
  printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  fflush(stdout);
  int failed = 0;
  for (int which = 0; which < 2; which++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      llmpool_client *ctl = NULL;
      if (llmpool_client_new(opts, &ctl, err, sizeof err) != LLMPOOL_OK) die(err);
      result_t r = which == 0 ? run_llmpool(ctl, url, n, delay_ms) : run_curl(ctl, url, n, delay_ms);
      row(&r);
      fflush(stdout);
      _exit(r.errors ? 1 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
  }
  (void)control;
  llmpool_client_free(control);
  curl_global_cleanup();
  return failed;
}
