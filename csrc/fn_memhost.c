#include "fn_memhost.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fn_memhost_init(struct fn_memhost *h) { memset(h, 0, sizeof(*h)); }

void fn_memhost_free(struct fn_memhost *h) {
    for (int i = 0; i < h->n; i++) {
        free(h->s[i].rx);
        free(h->s[i].tx);
    }
    free(h->s);
    memset(h, 0, sizeof(*h));
}

struct fn_memsock *fn_memhost_get(struct fn_memhost *h, int fd) {
    int i = fd - FN_MEMHOST_FD0;
    return i >= 0 && i < h->n && h->s[i].in_use ? &h->s[i] : NULL;
}

int fn_memhost_socket(struct fn_memhost *h, size_t tx_limit) {
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        struct fn_memsock *s = realloc(h->s, sizeof(*s) * (size_t)cap);
        if (!s)
            return -1;
        h->s = s;
        h->cap = cap;
    }
    struct fn_memsock *s = &h->s[h->n];
    memset(s, 0, sizeof(*s));
    s->in_use = 1;
    s->tx_limit = tx_limit;
    return FN_MEMHOST_FD0 + h->n++;
}

static int grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *n = realloc(*buf, c);
    if (!n)
        return -1;
    *buf = n;
    *cap = c;
    return 0;
}

int fn_memhost_push(struct fn_memhost *h, int fd, const uint8_t *p, size_t n) {
    struct fn_memsock *s = fn_memhost_get(h, fd);
    if (!s || grow(&s->rx, &s->rx_cap, s->rx_len + n) < 0)
        return -1;
    memcpy(s->rx + s->rx_len, p, n);
    s->rx_len += n;
    return 0;
}

size_t fn_memhost_take(struct fn_memhost *h, int fd, uint8_t *out, size_t max) {
    struct fn_memsock *s = fn_memhost_get(h, fd);
    if (!s)
        return 0;
    size_t n = s->tx_len < max ? s->tx_len : max;
    if (out)
        memcpy(out, s->tx, n);
    memmove(s->tx, s->tx + n, s->tx_len - n);
    s->tx_len -= n;
    return n;
}

static long m_send(void *ctx, int fd, const struct iovec *iov, int iovcnt) {
    struct fn_memsock *s = fn_memhost_get(ctx, fd);
    if (!s || s->closed)
        return -EBADF;
    if (s->io_error)
        return -s->io_error;
    if (s->shut_wr)
        return -EPIPE;
    size_t room = s->tx_limit > s->tx_len ? s->tx_limit - s->tx_len : 0;
    if (room == 0)
        return -EAGAIN;
    size_t done = 0;
    for (int i = 0; i < iovcnt && room; i++) {
        size_t k = iov[i].iov_len < room ? iov[i].iov_len : room;
        if (grow(&s->tx, &s->tx_cap, s->tx_len + k) < 0)
            return -ENOMEM;
        memcpy(s->tx + s->tx_len, iov[i].iov_base, k);
        s->tx_len += k;
        room -= k;
        done += k;
    }
    s->sends++;
    return (long)done;
}

static long m_peek(void *ctx, int fd, size_t off, uint32_t *koff, const struct iovec *iov, int iovcnt) {
    (void)koff;
    struct fn_memsock *s = fn_memhost_get(ctx, fd);
    if (!s || s->closed)
        return -EBADF;
    if (s->io_error)
        return -s->io_error;
    s->peeks++;
    if (off >= s->rx_len)
        return s->rx_eof ? 0 : -EAGAIN;
    size_t avail = s->rx_len - off, done = 0;
    for (int i = 0; i < iovcnt && avail; i++) {
        size_t k = iov[i].iov_len < avail ? iov[i].iov_len : avail;
        memcpy(iov[i].iov_base, s->rx + off + done, k);
        done += k;
        avail -= k;
    }
    return (long)done;
}

static int m_consume(void *ctx, int fd, size_t n, uint32_t *koff) {
    (void)koff;
    struct fn_memsock *s = fn_memhost_get(ctx, fd);
    if (!s || s->closed)
        return -EBADF;
    if (n > s->rx_len)
        n = s->rx_len;
    memmove(s->rx, s->rx + n, s->rx_len - n);
    s->rx_len -= n;
    s->consumes++;
    return 0;
}

static int m_shutdown_wr(void *ctx, int fd) {
    struct fn_memsock *s = fn_memhost_get(ctx, fd);
    if (!s)
        return -EBADF;
    s->shut_wr = 1;
    return 0;
}

static void m_close(void *ctx, int fd, int rst) {
    struct fn_memsock *s = fn_memhost_get(ctx, fd);
    if (!s)
        return;
    s->closed = 1;
    s->rst = rst;
}

static int m_error(void *ctx, int fd) {
    struct fn_memsock *s = fn_memhost_get(ctx, fd);
    return s ? s->error : EBADF;
}

static int m_watch(void *ctx, int fd, uint64_t flow) {
    struct fn_memsock *s = fn_memhost_get(ctx, fd);
    if (!s)
        return -EBADF;
    s->watched = 1;
    s->flow = flow;
    return 0;
}

void fn_memhost_ops(struct fn_memhost *h, struct fn_host_ops *ops) {
    ops->send = m_send;
    ops->peek = m_peek;
    ops->consume = m_consume;
    ops->shutdown_wr = m_shutdown_wr;
    ops->close = m_close;
    ops->error = m_error;
    ops->watch = m_watch;
    ops->clock = NULL; /* tests own the time */
    ops->ctx = h;
}
