/*
 * wsload: a WebSocket load generator for blockcast's benchmarks.
 *
 * Opens many non-blocking client connections with one epoll loop, does the HTTP upgrade, sends
 * each connection its subscribe frame (a masked text frame, one line of the subscriptions file),
 * then parses every server frame. For each block it records how many frames arrived and the
 * CLOCK_MONOTONIC time of the first and the last one, so the controller can compare with the
 * server's publish time (Node's process.hrtime.bigint() reads the same clock).
 *
 * Control on stdin, one word per line, answers on stdout as one JSON line each:
 *   stats   {"event":"stats",...}   totals so far
 *   report  {"event":"report",...}  totals and per-block arrival times
 *   drain   resume reading the connections that stopped reading (every --slow-every-th one
 *           stops after --slow-after block frames)
 *   quit    exit (so does end of input, and --max-seconds)
 * When every connection is subscribed (or failed), it prints {"event":"ready",...}.
 *
 * Every loop is bounded: connections by --conns, time by --max-seconds and --connect-timeout-sec.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_BLOCKS 65536
#define READ_BUFFER_BYTES (256 * 1024)
#define MAX_EVENTS 1024
#define STDIN_TAG UINT64_MAX

/* --rpc 1: the server speaks JSON-RPC (eth_subscribe answers "result"; heads carry "number":"0x…") */
static int rpc_mode;

enum state { CONNECTING, HANDSHAKE, OPEN, CLOSED };

struct conn {
  int fd;
  uint8_t state;
  uint8_t slow;        /* told to stop reading after --slow-after data frames */
  uint8_t paused;      /* currently not reading */
  uint8_t subscribed;
  uint8_t settled;     /* subscribed, refused or failed: no longer counts against --concurrency */
  uint8_t watched;     /* registered with epoll */
  int32_t last_block;  /* last block number seen on this connection */
  uint32_t data_frames; /* block-scoped frames received on this connection */
  uint8_t *pending;    /* bytes of an unfinished frame (or handshake) */
  uint32_t pending_len;
  uint32_t pending_cap;
};

static struct conn *conns;
static int conn_count;
static int epfd;

static uint32_t blk_count[MAX_BLOCKS];
static uint64_t blk_first[MAX_BLOCKS];
static uint64_t blk_last[MAX_BLOCKS];

static uint64_t frames_total, bytes_total, other_frames, duplicates, slow_frames;
static uint64_t closes_4008, closes_1001, closes_other, eof_closes, failed, subscribed_count, open_count;
static uint64_t sub_errors, slow_conns;
static int ready_printed;
static int draining; /* slow connections read again, to the end */

static char **sub_lines;
static int sub_line_count;

static const char *host = "127.0.0.1";
static int port;
static const char *path = "/v1";
static const char *src_ip;
static int slow_every;
static int slow_rcvbuf_bytes = 4096;
static int slow_mss_bytes = 536;
static int slow_after;
static int concurrency = 256;
static int max_seconds = 600;
static int connect_timeout_sec = 60;
static int first_line;

static uint32_t rng = 2463534242u;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static void die(const char *what) {
  fprintf(stderr, "wsload: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* Writes a whole small buffer to a fresh socket; small control writes never meet backpressure. */
static int write_all(int fd, const uint8_t *data, size_t len) {
  size_t off = 0;
  int tries = 0;
  while (off < len && tries < 1000) {
    ssize_t n = write(fd, data + off, len - off);
    if (n > 0) {
      off += (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      tries++;
    } else {
      return -1;
    }
  }
  return off == len ? 0 : -1;
}

/* Sends one masked client frame (RFC 6455 5.3). */
static int send_frame(struct conn *c, int opcode, const uint8_t *payload, size_t len) {
  uint8_t stack[256];
  size_t header = 2 + (len >= 126 ? (len >= 65536 ? 8 : 2) : 0) + 4;
  uint8_t *frame = header + len <= sizeof stack ? stack : malloc(header + len);
  if (frame == NULL) return -1;
  size_t at = 0;
  frame[at++] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    frame[at++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    frame[at++] = 0x80 | 126;
    frame[at++] = (uint8_t)(len >> 8);
    frame[at++] = (uint8_t)len;
  } else {
    frame[at++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) frame[at++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  uint32_t mask = next_random();
  uint8_t key[4] = {(uint8_t)mask, (uint8_t)(mask >> 8), (uint8_t)(mask >> 16), (uint8_t)(mask >> 24)};
  memcpy(frame + at, key, 4);
  at += 4;
  for (size_t i = 0; i < len; i++) frame[at + i] = payload[i] ^ key[i & 3];
  int rc = write_all(c->fd, frame, at + len);
  if (frame != stack) free(frame);
  return rc;
}

static void print_ready(void) {
  printf("{\"event\":\"ready\",\"conns\":%d,\"open\":%llu,\"subscribed\":%llu,\"failed\":%llu,\"subErrors\":%llu}\n",
         conn_count, (unsigned long long)open_count, (unsigned long long)subscribed_count,
         (unsigned long long)failed, (unsigned long long)sub_errors);
  fflush(stdout);
  ready_printed = 1;
}

static void check_ready(void) {
  if (!ready_printed && subscribed_count + failed + sub_errors >= (uint64_t)conn_count) print_ready();
}

static void settle(struct conn *c) {
  c->settled = 1;
  check_ready();
}

static void close_conn(struct conn *c) {
  if (c->state == CLOSED) return;
  if (c->state == OPEN) open_count--;
  if (!c->settled) {
    failed++;
    c->settled = 1;
  }
  if (c->watched) epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  c->watched = 0;
  close(c->fd);
  c->state = CLOSED;
  free(c->pending);
  c->pending = NULL;
  c->pending_len = c->pending_cap = 0;
  check_ready();
}

/* Reading: watched for input. Paused: not watched at all, so its unread bytes wait in the kernel. */
static void set_reading(struct conn *c, int reading) {
  if (reading) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - conns)};
    epoll_ctl(epfd, c->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->watched = 1;
  } else if (c->watched) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->watched = 0;
  }
  c->paused = !reading;
}

static void start_conn(int i) {
  struct conn *c = &conns[i];
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) die("socket");
  c->last_block = -1;
  c->slow = slow_every > 0 && (first_line + i) % slow_every == slow_every - 1;
  if (c->slow) {
    slow_conns++;
    /* A small receive window and segment size (the server sizes its send buffer from the
     * segment size: over a megabyte at loopback's 64 KB), so a reader that stops fills the
     * server's buffers within seconds rather than minutes. */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &slow_rcvbuf_bytes, sizeof slow_rcvbuf_bytes);
    setsockopt(c->fd, IPPROTO_TCP, TCP_MAXSEG, &slow_mss_bytes, sizeof slow_mss_bytes);
  }
  if (src_ip != NULL) {
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, src_ip, &local.sin_addr);
    if (bind(c->fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
  }
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &addr.sin_addr);
  c->state = CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  c->watched = 1;
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) close_conn(c);
}

static void keep(struct conn *c, const uint8_t *data, size_t len) {
  if (len == 0) {
    c->pending_len = 0;
    return;
  }
  if (len > c->pending_cap) {
    uint8_t *grown = malloc(len);
    if (grown == NULL) die("malloc");
    memcpy(grown, data, len);
    free(c->pending);
    c->pending = grown;
    c->pending_cap = (uint32_t)len;
  } else {
    memmove(c->pending, data, len);
  }
  c->pending_len = (uint32_t)len;
}

static const uint8_t MSGPACK_NUMBER_KEY[7] = {0xa6, 'n', 'u', 'm', 'b', 'e', 'r'};

/* The first `number` of a message: a block's number, or the `block.number` of activity. */
static long block_number(int opcode, const uint8_t *p, size_t len) {
  if (opcode == 2) {
    const uint8_t *k = memmem(p, len, MSGPACK_NUMBER_KEY, sizeof MSGPACK_NUMBER_KEY);
    if (k == NULL) return -1;
    size_t at = (size_t)(k - p) + sizeof MSGPACK_NUMBER_KEY;
    if (at >= len) return -1;
    uint8_t t = p[at];
    if (t < 0x80) return t;
    if (t == 0xcc && at + 1 < len) return p[at + 1];
    if (t == 0xcd && at + 2 < len) return (p[at + 1] << 8) | p[at + 2];
    if (t == 0xce && at + 4 < len)
      return (long)(((uint32_t)p[at + 1] << 24) | ((uint32_t)p[at + 2] << 16) | ((uint32_t)p[at + 3] << 8) | p[at + 4]);
    return -1;
  }
  const char *k = memmem(p, len, "\"number\":", 9);
  if (k == NULL) return -1;
  long n = 0;
  size_t at = (size_t)((const uint8_t *)k - p) + 9;
  int digits = 0;
  if (at + 3 < len && p[at] == '"' && p[at + 1] == '0' && p[at + 2] == 'x') {
    /* JSON-RPC (newHeads): "number":"0x1a" */
    at += 3;
    while (at < len && digits < 12) {
      uint8_t d = p[at++];
      int v = d >= '0' && d <= '9' ? d - '0' : d >= 'a' && d <= 'f' ? d - 'a' + 10 : -1;
      if (v < 0) break;
      n = n * 16 + v;
      digits++;
    }
    return digits > 0 ? n : -1;
  }
  while (at < len && p[at] >= '0' && p[at] <= '9' && digits < 12) {
    n = n * 10 + (p[at++] - '0');
    digits++;
  }
  return digits > 0 ? n : -1;
}

static void on_frame(struct conn *c, int opcode, const uint8_t *p, size_t len, uint64_t t) {
  if (opcode == 8) {
    int code = len >= 2 ? (p[0] << 8) | p[1] : 1005;
    if (code == 4008) closes_4008++;
    else if (code == 1001) closes_1001++;
    else closes_other++;
    close_conn(c);
    return;
  }
  if (opcode == 9) {
    send_frame(c, 10, p, len);
    return;
  }
  if (opcode != 1 && opcode != 2) return;
  if (!c->subscribed) {
    /* protocol v1 answers "subscribed"; JSON-RPC (--rpc) a "result" with the subscription id */
    if (memmem(p, len, rpc_mode ? "\"result\"" : "subscribed", rpc_mode ? 8 : 10) != NULL) {
      c->subscribed = 1;
      subscribed_count++;
      if (c->slow && slow_after == 0 && !draining) set_reading(c, 0);
      settle(c);
    } else if (memmem(p, len, "error", 5) != NULL && !c->settled) {
      sub_errors++;
      settle(c);
    }
    return;
  }
  long b = block_number(opcode, p, len);
  if (b < 0 || b >= MAX_BLOCKS) {
    other_frames++;
    return;
  }
  if (c->slow) {
    slow_frames++;
    if (++c->data_frames >= (uint32_t)slow_after && !draining) set_reading(c, 0);
    return;
  }
  frames_total++;
  bytes_total += len;
  if (blk_count[b]++ == 0) blk_first[b] = t;
  blk_last[b] = t;
  if (b == c->last_block) duplicates++;
  c->last_block = (int32_t)b;
}

/* Parses every whole frame of `data`; keeps the rest for the next read. */
static void on_bytes(struct conn *c, const uint8_t *data, size_t len, uint64_t t) {
  size_t off = 0;
  while (c->state == OPEN && len - off >= 2) {
    const uint8_t *f = data + off;
    size_t avail = len - off;
    int opcode = f[0] & 0x0f;
    uint64_t plen = f[1] & 0x7f;
    size_t header = 2;
    if (plen == 126) {
      if (avail < 4) break;
      plen = ((uint64_t)f[2] << 8) | f[3];
      header = 4;
    } else if (plen == 127) {
      if (avail < 10) break;
      plen = 0;
      for (int i = 0; i < 8; i++) plen = (plen << 8) | f[2 + i];
      header = 10;
    }
    if (f[1] & 0x80) header += 4;
    if (avail < header + plen) break;
    on_frame(c, opcode, f + header, (size_t)plen, t);
    off += header + (size_t)plen;
  }
  if (c->state == CLOSED) return;
  keep(c, data + off, len - off);
}

static uint8_t read_buffer[READ_BUFFER_BYTES];
static uint8_t join_buffer[READ_BUFFER_BYTES * 2];

static void on_readable(struct conn *c) {
  ssize_t n = read(c->fd, read_buffer, sizeof read_buffer);
  uint64_t t = now_ns();
  if (n == 0) {
    eof_closes++;
    close_conn(c);
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EINTR) {
      eof_closes++;
      close_conn(c);
    }
    return;
  }
  const uint8_t *data = read_buffer;
  size_t len = (size_t)n;
  uint8_t *joined = NULL;
  if (c->pending_len > 0) {
    size_t total = c->pending_len + len;
    joined = total <= sizeof join_buffer ? join_buffer : malloc(total);
    if (joined == NULL) die("malloc");
    memcpy(joined, c->pending, c->pending_len);
    memcpy(joined + c->pending_len, read_buffer, len);
    data = joined;
    len = total;
    c->pending_len = 0;
  }
  if (c->state == HANDSHAKE) {
    const uint8_t *end = memmem(data, len, "\r\n\r\n", 4);
    if (end == NULL) {
      if (len > 8192) close_conn(c);
      else keep(c, data, len);
    } else if (len < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
      close_conn(c);
    } else {
      c->state = OPEN;
      open_count++;
      const char *line = sub_lines[(first_line + (int)(c - conns)) % sub_line_count];
      if (send_frame(c, 1, (const uint8_t *)line, strlen(line)) < 0) {
        close_conn(c);
      } else {
        size_t head = (size_t)(end - data) + 4;
        on_bytes(c, data + head, len - head, t);
      }
    }
  } else {
    on_bytes(c, data, len, t);
  }
  if (joined != NULL && joined != join_buffer) free(joined);
}

static void on_writable(struct conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
    close_conn(c);
    return;
  }
  char request[512];
  int n = snprintf(request, sizeof request,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   path, host, port);
  if (write_all(c->fd, (const uint8_t *)request, (size_t)n) < 0) {
    close_conn(c);
    return;
  }
  c->state = HANDSHAKE;
  set_reading(c, 1);
}

static void print_report(int with_blocks) {
  printf("{\"event\":\"%s\",\"conns\":%d,\"slowConns\":%llu,\"open\":%llu,\"subscribed\":%llu,\"failed\":%llu,\"subErrors\":%llu,"
         "\"frames\":%llu,\"bytes\":%llu,\"otherFrames\":%llu,\"duplicates\":%llu,\"slowFrames\":%llu,"
         "\"closes\":{\"4008\":%llu,\"1001\":%llu,\"other\":%llu,\"eof\":%llu}",
         with_blocks ? "report" : "stats", conn_count, (unsigned long long)slow_conns, (unsigned long long)open_count,
         (unsigned long long)subscribed_count, (unsigned long long)failed, (unsigned long long)sub_errors,
         (unsigned long long)frames_total, (unsigned long long)bytes_total, (unsigned long long)other_frames,
         (unsigned long long)duplicates, (unsigned long long)slow_frames, (unsigned long long)closes_4008,
         (unsigned long long)closes_1001, (unsigned long long)closes_other, (unsigned long long)eof_closes);
  if (with_blocks) {
    /* [number, frames, first ns, last ns]; ns as strings, past 2^53 for JSON readers */
    printf(",\"blocks\":[");
    int first = 1;
    for (int b = 0; b < MAX_BLOCKS; b++) {
      if (blk_count[b] == 0) continue;
      printf("%s[%d,%u,\"%llu\",\"%llu\"]", first ? "" : ",", b, blk_count[b], (unsigned long long)blk_first[b],
             (unsigned long long)blk_last[b]);
      first = 0;
    }
    printf("]");
  }
  printf("}\n");
  fflush(stdout);
}

static int on_stdin(void) {
  static char line[256];
  static size_t used;
  ssize_t n = read(0, line + used, sizeof line - 1 - used);
  if (n == 0) return 0;
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  used += (size_t)n;
  line[used] = 0;
  char *nl;
  while ((nl = strchr(line, '\n')) != NULL) {
    *nl = 0;
    if (strcmp(line, "stats") == 0) print_report(0);
    else if (strcmp(line, "report") == 0) print_report(1);
    else if (strcmp(line, "quit") == 0) return 0;
    else if (strcmp(line, "drain") == 0) {
      draining = 1;
      for (int i = 0; i < conn_count; i++)
        if (conns[i].state == OPEN && conns[i].paused) set_reading(&conns[i], 1);
      printf("{\"event\":\"draining\"}\n");
      fflush(stdout);
    }
    size_t rest = used - (size_t)(nl + 1 - line);
    memmove(line, nl + 1, rest);
    used = rest;
    line[used] = 0;
  }
  if (used == sizeof line - 1) used = 0;
  return 1;
}

static void load_subscriptions(const char *file) {
  FILE *f = fopen(file, "r");
  if (f == NULL) die(file);
  int cap = 1024;
  sub_lines = malloc(sizeof(char *) * (size_t)cap);
  char *line = NULL;
  size_t size = 0;
  ssize_t n;
  while ((n = getline(&line, &size, f)) > 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (n == 0) continue;
    if (sub_line_count == cap) {
      cap *= 2;
      sub_lines = realloc(sub_lines, sizeof(char *) * (size_t)cap);
    }
    sub_lines[sub_line_count++] = strdup(line);
  }
  free(line);
  fclose(f);
  if (sub_line_count == 0) {
    fprintf(stderr, "wsload: %s has no subscribe line\n", file);
    exit(2);
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: wsload --port N --conns N --subs FILE [--host IP] [--path /v1] [--first-line N] [--src IP]\n"
          "              [--slow-every N] [--slow-after FRAMES] [--slow-rcvbuf BYTES] [--slow-mss BYTES]\n"
          "              [--concurrency N] [--max-seconds N]\n"
          "              [--connect-timeout-sec N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *subs_file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage();
    if (strcmp(a, "--host") == 0) host = v;
    else if (strcmp(a, "--port") == 0) port = atoi(v);
    else if (strcmp(a, "--path") == 0) path = v;
    else if (strcmp(a, "--rpc") == 0) rpc_mode = atoi(v);
    else if (strcmp(a, "--conns") == 0) conn_count = atoi(v);
    else if (strcmp(a, "--subs") == 0) subs_file = v;
    else if (strcmp(a, "--first-line") == 0) first_line = atoi(v);
    else if (strcmp(a, "--src") == 0) src_ip = v;
    else if (strcmp(a, "--slow-every") == 0) slow_every = atoi(v);
    else if (strcmp(a, "--slow-rcvbuf") == 0) slow_rcvbuf_bytes = atoi(v);
    else if (strcmp(a, "--slow-mss") == 0) slow_mss_bytes = atoi(v);
    else if (strcmp(a, "--slow-after") == 0) slow_after = atoi(v);
    else if (strcmp(a, "--concurrency") == 0) concurrency = atoi(v);
    else if (strcmp(a, "--max-seconds") == 0) max_seconds = atoi(v);
    else if (strcmp(a, "--connect-timeout-sec") == 0) connect_timeout_sec = atoi(v);
    else usage();
    i++;
  }
  if (port <= 0 || conn_count <= 0 || subs_file == NULL || concurrency <= 0) usage();
  load_subscriptions(subs_file);
  rng ^= (uint32_t)getpid() * 2654435761u;

  conns = calloc((size_t)conn_count, sizeof *conns);
  if (conns == NULL) die("calloc");
  epfd = epoll_create1(0);
  if (epfd < 0) die("epoll_create1");
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event in = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
  epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &in);

  const uint64_t started = now_ns();
  const uint64_t deadline = started + (uint64_t)max_seconds * 1000000000ull;
  const uint64_t connect_deadline = started + (uint64_t)connect_timeout_sec * 1000000000ull;
  int next = 0;
  struct epoll_event events[MAX_EVENTS];
  int running = 1;
  while (running) {
    /* Connections being set up: started, and neither subscribed, refused nor failed. */
    uint64_t settled = subscribed_count + failed + sub_errors;
    while (next < conn_count && (uint64_t)next - settled < (uint64_t)concurrency) start_conn(next++);
    int n = epoll_wait(epfd, events, MAX_EVENTS, 20);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      if (events[i].data.u64 == STDIN_TAG) {
        if (!on_stdin()) running = 0;
        continue;
      }
      struct conn *c = &conns[events[i].data.u64];
      if (c->state == CLOSED) continue;
      if (c->state == CONNECTING) {
        on_writable(c);
      } else if (!c->paused) {
        on_readable(c);
      }
    }
    uint64_t t = now_ns();
    if (!ready_printed && t > connect_deadline) print_ready();
    if (t > deadline) running = 0;
  }
  return 0;
}
