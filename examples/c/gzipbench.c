/*
 * gzipbench.c: a large JSON answer (an embeddings batch) with and without
 * compression, llmpool vs libcurl, side by side in one run.
 *
 *   gzipbench --url BASE_URL [--url BASE_URL2 --ca ca.pem] --path /embeddings.json
 *             [--requests N] [--rtt-ms N] [--access-log FILE]
 *
 * Build and run with `examples/c/bench.sh --gzip`, which starts nginx with
 * `gzip on` serving a generated ~5 MB embeddings JSON and passes its access
 * log. For every target it runs, one after the other on the same server,
 * N sequential GETs of BASE_URL + path with:
 *   llmpool-gzip      the default ("Accept-Encoding: gzip", decoded by llmpool)
 *   llmpool-identity  {"compression": false}
 *   libcurl-gzip      CURLOPT_ACCEPT_ENCODING "gzip" (decoded by libcurl)
 *   libcurl-identity  no Accept-Encoding
 * Each mode tags its requests with `?m=<mode>`; with --access-log (nginx
 * log_format `$request_uri $status $bytes_sent`) it reports the bytes nginx
 * put on the wire per call. It also checks that every mode got the same
 * decoded body. --rtt-ms N puts bench.c's delay relay (relay.h) in front.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmpool.h"
#include "relay.h"

#define MAX_TARGETS 2

typedef enum { M_GZIP, M_IDENTITY, M_CURL_GZIP, M_CURL_IDENTITY } mode_t_;
static const char *MODE_NAMES[] = {"llmpool-gzip", "llmpool-identity", "libcurl-gzip", "libcurl-identity"};

typedef struct {
  double mean, p50, wire;
  size_t body, errors;
} result_t;

typedef struct {
  char *p;
  size_t n;
} buf_t;

static size_t curl_sink(char *p, size_t size, size_t n, void *ud) {
  buf_t *b = ud;
  b->n += size * n;
  (void)p;
  return size * n;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Mean bytes_sent of the access-log lines whose URI ends with ?m=<mode>. */
static double wire_bytes(const char *log, const char *mode) {
  if (!log) return -1;
  FILE *f = fopen(log, "r");
  if (!f) return -1;
  char line[4096], tag[64];
  snprintf(tag, sizeof tag, "?m=%s ", mode);
  double sum = 0;
  long n = 0;
  while (fgets(line, sizeof line, f)) {
    char *t = strstr(line, tag);
    if (!t) continue;
    int status = 0;
    double sent = 0;
    if (sscanf(t + strlen(tag), "%d %lf", &status, &sent) == 2) {
      sum += sent;
      n++;
    }
  }
  fclose(f);
  return n ? sum / n : -1;
}

static void run(result_t *res, mode_t_ m, const char *base, const char *ca, const char *path,
                size_t total, const char *log) {
  char url[4200];
  snprintf(url, sizeof url, "%s%s?m=%s", base, path, MODE_NAMES[m]);
  double *lat = calloc(total, sizeof *lat);
  if (!lat) die("out of memory");
  memset(res, 0, sizeof *res);
  if (m == M_GZIP || m == M_IDENTITY) {
    char opts[4200], ca_opt[1100] = "";
    if (ca) snprintf(ca_opt, sizeof ca_opt, ", \"ca_file\": \"%s\"", ca);
    snprintf(opts, sizeof opts, "{\"base_url\": \"%s\", \"max_retries\": 0, \"compression\": %s%s}",
             base, m == M_GZIP ? "true" : "false", ca_opt);
    llmpool_client *c = NULL;
    char err[512];
    if (llmpool_client_new(opts, &c, err, sizeof err) != LLMPOOL_OK) {
      fprintf(stderr, "gzipbench: llmpool_client_new: %s\n", err);
      exit(2);
    }
    char rel[1100];
    snprintf(rel, sizeof rel, "%.1000s?m=%s", path, MODE_NAMES[m]);
    for (size_t i = 0; i < total; i++) {
      llmpool_response *r = NULL;
      double t0 = now_ms();
      llmpool_code code = llmpool_request(c, "GET", rel, NULL, &r);
      lat[i] = now_ms() - t0;
      size_t len = 0;
      llmpool_response_body(r, &len);
      res->body = len;
      if (code != LLMPOOL_OK) {
        if (!res->errors) fprintf(stderr, "  %s: %s\n", MODE_NAMES[m], llmpool_response_error(r));
        res->errors++;
      }
      llmpool_response_free(r);
    }
    llmpool_client_free(c);
  } else {
    CURL *h = curl_easy_init();
    if (!h) die("curl_easy_init failed");
    buf_t b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (m == M_CURL_GZIP) curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "gzip");
    if (ca) curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    for (size_t i = 0; i < total; i++) {
      b.n = 0;
      double t0 = now_ms();
      CURLcode rc = curl_easy_perform(h);
      lat[i] = now_ms() - t0;
      long status = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      res->body = b.n;
      if (rc != CURLE_OK || status != 200) {
        if (!res->errors) fprintf(stderr, "  %s: %s (HTTP %ld)\n", MODE_NAMES[m], curl_easy_strerror(rc), status);
        res->errors++;
      }
    }
    curl_easy_cleanup(h);
  }
  double sum = 0;
  for (size_t i = 0; i < total; i++) sum += lat[i];
  qsort(lat, total, sizeof *lat, cmp_double);
  res->mean = sum / total;
  res->p50 = lat[(total - 1) / 2];
  res->wire = wire_bytes(log, MODE_NAMES[m]);
  free(lat);
}

static void usage(void) {
  fprintf(stderr,
          "usage: gzipbench --url BASE_URL [--url BASE_URL2] [--ca FILE] --path PATH [--requests N]\n"
          "                 [--rtt-ms N] [--access-log FILE]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *urls[MAX_TARGETS];
  int nurls = 0, rtt = 0;
  size_t total = 20;
  const char *ca = NULL, *path = NULL, *log = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
    if (!strcmp(a, "--url")) {
      if (nurls == MAX_TARGETS) die("too many --url");
      urls[nurls++] = NEXT();
    } else if (!strcmp(a, "--ca")) ca = NEXT();
    else if (!strcmp(a, "--path")) path = NEXT();
    else if (!strcmp(a, "--requests")) total = strtoul(NEXT(), NULL, 10);
    else if (!strcmp(a, "--rtt-ms")) rtt = atoi(NEXT());
    else if (!strcmp(a, "--access-log")) log = NEXT();
    else usage();
  }
  if (nurls == 0 || !path || total == 0 || rtt < 0) usage();
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);
  printf("llmpool %s vs %s; GET <base>%s, %zu sequential calls per mode; rtt %d ms\n", llmpool_version(),
         curl_version(), path, total, rtt);
  printf("%-6s %-17s %12s %12s %10s %10s %7s\n", "target", "mode", "wire B/call", "body B", "mean ms",
         "p50 ms", "errors");
  for (int t = 0; t < nurls; t++) {
    url_t u;
    if (parse_url(urls[t], &u) < 0) die("cannot parse --url");
    char base[2048];
    if (rtt > 0) {
      relay_t *r = relay_start(&u, rtt, 0);
      snprintf(base, sizeof base, "%.7s://127.0.0.1:%d%.511s", u.scheme, r->port, u.path);
    } else {
      snprintf(base, sizeof base, "%s", urls[t]);
    }
    const char *tca = strcmp(u.scheme, "https") == 0 ? ca : NULL;
    result_t rs[4];
    for (int m = 0; m < 4; m++) {
      run(&rs[m], (mode_t_)m, base, tca, path, total, log);
      printf("%-6s %-17s %12.0f %12zu %10.2f %10.2f %7zu\n", u.scheme, MODE_NAMES[m], rs[m].wire,
             rs[m].body, rs[m].mean, rs[m].p50, rs[m].errors);
      fflush(stdout);
    }
    for (int m = 1; m < 4; m++)
      if (rs[m].body != rs[0].body) printf("  MISMATCH: %s got %zu body bytes, %s %zu\n", MODE_NAMES[m], rs[m].body, MODE_NAMES[0], rs[0].body);
    printf("%-6s ratios: llmpool gzip/identity time %.2fx, wire %.3fx; llmpool-gzip/libcurl-gzip time %.2fx\n",
           u.scheme, rs[0].mean / rs[1].mean, rs[1].wire > 0 ? rs[0].wire / rs[1].wire : 0,
           rs[0].mean / rs[2].mean);
  }
  return 0;
}
