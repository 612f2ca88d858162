// The proxy's zero-copy relay: spliced sessions' bytes move socket -> pipe -> socket with
// splice(2) on one native thread, so they never enter user space and no JS object stays alive
// per session. The JS splicer hands over two descriptors (dup'd here, then the JS sockets are
// destroyed: closing a dup'd descriptor sends no FIN) once the bytes from before the splice are
// flushed; from then on this file owns them until it reports the session's end.
//
// One thread, one edge-triggered epoll set, one mutex held while a batch of events is handled
// (the JS thread takes it to add, cancel or collect counters). A direction holds a pipe only while
// it has bytes in flight, so an idle session holds two descriptors and ~200 bytes. Idle timeouts
// and duration limits are one scan of the table per wake-up, never a timer per session.
//
// A session added with a copy size relays by copying instead (recv into one buffer shared by the
// thread, send straight on): on loopback a spliced page stays referenced until the receiver has
// read it, so the sender writes into cold pages and the endpoints pay more CPU per byte than
// behind a copying relay. Only the tail a destination did not take is kept, in a buffer of the
// direction's own allocated then and freed once sent, and the source is not read meanwhile.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// Bytes a pipe holds: each splice moves up to this much. In bench/relay.ts (one 1 GiB stream,
// three runs) 1 MiB pipes cut the relay's CPU per GiB by 23-29% against 256 KiB (a deep source
// queue goes in fewer, larger splices), and 64 KiB (the kernel's default, which haproxy's
// tune.pipesize keeps) cost 10-15% more than 256 KiB; the throughput did not move with any (on
// loopback the sender and receiver spent ~9% more CPU behind 1 MiB pipes: more of the sender's
// pages in flight, see the README's benchmarks; between machines they are not ours to pay). The
// kernel charges a pipe's capacity, not its contents, against the user's pipe-user-pages-soft
// (16384 pages, 64 MiB, by default), past which new pipes get two pages and F_SETPIPE_SZ fails: so
// only the first BIG_PIPES pipes are 1 MiB (a quarter of that budget; the spare pool hands them
// to the busiest directions), the rest 256 KiB. Pipes are kept for reuse, at most MAX_SPARE_PIPES.
#define BIG_PIPE_BYTES (1024 * 1024)
#define BIG_PIPES 16
#define PIPE_BYTES (256 * 1024)
#define MAX_SPARE_PIPES 64
// Low bits of a session id are its slot, the rest a generation: a stale id never finds a reused slot.
#define SLOT_BITS 20
#define SLOT_COUNT (1u << SLOT_BITS)
// Longest sleep between scans for idle sessions and duration limits.
#define MAX_SCAN_MS 1000
#define MAX_EVENTS 256
// Copy mode's largest recv, in KiB (a session keeps its sizes in 16 bits).
#define MAX_COPY_KIB 32768

// The SpliceEndReason values of machines/brokering.ts, in the order native-splice.ts maps them.
enum reason { R_COMPLETED, R_A_ERROR, R_B_ERROR, R_A_CLOSED, R_B_CLOSED, R_IDLE, R_DURATION, R_BYTE_LIMIT };

// Copy mode: the tail of a recv that the destination did not take, from data + at.
typedef struct {
  uint32_t at;
  char data[];
} leftover_t;

// Fields sized and ordered so that a direction stays 40 bytes and a session 136, as before copy
// mode: an idle session's memory is the proxy's limit (README, relay memory).
typedef struct {
  int pipe_r, pipe_w;   // -1 when the direction holds no pipe
  uint32_t pending;     // bytes taken from the source, not yet written to the destination
  uint8_t eof;          // the source sent FIN
  uint8_t shut;         // the destination was shut down for writing after that
  uint8_t hup;          // copy mode: the source signalled FIN/HUP/error, so read it to the end
  leftover_t *left;     // copy mode: the pending bytes, NULL when none
  uint64_t taken;       // bytes taken from the source in total (what the byte limit counts)
  uint64_t reported;    // `taken` at the last collect()
} direction_t;

typedef struct {
  uint64_t id;
  int fd[2];            // [0] A, [1] B
  direction_t dir[2];   // [0] A -> B, [1] B -> A
  uint64_t max_bytes;   // per direction; UINT64_MAX for none
  int64_t deadline_ms;  // monotonic; 0 for none
  int64_t idle_ms;      // 0 for none
  int64_t last_active_ms;
  uint8_t dirty;        // bytes moved since the last collect()
  uint16_t copy_kib;    // 0: splice; else copy, at most this many KiB per recv
  uint16_t send_kib;    // copy mode: at most this many KiB per send
} session_t;

typedef struct {
  uint64_t id;
  int reason;
  int err;
  double a_to_b, b_to_a;      // totals
  double delta_a, delta_b;    // not yet collected
} ended_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static session_t **slots;
static uint32_t slot_count;     // slots ever used (high-water mark)
static uint32_t *free_slots;
static uint32_t free_count;
static uint64_t generation = 1;
static uint32_t live;
static uint32_t *dirty;
static uint32_t dirty_count;
static int spare_pipes[MAX_SPARE_PIPES][2];
static int spare_count;
static uint32_t pipes_open;
// Copy mode: every copying session receives into this one buffer, sent on before the next recv.
static char *copy_buffer;
static size_t copy_buffer_bytes;
// Leftover buffers held now (a direction whose destination took part of a recv).
static uint32_t lefts_held;
static int epfd = -1, wakefd = -1;
static int started, stopping;
// When the loop scans next (monotonic ms); add() moves it earlier for a sooner deadline.
static int64_t next_scan_ms;
static pthread_t thread;
static napi_threadsafe_function on_ended;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int take_pipe(direction_t *d) {
  if (d->pipe_r >= 0) return 0;
  if (spare_count > 0) {
    spare_count--;
    d->pipe_r = spare_pipes[spare_count][0];
    d->pipe_w = spare_pipes[spare_count][1];
    return 0;
  }
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
  // A 1 MiB pipe needs pipe-max-size (1 MiB by default) or CAP_SYS_RESOURCE; a smaller pipe still
  // works, just with more splices.
  if (pipes_open >= BIG_PIPES || fcntl(p[1], F_SETPIPE_SZ, BIG_PIPE_BYTES) < 0) fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES);
  d->pipe_r = p[0];
  d->pipe_w = p[1];
  pipes_open++;
  return 0;
}

/** An empty pipe goes back to the spares; one with bytes still in it is closed. */
static void give_back_pipe(direction_t *d) {
  if (d->pipe_r < 0) return;
  if (d->pending == 0 && spare_count < MAX_SPARE_PIPES) {
    spare_pipes[spare_count][0] = d->pipe_r;
    spare_pipes[spare_count][1] = d->pipe_w;
    spare_count++;
  } else {
    close(d->pipe_r);
    close(d->pipe_w);
    pipes_open--;
  }
  d->pipe_r = d->pipe_w = -1;
}

static void mark_dirty(session_t *s) {
  if (s->dirty) return;
  s->dirty = 1;
  dirty[dirty_count++] = (uint32_t)(s->id & (SLOT_COUNT - 1));
}

static void report(session_t *s, int reason, int err) {
  ended_t *e = malloc(sizeof *e);
  if (!e) return;
  e->id = s->id;
  e->reason = reason;
  e->err = err;
  e->a_to_b = (double)s->dir[0].taken;
  e->b_to_a = (double)s->dir[1].taken;
  e->delta_a = (double)(s->dir[0].taken - s->dir[0].reported);
  e->delta_b = (double)(s->dir[1].taken - s->dir[1].reported);
  if (napi_call_threadsafe_function(on_ended, e, napi_tsfn_nonblocking) != napi_ok) free(e);
}

/** Frees the session's slot and descriptors; reports its end unless `reason` < 0 (cancelled by JS). */
static void end_session(session_t *s, int reason, int err) {
  uint32_t slot = (uint32_t)(s->id & (SLOT_COUNT - 1));
  for (int i = 0; i < 2; i++) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd[i], NULL);
    close(s->fd[i]);
    give_back_pipe(&s->dir[i]);
    if (s->dir[i].left) {
      free(s->dir[i].left);
      lefts_held--;
    }
  }
  if (reason >= 0) report(s, reason, err);
  if (s->dirty) {
    for (uint32_t i = 0; i < dirty_count; i++) {
      if (dirty[i] == slot) {
        dirty[i] = dirty[--dirty_count];
        break;
      }
    }
  }
  slots[slot] = NULL;
  free_slots[free_count++] = slot;
  live--;
  free(s);
}

static int side_error(int side) { return side == 0 ? R_A_ERROR : R_B_ERROR; }

/** Shuts the destination for writing once the source's FIN is relayed; 1 when that ended the session. */
static int relay_fin(session_t *s, int k) {
  direction_t *d = &s->dir[k];
  if (d->shut) return 0;
  // Half-close: the source finished sending, the destination may still be answering.
  shutdown(s->fd[1 - k], SHUT_WR);
  d->shut = 1;
  if (s->dir[1 - k].shut) {
    end_session(s, R_COMPLETED, 0);
    return 1;
  }
  return 0;
}

/** The byte limit is reached: one more byte (not a FIN) crosses it. 1: ended; 0: wait; -1: EOF. */
static int probe_past_limit(session_t *s, int k) {
  char probe;
  ssize_t n = recv(s->fd[k], &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {
    end_session(s, R_BYTE_LIMIT, 0);
    return 1;
  }
  if (n == 0) return -1;
  if (errno == EAGAIN || errno == EINTR) return 0;
  end_session(s, side_error(k), errno);
  return 1;
}

/**
 * Moves what direction `k` can move now: empties its pipe into the destination, then refills it
 * from the source, until one of them would block. Returns 0, or 1 when the session ended.
 */
static int pump(session_t *s, int k, int64_t now) {
  direction_t *d = &s->dir[k];
  int src = s->fd[k], dst = s->fd[1 - k];
  for (;;) {
    if (d->pending > 0) {
      ssize_t n = splice(d->pipe_r, NULL, dst, NULL, d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0; // EPOLLOUT on dst resumes it
        end_session(s, side_error(1 - k), errno);
        return 1;
      }
      d->pending -= (uint32_t)n;
      continue;
    }
    give_back_pipe(d);
    if (d->eof) return relay_fin(s, k);
    uint64_t budget = s->max_bytes - d->taken;
    if (budget == 0) {
      int r = probe_past_limit(s, k);
      if (r >= 0) return r;
      d->eof = 1;
      continue;
    }
    if (take_pipe(d) < 0) {
      end_session(s, side_error(k), errno);
      return 1;
    }
    // Asking for more than the pipe holds is harmless: the splice stops when the pipe is full.
    // SPLICE_F_MOVE is a no-op since Linux 2.6.21 (kept as haproxy keeps it); SPLICE_F_MORE on
    // the write side (MSG_MORE while the read filled its request) made no difference in the bench.
    size_t want = budget < BIG_PIPE_BYTES ? (size_t)budget : BIG_PIPE_BYTES;
    ssize_t n = splice(src, NULL, d->pipe_w, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d->pending += (uint32_t)n;
      d->taken += (uint64_t)n;
      s->last_active_ms = now;
      mark_dirty(s);
    } else if (n == 0) {
      d->eof = 1;
    } else if (errno == EAGAIN || errno == EINTR) {
      give_back_pipe(d);
      return 0;
    } else {
      end_session(s, side_error(k), errno);
      return 1;
    }
  }
}

/**
 * Copy mode's pump: sends the direction's leftover, then recv()s into the shared buffer and
 * send()s it on until the source is drained or the destination is full. Returns 0, or 1 when the
 * session ended.
 */
static int pump_copy(session_t *s, int k, int64_t now) {
  direction_t *d = &s->dir[k];
  int src = s->fd[k], dst = s->fd[1 - k];
  if (d->pending > 0) {
    ssize_t n = send(dst, d->left->data + d->left->at, d->pending, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0; // EPOLLOUT on dst resumes it
      end_session(s, side_error(1 - k), errno);
      return 1;
    }
    d->pending -= (uint32_t)n;
    d->left->at += (uint32_t)n;
    if (d->pending > 0) return 0;
    free(d->left);
    d->left = NULL;
    lefts_held--;
  }
  for (;;) {
    if (d->eof) return relay_fin(s, k);
    uint64_t budget = s->max_bytes - d->taken;
    if (budget == 0) {
      int r = probe_past_limit(s, k);
      if (r >= 0) return r;
      d->eof = 1;
      continue;
    }
    size_t copy_bytes = (size_t)s->copy_kib * 1024, send_bytes = (size_t)s->send_kib * 1024;
    size_t want = budget < copy_bytes ? (size_t)budget : copy_bytes;
    ssize_t n = recv(src, copy_buffer, want, MSG_DONTWAIT);
    if (n == 0) {
      d->eof = 1;
      continue;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      end_session(s, side_error(k), errno);
      return 1;
    }
    d->taken += (uint64_t)n;
    s->last_active_ms = now;
    mark_dirty(s);
    // Sent in slices: in bench/relay.ts 16 KiB sends of 256 KiB-1 MiB recvs cost the relay less
    // CPU than sending each recv whole, and the endpoints about what they pay behind haproxy.
    ssize_t sent = 0;
    while (sent < n) {
      size_t slice = (size_t)(n - sent) > send_bytes ? send_bytes : (size_t)(n - sent);
      ssize_t m = send(dst, copy_buffer + sent, slice, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (m < 0) {
        if (errno != EAGAIN && errno != EINTR) {
          end_session(s, side_error(1 - k), errno);
          return 1;
        }
        break;
      }
      sent += m;
      if ((size_t)m < slice) break;
    }
    if (sent < n) {
      // The destination is full: keep only the tail it did not take, and read no more from the
      // source until EPOLLOUT has it sent (the kernel's buffers are the rest of the backpressure).
      d->left = malloc(sizeof(leftover_t) + (size_t)(n - sent));
      if (!d->left) {
        end_session(s, side_error(k), ENOMEM);
        return 1;
      }
      lefts_held++;
      memcpy(d->left->data, copy_buffer + sent, (size_t)(n - sent));
      d->left->at = 0;
      d->pending = (uint32_t)(n - sent);
      return 0;
    }
    // A short read emptied the receive queue (tcp_recvmsg copies all it holds up to the size
    // asked), and with edge-triggered epoll the next arrival wakes us again: skipping the read
    // that would only say EAGAIN saves a call per message. A FIN or error already signalled may
    // not signal again, so after one the source is read to its end.
    if ((size_t)n < want && !d->hup) return 0;
  }
}

static session_t *lookup(uint64_t id) {
  uint32_t slot = (uint32_t)(id & (SLOT_COUNT - 1));
  if (slot >= slot_count) return NULL;
  session_t *s = slots[slot];
  return s && s->id == id ? s : NULL;
}

/** A socket's pending error, which a splice may not surface when neither direction has bytes to move. */
static int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

/** Ends sessions past their idle timeout or duration limit; returns ms until the next one is due. */
static int scan(int64_t now) {
  int64_t next = MAX_SCAN_MS;
  for (uint32_t i = 0; i < slot_count; i++) {
    session_t *s = slots[i];
    if (!s) continue;
    if (s->deadline_ms && now >= s->deadline_ms) {
      end_session(s, R_DURATION, 0);
      continue;
    }
    if (s->idle_ms && now - s->last_active_ms >= s->idle_ms) {
      end_session(s, R_IDLE, 0);
      continue;
    }
    if (s->deadline_ms && s->deadline_ms - now < next) next = s->deadline_ms - now;
    if (s->idle_ms && s->last_active_ms + s->idle_ms - now < next) next = s->last_active_ms + s->idle_ms - now;
  }
  return next < 1 ? 1 : (int)next;
}

static void *loop(void *unused) {
  (void)unused;
  struct epoll_event events[MAX_EVENTS];
  int wait_ms = MAX_SCAN_MS;
  for (;;) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, wait_ms);
    pthread_mutex_lock(&lock);
    if (stopping) {
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    int64_t now = now_ms();
    for (int i = 0; i < n; i++) {
      uint64_t tag = events[i].data.u64;
      if (tag == 0) {
        uint64_t count;
        if (read(wakefd, &count, sizeof count) < 0) { /* woken to rescan: nothing to read is fine */ }
        continue;
      }
      session_t *s = lookup(tag >> 1);
      if (!s) continue; // ended earlier in this batch, or cancelled
      int side = (int)(tag & 1);
      uint32_t ev = events[i].events;
      if (s->copy_kib) {
        direction_t *mine = &s->dir[side], *theirs = &s->dir[1 - side];
        if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) mine->hup = 1;
        // Readable: this side's direction moves, unless it holds a leftover, which only the
        // destination's EPOLLOUT can take (a full send sets the socket's NOSPACE flag, so that
        // edge comes). Writable: the other direction's leftover goes, then its source is read.
        if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && mine->pending == 0 && pump_copy(s, side, now)) continue;
        if ((ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && theirs->pending > 0 && pump_copy(s, 1 - side, now)) continue;
        if (ev & EPOLLERR) {
          int err = socket_error(s->fd[side]);
          if (err) end_session(s, side_error(side), err);
        }
        continue;
      }
      // Readable (or closing): this side's own direction moves. Writable: the other direction's
      // pipe drains, if it holds bytes; loopback ACKs make writable edges frequent, and pumping
      // on each would cost two splice calls that only say EAGAIN.
      if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && pump(s, side, now)) continue;
      if ((ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && s->dir[1 - side].pending > 0 && pump(s, 1 - side, now)) continue;
      if (ev & EPOLLERR) {
        int err = socket_error(s->fd[side]);
        if (err) end_session(s, side_error(side), err);
      }
    }
    if (now >= next_scan_ms) next_scan_ms = now + scan(now);
    wait_ms = (int)(next_scan_ms - now);
    if (wait_ms < 0) wait_ms = 0;
    pthread_mutex_unlock(&lock);
  }
}

// ---- JS side ------------------------------------------------------------------------------

static const char *REASONS[] = {"completed", "aError", "bError", "aClosed", "bClosed", "idle", "durationLimit", "byteLimit"};

static void call_on_ended(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  ended_t *e = data;
  if (env && js_cb) {
    napi_value argv[6], undefined;
    napi_create_double(env, (double)e->id, &argv[0]);
    napi_create_string_utf8(env, REASONS[e->reason], NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_double(env, e->a_to_b, &argv[2]);
    napi_create_double(env, e->b_to_a, &argv[3]);
    napi_value deltas[2];
    napi_create_double(env, e->delta_a, &deltas[0]);
    napi_create_double(env, e->delta_b, &deltas[1]);
    napi_create_array_with_length(env, 2, &argv[4]);
    napi_set_element(env, argv[4], 0, deltas[0]);
    napi_set_element(env, argv[4], 1, deltas[1]);
    if (e->err) napi_create_string_utf8(env, strerror(e->err), NAPI_AUTO_LENGTH, &argv[5]);
    else napi_get_undefined(env, &argv[5]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, js_cb, 6, argv, NULL);
  }
  free(e);
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static void stop_thread(void *arg) {
  (void)arg;
  if (!started) return;
  pthread_mutex_lock(&lock);
  stopping = 1;
  pthread_mutex_unlock(&lock);
  uint64_t one = 1;
  if (write(wakefd, &one, sizeof one) < 0) { /* the thread still sees `stopping` at its next wake */ }
  pthread_join(thread, NULL);
  started = 0;
}

/** start(onEnded): once per process; onEnded(id, reason, aToB, bToA, [deltaAToB, deltaBToA], error?). */
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (started) {
    napi_throw_error(env, NULL, "the native splicer is already started");
    return NULL;
  }
  slots = calloc(SLOT_COUNT, sizeof *slots);
  free_slots = malloc(SLOT_COUNT * sizeof *free_slots);
  dirty = malloc(SLOT_COUNT * sizeof *dirty);
  if (!slots || !free_slots || !dirty) return throw_errno(env, "allocating the session table", ENOMEM);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return throw_errno(env, "epoll_create1", errno);
  wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd < 0) return throw_errno(env, "eventfd", errno);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
  epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev);
  napi_create_string_utf8(env, "eps native splice", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_on_ended, &on_ended) != napi_ok) {
    napi_throw_error(env, NULL, "creating the threadsafe function");
    return NULL;
  }
  // The relay thread must not keep the process alive by itself.
  napi_unref_threadsafe_function(env, on_ended);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  next_scan_ms = now_ms() + MAX_SCAN_MS;
  int err = pthread_create(&thread, &attr, loop, NULL);
  pthread_attr_destroy(&attr);
  if (err) return throw_errno(env, "pthread_create", err);
  started = 1;
  napi_add_env_cleanup_hook(env, stop_thread, NULL);
  return NULL;
}

static double arg_double(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

/**
 * add(fdA, fdB, maxBytesPerDirection, aToB, bToA, maxDurationMs, idleMs, copyBytes, sendBytes)
 * -> id. Dups both descriptors (the caller then destroys its sockets); a limit of 0 or less is
 * none. aToB and bToA are what was relayed before the handover, counted against the byte limit.
 * copyBytes 0 splices; more copies, at most that much per recv (the shared buffer grows to the
 * largest) and sendBytes per send (0: a recv's bytes in one send); both in whole KiB, up to 32 MiB.
 */
static napi_value js_add(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!started || argc < 9) {
    napi_throw_error(env, NULL, "add() needs start() first and 9 arguments");
    return NULL;
  }
  double max_bytes = arg_double(env, argv[2]), duration = arg_double(env, argv[5]), idle = arg_double(env, argv[6]);
  double copy = arg_double(env, argv[7]);
  double send = arg_double(env, argv[8]);
  uint16_t copy_kib = copy >= 1024 ? (copy >= MAX_COPY_KIB * 1024.0 ? MAX_COPY_KIB : (uint16_t)(copy / 1024)) : (copy > 0 ? 1 : 0);
  uint16_t send_kib = send >= 1024 && send / 1024 < copy_kib ? (uint16_t)(send / 1024) : copy_kib;
  size_t copy_bytes = (size_t)copy_kib * 1024;
  session_t *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "allocating a session", ENOMEM);
  for (int i = 0; i < 2; i++) {
    s->fd[i] = fcntl((int)arg_double(env, argv[i]), F_DUPFD_CLOEXEC, 0);
    if (s->fd[i] < 0) {
      int err = errno;
      if (i == 1) close(s->fd[0]);
      free(s);
      return throw_errno(env, "dup of a spliced socket", err);
    }
    s->dir[i].pipe_r = s->dir[i].pipe_w = -1;
  }
  s->dir[0].taken = s->dir[0].reported = (uint64_t)arg_double(env, argv[3]);
  s->dir[1].taken = s->dir[1].reported = (uint64_t)arg_double(env, argv[4]);
  s->max_bytes = max_bytes > 0 ? (uint64_t)max_bytes : UINT64_MAX;
  int64_t now = now_ms();
  s->deadline_ms = duration > 0 ? now + (int64_t)duration : 0;
  s->idle_ms = idle > 0 ? (int64_t)idle : 0;
  s->last_active_ms = now;
  s->copy_kib = copy_kib;
  s->send_kib = send_kib;

  pthread_mutex_lock(&lock);
  if (copy_bytes > copy_buffer_bytes) {
    // Only the relay thread reads into it, under this lock, so growing it here is safe.
    char *bigger = realloc(copy_buffer, copy_bytes);
    if (!bigger) {
      pthread_mutex_unlock(&lock);
      close(s->fd[0]);
      close(s->fd[1]);
      free(s);
      return throw_errno(env, "allocating the copy buffer", ENOMEM);
    }
    copy_buffer = bigger;
    copy_buffer_bytes = copy_bytes;
  }
  uint32_t slot;
  if (free_count > 0) slot = free_slots[--free_count];
  else if (slot_count < SLOT_COUNT) slot = slot_count++;
  else {
    pthread_mutex_unlock(&lock);
    close(s->fd[0]);
    close(s->fd[1]);
    free(s);
    napi_throw_error(env, NULL, "the native splicer's session table is full");
    return NULL;
  }
  s->id = (generation++ << SLOT_BITS) | slot;
  slots[slot] = s;
  live++;
  int failed = 0;
  for (int i = 0; i < 2 && !failed; i++) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = (s->id << 1) | (uint64_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd[i], &ev) < 0) failed = errno;
  }
  uint64_t id = s->id;
  if (failed) end_session(s, -1, 0);
  // A deadline sooner than the loop's next scan must wake it (an idle timeout of minutes never does).
  int64_t due = s->deadline_ms ? s->deadline_ms : INT64_MAX;
  if (s->idle_ms && now + s->idle_ms < due) due = now + s->idle_ms;
  if (!failed && due < next_scan_ms) {
    next_scan_ms = due;
    uint64_t one = 1;
    if (write(wakefd, &one, sizeof one) < 0) { /* the next scan comes within MAX_SCAN_MS anyway */ }
  }
  pthread_mutex_unlock(&lock);
  if (failed) return throw_errno(env, "epoll_ctl", failed);
  napi_create_double(env, (double)id, &result);
  return result;
}

/** cancel(id): closes a session's descriptors without reporting its end (the JS side stopped it). */
static napi_value js_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint64_t id = (uint64_t)arg_double(env, argv[0]);
  pthread_mutex_lock(&lock);
  session_t *s = lookup(id);
  if (s) end_session(s, -1, 0);
  pthread_mutex_unlock(&lock);
  return NULL;
}

/** collect() -> [id, deltaAToB, deltaBToA, ...] for every session that moved bytes since the last call. */
static napi_value js_collect(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, value;
  pthread_mutex_lock(&lock);
  napi_create_array_with_length(env, dirty_count * 3, &result);
  uint32_t at = 0;
  for (uint32_t i = 0; i < dirty_count; i++) {
    session_t *s = slots[dirty[i]];
    if (!s) continue;
    double row[3] = {(double)s->id, (double)(s->dir[0].taken - s->dir[0].reported), (double)(s->dir[1].taken - s->dir[1].reported)};
    s->dir[0].reported = s->dir[0].taken;
    s->dir[1].reported = s->dir[1].taken;
    s->dirty = 0;
    for (int j = 0; j < 3; j++) {
      napi_create_double(env, row[j], &value);
      napi_set_element(env, result, at++, value);
    }
  }
  dirty_count = 0;
  pthread_mutex_unlock(&lock);
  return result;
}

/** stats() -> { sessions, pipes, sparePipes, copyLeftovers }: what the relay thread holds now. */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, v;
  napi_create_object(env, &result);
  pthread_mutex_lock(&lock);
  uint32_t values[4] = {live, pipes_open, (uint32_t)spare_count, lefts_held};
  pthread_mutex_unlock(&lock);
  const char *names[4] = {"sessions", "pipes", "sparePipes", "copyLeftovers"};
  for (int i = 0; i < 4; i++) {
    napi_create_uint32(env, values[i], &v);
    napi_set_named_property(env, result, names[i], v);
  }
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"add", NULL, js_add, NULL, NULL, NULL, napi_default, NULL},
      {"cancel", NULL, js_cancel, NULL, NULL, NULL, napi_default, NULL},
      {"collect", NULL, js_collect, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
