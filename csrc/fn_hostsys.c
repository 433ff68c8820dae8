/* The real host-socket operations for the TCP engine: non-blocking syscalls on socket fds.
 *
 * Peeking at an offset uses SO_PEEK_OFF (TCP since Linux 6.9, AF_UNIX streams long before):
 * the kernel keeps a per-socket peek offset that MSG_PEEK reads advance and that consuming
 * reads move back, so steady-state sending is one recvmsg per run of segments and the offset
 * is set only after a retransmission rewinds it. Without SO_PEEK_OFF the bytes before the
 * offset are peeked into a discard buffer, as passt does on older kernels. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fn_tcp.h"

#define MAX_IOV_PEEK 64

#ifndef SO_PEEK_OFF
#define SO_PEEK_OFF 42
#endif

static uint8_t *discard_buf;
static size_t discard_cap;

static long sys_send(void *ctx, int fd, const struct iovec *iov, int iovcnt) {
    (void)ctx;
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)iovcnt;
    ssize_t n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

static long peek_with_discard(int fd, size_t off, const struct iovec *iov, int iovcnt) {
    struct iovec v[MAX_IOV_PEEK + 1];
    if (off > discard_cap) {
        uint8_t *n = realloc(discard_buf, off);
        if (!n)
            return -ENOMEM;
        discard_buf = n;
        discard_cap = off;
    }
    int k = 0;
    if (off) {
        v[k].iov_base = discard_buf;
        v[k].iov_len = off;
        k++;
    }
    for (int i = 0; i < iovcnt && k < MAX_IOV_PEEK + 1; i++)
        v[k++] = iov[i];
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = v;
    m.msg_iovlen = (size_t)k;
    ssize_t n = recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if ((size_t)n > off)
        return (long)((size_t)n - off);
    if (n == 0)
        return 0;
    /* Exactly the bytes already sent are queued: end of stream only if the peer shut down. */
    struct pollfd p = {fd, POLLRDHUP, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP)))
        return 0;
    return -EAGAIN;
}

static long sys_peek(void *ctx, int fd, size_t off, uint32_t *koff, const struct iovec *iov, int iovcnt) {
    (void)ctx;
    if (*koff == FN_PEEK_NONE)
        return peek_with_discard(fd, off, iov, iovcnt);
    if (*koff != off) {
        int v = (int)off;
        if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v)) < 0) {
            *koff = FN_PEEK_NONE; /* unsupported here: fall back for the life of this socket */
            return peek_with_discard(fd, off, iov, iovcnt);
        }
        *koff = (uint32_t)off;
    }
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)iovcnt;
    ssize_t n = recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    *koff += (uint32_t)n;
    return n;
}

static int sys_consume(void *ctx, int fd, size_t n, uint32_t *koff) {
    (void)ctx;
    size_t left = n;
    while (left) {
        /* TCP discards with MSG_TRUNC and no buffer (tcp(7)); other stream sockets copy. */
        ssize_t r = recv(fd, NULL, left, MSG_TRUNC | MSG_DONTWAIT);
        if (r < 0 && (errno == EFAULT || errno == EINVAL || errno == EOPNOTSUPP)) {
            uint8_t tmp[16384];
            r = recv(fd, tmp, left < sizeof(tmp) ? left : sizeof(tmp), MSG_DONTWAIT);
        }
        if (r < 0)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (r == 0)
            break;
        left -= (size_t)r;
    }
    size_t done = n - left;
    if (*koff < FN_PEEK_UNKNOWN)
        *koff = *koff > done ? *koff - (uint32_t)done : 0;
    return 0;
}

static int sys_shutdown_wr(void *ctx, int fd) {
    (void)ctx;
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

static void sys_close(void *ctx, int fd, int rst) {
    (void)ctx;
    if (rst) {
        /* SO_LINGER with a zero timeout: close() sends RST instead of FIN (tcp(7)). */
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    close(fd);
}

static int sys_error(void *ctx, int fd) {
    (void)ctx;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

static int sys_watch(void *ctx, int fd, uint64_t flow) {
    int epfd = *(int *)ctx;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    /* Edge-triggered: the engine keeps readable/writable flags and re-reads on demand. */
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = flow;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void fn_host_ops_sys(struct fn_host_ops *ops, int *epoll_fd) {
    ops->send = sys_send;
    ops->peek = sys_peek;
    ops->consume = sys_consume;
    ops->shutdown_wr = sys_shutdown_wr;
    ops->close = sys_close;
    ops->error = sys_error;
    ops->watch = sys_watch;
    ops->clock = NULL; /* opt-in: fn_host_clock_monotonic */
    ops->ctx = epoll_fd;
}

uint64_t fn_host_clock_monotonic(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
