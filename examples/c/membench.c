/*
 * membench.c: memory per idle pooled connection and per in-flight call,
 * llmpool against libcurl's multi interface, measured in the same run.
 *
 * Uses only the public C API (include/llmpool.h), pthreads and libcurl.
 * Run it with `examples/c/bench.sh --memory`, which starts nginx (plain HTTP
 * and TLS 1.3 on 127.0.0.1, with a `/hold/` location proxied to this
 * program's hold server) and sets GLIBC_TUNABLES=glibc.pthread.stack_cache_size=0
 * so that exited threads give their stacks back and only connections count.
 *
 *   membench --url http://127.0.0.1:P/v1 [--url https://127.0.0.1:Q/v1 --ca ca.pem]
 *            [--idle N] [--inflight N] [--hold-port PORT]
 *
 * idle: a client (pool_max_idle_per_host = N) makes one call (so one-time
 * state such as the TLS config and thread arenas exists), then
 * `llmpool_client_warm(c, N)` opens N connections that stay pooled; the
 * growth of RSS and of malloc'd bytes (mallinfo2: in use, all arenas,
 * mmapped chunks included) divided by the connections opened is the cost of
 * one idle pooled connection. libcurl: one multi handle
 * (CURLMOPT_MAXCONNECTS = N + 8) runs N transfers at once to the same URL,
 * the easy handles are removed and cleaned up, and the connections left in
 * the multi's cache are what is measured.
 *
 * in flight (with --hold-port): N threads are started and parked first
 * (baseline), then each makes one call to `{url}/hold/...`, which nginx
 * proxies to a server in this program that answers nobody until all N
 * requests have arrived. The growth divided by N is the cost of one call in
 * flight: "heap" excludes the threads' stacks, "rss" includes the stack
 * pages the call touched. libcurl: N transfers on one multi handle (no
 * threads).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmpool.h"

#define MAX_TARGETS 2

static const char *REQUEST_BODY =
    "{\"model\":\"bench\",\"messages\":[{\"role\":\"user\",\"content\":\"ping\"}]}";
static const char *HOLD_ANSWER =
    "{\"id\":\"chatcmpl-hold\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"bench\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"pong\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}";

static void die(const char *msg) {
  fprintf(stderr, "membench: %s\n", msg);
  exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
  double rss_kib, heap_kib;
} mem_t;

static mem_t mem_now(void) {
  mem_t m = {0, 0};
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  if (f && fscanf(f, "%ld %ld", &size, &resident) == 2) m.rss_kib = resident * (sysconf(_SC_PAGESIZE) / 1024.0);
  if (f) fclose(f);
  struct mallinfo2 mi = mallinfo2();
  m.heap_kib = (mi.uordblks + mi.hblkhd) / 1024.0;
  return m;
}

/* ------------------------------------------------------------------ */
/* The hold server: answers nobody until released                      */
/* ------------------------------------------------------------------ */

#define HOLD_MAX 4096

/* In shared memory: each measurement runs in a child process of its own. */
static struct hold_state {
  int listen_fd;
  atomic_int arrived;  /* complete requests held right now */
  atomic_int release;  /* set: answer everything held, then keep answering */
  atomic_int stop;
} *hold;

typedef struct {
  int fd;
  char buf[4096];
  size_t len;
  int complete; /* whole request read */
} hold_conn_t;

static int request_complete(hold_conn_t *c) {
  char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end - c->buf) + 4;
  size_t body = 0;
  char *cl = memmem(c->buf, head, "ontent-Length:", 14);
  if (!cl) cl = memmem(c->buf, head, "ontent-length:", 14);
  if (cl) body = strtoul(cl + 14, NULL, 10);
  return c->len >= head + body;
}

static void hold_answer(hold_conn_t *c) {
  char resp[1024];
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   strlen(HOLD_ANSWER), HOLD_ANSWER);
  ssize_t w = write(c->fd, resp, n);
  (void)w;
  shutdown(c->fd, SHUT_WR);
}

static void *hold_server(void *arg) {
  (void)arg;
  static hold_conn_t conns[HOLD_MAX];
  static struct pollfd pfd[HOLD_MAX + 1];
  int n = 0;
  while (!atomic_load(&hold->stop)) {
    pfd[0].fd = hold->listen_fd;
    pfd[0].events = POLLIN;
    for (int i = 0; i < n; i++) {
      pfd[i + 1].fd = conns[i].fd;
      pfd[i + 1].events = POLLIN;
      pfd[i + 1].revents = 0;
    }
    if (poll(pfd, n + 1, 20) < 0 && errno != EINTR) die("hold: poll");
    if (pfd[0].revents & POLLIN) {
      int fd;
      while (n < HOLD_MAX && (fd = accept4(hold->listen_fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        conns[n].fd = fd;
        conns[n].len = 0;
        conns[n].complete = 0;
        n++;
      }
    }
    int release = atomic_load(&hold->release);
    for (int i = 0; i < n; i++) {
      hold_conn_t *c = &conns[i];
      int dead = 0;
      if (i + 1 < n + 1 && pfd[i + 1].fd == c->fd && (pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1);
        if (r > 0) {
          c->len += r;
          if (!c->complete && request_complete(c)) {
            c->complete = 1;
            atomic_fetch_add(&hold->arrived, 1);
          }
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          dead = 1;
        }
        if (c->len >= sizeof c->buf - 1) c->len = 0; /* keep draining */
      }
      if (c->complete == 1 && release) {
        hold_answer(c);
        c->complete = 2; /* answered: wait for the peer to close */
        atomic_fetch_sub(&hold->arrived, 1);
      }
      if (dead) {
        if (c->complete == 1) atomic_fetch_sub(&hold->arrived, 1);
        close(c->fd);
        conns[i] = conns[--n];
        /* the moved entry's pollfd is stale this round: skip it */
        pfd[i + 1].fd = -1;
        i--;
      }
    }
  }
  for (int i = 0; i < n; i++) close(conns[i].fd);
  return NULL;
}

static void hold_start(int port) {
  hold->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(hold->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(hold->listen_fd, (struct sockaddr *)&a, sizeof a) || listen(hold->listen_fd, 4096)) die("hold: bind/listen");
  pthread_t t;
  if (pthread_create(&t, NULL, hold_server, NULL)) die("hold: thread");
  pthread_detach(t);
}

/* Waits until `n` requests are held (or 60 s); returns how many are. */
static int hold_wait(int n) {
  double until = now_s() + 60;
  while (atomic_load(&hold->arrived) < n && now_s() < until) usleep(2000);
  return atomic_load(&hold->arrived);
}

/* ------------------------------------------------------------------ */
/* llmpool                                                             */
/* ------------------------------------------------------------------ */

static llmpool_client *make_client(const char *base_url, const char *ca, int idle) {
  char opts[2048], ca_opt[1100] = "";
  if (ca) snprintf(ca_opt, sizeof ca_opt, ", \"ca_file\": \"%s\"", ca);
  snprintf(opts, sizeof opts,
           "{\"base_url\": \"%s\", \"max_retries\": 0, \"pool_max_idle\": %d, \"pool_max_idle_per_host\": %d%s}",
           base_url, idle + 8, idle + 8, ca_opt);
  llmpool_client *c = NULL;
  char err[512];
  if (llmpool_client_new(opts, &c, err, sizeof err) != LLMPOOL_OK) {
    fprintf(stderr, "membench: llmpool_client_new: %s\n", err);
    exit(2);
  }
  return c;
}

static long metric(llmpool_client *c, const char *key) {
  char *m = llmpool_client_metrics(c);
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = m ? strstr(m, pat) : NULL;
  long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
  llmpool_string_free(m);
  return v;
}

static void chat_once(llmpool_client *c) {
  llmpool_response *r = NULL;
  if (llmpool_chat(c, REQUEST_BODY, &r) != LLMPOOL_OK) {
    fprintf(stderr, "membench: first call failed: %s\n", llmpool_response_error(r));
    exit(2);
  }
  llmpool_response_free(r);
}

typedef struct {
  double rss, heap; /* KiB per connection or call */
  long n;
} figure_t;

static figure_t per(mem_t a, mem_t b, long n) {
  figure_t f = {0, 0, n};
  if (n > 0) {
    f.rss = (b.rss_kib - a.rss_kib) / n;
    f.heap = (b.heap_kib - a.heap_kib) / n;
  }
  return f;
}

static figure_t llmpool_idle(const char *base, const char *ca, int n) {
  llmpool_client *c = make_client(base, ca, n);
  chat_once(c);
  mem_t a = mem_now();
  long before = metric(c, "connections_opened");
  size_t opened = 0;
  if (llmpool_client_warm(c, n, &opened) != LLMPOOL_OK) die("llmpool_client_warm failed");
  usleep(100000);
  mem_t b = mem_now();
  long open_now = metric(c, "connections_open");
  long got = metric(c, "connections_opened") - before;
  if (open_now < got) fprintf(stderr, "membench: only %ld of %ld connections still open\n", open_now, got);
  long held = metric(c, "buffer_bytes_held");
  if (held >= 0) fprintf(stderr, "membench: llmpool buffer_bytes_held with %ld idle: %ld\n", open_now, held);
  llmpool_client_free(c);
  return per(a, b, got);
}

typedef struct {
  llmpool_client *c;
  pthread_mutex_t *lock;
  pthread_cond_t *cond;
  int *parked, *go;
  atomic_int *errors;
} park_t;

static void *inflight_worker(void *arg) {
  park_t *p = arg;
  pthread_mutex_lock(p->lock);
  (*p->parked)++;
  pthread_cond_broadcast(p->cond);
  while (!*p->go) pthread_cond_wait(p->cond, p->lock);
  pthread_mutex_unlock(p->lock);
  llmpool_response *r = NULL;
  if (llmpool_request(p->c, "POST", "/chat/completions", REQUEST_BODY, &r) != LLMPOOL_OK) {
    if (atomic_fetch_add(p->errors, 1) == 0) fprintf(stderr, "membench: held call: %s\n", llmpool_response_error(r));
  }
  llmpool_response_free(r);
  return NULL;
}

static figure_t llmpool_inflight(const char *hold_base, const char *ca, int n) {
  llmpool_client *c = make_client(hold_base, ca, 0);
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  int parked = 0, go = 0;
  atomic_int errors = 0;
  park_t p = {c, &lock, &cond, &parked, &go, &errors};
  pthread_t *ts = calloc(n, sizeof *ts);
  /* one call first, so one-time state is not counted */
  atomic_store(&hold->release, 1);
  chat_once(c);
  usleep(50000);
  atomic_store(&hold->release, 0);
  int started = 0;
  for (; started < n; started++)
    if (pthread_create(&ts[started], NULL, inflight_worker, &p)) break;
  pthread_mutex_lock(&lock);
  while (parked < started) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  usleep(50000);
  mem_t a = mem_now();
  pthread_mutex_lock(&lock);
  go = 1;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  int held = hold_wait(started);
  usleep(100000);
  mem_t b = mem_now();
  atomic_store(&hold->release, 1);
  for (int i = 0; i < started; i++) pthread_join(ts[i], NULL);
  free(ts);
  llmpool_client_free(c);
  if (held < started || errors) fprintf(stderr, "membench: llmpool: %d of %d held, %d errors\n", held, started, (int)errors);
  return per(a, b, held);
}

/* ------------------------------------------------------------------ */
/* libcurl multi                                                       */
/* ------------------------------------------------------------------ */

static size_t sink(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static CURL *easy(const char *url, const char *ca, struct curl_slist *hdr) {
  CURL *h = curl_easy_init();
  if (!h) die("curl_easy_init failed");
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, REQUEST_BODY);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(REQUEST_BODY));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  if (ca) curl_easy_setopt(h, CURLOPT_CAINFO, ca);
  return h;
}

/* Runs the multi until `stop` says so or every transfer is done; returns
 * the number of failed transfers. */
static int multi_run(CURLM *m, int (*stop)(void *), void *arg) {
  int running = 1, failed = 0;
  double until = now_s() + 60;
  while (running && now_s() < until) {
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)))
      if (msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK) {
        if (!failed) fprintf(stderr, "membench: curl: %s\n", curl_easy_strerror(msg->data.result));
        failed++;
      }
    if (stop && stop(arg)) break;
    if (running) curl_multi_poll(m, NULL, 0, 20, NULL);
  }
  return failed;
}

static figure_t curl_idle(const char *url, const char *ca, int n) {
  struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
  CURLM *m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n + 8);
  CURL *first = easy(url, ca, hdr);
  curl_multi_add_handle(m, first);
  if (multi_run(m, NULL, NULL)) die("curl: first transfer failed");
  curl_multi_remove_handle(m, first);
  curl_easy_cleanup(first);
  mem_t a = mem_now();
  CURL **hs = calloc(n, sizeof *hs);
  for (int i = 0; i < n; i++) {
    hs[i] = easy(url, ca, hdr);
    curl_easy_setopt(hs[i], CURLOPT_FRESH_CONNECT, 1L);
    curl_multi_add_handle(m, hs[i]);
  }
  int failed = multi_run(m, NULL, NULL);
  long conns = 0;
  for (int i = 0; i < n; i++) {
    long nc = 0;
    curl_easy_getinfo(hs[i], CURLINFO_NUM_CONNECTS, &nc);
    conns += nc;
    curl_multi_remove_handle(m, hs[i]);
    curl_easy_cleanup(hs[i]);
  }
  free(hs);
  usleep(100000);
  mem_t b = mem_now();
  if (failed) fprintf(stderr, "membench: curl idle: %d transfers failed\n", failed);
  curl_multi_cleanup(m);
  curl_slist_free_all(hdr);
  /* the first connection was in the cache before and after */
  return per(a, b, conns);
}

static int all_held(void *arg) { return atomic_load(&hold->arrived) >= *(int *)arg; }

static figure_t curl_inflight(const char *url, const char *ca, int n) {
  struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
  CURLM *m = curl_multi_init();
  atomic_store(&hold->release, 1);
  CURL *first = easy(url, ca, hdr);
  curl_multi_add_handle(m, first);
  if (multi_run(m, NULL, NULL)) die("curl: first held transfer failed");
  curl_multi_remove_handle(m, first);
  curl_easy_cleanup(first);
  usleep(50000);
  atomic_store(&hold->release, 0);
  mem_t a = mem_now();
  CURL **hs = calloc(n, sizeof *hs);
  for (int i = 0; i < n; i++) {
    hs[i] = easy(url, ca, hdr);
    curl_multi_add_handle(m, hs[i]);
  }
  multi_run(m, all_held, &n);
  int held = atomic_load(&hold->arrived);
  usleep(100000);
  mem_t b = mem_now();
  atomic_store(&hold->release, 1);
  int failed = multi_run(m, NULL, NULL);
  for (int i = 0; i < n; i++) {
    curl_multi_remove_handle(m, hs[i]);
    curl_easy_cleanup(hs[i]);
  }
  free(hs);
  curl_multi_cleanup(m);
  curl_slist_free_all(hdr);
  if (held < n || failed) fprintf(stderr, "membench: curl: %d of %d held, %d failed\n", held, n, failed);
  return per(a, b, held);
}

/* ------------------------------------------------------------------ */

static void usage(void) {
  fprintf(stderr,
          "usage: membench --url URL [--url URL] [--ca FILE] [--idle N] [--inflight N] [--hold-port PORT]\n");
  exit(2);
}

/* Runs one measurement in a child process, so that what earlier ones left
 * in the allocator's free lists does not blur its RSS. */
static figure_t isolated(figure_t (*fn)(const char *, const char *, int), const char *url, const char *ca, int n) {
  int fds[2];
  if (pipe(fds)) die("pipe");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(fds[0]);
    figure_t f = fn(url, ca, n);
    ssize_t w = write(fds[1], &f, sizeof f);
    _exit(w == (ssize_t)sizeof f ? 0 : 1);
  }
  close(fds[1]);
  figure_t f = {0, 0, -1};
  ssize_t r = read(fds[0], &f, sizeof f);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (r != (ssize_t)sizeof f || !WIFEXITED(status) || WEXITSTATUS(status)) die("a measurement failed");
  return f;
}

static void row(const char *target, const char *what, const char *client, figure_t f) {
  printf("%-6s %-9s %-8s %6ld %10.1f %10.1f\n", target, what, client, f.n, f.rss, f.heap);
}

int main(int argc, char **argv) {
  const char *urls[MAX_TARGETS];
  int nurls = 0, idle = 256, inflight = 1000, hold_port = 0;
  const char *ca = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
    if (!strcmp(a, "--url")) {
      if (nurls == MAX_TARGETS) usage();
      urls[nurls++] = NEXT();
    } else if (!strcmp(a, "--ca")) ca = NEXT();
    else if (!strcmp(a, "--idle")) idle = atoi(NEXT());
    else if (!strcmp(a, "--inflight")) inflight = atoi(NEXT());
    else if (!strcmp(a, "--hold-port")) hold_port = atoi(NEXT());
    else usage();
  }
  if (!nurls || idle < 1 || inflight < 0) usage();
  struct rlimit rl;
  if (!getrlimit(RLIMIT_NOFILE, &rl)) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  hold = mmap(NULL, sizeof *hold, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (hold == MAP_FAILED) die("mmap");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (hold_port) hold_start(hold_port);
  const char *tunables = getenv("GLIBC_TUNABLES");
  printf("llmpool %s vs %s; %ld CPUs; GLIBC_TUNABLES=%s\n", llmpool_version(), curl_version(),
         sysconf(_SC_NPROCESSORS_ONLN), tunables ? tunables : "(unset)");
  printf("KiB per idle pooled connection (%d opened at once) and per call in flight (%d at once)\n", idle,
         inflight);
  printf("%-6s %-9s %-8s %6s %10s %10s\n", "target", "what", "client", "n", "rss_KiB", "heap_KiB");
  for (int t = 0; t < nurls; t++) {
    const char *label = strncmp(urls[t], "https:", 6) ? "http" : "https";
    const char *tca = strcmp(label, "https") ? NULL : ca;
    char chat[1200], hold_base[1200], hold_chat[1300];
    snprintf(chat, sizeof chat, "%s/chat/completions", urls[t]);
    row(label, "idle", "llmpool", isolated(llmpool_idle, urls[t], tca, idle));
    row(label, "idle", "libcurl", isolated(curl_idle, chat, tca, idle));
    if (hold_port && inflight > 0) {
      /* https://host:port/v1 -> https://host:port/hold/v1 */
      const char *path = strchr(strstr(urls[t], "://") + 3, '/');
      if (!path) path = "";
      snprintf(hold_base, sizeof hold_base, "%.*s/hold%s", (int)(path - urls[t]), urls[t], path);
      snprintf(hold_chat, sizeof hold_chat, "%s/chat/completions", hold_base);
      row(label, "in-flight", "llmpool", isolated(llmpool_inflight, hold_base, tca, inflight));
      row(label, "in-flight", "libcurl", isolated(curl_inflight, hold_chat, tca, inflight));
    }
    fflush(stdout);
  }
  atomic_store(&hold->stop, 1);
  curl_global_cleanup();
  return 0;
}
