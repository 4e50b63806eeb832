/*
 * ab.c: two builds of libllmpool side by side in one process (each
 * dlopen'ed RTLD_LOCAL) and libcurl easy, sequential keep-alive calls
 * interleaved one by one (the order rotates every round) against one
 * server, so that a change can be timed against the build before it on a
 * noisy machine. Prints median and mean per client, and B/A.
 *
 *   cc -O2 -Wall -Wextra -o ab examples/c/ab.c -ldl -lcurl
 *   ab LIB_A LIB_B BASE_URL CA_FILE|"" N small|embeddings
 *
 * `small` posts a chat request to BASE_URL/chat/completions, `embeddings`
 * an embeddings request to BASE_URL/embeddings (the nginx of
 * `bench.sh --embeddings` serves a 4 MB answer at /f32/v1/embeddings).
 * LIB_A is labelled "before", LIB_B "after".
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*new_fn)(const char *, void **, char *, size_t);
typedef int (*call_fn)(void *, const char *, void **);
typedef void (*free_fn)(void *);

typedef struct {
  new_fn client_new;
  call_fn chat, embeddings;
  free_fn response_free;
  void *client;
} lib_t;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static size_t sink(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void load(lib_t *l, const char *path, const char *opts) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "ab: %s\n", dlerror());
    exit(2);
  }
  l->client_new = (new_fn)dlsym(h, "llmpool_client_new");
  l->chat = (call_fn)dlsym(h, "llmpool_chat");
  l->embeddings = (call_fn)dlsym(h, "llmpool_embeddings");
  l->response_free = (free_fn)dlsym(h, "llmpool_response_free");
  char err[256];
  if (!l->client_new || !l->chat || !l->embeddings || !l->response_free ||
      l->client_new(opts, &l->client, err, sizeof err)) {
    fprintf(stderr, "ab: %s: cannot create a client\n", path);
    exit(2);
  }
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: ab LIB_A LIB_B BASE_URL CA_FILE|\"\" N small|embeddings\n");
    return 2;
  }
  const char *base = argv[3];
  const char *ca = argv[4][0] ? argv[4] : NULL;
  int n = atoi(argv[5]);
  int emb = !strcmp(argv[6], "embeddings");
  if (n < 1) return 2;
  const char *req = emb ? "{\"model\":\"bench-emb\",\"input\":[\"a\"]}"
                        : "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"ping\"}]}";
  char opts[1024], url[1024];
  snprintf(url, sizeof url, "%s/%s", base, emb ? "embeddings" : "chat/completions");
  if (ca)
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"max_retries\":0,\"ca_file\":\"%s\"}", base, ca);
  else
    snprintf(opts, sizeof opts, "{\"base_url\":\"%s\",\"max_retries\":0}", base);
  lib_t libs[2];
  load(&libs[0], argv[1], opts);
  load(&libs[1], argv[2], opts);

  CURL *h = curl_easy_init();
  struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, req);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  if (ca) curl_easy_setopt(h, CURLOPT_CAINFO, ca);

  double *t[3];
  for (int k = 0; k < 3; k++) t[k] = calloc(n, sizeof(double));
  for (int i = -5; i < n; i++) { /* 5 rounds of warm-up */
    for (int k = 0; k < 3; k++) {
      int who = (i + 30 + k) % 3;
      double t0 = now_us();
      if (who < 2) {
        lib_t *l = &libs[who];
        void *r = NULL;
        int code = (emb ? l->embeddings : l->chat)(l->client, req, &r);
        l->response_free(r);
        if (code) {
          fprintf(stderr, "ab: %s: call failed (code %d)\n", argv[1 + who], code);
          return 2;
        }
      } else if (curl_easy_perform(h) != CURLE_OK) {
        fprintf(stderr, "ab: libcurl call failed\n");
        return 2;
      }
      if (i >= 0) t[who][i] = now_us() - t0;
    }
  }
  const char *names[3] = {"llmpool-before", "llmpool-after", "libcurl"};
  double med[3], mean[3];
  for (int k = 0; k < 3; k++) {
    double s = 0;
    for (int i = 0; i < n; i++) s += t[k][i];
    mean[k] = s / n;
    qsort(t[k], n, sizeof(double), cmp);
    med[k] = t[k][n / 2];
  }
  printf("%s %s, %d calls each, interleaved\n", base, emb ? "embeddings" : "small chat", n);
  for (int k = 0; k < 3; k++)
    printf("  %-15s median %9.1f us  mean %9.1f us  vs libcurl: median %.2fx mean %.2fx\n", names[k], med[k],
           mean[k], med[k] / med[2], mean[k] / mean[2]);
  printf("  after/before: median %.3fx mean %.3fx\n", med[1] / med[0], mean[1] / mean[0]);
  curl_slist_free_all(hdr);
  curl_easy_cleanup(h);
  return 0;
}
