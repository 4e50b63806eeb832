/*
 * bench.c: llmpool as C callers use it, pooled vs unpooled, against libcurl.
 *
 * Uses only the public C API (include/llmpool.h), pthreads and libcurl.
 * Build and run with examples/c/bench.sh, which starts a local nginx (plain
 * HTTP and TLS 1.3) unless you pass --url.
 *
 *   bench --url http://127.0.0.1:8080/v1 [--url https://127.0.0.1:8443/v1 --ca ca.pem]
 *         [--requests N] [--concurrency N] [--no-sequential] [--rtt-ms N]
 *         [--rtt-syn] [--svg FILE] [--json FILE] [--no-curl] [--no-batch]
 *
 * For every target URL and every concurrency (1, and N when --concurrency N
 * is given with N > 1) it runs these modes on the same server, one after
 * the other:
 *   llmpool-pooled    one client, keep-alive pool (threads share it)
 *   llmpool-unpooled  one client with {"pool_max_idle": 0}: a new
 *                     connection (and TLS handshake) for every call
 *   llmpool-batch     (concurrent only) llmpool_chat_batch on a pooled client
 *   libcurl           one easy handle per thread, keep-alive
 * and prints a table, ratios, and one JSON report (last thing on stdout).
 *
 * --rtt-ms N puts a userspace delay relay in front of every target: a
 * pthread TCP proxy on 127.0.0.1 that delivers each chunk N/2 ms after it
 * arrived, in each direction (a delay line, so chunks are not delayed more
 * than N/2 ms each even when several are in flight). It does NOT delay the
 * TCP handshake (SYN / SYN-ACK) between the client and the proxy: connect()
 * returns at loopback speed. It DOES delay every byte after that, so the TLS
 * handshake costs its real round trips and every HTTP request/response costs
 * one RTT. --rtt-syn additionally holds the first client->server chunk of
 * each new connection for one extra RTT, which models the TCP handshake a
 * real network would charge a new connection. The relay rewrites the URL
 * host to 127.0.0.1, so a TLS server's certificate must cover IP 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "llmpool.h"
#include "relay.h"

#define MAX_TARGETS 4
#define MAX_RESULTS 64

static const char *REQUEST_BODY =
    "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"ping\"}]}";

/* ------------------------------------------------------------------ */
/* Runs                                                                */
/* ------------------------------------------------------------------ */

typedef enum { M_POOLED, M_UNPOOLED, M_BATCH, M_CURL } mode_t_;
static const char *MODE_NAMES[] = {"llmpool-pooled", "llmpool-unpooled", "llmpool-batch", "libcurl"};

typedef struct {
  const char *target; /* "http" / "https" label */
  int concurrency;
  mode_t_ mode;
  size_t requests, errors;
  double wall_s, rps, p50, p90, p99, max;
  long connections;
  double *lat; /* sorted latencies, ms */
  char first_error[256];
} result_t;

typedef struct {
  const char *base_url; /* llmpool base URL */
  char chat_url[1024];  /* for curl */
  const char *ca;       /* CA file or NULL */
  size_t total;
  atomic_size_t next;
  atomic_size_t errors;
  double *lat;
  llmpool_client *client;
  atomic_long curl_connects;
  pthread_mutex_t err_lock;
  char first_error[256];
} job_t;

static void note_error(job_t *j, const char *msg) {
  atomic_fetch_add(&j->errors, 1);
  pthread_mutex_lock(&j->err_lock);
  if (!j->first_error[0]) snprintf(j->first_error, sizeof j->first_error, "%s", msg);
  pthread_mutex_unlock(&j->err_lock);
}

static void *llmpool_worker(void *arg) {
  job_t *j = arg;
  for (;;) {
    size_t i = atomic_fetch_add(&j->next, 1);
    if (i >= j->total) break;
    llmpool_response *r = NULL;
    double t0 = now_ms();
    llmpool_code code = llmpool_chat(j->client, REQUEST_BODY, &r);
    j->lat[i] = now_ms() - t0;
    if (code != LLMPOOL_OK) note_error(j, llmpool_response_error(r));
    llmpool_response_free(r);
  }
  return NULL;
}

static size_t curl_sink(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static void *curl_worker(void *arg) {
  job_t *j = arg;
  CURL *h = curl_easy_init();
  if (!h) die("curl_easy_init failed");
  struct curl_slist *hdr = NULL;
  hdr = curl_slist_append(hdr, "Content-Type: application/json");
  hdr = curl_slist_append(hdr, "Accept: application/json");
  curl_easy_setopt(h, CURLOPT_URL, j->chat_url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, REQUEST_BODY);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(REQUEST_BODY));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_sink);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  if (j->ca) curl_easy_setopt(h, CURLOPT_CAINFO, j->ca);
  long connects = 0;
  for (;;) {
    size_t i = atomic_fetch_add(&j->next, 1);
    if (i >= j->total) break;
    double t0 = now_ms();
    CURLcode rc = curl_easy_perform(h);
    j->lat[i] = now_ms() - t0;
    long status = 0, nc = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nc);
    connects += nc;
    if (rc != CURLE_OK) note_error(j, curl_easy_strerror(rc));
    else if (status != 200) note_error(j, "non-200 status");
  }
  atomic_fetch_add(&j->curl_connects, connects);
  curl_slist_free_all(hdr);
  curl_easy_cleanup(h);
  return NULL;
}

static llmpool_client *make_client(const char *base_url, const char *ca, int pooled, int conc) {
  char opts[2048];
  int idle = conc > 100 ? conc : 100, per_host = conc > 20 ? conc : 20;
  char ca_opt[1100] = "";
  if (ca) snprintf(ca_opt, sizeof ca_opt, ", \"ca_file\": \"%s\"", ca);
  if (pooled)
    snprintf(opts, sizeof opts,
             "{\"base_url\": \"%s\", \"max_retries\": 0, \"pool_max_idle\": %d, "
             "\"pool_max_idle_per_host\": %d%s}",
             base_url, idle, per_host, ca_opt);
  else
    snprintf(opts, sizeof opts, "{\"base_url\": \"%s\", \"max_retries\": 0, \"pool_max_idle\": 0%s}",
             base_url, ca_opt);
  llmpool_client *c = NULL;
  char err[512];
  if (llmpool_client_new(opts, &c, err, sizeof err) != LLMPOOL_OK) {
    fprintf(stderr, "bench: llmpool_client_new: %s\n", err);
    exit(2);
  }
  return c;
}

static long metric_u64(llmpool_client *c, const char *key) {
  char *m = llmpool_client_metrics(c);
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = m ? strstr(m, pat) : NULL;
  long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
  llmpool_string_free(m);
  return v;
}

static double info_latency(const llmpool_response *r) {
  const char *info = llmpool_response_info(r);
  const char *p = strstr(info, "\"latency_ms\":");
  return p ? strtod(p + 13, NULL) : 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(const double *sorted, size_t n, double p) {
  if (n == 0) return 0;
  size_t idx = (size_t)ceil(p * n);
  if (idx > 0) idx--;
  if (idx >= n) idx = n - 1;
  return sorted[idx];
}

static void run_mode(result_t *res, const char *label, const url_t *u, const char *base_url,
                     const char *ca, mode_t_ mode, int conc, size_t total) {
  job_t j;
  memset(&j, 0, sizeof j);
  j.base_url = base_url;
  snprintf(j.chat_url, sizeof j.chat_url, "%s/chat/completions", base_url);
  (void)u;
  j.ca = ca;
  j.total = total;
  j.lat = calloc(total, sizeof(double));
  pthread_mutex_init(&j.err_lock, NULL);
  if (!j.lat) die("out of memory");
  if (mode != M_CURL) j.client = make_client(base_url, ca, mode != M_UNPOOLED, conc);

  double t0 = now_ms();
  if (mode == M_BATCH) {
    const char **reqs = malloc(total * sizeof *reqs);
    llmpool_response **out = calloc(total, sizeof *out);
    if (!reqs || !out) die("out of memory");
    for (size_t i = 0; i < total; i++) reqs[i] = REQUEST_BODY;
    llmpool_chat_batch(j.client, reqs, total, (size_t)conc, NULL, NULL, out);
    for (size_t i = 0; i < total; i++) {
      j.lat[i] = info_latency(out[i]);
      if (llmpool_response_code(out[i]) != LLMPOOL_OK) note_error(&j, llmpool_response_error(out[i]));
    }
    llmpool_responses_free(out, total);
    free(out);
    free(reqs);
  } else {
    void *(*fn)(void *) = mode == M_CURL ? curl_worker : llmpool_worker;
    if (conc <= 1) {
      fn(&j);
    } else {
      pthread_t *th = calloc((size_t)conc, sizeof *th);
      int started = 0;
      for (int i = 0; i < conc; i++)
        if (pthread_create(&th[i], NULL, fn, &j) == 0) started++;
        else th[i] = 0;
      if (started == 0) die("cannot start threads");
      for (int i = 0; i < conc; i++)
        if (th[i]) pthread_join(th[i], NULL);
      free(th);
    }
  }
  double wall = now_ms() - t0;

  memset(res, 0, sizeof *res);
  res->target = label;
  res->concurrency = conc;
  res->mode = mode;
  res->requests = total;
  res->errors = atomic_load(&j.errors);
  res->wall_s = wall / 1e3;
  res->rps = total / (wall / 1e3);
  qsort(j.lat, total, sizeof(double), cmp_double);
  res->lat = j.lat;
  res->p50 = pct(j.lat, total, 0.50);
  res->p90 = pct(j.lat, total, 0.90);
  res->p99 = pct(j.lat, total, 0.99);
  res->max = total ? j.lat[total - 1] : 0;
  res->connections = mode == M_CURL ? atomic_load(&j.curl_connects) : metric_u64(j.client, "connections_opened");
  snprintf(res->first_error, sizeof res->first_error, "%s", j.first_error);
  if (j.client) llmpool_client_free(j.client);
  pthread_mutex_destroy(&j.err_lock);
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static const result_t *find(const result_t *rs, int n, const char *target, int conc, mode_t_ m) {
  for (int i = 0; i < n; i++)
    if (strcmp(rs[i].target, target) == 0 && rs[i].concurrency == conc && rs[i].mode == m) return &rs[i];
  return NULL;
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

static void write_json(FILE *f, const result_t *rs, int n, int rtt, int syn, const char **labels,
                       int nt, const int *concs, int nc) {
  fprintf(f, "{\"llmpool_version\": ");
  json_str(f, llmpool_version());
  fprintf(f, ", \"libcurl_version\": ");
  json_str(f, curl_version_info(CURLVERSION_NOW)->version);
  fprintf(f, ", \"cpus\": %ld, \"rtt_ms\": %d, \"rtt_syn\": %s, \"results\": [", sysconf(_SC_NPROCESSORS_ONLN),
          rtt, syn ? "true" : "false");
  for (int i = 0; i < n; i++) {
    const result_t *r = &rs[i];
    fprintf(f,
            "%s\n  {\"target\": \"%s\", \"concurrency\": %d, \"mode\": \"%s\", \"requests\": %zu, "
            "\"errors\": %zu, \"wall_s\": %.4f, \"rps\": %.1f, \"latency_ms\": {\"p50\": %.3f, "
            "\"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}, \"connections_opened\": %ld, \"first_error\": ",
            i ? "," : "", r->target, r->concurrency, MODE_NAMES[r->mode], r->requests, r->errors, r->wall_s,
            r->rps, r->p50, r->p90, r->p99, r->max, r->connections);
    json_str(f, r->first_error);
    fputc('}', f);
  }
  fprintf(f, "\n], \"ratios\": [");
  int first = 1;
  for (int t = 0; t < nt; t++)
    for (int c = 0; c < nc; c++) {
      const result_t *p = find(rs, n, labels[t], concs[c], M_POOLED);
      const result_t *u = find(rs, n, labels[t], concs[c], M_UNPOOLED);
      const result_t *k = find(rs, n, labels[t], concs[c], M_CURL);
      if (!p) continue;
      fprintf(f, "%s\n  {\"target\": \"%s\", \"concurrency\": %d", first ? "" : ",", labels[t], concs[c]);
      first = 0;
      if (u)
        fprintf(f, ", \"pooled_over_unpooled_rps\": %.3f, \"unpooled_over_pooled_p50\": %.3f",
                ratio(p->rps, u->rps), ratio(u->p50, p->p50));
      if (k)
        fprintf(f, ", \"llmpool_over_libcurl_rps\": %.3f, \"llmpool_over_libcurl_p50\": %.3f",
                ratio(p->rps, k->rps), ratio(p->p50, k->p50));
      fputc('}', f);
    }
  fprintf(f, "\n]}\n");
}

static void print_table(const result_t *rs, int n, const char **labels, int nt, const int *concs, int nc) {
  printf("%-6s %5s %-17s %8s %6s %8s %9s %8s %8s %8s %8s %6s\n", "target", "conc", "mode", "requests",
         "errors", "wall_s", "req/s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "conns");
  for (int t = 0; t < nt; t++)
    for (int c = 0; c < nc; c++) {
      for (int i = 0; i < n; i++) {
        const result_t *r = &rs[i];
        if (strcmp(r->target, labels[t]) || r->concurrency != concs[c]) continue;
        printf("%-6s %5d %-17s %8zu %6zu %8.3f %9.1f %8.3f %8.3f %8.3f %8.3f %6ld\n", r->target, r->concurrency,
               MODE_NAMES[r->mode], r->requests, r->errors, r->wall_s, r->rps, r->p50, r->p90, r->p99, r->max,
               r->connections);
        if (r->errors) printf("       first error: %s\n", r->first_error);
      }
      const result_t *p = find(rs, n, labels[t], concs[c], M_POOLED);
      const result_t *u = find(rs, n, labels[t], concs[c], M_UNPOOLED);
      const result_t *k = find(rs, n, labels[t], concs[c], M_CURL);
      if (p && (u || k)) {
        printf("       ratios:");
        if (u)
          printf(" pooled/unpooled req/s %.2fx, unpooled/pooled p50 %.2fx;", ratio(p->rps, u->rps),
                 ratio(u->p50, p->p50));
        if (k)
          printf(" llmpool/libcurl req/s %.2fx, p50 %.2fx", ratio(p->rps, k->rps), ratio(p->p50, k->p50));
        printf("\n");
      }
    }
}

/* A latency CDF per target (log-scale x axis), pooled vs unpooled (and libcurl). */
static void write_svg(const char *path, const result_t *rs, int n, const char **labels, int nt, int conc,
                      int rtt) {
  FILE *f = fopen(path, "w");
  if (!f) die("cannot write the SVG file");
  const int pw = 440, ph = 300, ml = 60, mr = 20, mt = 40, mb = 50;
  int W = nt * (pw + ml + mr), H = ph + mt + mb + 30;
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
          "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
          W, H, W, H);
  static const char *colors[] = {"#1f77b4", "#d62728", "#9467bd", "#2ca02c"};
  static const char *dash[] = {"", "", "6,3", "2,3"};
  for (int t = 0; t < nt; t++) {
    int ox = t * (pw + ml + mr) + ml, oy = mt;
    double lo = 1e300, hi = 0;
    for (int i = 0; i < n; i++) {
      const result_t *r = &rs[i];
      if (strcmp(r->target, labels[t]) || r->concurrency != conc || !r->requests) continue;
      if (r->lat[0] > 0 && r->lat[0] < lo) lo = r->lat[0];
      if (r->lat[r->requests - 1] > hi) hi = r->lat[r->requests - 1];
    }
    if (hi <= 0) continue;
    if (lo <= 0 || lo > hi) lo = hi / 10;
    double l0 = floor(log10(lo)), l1 = ceil(log10(hi));
    if (l1 <= l0) l1 = l0 + 1;
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\">%s, concurrency %d, "
            "RTT %d ms</text>\n",
            ox + pw / 2, oy - 15, labels[t], conc, rtt);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", ox, oy, pw,
            ph);
    for (double d = l0; d <= l1 + 1e-9; d += 1) {
      for (int m = 1; m < 10; m++) {
        double v = log10(m) + d;
        if (v > l1 + 1e-9) break;
        double x = ox + (v - l0) / (l1 - l0) * pw;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\"/>\n", x, oy, x, oy + ph,
                m == 1 ? "#bbb" : "#eee");
        if (m == 1)
          fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", x, oy + ph + 16,
                  pow(10, d));
      }
    }
    for (int q = 0; q <= 4; q++) {
      double y = oy + ph - q * ph / 4.0;
      fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>\n", ox, y, ox + pw, y);
      fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", ox - 5, y + 4, q / 4.0);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">latency (ms, log scale)</text>\n", ox + pw / 2,
            oy + ph + 36);
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 %d %d)\">fraction of "
            "requests</text>\n",
            ox - 42, oy + ph / 2, ox - 42, oy + ph / 2);
    int legend = 0;
    for (int i = 0; i < n; i++) {
      const result_t *r = &rs[i];
      if (strcmp(r->target, labels[t]) || r->concurrency != conc || !r->requests) continue;
      fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"%s\" points=\"",
              colors[r->mode], dash[r->mode]);
      size_t step = r->requests > 400 ? r->requests / 400 : 1;
      for (size_t k = 0; k < r->requests; k += step) {
        double v = r->lat[k] > 0 ? log10(r->lat[k]) : l0;
        double x = ox + (v - l0) / (l1 - l0) * pw;
        double y = oy + ph - (double)(k + 1) / r->requests * ph;
        fprintf(f, "%.1f,%.1f ", x, y);
      }
      double v = log10(r->lat[r->requests - 1] > 0 ? r->lat[r->requests - 1] : lo);
      fprintf(f, "%.1f,%d\"/>\n", ox + (v - l0) / (l1 - l0) * pw, oy);
      int ly = oy + ph - 20 - legend * 16;
      fprintf(f,
              "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\" "
              "stroke-dasharray=\"%s\"/><text x=\"%d\" y=\"%d\">%s (p50 %.2f ms)</text>\n",
              ox + pw - 210, ly, ox + pw - 185, ly, colors[r->mode], dash[r->mode], ox + pw - 180, ly + 4,
              MODE_NAMES[r->mode], r->p50);
      legend++;
    }
  }
  fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#555\">llmpool %s bench: latency CDF, pooled vs unpooled vs libcurl</text>\n",
          ml, H - 8, llmpool_version());
  fprintf(f, "</svg>\n");
  fclose(f);
}

/* ------------------------------------------------------------------ */

static void usage(void) {
  fprintf(stderr,
          "usage: bench --url BASE_URL [--url BASE_URL2] [--ca FILE] [--requests N] [--concurrency N]\n"
          "             [--no-sequential] [--rtt-ms N] [--rtt-syn] [--svg FILE] [--json FILE]\n"
          "             [--no-curl] [--no-batch] [--no-unpooled]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *urls[MAX_TARGETS];
  int nurls = 0, conc = 1, rtt = 0, syn = 0, seq = 1, use_curl = 1, use_batch = 1, use_unpooled = 1;
  size_t total = 1000;
  const char *ca = NULL, *svg = NULL, *json_path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
    if (!strcmp(a, "--url")) {
      if (nurls == MAX_TARGETS) die("too many --url");
      urls[nurls++] = NEXT();
    } else if (!strcmp(a, "--ca")) ca = NEXT();
    else if (!strcmp(a, "--requests")) total = strtoul(NEXT(), NULL, 10);
    else if (!strcmp(a, "--concurrency")) conc = atoi(NEXT());
    else if (!strcmp(a, "--rtt-ms")) rtt = atoi(NEXT());
    else if (!strcmp(a, "--rtt-syn")) syn = 1;
    else if (!strcmp(a, "--svg")) svg = NEXT();
    else if (!strcmp(a, "--json")) json_path = NEXT();
    else if (!strcmp(a, "--no-sequential")) seq = 0;
    else if (!strcmp(a, "--no-curl")) use_curl = 0;
    else if (!strcmp(a, "--no-batch")) use_batch = 0;
    else if (!strcmp(a, "--no-unpooled")) use_unpooled = 0;
    else usage();
  }
  if (nurls == 0 || total == 0 || conc < 1 || rtt < 0) usage();
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);

  int concs[2], nc = 0;
  if (seq || conc == 1) concs[nc++] = 1;
  if (conc > 1) concs[nc++] = conc;

  const char *labels[MAX_TARGETS];
  char *bases[MAX_TARGETS];
  url_t us[MAX_TARGETS];
  for (int t = 0; t < nurls; t++) {
    if (parse_url(urls[t], &us[t]) < 0) die("cannot parse --url");
    labels[t] = strdup(us[t].scheme);
    for (int k = 0; k < t; k++)
      if (!strcmp(labels[k], labels[t])) {
        char *l = malloc(32);
        snprintf(l, 32, "%.7s%d", us[t].scheme, t + 1);
        labels[t] = l;
      }
    bases[t] = malloc(2048);
    if (rtt > 0) {
      relay_t *r = relay_start(&us[t], rtt, syn);
      snprintf(bases[t], 2048, "%.7s://127.0.0.1:%d%.511s", us[t].scheme, r->port, us[t].path);
    } else {
      snprintf(bases[t], 2048, "%s", urls[t]);
      size_t n = strlen(bases[t]);
      while (n && bases[t][n - 1] == '/') bases[t][--n] = 0;
    }
  }

  printf("llmpool %s vs %s; %ld CPUs; %zu requests per mode; rtt %d ms%s\n", llmpool_version(),
         curl_version(), sysconf(_SC_NPROCESSORS_ONLN), total, rtt, syn ? " (+1 RTT per new connection)" : "");
  for (int t = 0; t < nurls; t++) printf("  %s: %s%s\n", labels[t], urls[t], rtt ? " (via the delay relay)" : "");

  result_t rs[MAX_RESULTS];
  int n = 0;
  for (int t = 0; t < nurls; t++) {
    const char *tca = strcmp(us[t].scheme, "https") == 0 ? ca : NULL;
    for (int c = 0; c < nc; c++) {
      mode_t_ modes[4];
      int nm = 0;
      modes[nm++] = M_POOLED;
      if (use_unpooled) modes[nm++] = M_UNPOOLED;
      if (use_batch && concs[c] > 1) modes[nm++] = M_BATCH;
      if (use_curl) modes[nm++] = M_CURL;
      for (int m = 0; m < nm && n < MAX_RESULTS; m++) {
        fprintf(stderr, "  running %s concurrency %d %s ...\n", labels[t], concs[c], MODE_NAMES[modes[m]]);
        run_mode(&rs[n], labels[t], &us[t], bases[t], tca, modes[m], concs[c], total);
        n++;
      }
    }
  }
  printf("\n");
  print_table(rs, n, labels, nurls, concs, nc);
  if (svg) write_svg(svg, rs, n, labels, nurls, concs[0], rtt);
  if (json_path) {
    FILE *f = fopen(json_path, "w");
    if (!f) die("cannot write the JSON file");
    write_json(f, rs, n, rtt, syn, labels, nurls, concs, nc);
    fclose(f);
  }
  printf("\n");
  write_json(stdout, rs, n, rtt, syn, labels, nurls, concs, nc);
  size_t errors = 0;
  for (int i = 0; i < n; i++) errors += rs[i].errors;
  curl_global_cleanup();
  return errors ? 1 : 0;
}
