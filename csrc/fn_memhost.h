/* In-memory host sockets for the TCP engine: deterministic stand-ins for real sockets, used by
 * the scripted-peer tests and by the in-memory benchmarks. Each socket has a receive queue
 * (what the host peer sent, consumed as the guest acknowledges) and a transmit buffer (what
 * the engine wrote, taken by the test) with a settable capacity, so a slow host reader, an
 * end of stream, a reset and a failed connect can all be scripted. "fds" are indexes + 1000. */
#ifndef FN_MEMHOST_H
#define FN_MEMHOST_H

#include <stddef.h>
#include <stdint.h>

#include "fn_tcp.h"

#define FN_MEMHOST_FD0 1000

struct fn_memsock {
    uint8_t *rx;
    size_t rx_len, rx_cap;
    uint8_t *tx;
    size_t tx_len, tx_cap;
    size_t tx_limit;      /* bytes the socket holds before send() says EAGAIN */
    uint64_t flow;
    int in_use, watched, rx_eof, shut_wr, closed, rst;
    int error;            /* SO_ERROR (connect result) */
    int io_error;         /* errno returned by send/peek (ECONNRESET...) */
    uint64_t sends, peeks, consumes;
};

struct fn_memhost {
    struct fn_memsock *s;
    int n, cap;
};

void fn_memhost_init(struct fn_memhost *h);
void fn_memhost_free(struct fn_memhost *h);
void fn_memhost_ops(struct fn_memhost *h, struct fn_host_ops *ops);
/* A new socket; returns its fd or -1. */
int fn_memhost_socket(struct fn_memhost *h, size_t tx_limit);
struct fn_memsock *fn_memhost_get(struct fn_memhost *h, int fd);
/* The host peer sends bytes (appended to the receive queue). */
int fn_memhost_push(struct fn_memhost *h, int fd, const uint8_t *p, size_t n);
/* Take up to max bytes the engine wrote (the host peer reads). */
size_t fn_memhost_take(struct fn_memhost *h, int fd, uint8_t *out, size_t max);

#endif
