#include "fn_dgram.h"

#include <errno.h>
#include <netinet/in.h>
#include <time.h>
#include <linux/errqueue.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fn_build.h"
#include "fn_checksum.h"
#include "fn_wire.h"

#define NONE UINT32_MAX
#define RBUF 65536

void fn_dgram_config_default(struct fn_dgram_config *c) {
    static const uint8_t gw[6] = {0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6};
    memset(c, 0, sizeof(*c));
    memcpy(c->gw_mac, gw, 6);
    c->mtu = 1500;
    c->max_flows = 16384;
    c->udp_idle = 60000000;
    c->icmp_idle = 10000000;
    c->pending_bytes = 65536;
}

static const struct fn_flowkey *key_of(void *owner, uint32_t idx) {
    return &((struct fn_dgram *)owner)->fl[idx].key;
}

static inline uint64_t flow_id(const struct fn_dgram *d, uint32_t idx) {
    return ((uint64_t)d->fl[idx].gen << 32) | idx;
}

static struct fn_dgram_flow *by_id(struct fn_dgram *d, uint64_t flow) {
    uint32_t idx = (uint32_t)flow;
    if (idx >= d->nfl)
        return NULL;
    struct fn_dgram_flow *f = &d->fl[idx];
    if (f->state == FN_DG_FREE || f->gen != (uint32_t)(flow >> 32))
        return NULL;
    return f;
}

const struct fn_dgram_flow *fn_dgram_get(const struct fn_dgram *d, uint64_t flow) {
    return by_id((struct fn_dgram *)d, flow);
}

uint64_t fn_dgram_iter(const struct fn_dgram *d, uint32_t *cursor) {
    while (*cursor < d->nfl) {
        uint32_t i = (*cursor)++;
        if (d->fl[i].state != FN_DG_FREE)
            return flow_id(d, i);
    }
    return 0;
}

static void push_event(struct fn_dgram *d, uint64_t flow, int type, int proto, int err) {
    uint32_t next = (d->ev_tail + 1) % d->ev_cap;
    if (next == d->ev_head) {
        uint32_t ncap = d->ev_cap * 2, k = 0;
        struct fn_dgram_event *n = malloc(sizeof(*n) * ncap);
        if (!n)
            return;
        for (uint32_t i = d->ev_head; i != d->ev_tail; i = (i + 1) % d->ev_cap)
            n[k++] = d->ev[i];
        free(d->ev);
        d->ev = n;
        d->ev_cap = ncap;
        d->ev_head = 0;
        d->ev_tail = k;
        next = k + 1;
    }
    struct fn_dgram_event *e = &d->ev[d->ev_tail];
    memset(e, 0, sizeof(*e));
    e->flow = flow;
    e->type = (uint8_t)type;
    e->proto = (uint8_t)proto;
    e->err = err;
    d->ev_tail = next;
}

int fn_dgram_next_event(struct fn_dgram *d, struct fn_dgram_event *ev) {
    if (d->ev_head == d->ev_tail)
        return 0;
    *ev = d->ev[d->ev_head];
    d->ev_head = (d->ev_head + 1) % d->ev_cap;
    return 1;
}

struct fn_dgram *fn_dgram_new(const struct fn_dgram_config *cfg, struct fn_txq *txq, uint64_t seed) {
    struct fn_dgram *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->cfg = *cfg;
    d->txq = txq;
    d->cap = cfg->max_flows;
    d->fl = calloc(d->cap, sizeof(*d->fl));
    d->ev_cap = 64;
    d->ev = malloc(sizeof(*d->ev) * d->ev_cap);
    d->rbuf = malloc(RBUF);
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    d->free_head = NONE;
    d->lru_head[0] = d->lru_head[1] = d->lru_tail[0] = d->lru_tail[1] = NONE;
    if (!d->fl || !d->ev || !d->rbuf || d->epfd < 0 || fn_flowtab_init(&d->tab, 256, seed) < 0) {
        fn_dgram_free(d);
        return NULL;
    }
    return d;
}

void fn_dgram_free(struct fn_dgram *d) {
    if (!d)
        return;
    for (uint32_t i = 0; d->fl && i < d->nfl; i++) {
        if (d->fl[i].state != FN_DG_FREE && d->fl[i].fd >= 0)
            close(d->fl[i].fd);
        free(d->fl[i].pend);
    }
    if (d->epfd >= 0)
        close(d->epfd);
    if (d->tab.slot)
        fn_flowtab_free(&d->tab);
    free(d->fl);
    free(d->ev);
    free(d->rbuf);
    free(d);
}

/* ---- LRU: one list per protocol, since their idle timeouts differ ---- */

static inline int lru_of(const struct fn_dgram_flow *f) { return f->key.proto == FN_IPPROTO_ICMP; }

static void lru_unlink(struct fn_dgram *d, uint32_t i) {
    struct fn_dgram_flow *f = &d->fl[i];
    int l = lru_of(f);
    if (f->lru_prev != NONE)
        d->fl[f->lru_prev].lru_next = f->lru_next;
    else if (d->lru_head[l] == i)
        d->lru_head[l] = f->lru_next;
    if (f->lru_next != NONE)
        d->fl[f->lru_next].lru_prev = f->lru_prev;
    else if (d->lru_tail[l] == i)
        d->lru_tail[l] = f->lru_prev;
    f->lru_prev = f->lru_next = NONE;
}

static void lru_push(struct fn_dgram *d, uint32_t i) {
    struct fn_dgram_flow *f = &d->fl[i];
    int l = lru_of(f);
    f->lru_prev = d->lru_tail[l];
    f->lru_next = NONE;
    if (d->lru_tail[l] != NONE)
        d->fl[d->lru_tail[l]].lru_next = i;
    else
        d->lru_head[l] = i;
    d->lru_tail[l] = i;
}

static void touch(struct fn_dgram *d, uint32_t i) {
    d->fl[i].last = d->now;
    if (d->lru_tail[lru_of(&d->fl[i])] != i) {
        lru_unlink(d, i);
        lru_push(d, i);
    }
}

static void flow_free(struct fn_dgram *d, uint32_t i, int err) {
    struct fn_dgram_flow *f = &d->fl[i];
    if (f->fd >= 0)
        close(f->fd); /* also leaves the epoll set */
    f->fd = -1;
    free(f->pend);
    f->pend = NULL;
    lru_unlink(d, i);
    fn_flowtab_remove(&d->tab, &f->key, key_of, d);
    push_event(d, flow_id(d, i), FN_DEV_CLOSED, f->key.proto, err);
    f->state = FN_DG_FREE;
    f->next_free = d->free_head;
    d->free_head = i;
    d->st.flows_closed++;
    d->st.flows_active--;
}

static struct fn_dgram_flow *flow_alloc(struct fn_dgram *d, const struct fn_flowkey *k) {
    uint32_t i;
    if (d->free_head != NONE) {
        i = d->free_head;
        d->free_head = d->fl[i].next_free;
    } else if (d->nfl < d->cap) {
        i = d->nfl++;
    } else {
        /* Full: the least recently used flow makes room (a bounded table). */
        uint32_t a = d->lru_head[0], b = d->lru_head[1];
        uint32_t victim = a == NONE ? b : b == NONE ? a : (d->fl[a].last <= d->fl[b].last ? a : b);
        if (victim == NONE)
            return NULL;
        d->st.evicted++;
        flow_free(d, victim, ETIMEDOUT);
        i = d->free_head;
        d->free_head = d->fl[i].next_free;
    }
    struct fn_dgram_flow *f = &d->fl[i];
    uint32_t gen = f->gen + 1;
    memset(f, 0, sizeof(*f));
    f->gen = gen ? gen : 1;
    f->key = *k;
    f->fd = -1;
    f->lru_prev = f->lru_next = NONE;
    if (fn_flowtab_insert(&d->tab, k, i, key_of, d) < 0) {
        f->next_free = d->free_head;
        d->free_head = i;
        return NULL;
    }
    lru_push(d, i);
    d->st.flows_opened++;
    d->st.flows_active++;
    return f;
}

/* ---- frames to the guest ---- */

int fn_dgram_emit_udp(struct fn_txq *q, const uint8_t dst_mac[6], const uint8_t src_mac[6],
                      const uint8_t src_ip[4], uint16_t sport, const uint8_t dst_ip[4], uint16_t dport,
                      const uint8_t *payload, uint32_t len, uint16_t mtu, uint16_t ip_id, uint8_t ttl) {
    uint32_t total = FN_UDP_HLEN + len;
    if (total > 65535 - FN_IPV4_HLEN)
        return -1;
    /* The UDP checksum covers the whole datagram, computed before it is cut (RFC 768). */
    uint8_t uh[FN_UDP_HLEN];
    fn_build_udp(uh, sport, dport, len);
    uint32_t s = fn_csum_pseudo4(src_ip, dst_ip, FN_IPPROTO_UDP, total);
    s = fn_csum_partial(uh, FN_UDP_HLEN, s);
    s = fn_csum_combine(s, fn_csum_partial(payload, len, 0), FN_UDP_HLEN);
    uint16_t cs = fn_csum_finish(s);
    fn_st_be16(uh + FN_UDP_OFF_CSUM, cs ? cs : 0xffff);
    /* Fragments carry multiples of 8 bytes except the last (RFC 791 §3.2). */
    uint32_t room = ((uint32_t)mtu - FN_IPV4_HLEN) & ~7u;
    uint32_t off = 0;
    struct fn_ipv4_spec ip;
    memset(&ip, 0, sizeof(ip));
    memcpy(ip.src, src_ip, 4);
    memcpy(ip.dst, dst_ip, 4);
    ip.proto = FN_IPPROTO_UDP;
    ip.ttl = ttl;
    ip.id = ip_id;
    while (off < total) {
        uint32_t chunk = total - off;
        int more = 0;
        if (FN_IPV4_HLEN + chunk > mtu) {
            chunk = room;
            more = 1;
        }
        uint8_t *fr = fn_txq_reserve(q, FN_ETH_HLEN + FN_IPV4_HLEN + chunk);
        if (!fr)
            return -1;
        fn_build_eth(fr, dst_mac, src_mac, FN_ETHERTYPE_IPV4);
        ip.frag = (uint16_t)((off / 8) | (more ? FN_IPV4_FLAG_MF : 0) | (off == 0 && !more ? FN_IPV4_FLAG_DF : 0));
        fn_build_ipv4(fr + FN_ETH_HLEN, &ip, chunk);
        uint8_t *pl = fr + FN_ETH_HLEN + FN_IPV4_HLEN;
        /* Bytes [off, off+chunk) of header+payload. */
        uint32_t from = off, n = chunk;
        if (from < FN_UDP_HLEN) {
            uint32_t h = FN_UDP_HLEN - from < n ? FN_UDP_HLEN - from : n;
            memcpy(pl, uh + from, h);
            pl += h;
            from += h;
            n -= h;
        }
        memcpy(pl, payload + (from - FN_UDP_HLEN), n);
        fn_txq_commit(q, fr, FN_ETH_HLEN + FN_IPV4_HLEN + chunk);
        off += chunk;
    }
    return 0;
}

/* ICMP error to the guest (RFC 792) quoting its datagram of this flow: the IPv4 header as it
 * sent it and the first 8 bytes of the UDP/ICMP header (RFC 1122 §3.2.2: at least those). */
static void emit_icmp_error(struct fn_dgram *d, struct fn_dgram_flow *f, uint8_t type, uint8_t code,
                            const uint8_t from_ip[4], const uint8_t *quote_l4, uint32_t quote_len) {
    uint32_t qlen = FN_IPV4_HLEN + 8;
    uint32_t len = FN_ETH_HLEN + FN_IPV4_HLEN + FN_ICMP_HLEN + qlen;
    uint8_t *fr = fn_txq_reserve(d->txq, len);
    if (!fr)
        return;
    const uint8_t *gip = f->key.guest_ip + 12, *rip = f->key.remote_ip + 12;
    uint8_t *icmp = fr + FN_ETH_HLEN + FN_IPV4_HLEN, *q = icmp + FN_ICMP_HLEN;
    struct fn_ipv4_spec ip;
    memset(&ip, 0, sizeof(ip));
    memcpy(ip.src, gip, 4);
    memcpy(ip.dst, rip, 4);
    ip.proto = f->key.proto;
    ip.ttl = f->ttl ? f->ttl : 64;
    fn_build_ipv4(q, &ip, quote_len > 8 ? quote_len : 8);
    memset(q + FN_IPV4_HLEN, 0, 8);
    if (f->key.proto == FN_IPPROTO_UDP) {
        fn_st_be16(q + FN_IPV4_HLEN, f->key.guest_port);
        fn_st_be16(q + FN_IPV4_HLEN + 2, f->key.remote_port);
        fn_st_be16(q + FN_IPV4_HLEN + 4, (uint16_t)(quote_len > 8 ? quote_len : 8));
    } else if (quote_l4 && quote_len >= 8) {
        memcpy(q + FN_IPV4_HLEN, quote_l4, 8);
        fn_st_be16(q + FN_IPV4_HLEN + FN_ICMP_OFF_ID, f->key.guest_port); /* the guest's echo id */
    }
    fn_build_icmp(icmp, type, code, 0);
    fn_st_be16(icmp + FN_ICMP_OFF_CSUM, fn_checksum(icmp, FN_ICMP_HLEN + qlen, 0));
    fn_build_eth(fr, f->guest_mac, d->cfg.gw_mac, FN_ETHERTYPE_IPV4);
    memset(&ip, 0, sizeof(ip));
    memcpy(ip.src, from_ip, 4);
    memcpy(ip.dst, gip, 4);
    ip.proto = FN_IPPROTO_ICMP;
    ip.ttl = 64;
    ip.id = d->ip_id++;
    fn_build_ipv4(fr + FN_ETH_HLEN, &ip, FN_ICMP_HLEN + qlen);
    fn_txq_commit(d->txq, fr, len);
    d->st.icmp_errors_out++;
}

/* An echo reply (or any ICMP message read from a ping/raw socket) to the guest. */
static void emit_icmp(struct fn_dgram *d, struct fn_dgram_flow *f, const uint8_t *icmp, uint32_t n) {
    uint32_t len = FN_ETH_HLEN + FN_IPV4_HLEN + n;
    uint8_t *fr = fn_txq_reserve(d->txq, len);
    if (!fr)
        return;
    uint8_t *p = fr + FN_ETH_HLEN + FN_IPV4_HLEN;
    memcpy(p, icmp, n);
    fn_st_be16(p + FN_ICMP_OFF_ID, f->key.guest_port); /* back to the guest's identifier */
    fn_st_be16(p + FN_ICMP_OFF_CSUM, 0);
    fn_st_be16(p + FN_ICMP_OFF_CSUM, fn_checksum(p, n, 0));
    struct fn_ipv4_spec ip;
    memset(&ip, 0, sizeof(ip));
    memcpy(ip.src, f->key.remote_ip + 12, 4);
    memcpy(ip.dst, f->key.guest_ip + 12, 4);
    ip.proto = FN_IPPROTO_ICMP;
    ip.ttl = 64;
    ip.id = d->ip_id++;
    fn_build_eth(fr, f->guest_mac, d->cfg.gw_mac, FN_ETHERTYPE_IPV4);
    fn_build_ipv4(fr + FN_ETH_HLEN, &ip, n);
    fn_txq_commit(d->txq, fr, len);
}

/* ---- guest → host ---- */

static void set_ttl(struct fn_dgram_flow *f, uint8_t ttl) {
    /* The guest's TTL goes out on the host socket, so a traceroute from the guest expires on
     * the same routers it would without us. */
    if (f->fd >= 0 && ttl != f->ttl) {
        int v = ttl;
        setsockopt(f->fd, IPPROTO_IP, IP_TTL, &v, sizeof(v));
    }
    f->ttl = ttl;
}

static void send_host(struct fn_dgram *d, struct fn_dgram_flow *f, const uint8_t *l4, uint32_t l4_len) {
    const uint8_t *payload;
    uint32_t n;
    uint8_t tmp[FN_ICMP_HLEN];
    struct iovec iov[2];
    int cnt = 1;
    if (f->key.proto == FN_IPPROTO_UDP) {
        payload = l4 + FN_UDP_HLEN;
        n = l4_len - FN_UDP_HLEN;
        iov[0].iov_base = (void *)payload;
        iov[0].iov_len = n;
    } else {
        /* ICMP echo: the header as the guest sent it; a ping socket rewrites id and checksum,
         * for a raw socket we keep the id and refill the checksum. */
        memcpy(tmp, l4, FN_ICMP_HLEN);
        fn_st_be16(tmp + FN_ICMP_OFF_CSUM, 0);
        if (f->flags & FN_DG_RAW) {
            uint32_t s = fn_csum_partial(tmp, FN_ICMP_HLEN, 0);
            s = fn_csum_combine(s, fn_csum_partial(l4 + FN_ICMP_HLEN, l4_len - FN_ICMP_HLEN, 0), FN_ICMP_HLEN);
            fn_st_be16(tmp + FN_ICMP_OFF_CSUM, fn_csum_finish(s));
        }
        iov[0].iov_base = tmp;
        iov[0].iov_len = FN_ICMP_HLEN;
        iov[1].iov_base = (void *)(l4 + FN_ICMP_HLEN);
        iov[1].iov_len = l4_len - FN_ICMP_HLEN;
        cnt = 2;
        n = l4_len;
    }
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)cnt;
    if (sendmsg(f->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        d->st.send_errors++;
        if (errno == ECONNREFUSED && f->key.proto == FN_IPPROTO_UDP) {
            /* An earlier datagram drew a port unreachable: tell the guest (RFC 1122 §4.1.3.3). */
            emit_icmp_error(d, f, 3, 3, f->key.remote_ip + 12, NULL, l4_len);
        }
        return;
    }
    f->pkts_g2h++;
    f->bytes_g2h += n;
    d->st.datagrams_in++;
    d->st.bytes_in += n;
}

static void pend_push(struct fn_dgram *d, struct fn_dgram_flow *f, const uint8_t *l4, uint32_t l4_len) {
    if (!f->pend) {
        f->pend = malloc(d->cfg.pending_bytes);
        if (!f->pend) {
            d->st.pending_dropped++;
            return;
        }
    }
    if (f->pend_len + 2 + l4_len > d->cfg.pending_bytes || l4_len > 0xffff) {
        d->st.pending_dropped++;
        return;
    }
    fn_st_le16(f->pend + f->pend_len, (uint16_t)l4_len);
    memcpy(f->pend + f->pend_len + 2, l4, l4_len);
    f->pend_len += 2 + l4_len;
}

int fn_dgram_input(struct fn_dgram *d, const uint8_t mac[6], const uint8_t *ip, const uint8_t *l4, uint32_t l4_len,
                   uint64_t now) {
    d->now = now;
    uint8_t proto = ip[FN_IPV4_OFF_PROTO];
    uint16_t gport, rport = 0;
    if (proto == FN_IPPROTO_UDP) {
        if (l4_len < FN_UDP_HLEN)
            return -1;
        gport = fn_ld_be16(l4);
        rport = fn_ld_be16(l4 + 2);
    } else if (proto == FN_IPPROTO_ICMP) {
        if (l4_len < FN_ICMP_HLEN || l4[FN_ICMP_OFF_TYPE] != 8)
            return -1; /* only echo requests are forwarded */
        gport = fn_ld_be16(l4 + FN_ICMP_OFF_ID);
    } else {
        return -1;
    }
    struct fn_flowkey k;
    fn_flowkey_v4(&k, proto, ip + FN_IPV4_OFF_SRC, gport, ip + FN_IPV4_OFF_DST, rport);
    uint32_t i = fn_flowtab_find(&d->tab, &k, key_of, d);
    struct fn_dgram_flow *f;
    if (i == NONE) {
        f = flow_alloc(d, &k);
        if (!f)
            return -1;
        i = (uint32_t)(f - d->fl);
        memcpy(f->guest_mac, mac, 6);
        f->state = FN_DG_PENDING;
        f->last = now;
        f->ttl = ip[FN_IPV4_OFF_TTL];
        push_event(d, flow_id(d, i), FN_DEV_NEW_FLOW, proto, 0);
    } else {
        f = &d->fl[i];
    }
    touch(d, i);
    if (f->state == FN_DG_PENDING) {
        pend_push(d, f, l4, l4_len);
        return 0;
    }
    set_ttl(f, ip[FN_IPV4_OFF_TTL]);
    send_host(d, f, l4, l4_len);
    return 0;
}

int fn_dgram_attach(struct fn_dgram *d, uint64_t flow, int fd, int raw, uint64_t now) {
    d->now = now;
    struct fn_dgram_flow *f = by_id(d, flow);
    if (!f || f->state != FN_DG_PENDING)
        return -1;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN; /* level-triggered: a flow's socket is drained in bounded steps */
    ev.data.u64 = flow;
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    int on = 1;
    setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof(on)); /* ICMP errors, for the guest */
    f->fd = fd;
    f->state = FN_DG_ACTIVE;
    if (raw)
        f->flags |= FN_DG_RAW;
    uint8_t ttl = f->ttl;
    f->ttl = 0;
    set_ttl(f, ttl ? ttl : 64);
    for (uint32_t p = 0; f->pend && p + 2 <= f->pend_len;) {
        uint32_t n = fn_ld_le16(f->pend + p);
        send_host(d, f, f->pend + p + 2, n);
        p += 2 + n;
    }
    free(f->pend);
    f->pend = NULL;
    f->pend_len = 0;
    return 0;
}

uint64_t fn_dgram_open(struct fn_dgram *d, const uint8_t guest_mac[6], const uint8_t guest_ip[4], uint16_t guest_port,
                       const uint8_t remote_ip[4], uint16_t remote_port, int fd, uint64_t now) {
    d->now = now;
    struct fn_flowkey k;
    fn_flowkey_v4(&k, FN_IPPROTO_UDP, guest_ip, guest_port, remote_ip, remote_port);
    if (fn_flowtab_find(&d->tab, &k, key_of, d) != NONE)
        return 0;
    struct fn_dgram_flow *f = flow_alloc(d, &k);
    if (!f)
        return 0;
    uint32_t i = (uint32_t)(f - d->fl);
    memcpy(f->guest_mac, guest_mac, 6);
    f->state = FN_DG_PENDING;
    f->last = now;
    f->ttl = 64;
    uint64_t id = flow_id(d, i);
    if (fn_dgram_attach(d, id, fd, 0, now) < 0) {
        flow_free(d, i, EBADF);
        return 0;
    }
    return id;
}

int fn_dgram_refuse(struct fn_dgram *d, uint64_t flow, int how, uint64_t now) {
    d->now = now;
    struct fn_dgram_flow *f = by_id(d, flow);
    if (!f || f->state != FN_DG_PENDING)
        return -1;
    if (how >= 0 && f->pend_len >= 2) {
        uint32_t n = fn_ld_le16(f->pend);
        emit_icmp_error(d, f, 3, (uint8_t)how, f->key.remote_ip + 12, f->pend + 2, n);
    }
    d->st.refused++;
    flow_free(d, (uint32_t)(f - d->fl), ECONNREFUSED);
    return 0;
}

int fn_dgram_close(struct fn_dgram *d, uint64_t flow) {
    struct fn_dgram_flow *f = by_id(d, flow);
    if (!f)
        return -1;
    flow_free(d, (uint32_t)(f - d->fl), 0);
    return 0;
}

/* ---- host → guest ---- */

static void read_errors(struct fn_dgram *d, struct fn_dgram_flow *f) {
    for (int k = 0; k < 16; k++) {
        uint8_t data[128], ctl[512];
        struct iovec iov = {data, sizeof(data)};
        struct sockaddr_in from;
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_name = &from;
        m.msg_namelen = sizeof(from);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof(ctl);
        ssize_t n = recvmsg(f->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
        if (n < 0)
            return;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_RECVERR)
                continue;
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(c), sizeof(ee));
            if (ee.ee_origin != SO_EE_ORIGIN_ICMP)
                continue;
            d->st.icmp_errors_in++;
            struct sockaddr_in off;
            memcpy(&off, (uint8_t *)CMSG_DATA(c) + sizeof(ee), sizeof(off));
            const uint8_t *from_ip = (const uint8_t *)&off.sin_addr;
            /* The destination itself (or the host's loopback standing in for the host alias)
             * speaks as the address the guest used; routers on the path keep their own. */
            uint8_t rip[4];
            memcpy(rip, f->key.remote_ip + 12, 4);
            int is_dst = off.sin_family != AF_INET || from_ip[0] == 127 ||
                         memcmp(from_ip, &((struct sockaddr_in *)m.msg_name)->sin_addr, 4) == 0;
            emit_icmp_error(d, f, ee.ee_type, ee.ee_code, is_dst && ee.ee_type == 3 ? rip : from_ip,
                            f->key.proto == FN_IPPROTO_ICMP ? data : NULL, (uint32_t)n);
        }
    }
}

static void drain(struct fn_dgram *d, uint32_t i) {
    struct fn_dgram_flow *f = &d->fl[i];
    /* A bounded number of datagrams per wake-up per flow keeps one chatty flow from starving
     * the others (the epoll set is level-triggered, so the rest comes next time). */
    for (int k = 0; k < 64 && f->fd >= 0; k++) {
        ssize_t n = recv(f->fd, d->rbuf, RBUF, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH || errno == EMSGSIZE)
                read_errors(d, f);
            return;
        }
        touch(d, i);
        if (f->key.proto == FN_IPPROTO_UDP) {
            if (fn_dgram_emit_udp(d->txq, f->guest_mac, d->cfg.gw_mac, f->key.remote_ip + 12, f->key.remote_port,
                                  f->key.guest_ip + 12, f->key.guest_port, d->rbuf, (uint32_t)n, d->cfg.mtu,
                                  d->ip_id++, 64) < 0) {
                d->st.oversize_dropped++;
                continue;
            }
            if ((uint32_t)n + FN_UDP_HLEN + FN_IPV4_HLEN > d->cfg.mtu)
                d->st.fragments_out++;
        } else {
            const uint8_t *icmp = d->rbuf;
            uint32_t len = (uint32_t)n;
            if (f->flags & FN_DG_RAW) {
                /* A raw socket hands over the IPv4 header too; keep only replies to our id. */
                uint32_t hl = (uint32_t)(icmp[0] & 0x0f) * 4;
                if (len < hl + FN_ICMP_HLEN)
                    continue;
                icmp += hl;
                len -= hl;
                if (icmp[0] != 0 || fn_ld_be16(icmp + FN_ICMP_OFF_ID) != f->key.guest_port)
                    continue;
            }
            if (len < FN_ICMP_HLEN || icmp[0] != 0)
                continue;
            emit_icmp(d, f, icmp, len);
        }
        f->pkts_h2g++;
        f->bytes_h2g += (uint64_t)n;
        d->st.datagrams_out++;
        d->st.bytes_out += (uint64_t)n;
    }
}

void fn_dgram_poll(struct fn_dgram *d, uint64_t now) {
    d->now = now;
    struct epoll_event evs[128];
    int n = epoll_wait(d->epfd, evs, 128, 0);
    for (int k = 0; k < n; k++) {
        struct fn_dgram_flow *f = by_id(d, evs[k].data.u64);
        if (!f || f->state != FN_DG_ACTIVE)
            continue;
        uint32_t i = (uint32_t)(f - d->fl);
        if (evs[k].events & EPOLLERR)
            read_errors(d, f);
        if (evs[k].events & EPOLLIN)
            drain(d, i);
    }
}

uint64_t fn_dgram_timers(struct fn_dgram *d, uint64_t now) {
    d->now = now;
    /* Each list is in last-use order, so expired flows are at its head. */
    uint64_t next = 0;
    for (int l = 0; l < 2; l++) {
        uint64_t idle = l ? d->cfg.icmp_idle : d->cfg.udp_idle;
        while (d->lru_head[l] != NONE) {
            uint32_t i = d->lru_head[l];
            uint64_t due = d->fl[i].last + idle;
            if (due > now) {
                if (!next || due < next)
                    next = due;
                break;
            }
            d->st.expired++;
            flow_free(d, i, 0);
        }
    }
    return next;
}
