/*
 * relay.h: helpers shared by bench.c and gzipbench.c (header-only, static
 * functions): clocks, URL parsing, and the delay relay behind --rtt-ms (see
 * the comment at the top of bench.c and docs/benchmark.md).
 * Needs _GNU_SOURCE defined before the first system header.
 */
#ifndef LLMPOOL_BENCH_RELAY_H
#define LLMPOOL_BENCH_RELAY_H

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *msg) {
  fprintf(stderr, "bench: %s\n", msg);
  exit(2);
}

/* ------------------------------------------------------------------ */
/* URLs                                                                */
/* ------------------------------------------------------------------ */

typedef struct {
  char scheme[8];
  char host[256];
  int port;
  char path[512]; /* e.g. "/v1" (may be "") */
} url_t;

static int parse_url(const char *s, url_t *u) {
  memset(u, 0, sizeof *u);
  const char *p = strstr(s, "://");
  if (!p || (size_t)(p - s) >= sizeof u->scheme) return -1;
  memcpy(u->scheme, s, p - s);
  p += 3;
  const char *slash = strchr(p, '/');
  size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
  char hp[300];
  if (hostport >= sizeof hp) return -1;
  memcpy(hp, p, hostport);
  hp[hostport] = 0;
  char *colon = strrchr(hp, ':');
  if (colon && !strchr(hp, ']')) {
    *colon = 0;
    u->port = atoi(colon + 1);
  } else {
    u->port = strcmp(u->scheme, "https") == 0 ? 443 : 80;
  }
  snprintf(u->host, sizeof u->host, "%.255s", hp);
  snprintf(u->path, sizeof u->path, "%s", slash ? slash : "");
  size_t n = strlen(u->path);
  while (n > 0 && u->path[n - 1] == '/') u->path[--n] = 0;
  return 0;
}

/* ------------------------------------------------------------------ */
/* The delay relay (--rtt-ms)                                          */
/* ------------------------------------------------------------------ */

typedef struct chunk {
  struct chunk *next;
  int64_t due_us;
  size_t len; /* 0: end of stream */
  char data[];
} chunk_t;

typedef struct {
  chunk_t *head, *tail;
  int src_eof;  /* nothing more will be read */
  int done;     /* eof delivered (or the destination failed) */
} lane_t;

typedef struct {
  struct sockaddr_storage upstream;
  socklen_t upstream_len;
  int64_t oneway_us;
  int64_t syn_us; /* extra delay on the first client->server chunk */
  int listen_fd;
  int port;
  atomic_long connections;
} relay_t;

typedef struct {
  relay_t *relay;
  int client_fd;
} relay_conn_t;

static void lane_push(lane_t *l, const char *data, size_t len, int64_t due) {
  chunk_t *c = malloc(sizeof *c + len);
  if (!c) die("out of memory");
  c->next = NULL;
  c->due_us = due;
  c->len = len;
  if (len) memcpy(c->data, data, len);
  if (l->tail) l->tail->next = c;
  else l->head = c;
  l->tail = c;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Delivers the due chunks of `l` to `dst`. */
static void lane_flush(lane_t *l, int dst, int64_t now) {
  while (l->head && l->head->due_us <= now) {
    chunk_t *c = l->head;
    l->head = c->next;
    if (!l->head) l->tail = NULL;
    if (!l->done) {
      if (c->len == 0) {
        shutdown(dst, SHUT_WR);
        l->done = 1;
      } else if (write_all(dst, c->data, c->len) < 0) {
        l->done = 1;
      }
    }
    free(c);
  }
  if (l->done) {
    while (l->head) {
      chunk_t *c = l->head;
      l->head = c->next;
      free(c);
    }
    l->tail = NULL;
  }
}

static void *relay_conn_main(void *arg) {
  relay_conn_t *rc = arg;
  relay_t *r = rc->relay;
  int cfd = rc->client_fd;
  free(rc);
  int sfd = socket(r->upstream.ss_family, SOCK_STREAM, 0);
  if (sfd < 0 || connect(sfd, (struct sockaddr *)&r->upstream, r->upstream_len) < 0) {
    if (sfd >= 0) close(sfd);
    close(cfd);
    return NULL;
  }
  int one = 1;
  setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  lane_t up = {0}, down = {0}; /* up: client -> server */
  int first_up = 1;
  char *rbuf = malloc(65536);
  if (!rbuf) die("out of memory");
  while (!(up.done && down.done)) {
    int64_t now = now_us();
    int64_t next_due = -1;
    if (up.head) next_due = up.head->due_us;
    if (down.head && (next_due < 0 || down.head->due_us < next_due)) next_due = down.head->due_us;
    struct pollfd pf[2];
    int n = 0, ci = -1, si = -1;
    if (!up.src_eof && !up.done) { pf[n].fd = cfd; pf[n].events = POLLIN; ci = n++; }
    if (!down.src_eof && !down.done) { pf[n].fd = sfd; pf[n].events = POLLIN; si = n++; }
    struct timespec ts, *tsp = NULL;
    if (next_due >= 0) {
      int64_t wait = next_due > now ? next_due - now : 0;
      ts.tv_sec = wait / 1000000;
      ts.tv_nsec = (wait % 1000000) * 1000;
      tsp = &ts;
    }
    if (n == 0 && !tsp) break;
    int rv = ppoll(pf, n, tsp, NULL);
    if (rv < 0 && errno != EINTR) break;
    now = now_us();
    if (rv > 0) {
      if (ci >= 0 && pf[ci].revents) {
        ssize_t got = recv(cfd, rbuf, 65536, 0);
        if (got > 0) {
          int64_t due = now + r->oneway_us + (first_up ? r->syn_us : 0);
          first_up = 0;
          lane_push(&up, rbuf, (size_t)got, due);
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          up.src_eof = 1;
          lane_push(&up, NULL, 0, now + r->oneway_us);
        }
      }
      if (si >= 0 && pf[si].revents) {
        ssize_t got = recv(sfd, rbuf, 65536, 0);
        if (got > 0) {
          lane_push(&down, rbuf, (size_t)got, now + r->oneway_us);
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          down.src_eof = 1;
          lane_push(&down, NULL, 0, now + r->oneway_us);
        }
      }
    }
    lane_flush(&up, sfd, now);
    lane_flush(&down, cfd, now);
    /* A destination that failed ends the relay: nothing can flow back. */
    if ((up.done && !up.src_eof) || (down.done && !down.src_eof)) break;
  }
  free(rbuf);
  close(cfd);
  close(sfd);
  return NULL;
}

static void *relay_accept_main(void *arg) {
  relay_t *r = arg;
  for (;;) {
    int cfd = accept(r->listen_fd, NULL, NULL);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      usleep(1000);
      continue;
    }
    atomic_fetch_add(&r->connections, 1);
    relay_conn_t *rc = malloc(sizeof *rc);
    if (!rc) die("out of memory");
    rc->relay = r;
    rc->client_fd = cfd;
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024);
    if (pthread_create(&t, &a, relay_conn_main, rc) != 0) {
      close(cfd);
      free(rc);
    }
    pthread_attr_destroy(&a);
  }
  return NULL;
}

/* Starts a relay to u's host:port; returns its 127.0.0.1 port. */
static relay_t *relay_start(const url_t *u, int rtt_ms, int syn) {
  relay_t *r = calloc(1, sizeof *r);
  if (!r) die("out of memory");
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  char port[16];
  snprintf(port, sizeof port, "%d", u->port);
  if (getaddrinfo(u->host, port, &hints, &res) != 0 || !res) die("relay: cannot resolve the target host");
  memcpy(&r->upstream, res->ai_addr, res->ai_addrlen);
  r->upstream_len = res->ai_addrlen;
  freeaddrinfo(res);
  r->oneway_us = (int64_t)rtt_ms * 1000 / 2;
  r->syn_us = syn ? (int64_t)rtt_ms * 1000 : 0;
  r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(r->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(r->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(r->listen_fd, 1024) < 0)
    die("relay: cannot listen");
  socklen_t len = sizeof a;
  getsockname(r->listen_fd, (struct sockaddr *)&a, &len);
  r->port = ntohs(a.sin_port);
  pthread_t t;
  if (pthread_create(&t, NULL, relay_accept_main, r) != 0) die("relay: cannot start");
  pthread_detach(t);
  return r;
}

#endif
