/*
 * bench_embeddings.c: large embeddings answers, llmpool vs libcurl vs
 * openai-python, against the same server.
 *
 * Run it with `examples/c/bench.sh --embeddings`, which writes the two answer
 * files (`--write DIR`), serves them with nginx and runs this program:
 *
 *   bench_embeddings --write DIR [--rows 256] [--dim 1536]
 *   bench_embeddings --float-url BASE_URL --b64-url BASE_URL [--requests N] [--openai-requests N]
 *                    [--openai-python PYTHON] [--json FILE]
 *
 * The float target answers with the vectors as JSON numbers, the base64
 * target with the same vectors as base64 little-endian float32 (what
 * `encoding_format: "base64"` asks for). Modes, one after the other on the
 * same server, each in a child process of its own so that its peak RSS is
 * its own:
 *   llmpool         llmpool_embeddings: the call and its body
 *   llmpool+floats  llmpool_embeddings + llmpool_response_embeddings: the
 *                   vectors as a float matrix
 *   libcurl         one easy handle, keep-alive, the body appended to a
 *                   buffer grown by doubling (raw bytes only: no parsing)
 *   openai-python   `client.embeddings.create` (with --openai-python): the
 *                   float target asks for "float", the base64 target leaves
 *                   encoding_format out, so openai-python asks for base64 and
 *                   decodes it to Python floats, as it does by default
 * Every mode makes one untimed warm-up call, then N timed sequential calls.
 * "peak_extra" is the process's peak RSS (VmHWM) minus its RSS before the
 * first call: the memory a call needs on top of a loaded library.
 * "cpu_ms" is the process's user + system CPU time per timed call and
 * "min_ms" the fastest call: on a loaded machine both move far less than
 * mean or p50, which include waiting for a core.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmpool.h"

static const char *REQ_FLOAT =
    "{\"model\":\"text-embedding-3-small\",\"input\":[\"chunk one\",\"chunk two\"],"
    "\"encoding_format\":\"float\"}";
static const char *REQ_B64 =
    "{\"model\":\"text-embedding-3-small\",\"input\":[\"chunk one\",\"chunk two\"],"
    "\"encoding_format\":\"base64\"}";

typedef enum { M_LLMPOOL, M_FLOATS, M_CURL, M_OPENAI } mode_t_;
static const char *MODE_NAMES[] = {"llmpool", "llmpool+floats", "libcurl", "openai-python"};

typedef struct {
  int ok;
  char target[8];
  mode_t_ mode;
  size_t requests, errors;
  double mean, p50, p90, max, min;
  double cpu; /* user + system CPU ms per timed call, of this process */
  double body_mb, rss_before_mb, hwm_mb;
  double checksum; /* sum of all floats (floats mode), to compare encodings */
  size_t count, dim;
  char first_error[200];
} result_t;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *msg) {
  fprintf(stderr, "bench_embeddings: %s\n", msg);
  exit(2);
}

/* VmRSS or VmHWM of this process, in MB. */
static double proc_mb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double v = 0;
  size_t n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, n)) v = strtod(line + n + 1, NULL) / 1024.0;
  if (f) fclose(f);
  return v;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void summarise(result_t *r, double *lat, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += lat[i];
  qsort(lat, n, sizeof *lat, cmp_double);
  r->mean = sum / n;
  r->p50 = lat[(n - 1) / 2];
  r->p90 = lat[(size_t)ceil(0.9 * n) - 1];
  r->max = lat[n - 1];
  r->min = lat[0];
}

/* User + system CPU time of this process so far, in ms. */
static double cpu_ms(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

static void note(result_t *r, const char *msg) {
  r->errors++;
  if (!r->first_error[0]) snprintf(r->first_error, sizeof r->first_error, "%s", msg);
}

/* ------------------------------------------------------------------ */
/* llmpool                                                             */
/* ------------------------------------------------------------------ */

#ifdef LLMPOOL_BENCH_FLOATS
static int read_floats(llmpool_response *resp, result_t *r, int keep) {
  const float *data = NULL;
  size_t count = 0, dim = 0;
  if (llmpool_response_embeddings(resp, &data, &count, &dim) != LLMPOOL_OK) return -1;
  if (keep) {
    double s = 0;
    for (size_t i = 0; i < count * dim; i++) s += data[i];
    r->checksum = s;
    r->count = count;
    r->dim = dim;
  }
  return 0;
}
#endif

static void run_llmpool(result_t *r, const char *base, const char *req, int floats, size_t n) {
  char opts[1024];
  snprintf(opts, sizeof opts, "{\"base_url\": \"%s\", \"max_retries\": 0}", base);
  llmpool_client *c = NULL;
  char err[512];
  if (llmpool_client_new(opts, &c, err, sizeof err) != LLMPOOL_OK) die(err);
  double *lat = calloc(n, sizeof *lat);
  if (!lat) die("out of memory");
  r->rss_before_mb = proc_mb("VmRSS:");
  double cpu0 = 0;
  for (size_t i = 0; i <= n; i++) {
    llmpool_response *resp = NULL;
    double t0 = now_ms();
    llmpool_code code = llmpool_embeddings(c, req, &resp);
#ifdef LLMPOOL_BENCH_FLOATS
    if (code == LLMPOOL_OK && floats && read_floats(resp, r, i == 0) != 0) {
      note(r, llmpool_response_embeddings_error(resp));
      code = LLMPOOL_OK; /* counted */
    }
#else
    (void)floats;
#endif
    double dt = now_ms() - t0;
    if (code != LLMPOOL_OK) note(r, llmpool_response_error(resp));
    size_t len = 0;
    llmpool_response_body(resp, &len);
    r->body_mb = len / 1e6;
    llmpool_response_free(resp);
    if (i > 0) lat[i - 1] = dt; /* call 0 warms up */
    if (i == 0) cpu0 = cpu_ms();
  }
  r->cpu = (cpu_ms() - cpu0) / n;
  r->hwm_mb = proc_mb("VmHWM:");
  summarise(r, lat, n);
  free(lat);
  llmpool_client_free(c);
}

/* ------------------------------------------------------------------ */
/* libcurl                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static size_t curl_append(char *p, size_t size, size_t n, void *ud) {
  buf_t *b = ud;
  size_t add = size * n;
  if (b->len + add + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + add + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return 0;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, add);
  b->len += add;
  b->p[b->len] = 0;
  return add;
}

static void run_curl(result_t *r, const char *base, const char *req, size_t n) {
  char url[1100];
  snprintf(url, sizeof url, "%s/embeddings", base);
  CURL *h = curl_easy_init();
  if (!h) die("curl_easy_init failed");
  struct curl_slist *hdr = NULL;
  hdr = curl_slist_append(hdr, "Content-Type: application/json");
  hdr = curl_slist_append(hdr, "Accept: application/json");
  buf_t b = {0};
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, req);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(req));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_append);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  double *lat = calloc(n, sizeof *lat);
  if (!lat) die("out of memory");
  r->rss_before_mb = proc_mb("VmRSS:");
  double cpu0 = 0;
  for (size_t i = 0; i <= n; i++) {
    /* A fresh buffer per call, as a caller that hands the body on would. */
    b.p = NULL;
    b.len = b.cap = 0;
    double t0 = now_ms();
    CURLcode rc = curl_easy_perform(h);
    double dt = now_ms() - t0;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) note(r, curl_easy_strerror(rc));
    else if (status != 200) note(r, "non-200 status");
    r->body_mb = b.len / 1e6;
    free(b.p);
    if (i > 0) lat[i - 1] = dt;
    if (i == 0) cpu0 = cpu_ms();
  }
  r->cpu = (cpu_ms() - cpu0) / n;
  r->hwm_mb = proc_mb("VmHWM:");
  summarise(r, lat, n);
  free(lat);
  curl_slist_free_all(hdr);
  curl_easy_cleanup(h);
}

/* ------------------------------------------------------------------ */
/* openai-python (a child running bench_embeddings.py)                 */
/* ------------------------------------------------------------------ */

static void run_openai(result_t *r, const char *python, const char *script, const char *base,
                       const char *encoding, size_t n) {
  char cmd[4096], ns[32];
  snprintf(ns, sizeof ns, "%zu", n);
  snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %s %s", python, script, base, encoding, ns);
  FILE *p = popen(cmd, "r");
  if (!p) die("cannot start openai-python");
  char line[1024] = "";
  char last[1024] = "";
  while (fgets(line, sizeof line, p)) snprintf(last, sizeof last, "%s", line);
  int st = pclose(p);
  if (st != 0 ||
      sscanf(last, "%zu %zu %lf %lf %lf %lf %lf %lf %lf %lf %zu %zu %lf %lf", &r->requests, &r->errors, &r->mean,
             &r->p50, &r->p90, &r->max, &r->body_mb, &r->rss_before_mb, &r->hwm_mb, &r->checksum,
             &r->count, &r->dim, &r->min, &r->cpu) != 14) {
    note(r, "openai-python failed (see its stderr above)");
    r->requests = n;
  }
}

/* ------------------------------------------------------------------ */

/* Runs one mode in a child process and returns its result. */
static result_t run_child(const char *target, mode_t_ mode, const char *base, const char *req,
                          const char *python, const char *script, size_t n) {
  int fd[2];
  if (pipe(fd) < 0) die("pipe failed");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    close(fd[0]);
    result_t r;
    memset(&r, 0, sizeof r);
    r.ok = 1;
    r.mode = mode;
    r.requests = n;
    snprintf(r.target, sizeof r.target, "%s", target);
    if (mode == M_CURL) run_curl(&r, base, req, n);
    else if (mode == M_OPENAI) run_openai(&r, python, script, base, strcmp(target, "float") ? "default" : "float", n);
    else run_llmpool(&r, base, req, mode == M_FLOATS, n);
    if (write(fd[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(3);
    _exit(0);
  }
  close(fd[1]);
  result_t r;
  memset(&r, 0, sizeof r);
  ssize_t got = read(fd[0], &r, sizeof r);
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (got != (ssize_t)sizeof r || !r.ok) {
    memset(&r, 0, sizeof r);
    snprintf(r.target, sizeof r.target, "%s", target);
    r.mode = mode;
    r.requests = n;
    note(&r, "the benchmark child crashed");
  }
  return r;
}

/* ------------------------------------------------------------------ */
/* --write: the two answer files, same vectors                         */
/* ------------------------------------------------------------------ */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_put(FILE *f, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    fputc(B64[v >> 18 & 63], f);
    fputc(B64[v >> 12 & 63], f);
    fputc(i + 1 < n ? B64[v >> 6 & 63] : '=', f);
    fputc(i + 2 < n ? B64[v & 63] : '=', f);
  }
}

static void write_files(const char *dir, size_t rows, size_t dim) {
  char path[1024];
  snprintf(path, sizeof path, "%s/emb-float.json", dir);
  FILE *ff = fopen(path, "w");
  snprintf(path, sizeof path, "%s/emb-b64.json", dir);
  FILE *fb = fopen(path, "w");
  if (!ff || !fb) die("cannot write the answer files");
  float *row = malloc(dim * sizeof *row);
  if (!row) die("out of memory");
  uint64_t s = 0x9E3779B97F4A7C15ull;
  const char *head = "{\"object\":\"list\",\"data\":[";
  fputs(head, ff);
  fputs(head, fb);
  for (size_t r = 0; r < rows; r++) {
    const char *obj = "{\"object\":\"embedding\",\"index\":%zu,\"embedding\":";
    fprintf(ff, "%s", r ? "," : "");
    fprintf(ff, obj, r);
    fprintf(fb, "%s", r ? "," : "");
    fprintf(fb, obj, r);
    fputc('[', ff);
    for (size_t d = 0; d < dim; d++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      double v = ((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.2;
      char txt[32];
      snprintf(txt, sizeof txt, "%.6g", v);
      row[d] = strtof(txt, NULL); /* the float the JSON text stands for */
      fprintf(ff, "%s%s", d ? "," : "", txt);
    }
    fputc(']', ff);
    fputc('"', fb);
    b64_put(fb, (const unsigned char *)row, dim * sizeof *row); /* little-endian hosts */
    fputc('"', fb);
    fputc('}', ff);
    fputc('}', fb);
  }
  const char *tail = "],\"model\":\"text-embedding-3-small\",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}";
  fprintf(ff, tail, rows * 8, rows * 8);
  fprintf(fb, tail, rows * 8, rows * 8);
  fclose(ff);
  fclose(fb);
  free(row);
}

/* ------------------------------------------------------------------ */

static void print_row(const result_t *r) {
  printf("%-7s %-15s %8zu %6zu %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %10.1f %7.2fx\n", r->target,
         MODE_NAMES[r->mode], r->requests, r->errors, r->mean, r->min, r->p50, r->p90, r->max, r->cpu, r->body_mb,
         r->hwm_mb - r->rss_before_mb,
         r->body_mb > 0 ? (r->hwm_mb - r->rss_before_mb) / r->body_mb : 0);
  if (r->errors) printf("        first error: %s\n", r->first_error);
}

static const result_t *find(const result_t *rs, int n, const char *target, mode_t_ m) {
  for (int i = 0; i < n; i++)
    if (!strcmp(rs[i].target, target) && rs[i].mode == m) return &rs[i];
  return NULL;
}

int main(int argc, char **argv) {
  const char *furl = NULL, *burl = NULL, *python = NULL, *json_path = NULL, *dir = NULL;
  size_t n = 50, on = 0, rows = 256, dim = 1536;
  for (int i = 1; i < argc; i++) {
#define NEXT() (i + 1 < argc ? argv[++i] : (die("missing value"), ""))
    if (!strcmp(argv[i], "--float-url")) furl = NEXT();
    else if (!strcmp(argv[i], "--b64-url")) burl = NEXT();
    else if (!strcmp(argv[i], "--requests")) n = strtoul(NEXT(), NULL, 10);
    else if (!strcmp(argv[i], "--openai-python")) python = NEXT();
    else if (!strcmp(argv[i], "--openai-requests")) on = strtoul(NEXT(), NULL, 10);
    else if (!strcmp(argv[i], "--json")) json_path = NEXT();
    else if (!strcmp(argv[i], "--write")) dir = NEXT();
    else if (!strcmp(argv[i], "--rows")) rows = strtoul(NEXT(), NULL, 10);
    else if (!strcmp(argv[i], "--dim")) dim = strtoul(NEXT(), NULL, 10);
    else die("unknown option (see the comment at the top of bench_embeddings.c)");
  }
  if (dir) {
    write_files(dir, rows, dim);
    return 0;
  }
  if (!furl || !burl || n == 0) die("--float-url and --b64-url are required");
  char script[4096] = "";
  if (python) {
    /* bench_embeddings.py sits next to this program's source. */
    const char *root = getenv("LLMPOOL_ROOT");
    snprintf(script, sizeof script, "%s/examples/python/bench_embeddings.py", root ? root : ".");
  }
  curl_global_init(CURL_GLOBAL_ALL);
  double load[3] = {0};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  printf("llmpool %s vs %s; %ld CPUs; load average %.2f before; %zu calls per mode (+1 warm-up)\n",
         llmpool_version(), curl_version(), sysconf(_SC_NPROCESSORS_ONLN), load[0], n);

  result_t rs[16];
  int k = 0;
  const char *targets[2] = {"float", "base64"};
  const char *bases[2] = {furl, burl};
  const char *reqs[2] = {REQ_FLOAT, REQ_B64};
  for (int t = 0; t < 2; t++) {
    mode_t_ modes[4];
    int nm = 0;
    modes[nm++] = M_LLMPOOL;
#ifdef LLMPOOL_BENCH_FLOATS
    modes[nm++] = M_FLOATS;
#endif
    modes[nm++] = M_CURL;
    if (python) modes[nm++] = M_OPENAI;
    for (int m = 0; m < nm; m++) {
      fprintf(stderr, "  running %s %s ...\n", targets[t], MODE_NAMES[modes[m]]);
      size_t calls = modes[m] == M_OPENAI && on ? on : n;
      rs[k++] = run_child(targets[t], modes[m], bases[t], reqs[t], python, script, calls);
      /* openai-python does not report the body size; every mode got the same body. */
      if (modes[m] == M_OPENAI && k > 1) rs[k - 1].body_mb = rs[k - 2].body_mb;
    }
  }
  printf("\n%-7s %-15s %8s %6s %8s %8s %8s %8s %8s %8s %8s %10s %8s\n", "target", "mode", "requests", "errors",
         "mean_ms", "min_ms", "p50_ms", "p90_ms", "max_ms", "cpu_ms", "body_MB", "peak_extra", "x_body");
  for (int i = 0; i < k; i++) print_row(&rs[i]);
  printf("\n");
  for (int t = 0; t < 2; t++) {
    const result_t *l = find(rs, k, targets[t], M_LLMPOOL), *c = find(rs, k, targets[t], M_CURL);
    if (l && c)
      printf("ratio %-6s llmpool/libcurl: mean %.2fx, min %.2fx, p50 %.2fx, cpu %.2fx\n", targets[t],
             l->mean / c->mean, l->min / c->min, l->p50 / c->p50, l->cpu / c->cpu);
  }
  const result_t *bf = find(rs, k, "base64", M_FLOATS), *fc = find(rs, k, "float", M_CURL),
                 *ff = find(rs, k, "float", M_FLOATS);
  if (bf && fc)
    printf("ratio base64 llmpool+floats / float libcurl (raw bytes): mean %.2fx, min %.2fx, p50 %.2fx, cpu %.2fx\n",
           bf->mean / fc->mean, bf->min / fc->min, bf->p50 / fc->p50, bf->cpu / fc->cpu);
  if (bf && ff && ff->count)
    printf("same vectors: float %zux%zu sum %.6f, base64 %zux%zu sum %.6f\n", ff->count, ff->dim, ff->checksum,
           bf->count, bf->dim, bf->checksum);
  if (json_path) {
    FILE *f = fopen(json_path, "w");
    if (!f) die("cannot write the JSON file");
    fprintf(f, "{\"load_average\": %.2f, \"results\": [", load[0]);
    for (int i = 0; i < k; i++)
      fprintf(f,
              "%s\n  {\"target\": \"%s\", \"mode\": \"%s\", \"requests\": %zu, \"errors\": %zu, \"mean_ms\": %.3f, "
              "\"min_ms\": %.3f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"max_ms\": %.3f, \"cpu_ms\": %.3f, \"body_mb\": %.3f, "
              "\"peak_extra_mb\": %.2f}",
              i ? "," : "", rs[i].target, MODE_NAMES[rs[i].mode], rs[i].requests, rs[i].errors, rs[i].mean,
              rs[i].min, rs[i].p50, rs[i].p90, rs[i].max, rs[i].cpu, rs[i].body_mb, rs[i].hwm_mb - rs[i].rss_before_mb);
    fprintf(f, "\n]}\n");
    fclose(f);
  }
  size_t errors = 0;
  for (int i = 0; i < k; i++) errors += rs[i].errors;
  curl_global_cleanup();
  return errors ? 1 : 0;
}
