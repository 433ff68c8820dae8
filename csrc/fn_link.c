#include "fn_link.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/route.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fn_bytes.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* struct virtio_net_hdr (virtio spec §5.1.6), native byte order on a legacy TAP. */
#define VNET_F_NEEDS_CSUM 1
#define VNET_F_DATA_VALID 2
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4

struct vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};

#define RBUF_TAP (8u << 20)
#define RBUF_STREAM (4u << 20)

int fn_link_init(struct fn_link *l, int kind, int fd, int vnet_or_prefix, uint32_t max_frame,
                 uint32_t txq_bytes, uint32_t txq_frames) {
    memset(l, 0, sizeof(*l));
    l->kind = kind;
    l->fd = fd;
    l->wfd = fd;
    l->pcap_fd = -1;
    l->max_frame = max_frame;
    l->batch = 512;
    uint32_t headroom = 0;
    switch (kind) {
    case FN_LINK_TAP:
        l->vnet = (uint32_t)vnet_or_prefix;
        headroom = l->vnet;
        l->rcap = RBUF_TAP;
        break;
    case FN_LINK_STREAM:
        l->prefix = (uint32_t)(vnet_or_prefix < 0 ? -vnet_or_prefix : vnet_or_prefix);
        l->prefix_be = vnet_or_prefix > 0;
        if (l->prefix != 2 && l->prefix != 4)
            return -1;
        headroom = l->prefix;
        l->rcap = RBUF_STREAM;
        break;
    case FN_LINK_DGRAM:
        l->rcap = RBUF_STREAM;
        break;
    default:
        return -1;
    }
    if (l->rcap < 4 * (max_frame + 64))
        l->rcap = 4 * (max_frame + 64);
    l->rbuf = malloc(l->rcap);
    l->cap_rx = l->batch * 2 + 64;
    l->rx = malloc(sizeof(*l->rx) * l->cap_rx);
    /* Room for the frames the fault injector releases in one batch. */
    l->fcap = (1u << 20) > 2 * (max_frame + 64) ? (1u << 20) : 2 * (max_frame + 64);
    l->fbuf = malloc(l->fcap);
    if (!l->rbuf || !l->rx || !l->fbuf || fn_txq_init(&l->txq, txq_bytes, txq_frames, headroom) < 0) {
        fn_link_free(l);
        return -1;
    }
    l->txq.flush = fn_link_txq_flush;
    l->txq.flush_ctx = l;
    return 0;
}

void fn_link_free(struct fn_link *l) {
    fn_link_pcap(l, -1, 0);
    free(l->rbuf);
    free(l->rx);
    free(l->fbuf);
    free(l->pbuf);
    l->pbuf = NULL;
    fn_txq_free(&l->txq);
    l->rbuf = l->fbuf = NULL;
    l->rx = NULL;
}

/* ---- pcap recording (classic libpcap format, microseconds, link type Ethernet) ---- */

#define PBUF (1u << 20)

void fn_link_pcap_flush(struct fn_link *l) {
    uint32_t off = 0;
    while (l->pcap_fd >= 0 && off < l->plen) {
        ssize_t n = write(l->pcap_fd, l->pbuf + off, l->plen - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk must not stop the forwarder: records are lost, not frames */
        off += (uint32_t)n;
    }
    l->plen = 0;
}

int fn_link_pcap(struct fn_link *l, int fd, uint32_t snaplen) {
    if (l->pcap_fd >= 0) {
        fn_link_pcap_flush(l);
        close(l->pcap_fd);
        l->pcap_fd = -1;
    }
    if (fd < 0)
        return 0;
    if (!l->pbuf && !(l->pbuf = malloc(PBUF)))
        return -ENOMEM;
    l->pcap_snap = snaplen ? snaplen : 262144;
    uint32_t hdr[6] = {0xa1b2c3d4u, 2u | (4u << 16), 0, 0, l->pcap_snap, 1};
    memcpy(l->pbuf, hdr, 24); /* magic, version 2.4, zone, sigfigs, snaplen, Ethernet (native order) */
    l->plen = 24;
    l->pcap_fd = fd;
    fn_link_pcap_flush(l);
    return 0;
}

static void pcap_record(struct fn_link *l, const uint8_t *p, uint32_t len, uint64_t now) {
    uint32_t cap = len < l->pcap_snap ? len : l->pcap_snap;
    if (l->plen + 16 + cap > PBUF)
        fn_link_pcap_flush(l);
    if (16 + cap > PBUF)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    (void)now;
    uint32_t rec[4] = {(uint32_t)ts.tv_sec, (uint32_t)(ts.tv_nsec / 1000), cap, len};
    memcpy(l->pbuf + l->plen, rec, 16);
    memcpy(l->pbuf + l->plen + 16, p, cap);
    l->plen += 16 + cap;
    l->pcap_frames++;
}

/* ---- input ---- */

static void add_rx(struct fn_link *l, uint32_t off, uint32_t len, uint8_t csum_ok, uint64_t now) {
    if (l->nrx + 2 > l->cap_rx)
        return;
    l->st.rx_frames++;
    l->st.rx_bytes += len;
    if (l->pcap_fd >= 0)
        pcap_record(l, l->rbuf + off, len, now);
    if (l->fault_in) {
        int v = fn_fault_apply(l->fault_in, l->rbuf + off, len, csum_ok, now);
        if (v == FN_FAULT_DROP || v == FN_FAULT_HOLD)
            return;
        fn_fault_tick(l->fault_in);
        if (v == FN_FAULT_DUP) {
            l->rx[l->nrx].off = off;
            l->rx[l->nrx].len = len;
            l->rx[l->nrx].csum_ok = csum_ok;
            l->nrx++;
        }
    }
    l->rx[l->nrx].off = off;
    l->rx[l->nrx].len = len;
    l->rx[l->nrx].csum_ok = csum_ok;
    l->nrx++;
}

/* Frames the input fault injector held back and that are due now: appended after the
 * regular ones, from a side buffer (their offsets are marked by FN_RXF_FBUF). */

static void add_released(struct fn_link *l, uint64_t now) {
    if (!l->fault_in)
        return;
    l->flen = 0;
    for (;;) {
        if (l->nrx + 1 > l->cap_rx)
            return;
        uint8_t meta = 0;
        uint32_t n = fn_fault_release(l->fault_in, now, l->fbuf + l->flen, l->fcap - l->flen, &meta);
        if (!n)
            return;
        l->rx[l->nrx].off = FN_RXF_FBUF | l->flen;
        l->rx[l->nrx].len = n;
        l->rx[l->nrx].csum_ok = meta;
        l->nrx++;
        l->flen += (n + 7) & ~7u;
    }
}

static int read_tap(struct fn_link *l, uint64_t now) {
    uint32_t pos = 0;
    uint32_t need = l->max_frame + l->vnet;
    while (l->nrx < l->batch && l->rcap - pos >= need) {
        ssize_t n = read(l->fd, l->rbuf + pos, need);
        l->st.reads++;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            l->err = errno;
            return -1;
        }
        if ((uint32_t)n <= l->vnet + 14) {
            l->st.rx_bad_len++;
            continue;
        }
        uint8_t csum_ok = 0;
        if (l->vnet) {
            struct vnet_hdr h;
            memcpy(&h, l->rbuf + pos, sizeof(h));
            csum_ok = (h.flags & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID)) != 0;
            if (h.gso_type != VNET_GSO_NONE)
                l->st.rx_gso++;
        }
        add_rx(l, pos + l->vnet, (uint32_t)n - l->vnet, csum_ok, now);
        pos += ((uint32_t)n + 7) & ~7u;
    }
    return 0;
}

/* The frame length in a stream link's prefix at h. */
static uint32_t prefix_len(const struct fn_link *l, const uint8_t *h) {
    if (l->prefix == 2)
        return l->prefix_be ? fn_ld_be16(h) : fn_ld_le16(h);
    return l->prefix_be ? fn_ld_be32(h) : fn_ld_le32(h);
}

static int read_stream(struct fn_link *l, uint64_t now) {
    /* Keep the unparsed tail of the previous read, at the front. */
    if (l->rpos) {
        memmove(l->rbuf, l->rbuf + l->rpos, l->rlen - l->rpos);
        l->rlen -= l->rpos;
        l->rpos = 0;
    }
    while (l->rlen < l->rcap) {
        ssize_t n = l->wfd == l->fd ? recv(l->fd, l->rbuf + l->rlen, l->rcap - l->rlen, MSG_DONTWAIT)
                                    : read(l->fd, l->rbuf + l->rlen, l->rcap - l->rlen);
        l->st.reads++;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            l->err = errno;
            return -1;
        }
        if (n == 0) {
            l->eof = 1;
            break;
        }
        l->rlen += (uint32_t)n;
        if ((uint32_t)n < 65536)
            break; /* the socket is probably drained; parse what we have */
    }
    while (l->nrx < l->cap_rx - 2 && l->rlen - l->rpos >= l->prefix) {
        uint32_t len = prefix_len(l, l->rbuf + l->rpos);
        if (len < 14 || len > l->max_frame) {
            /* A stream cannot be resynchronised after a bad length (passt does the same). */
            l->st.rx_bad_len++;
            l->err = EPROTO;
            return -1;
        }
        if (l->rlen - l->rpos - l->prefix < len)
            break;
        add_rx(l, l->rpos + l->prefix, len, 0, now);
        l->rpos += l->prefix + len;
    }
    if (l->eof && l->nrx == 0)
        return -1;
    return 0;
}

static int read_dgram(struct fn_link *l, uint64_t now) {
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    uint32_t pos = 0;
    while (l->nrx < l->batch && l->rcap - pos >= 64 * (l->max_frame + 8)) {
        for (int i = 0; i < 64; i++) {
            iov[i].iov_base = l->rbuf + pos + (size_t)i * (l->max_frame + 8);
            iov[i].iov_len = l->max_frame;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(l->fd, msgs, 64, MSG_DONTWAIT, NULL);
        l->st.reads++;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            l->err = errno;
            return -1;
        }
        for (int i = 0; i < n; i++) {
            uint32_t len = msgs[i].msg_len;
            if (len < 14 || (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) {
                l->st.rx_bad_len++;
                continue;
            }
            add_rx(l, pos + (uint32_t)i * (l->max_frame + 8), len, 0, now);
        }
        pos += 64 * (l->max_frame + 8);
        if (n < 64)
            break;
    }
    return 0;
}

int fn_link_read(struct fn_link *l, uint64_t now) {
    if (l->err == EPROTO)
        return -1; /* a desynchronised stream stays failed, its bad length counted once */
    if (l->plen)
        fn_link_pcap_flush(l); /* one write per batch, not per frame */
    l->nrx = 0;
    int r;
    switch (l->kind) {
    case FN_LINK_TAP:
        r = read_tap(l, now);
        break;
    case FN_LINK_STREAM:
        r = read_stream(l, now);
        break;
    default:
        r = read_dgram(l, now);
        break;
    }
    add_released(l, now);
    if (r < 0 && l->nrx == 0)
        return -1;
    return (int)l->nrx;
}

/* ---- output ---- */

static uint8_t *frame_at(struct fn_link *l, const struct fn_txd *d) { return l->txq.buf + d->off; }

static void fill_vnet(struct fn_link *l, const struct fn_txd *d, uint8_t *hdr) {
    struct vnet_hdr h;
    memset(&h, 0, sizeof(h));
    if (d->flags & FN_TXD_CSUM_PARTIAL) {
        h.flags = VNET_F_NEEDS_CSUM;
        h.csum_start = d->csum_start;
        h.csum_offset = d->csum_off;
    }
    if (d->flags & (FN_TXD_GSO_TCPV4 | FN_TXD_GSO_TCPV6)) {
        h.gso_type = (d->flags & FN_TXD_GSO_TCPV4) ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
        h.gso_size = d->gso_size;
        h.hdr_len = d->hdr_len;
        l->st.tx_gso++;
    }
    memset(hdr, 0, l->vnet);
    memcpy(hdr, &h, sizeof(h));
}

static void fill_prefix(struct fn_link *l, uint32_t len, uint8_t *p) {
    if (l->prefix == 2) {
        if (l->prefix_be)
            fn_st_be16(p, (uint16_t)len);
        else
            fn_st_le16(p, (uint16_t)len);
    } else if (l->prefix_be) {
        fn_st_be32(p, len);
    } else {
        p[0] = (uint8_t)len;
        p[1] = (uint8_t)(len >> 8);
        p[2] = (uint8_t)(len >> 16);
        p[3] = (uint8_t)(len >> 24);
    }
}

/* One frame (not in the txq: a fault-released copy) written whole, or dropped if it cannot be. */
static void write_one(struct fn_link *l, uint8_t *frame, uint32_t len, uint8_t flags) {
    uint8_t hdr[16];
    struct iovec v[2];
    int cnt = 0;
    if (l->kind == FN_LINK_TAP && l->vnet) {
        struct fn_txd d;
        memset(&d, 0, sizeof(d));
        d.flags = flags & FN_TXD_CSUM_PARTIAL; /* copies lose GSO: only whole frames are held */
        fill_vnet(l, &d, hdr);
        v[cnt].iov_base = hdr;
        v[cnt++].iov_len = l->vnet;
    } else if (l->kind == FN_LINK_STREAM) {
        fill_prefix(l, len, hdr);
        v[cnt].iov_base = hdr;
        v[cnt++].iov_len = l->prefix;
    }
    v[cnt].iov_base = frame;
    v[cnt++].iov_len = len;
    ssize_t n = writev(l->wfd, v, cnt);
    if (n < 0 || (size_t)n < (cnt == 2 ? v[0].iov_len : 0) + len) {
        /* A partial write of a stream would desynchronise it; fault-held frames are only
         * used in tests on TAP links, where a write is all or nothing. */
        l->st.tx_dropped++;
        return;
    }
    l->st.tx_frames++;
    l->st.tx_bytes += len;
}

/* Run newly queued frames through the output fault injector: dropped/held frames get len 0
 * (skipped by the writers); duplicates are written twice by the writers via flags. */
#define TXD_DUP 0x80

static void judge(struct fn_link *l, uint64_t now) {
    if (l->pcap_fd >= 0)
        for (uint32_t i = l->judged > l->txq.head ? l->judged : l->txq.head; i < l->txq.nd; i++)
            pcap_record(l, frame_at(l, &l->txq.d[i]), l->txq.d[i].len, now);
    if (!l->fault_out) {
        l->judged = l->txq.nd;
        return;
    }
    for (uint32_t i = l->judged > l->txq.head ? l->judged : l->txq.head; i < l->txq.nd; i++) {
        struct fn_txd *d = &l->txq.d[i];
        int v = fn_fault_apply(l->fault_out, frame_at(l, d), d->len, d->flags, now);
        if (v == FN_FAULT_DROP || v == FN_FAULT_HOLD) {
            d->len = 0;
            continue;
        }
        fn_fault_tick(l->fault_out);
        if (v == FN_FAULT_DUP)
            d->flags |= TXD_DUP;
    }
    l->judged = l->txq.nd;
}

static int write_released(struct fn_link *l, uint64_t now) {
    if (!l->fault_out)
        return 0;
    uint8_t meta;
    for (;;) {
        uint32_t n = fn_fault_release(l->fault_out, now, l->fbuf, l->fcap, &meta);
        if (!n)
            return 0;
        write_one(l, l->fbuf, n, meta);
    }
}

static int write_tap(struct fn_link *l) {
    struct fn_txq *q = &l->txq;
    while (q->head < q->nd) {
        struct fn_txd *d = &q->d[q->head];
        if (d->len) {
            uint8_t *fr = frame_at(l, d);
            if (l->vnet)
                fill_vnet(l, d, fr - l->vnet);
            for (int k = (d->flags & TXD_DUP) ? 2 : 1; k > 0; k--) {
                ssize_t n = write(l->wfd, fr - l->vnet, d->len + l->vnet);
                l->st.writes++;
                if (n < 0) {
                    if (errno == EAGAIN) {
                        l->st.eagain++;
                        l->blocked = 1;
                        return 1;
                    }
                    if (errno == EINTR) {
                        k++;
                        continue;
                    }
                    /* A frame the device rejects (EINVAL, EIO) is dropped, not retried. */
                    l->st.tx_dropped++;
                    break;
                }
                d->flags &= (uint8_t)~TXD_DUP;
                l->st.tx_frames++;
                l->st.tx_bytes += d->len;
            }
        }
        fn_txq_consumed(q, 1);
    }
    return 0;
}

static int write_stream(struct fn_link *l) {
    struct fn_txq *q = &l->txq;
    struct iovec iov[IOV_MAX];
    while (q->head < q->nd) {
        int cnt = 0;
        uint32_t i = q->head;
        size_t total = 0;
        for (; i < q->nd && cnt < IOV_MAX - 1; i++) {
            struct fn_txd *d = &q->d[i];
            if (!d->len)
                continue;
            uint8_t *fr = frame_at(l, d);
            fill_prefix(l, d->len, fr - l->prefix);
            for (int k = (d->flags & TXD_DUP) ? 2 : 1; k > 0 && cnt < IOV_MAX; k--) {
                iov[cnt].iov_base = fr - l->prefix;
                iov[cnt].iov_len = d->len + l->prefix;
                total += iov[cnt].iov_len;
                cnt++;
            }
        }
        if (cnt == 0) {
            fn_txq_consumed(q, i - q->head);
            continue;
        }
        /* Resume inside the first frame after a partial write. */
        iov[0].iov_base = (uint8_t *)iov[0].iov_base + l->tx_off;
        iov[0].iov_len -= l->tx_off;
        total -= l->tx_off;
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)cnt;
        ssize_t n = l->wfd == l->fd ? sendmsg(l->wfd, &m, MSG_DONTWAIT | MSG_NOSIGNAL)
                                    : writev(l->wfd, iov, cnt); /* a pipe (stdio): no sendmsg */
        l->st.writes++;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                l->st.eagain++;
                l->blocked = 1;
                return 1;
            }
            l->err = errno;
            return -1;
        }
        /* Retire whole frames; remember how far into the next one we got. */
        size_t left = (size_t)n + l->tx_off;
        l->tx_off = 0;
        uint32_t done = 0;
        for (uint32_t j = q->head; j < i; j++) {
            struct fn_txd *d = &q->d[j];
            if (!d->len) {
                done++;
                continue;
            }
            size_t fl = (size_t)(d->len + l->prefix) * ((d->flags & TXD_DUP) ? 2 : 1);
            if (left < fl) {
                if ((d->flags & TXD_DUP) && left >= d->len + l->prefix) {
                    d->flags &= (uint8_t)~TXD_DUP; /* the first copy went out */
                    left -= d->len + l->prefix;
                }
                l->tx_off = (uint32_t)left;
                break;
            }
            left -= fl;
            l->st.tx_frames++;
            l->st.tx_bytes += d->len;
            done++;
        }
        fn_txq_consumed(q, done);
        if ((size_t)n < total) {
            l->blocked = 1;
            return 1;
        }
    }
    return 0;
}

static int write_dgram(struct fn_link *l) {
    struct fn_txq *q = &l->txq;
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    while (q->head < q->nd) {
        int cnt = 0;
        uint32_t i = q->head;
        for (; i < q->nd && cnt < 64; i++) {
            struct fn_txd *d = &q->d[i];
            if (!d->len)
                continue;
            iov[cnt].iov_base = frame_at(l, d);
            iov[cnt].iov_len = d->len;
            memset(&msgs[cnt].msg_hdr, 0, sizeof(msgs[cnt].msg_hdr));
            msgs[cnt].msg_hdr.msg_iov = &iov[cnt];
            msgs[cnt].msg_hdr.msg_iovlen = 1;
            cnt++;
        }
        int n = cnt ? sendmmsg(l->wfd, msgs, (unsigned)cnt, MSG_DONTWAIT) : 0;
        l->st.writes++;
        if (n < 0) {
            if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) {
                l->st.eagain++;
                l->blocked = 1;
                return 1;
            }
            if (errno == ECONNREFUSED || errno == ENOTCONN) {
                /* The peer's socket went away; datagrams are lost, not the link. */
                l->st.tx_dropped += (uint64_t)cnt;
                fn_txq_consumed(q, i - q->head);
                continue;
            }
            l->err = errno;
            return -1;
        }
        /* Retire the frames sent (skipping judged-out ones in between). */
        uint32_t sent = 0, j = q->head;
        for (; j < i && sent < (uint32_t)n; j++)
            if (q->d[j].len) {
                sent++;
                l->st.tx_frames++;
                l->st.tx_bytes += q->d[j].len;
            }
        fn_txq_consumed(q, j - q->head);
        if (n < cnt) {
            l->blocked = 1;
            return 1;
        }
    }
    return 0;
}

int fn_link_write(struct fn_link *l, uint64_t now) {
    l->blocked = 0;
    judge(l, now);
    write_released(l, now);
    int r;
    switch (l->kind) {
    case FN_LINK_TAP:
        r = write_tap(l);
        break;
    case FN_LINK_STREAM:
        r = write_stream(l);
        break;
    default:
        r = write_dgram(l);
        break;
    }
    if (fn_txq_pending(&l->txq) == 0)
        l->judged = 0;
    if (l->plen)
        fn_link_pcap_flush(l);
    return r;
}

int fn_link_txq_flush(void *ctx, struct fn_txq *q) {
    struct fn_link *l = ctx;
    (void)q;
    int r = fn_link_write(l, 0);
    return r == 0 ? 0 : -1;
}

uint64_t fn_link_deadline(const struct fn_link *l) {
    uint64_t a = l->fault_in ? fn_fault_deadline(l->fault_in) : 0;
    uint64_t b = l->fault_out ? fn_fault_deadline(l->fault_out) : 0;
    if (!a)
        return b;
    if (!b)
        return a;
    return a < b ? a : b;
}

int fn_link_pending(const struct fn_link *l) {
    if (l->kind != FN_LINK_STREAM || l->rlen - l->rpos < l->prefix)
        return 0;
    uint32_t len = prefix_len(l, l->rbuf + l->rpos);
    /* A bad length counts as pending too: the next read reports it. */
    return len < 14 || len > l->max_frame || l->rlen - l->rpos - l->prefix >= len;
}

/* ---- TAP devices ---- */

int fn_tap_open(const char *name, const char *netns_path, int vnet_hdr, int offload, char *name_out) {
    int self_ns = -1, target_ns = -1, fd = -1, err = 0;
    if (netns_path && *netns_path) {
        self_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        target_ns = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (self_ns < 0 || target_ns < 0) {
            err = errno;
            goto out;
        }
        /* The device is created in whichever namespace opens it; the fd works from anywhere. */
        if (setns(target_ns, CLONE_NEWNET) < 0) {
            err = errno;
            goto out;
        }
    }
    fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        goto restore;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    if (name)
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        err = errno;
        goto restore;
    }
    if (vnet_hdr) {
        int sz = 10;
        if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
            err = errno;
            goto restore;
        }
        /* TSO and checksum offload: the guest may send super-frames with partial checksums,
         * and accepts ours the same way. */
        unsigned off = offload ? (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) : 0;
        if (ioctl(fd, TUNSETOFFLOAD, off) < 0) {
            err = errno;
            goto restore;
        }
    }
    if (name_out)
        memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
restore:
    if (self_ns >= 0 && target_ns >= 0 && setns(self_ns, CLONE_NEWNET) < 0 && !err)
        err = errno;
out:
    if (self_ns >= 0)
        close(self_ns);
    if (target_ns >= 0)
        close(target_ns);
    if (err) {
        if (fd >= 0)
            close(fd);
        return -err;
    }
    return fd;
}

/* ---- interface configuration ---- */

static void sin_set(struct sockaddr *sa, const uint8_t ip[4]) {
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    memcpy(&sin.sin_addr, ip, 4);
    memcpy(sa, &sin, sizeof(sin));
}

static int if_up(int s, const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return -errno;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

int fn_if_configure(const char *name, uint32_t mtu, const uint8_t ip[4], int prefix, const uint8_t gw[4],
                    const uint8_t mac[6]) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    if ((rc = if_up(s, "lo")) < 0)
        goto out;
    if (mac) {
        memset(&ifr, 0, sizeof(ifr));
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
        ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
        if (ioctl(s, SIOCSIFHWADDR, &ifr) < 0) {
            rc = -errno;
            goto out;
        }
    }
    if (mtu) {
        memset(&ifr, 0, sizeof(ifr));
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
        ifr.ifr_mtu = (int)mtu;
        if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
            rc = -errno;
            goto out;
        }
    }
    if (ip) {
        memset(&ifr, 0, sizeof(ifr));
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
        sin_set(&ifr.ifr_addr, ip);
        if (ioctl(s, SIOCSIFADDR, &ifr) < 0) {
            rc = -errno;
            goto out;
        }
        uint32_t m = prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
        uint8_t mask[4] = {(uint8_t)(m >> 24), (uint8_t)(m >> 16), (uint8_t)(m >> 8), (uint8_t)m};
        sin_set(&ifr.ifr_netmask, mask);
        if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) {
            rc = -errno;
            goto out;
        }
    }
    if ((rc = if_up(s, name)) < 0)
        goto out;
    if (gw) {
        struct rtentry rt;
        static const uint8_t zero[4] = {0, 0, 0, 0};
        memset(&rt, 0, sizeof(rt));
        sin_set(&rt.rt_dst, zero);
        sin_set(&rt.rt_genmask, zero);
        sin_set(&rt.rt_gateway, gw);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        rt.rt_dev = (char *)name;
        if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
            rc = -errno;
    }
out:
    close(s);
    return rc;
}
