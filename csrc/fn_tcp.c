/* The TCP engine. See fn_tcp.h for the design; the rules below cite where they come from.
 *
 * Conventions: `t` is the engine, `c` a TCB, `now` µs. Host data byte i (counting from 0) has
 * sequence number iss + 1 + i; c->consumed is the sequence number below which host bytes were
 * dropped from the host socket, so the socket's receive queue holds [consumed, ...). Guest data
 * byte with sequence s lives at ring[s & (rx_buf - 1)] while it is not yet written to the host. */
#include "fn_tcp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fn_build.h"
#include "fn_checksum.h"
#include "fn_seq.h"

#define NONE UINT32_MAX
#define TS_TICK 1000u   /* timestamp clock: 1 ms ticks (RFC 7323 §5.4 asks for 1 ms to 1 s) */
#define MAX_RUN 64      /* frames filled by one peek */
#define DEFAULT_MSS 536 /* RFC 9293 §3.7.1: no MSS option means 536 */
#define HDR_V4 (FN_ETH_HLEN + FN_IPV4_HLEN)
#define DUPTHRESH 3     /* RFC 5681 §3.2 */
#define PAWS_WINDOW 100 /* timestamp ticks (ms) of tolerance in PAWS */

/* ------------------------------------------------------------------------------------------ */
/* identities, events, names */

/* The reassembly scoreboard is allocated on first use (idle flows carry a NULL pointer). */
static const struct fn_assembler ASM_EMPTY;
static inline const struct fn_assembler *asm_ro(const struct fn_assembler *a) { return a ? a : &ASM_EMPTY; }
static inline int asm_n(const struct fn_assembler *a) { return a ? a->n : 0; }

static struct fn_assembler *asm_get(struct fn_assembler **a) {
    if (!*a && (*a = malloc(sizeof(**a))) != NULL)
        fn_asm_init(*a);
    return *a;
}

static inline uint64_t flow_id(const struct fn_tcp *t, uint32_t idx) {
    return ((uint64_t)t->tcb[idx].gen << 32) | idx;
}

static inline uint32_t idx_of(const struct fn_tcp *t, const struct fn_tcb *c) { return (uint32_t)(c - t->tcb); }

static struct fn_tcb *by_id(struct fn_tcp *t, uint64_t flow) {
    uint32_t idx = (uint32_t)flow;
    if (idx >= t->ntcb)
        return NULL;
    struct fn_tcb *c = &t->tcb[idx];
    if (c->state == FN_TCP_CLOSED || c->gen != (uint32_t)(flow >> 32))
        return NULL;
    return c;
}

const struct fn_tcb *fn_tcp_get(const struct fn_tcp *t, uint64_t flow) {
    return by_id((struct fn_tcp *)t, flow);
}

uint64_t fn_tcp_iter(const struct fn_tcp *t, uint32_t *cursor) {
    while (*cursor < t->ntcb) {
        uint32_t i = (*cursor)++;
        if (t->tcb[i].state != FN_TCP_CLOSED)
            return flow_id(t, i);
    }
    return 0;
}

static const struct fn_flowkey *key_of(void *owner, uint32_t idx) {
    return &((struct fn_tcp *)owner)->tcb[idx].key;
}

static inline uint32_t ts_now(uint64_t now) { return (uint32_t)(now / TS_TICK); }

/* The engine's time: what the caller passed, or (with a clock in the host operations) the
 * clock read again. Never backwards: a wake-up's `now` predates what the clock said since. */
static void set_now(struct fn_tcp *t, uint64_t now) {
    if (t->ops.clock) {
        uint64_t c = t->ops.clock(t->ops.ctx);
        if (c > now)
            now = c;
        if (now < t->now)
            now = t->now;
    }
    t->now = now;
}

static inline const uint8_t *gip(const struct fn_tcb *c) { return c->key.guest_ip + 12; }
static inline const uint8_t *rip(const struct fn_tcb *c) { return c->key.remote_ip + 12; }
static inline int synchronized(int s) { return s >= FN_TCP_ESTABLISHED; }

static void push_event(struct fn_tcp *t, uint64_t flow, int type, int err) {
    uint32_t next = (t->ev_tail + 1) % t->ev_cap;
    if (next == t->ev_head) {
        /* Full: grow. Events are never dropped; Python drains them every wake-up. */
        uint32_t ncap = t->ev_cap * 2, k = 0;
        struct fn_tcp_event *n = malloc(sizeof(*n) * ncap);
        if (!n) {
            t->st.nomem++;
            return;
        }
        for (uint32_t i = t->ev_head; i != t->ev_tail; i = (i + 1) % t->ev_cap)
            n[k++] = t->ev[i];
        free(t->ev);
        t->ev = n;
        t->ev_cap = ncap;
        t->ev_head = 0;
        t->ev_tail = k;
        next = k + 1;
    }
    struct fn_tcp_event *e = &t->ev[t->ev_tail];
    memset(e, 0, sizeof(*e));
    e->flow = flow;
    e->type = (uint8_t)type;
    e->err = err;
    t->ev_tail = next;
}

int fn_tcp_next_event(struct fn_tcp *t, struct fn_tcp_event *ev) {
    if (t->ev_head == t->ev_tail)
        return 0;
    *ev = t->ev[t->ev_head];
    t->ev_head = (t->ev_head + 1) % t->ev_cap;
    return 1;
}

const char *fn_tcp_state_name(int s) {
    static const char *const n[FN_TCP_STATE_COUNT] = {
        "CLOSED", "CONNECTING", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
        "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"};
    return s >= 0 && s < FN_TCP_STATE_COUNT ? n[s] : "?";
}

void fn_tcp_config_default(struct fn_tcp_config *c) {
    static const uint8_t gw[6] = {0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6};
    memset(c, 0, sizeof(*c));
    memcpy(c->gw_mac, gw, 6);
    c->mss = 1460;
    c->tx_seg_max = 1460;
    c->rx_csum_verify = 1;
    c->rx_buf = 1u << 21;
    c->max_flows = 65536;
    c->connect_timeout = 30000000;
    c->syn_timeout = 20000000;
    /* TIME-WAIT must outlast the guest's retransmission backoff, or its late retransmissions
     * meet no flow and get an RST (RFC 1337's hazard); the host socket is closed on entry, so
     * a waiting flow costs only its TCB. */
    c->time_wait = 15000000;
    c->fin_timeout = 60000000;
    c->idle_timeout = 7200000000ull;
    /* The guest link is local memory, not an Internet path: round trips are tens of µs to a
     * few ms (a busy vCPU). Linux's 200 ms floor would turn each lost retransmission into a
     * long stall, so the floor is 50 ms, and a spurious timeout is undone (Eifel, RFC 3522).
     * The initial RTO is 250 ms rather than RFC 6298's 1 s for the same reason. */
    c->rto_min = 50000;
    c->rto_max = 60000000;
    c->rto_initial = 250000;
    c->max_retries = 15;
    c->init_cwnd = 10;
    c->send_burst = 1u << 20;
    c->tail_loss_probe = 1;
}

/* ------------------------------------------------------------------------------------------ */
/* engine lifetime */

/* A flow's buffers, allocated on first use: receive ring, reassembly scoreboard, transmission
 * log (with the SACK scoreboard). */
static void tcb_free_bufs(struct fn_tcb *c) {
    free(c->ring);
    free(c->oo);
    fn_txlog_free(&c->txlog);
    c->ring = NULL;
    c->oo = NULL;
}

struct fn_tcp *fn_tcp_new(const struct fn_tcp_config *cfg, const struct fn_host_ops *ops, struct fn_txq *txq) {
    if (cfg->rx_buf < 4096 || (cfg->rx_buf & (cfg->rx_buf - 1)) || cfg->max_flows == 0 || cfg->mss < 64 ||
        cfg->tx_seg_max < cfg->mss || cfg->tx_seg_max > 65495 || cfg->mss > 65495)
        return NULL;
    struct fn_tcp *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cfg = *cfg;
    t->ops = *ops;
    t->txq = txq;
    t->cap_tcb = cfg->max_flows;
    /* One calloc for the whole table: untouched pages are never made resident, so memory
     * follows the flows actually used (the kernel maps zero pages lazily). */
    t->tcb = calloc(t->cap_tcb, sizeof(struct fn_tcb));
    t->cap_pend = 4096;
    t->pend = malloc(sizeof(*t->pend) * t->cap_pend);
    t->cap_heap = 1024;
    t->heap = malloc(sizeof(*t->heap) * t->cap_heap);
    t->ev_cap = 256;
    t->ev = malloc(sizeof(*t->ev) * t->ev_cap);
    if (!t->tcb || !t->pend || !t->heap || !t->ev ||
        fn_flowtab_init(&t->tab, 1024, cfg->isn_secret[0] ^ 0x5bd1e9955bd1e995ull) < 0) {
        fn_tcp_free(t);
        return NULL;
    }
    t->free_head = NONE;
    t->touched_head = NONE;
    t->blocked_head = NONE;
    return t;
}

void fn_tcp_free(struct fn_tcp *t) {
    if (!t)
        return;
    if (t->tcb) {
        for (uint32_t i = 0; i < t->ntcb; i++) {
            struct fn_tcb *c = &t->tcb[i];
            if (c->state != FN_TCP_CLOSED && c->fd >= 0)
                t->ops.close(t->ops.ctx, c->fd, 1);
            tcb_free_bufs(c);
        }
    }
    free(t->tcb);
    free(t->pend);
    free(t->heap);
    free(t->ev);
    if (t->tab.slot)
        fn_flowtab_free(&t->tab);
    free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* timer heap: (deadline, flow). A flow keeps at most one live entry (t_heap); entries whose
 * deadline no longer matches t_heap, or whose flow changed generation, are stale and skipped. */

static void heap_push(struct fn_tcp *t, uint64_t when, uint32_t idx) {
    if (t->nheap == t->cap_heap) {
        struct fn_theap_ent *n = realloc(t->heap, sizeof(*n) * t->cap_heap * 2);
        if (!n) {
            t->st.nomem++;
            return;
        }
        t->heap = n;
        t->cap_heap *= 2;
    }
    uint32_t i = t->nheap++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (t->heap[p].when <= when)
            break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i].when = when;
    t->heap[i].idx = idx;
    t->heap[i].gen = t->tcb[idx].gen;
}

static void heap_pop(struct fn_tcp *t) {
    struct fn_theap_ent last = t->heap[--t->nheap];
    uint32_t i = 0, n = t->nheap;
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t mw = last.when;
        if (l < n && t->heap[l].when < mw) {
            m = l;
            mw = t->heap[l].when;
        }
        if (r < n && t->heap[r].when < mw)
            m = r;
        if (m == i)
            break;
        t->heap[i] = t->heap[m];
        i = m;
    }
    if (n)
        t->heap[i] = last;
}

static void timer_arm(struct fn_tcp *t, struct fn_tcb *c) {
    uint64_t d = c->t_rexmit;
    if (c->t_state && (!d || c->t_state < d))
        d = c->t_state;
    if (c->t_reo && (!d || c->t_reo < d))
        d = c->t_reo;
    if (d && (!c->t_heap || d < c->t_heap)) {
        c->t_heap = d;
        heap_push(t, d, idx_of(t, c));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* flows */

static void touch(struct fn_tcp *t, struct fn_tcb *c) {
    if (!(c->flags & FN_TCBF_TOUCHED)) {
        c->flags |= FN_TCBF_TOUCHED;
        c->next_touched = t->touched_head;
        t->touched_head = idx_of(t, c);
    }
}

/* Reset a TCB for a new connection, keeping only its list links and bumping its generation
 * (so ids of the previous occupant stop matching). */
static void tcb_reinit(struct fn_tcp *t, struct fn_tcb *c, const struct fn_flowkey *k) {
    uint32_t gen = c->gen + 1, keep = c->flags & (FN_TCBF_TOUCHED | FN_TCBF_BLOCKED);
    uint32_t nt = c->next_touched, nb = c->next_blocked;
    tcb_free_bufs(c); /* a TIME-WAIT TCB taken over may still hold these */
    memset(c, 0, sizeof(*c));
    c->gen = gen ? gen : 1;
    c->flags = keep;
    c->next_touched = nt;
    c->next_blocked = nb;
    c->key = *k;
    c->fd = -1;
    c->peek_off = FN_PEEK_UNKNOWN; /* SO_PEEK_OFF starts disabled (-1): set it before use */
    c->pend_head = c->pend_tail = NONE;
    c->rto = (uint32_t)t->cfg.rto_initial;
    c->dupthresh = DUPTHRESH;
}

static uint8_t our_wscale(const struct fn_tcp *t) {
    uint8_t s = 0;
    while (s < 14 && (t->cfg.rx_buf >> s) > 0xffff)
        s++;
    return s;
}

static struct fn_tcb *flow_alloc(struct fn_tcp *t, const struct fn_flowkey *k) {
    uint32_t idx;
    if (t->free_head != NONE) {
        idx = t->free_head;
        t->free_head = t->tcb[idx].next_free;
    } else if (t->ntcb < t->cap_tcb) {
        idx = t->ntcb++;
    } else {
        t->st.nomem++;
        return NULL;
    }
    struct fn_tcb *c = &t->tcb[idx];
    c->flags = 0; /* a free TCB is on no list */
    tcb_reinit(t, c, k);
    if (fn_flowtab_insert(&t->tab, k, idx, key_of, t) < 0) {
        c->next_free = t->free_head;
        t->free_head = idx;
        t->st.nomem++;
        return NULL;
    }
    c->state = FN_TCP_CLOSED; /* set by the caller */
    t->st.flows_opened++;
    t->st.flows_active++;
    return c;
}

/* Drop what the guest acknowledged from the host socket (our FIN is no host byte). The
 * socket must be left with no acknowledged byte unread before a clean close(): Linux answers
 * close() with unread data by an RST to the host peer (RFC 2525 §2.17), which discards
 * whatever that peer had not read yet. */
static int consume_acked(struct fn_tcp *t, struct fn_tcb *c) {
    uint32_t end = (c->flags & FN_TCBF_FIN_SENT) && fn_seq_gt(c->snd_una, c->host_fin_seq) ? c->host_fin_seq
                                                                                          : c->snd_una;
    if (c->fd >= 0 && fn_seq_gt(end, c->consumed)) {
        int r = t->ops.consume(t->ops.ctx, c->fd, end - c->consumed, &c->peek_off);
        if (r < 0 && r != -EAGAIN)
            return r;
        c->consumed = end;
    }
    return 0;
}

/* Mark for freeing at the end of the flush (the touched list may still reference it). */
static void flow_close(struct fn_tcp *t, struct fn_tcb *c, int err, int rst_host) {
    if (c->flags & FN_TCBF_CLOSE)
        return;
    c->flags |= FN_TCBF_CLOSE;
    c->close_err = err;
    if (!rst_host && synchronized(c->state))
        consume_acked(t, c);
    if (c->fd >= 0) {
        t->ops.close(t->ops.ctx, c->fd, rst_host);
        c->fd = -1;
    }
    touch(t, c);
}

static void flow_free(struct fn_tcp *t, struct fn_tcb *c) {
    uint32_t idx = idx_of(t, c);
    if (c->fd >= 0) {
        t->ops.close(t->ops.ctx, c->fd, 0);
        c->fd = -1;
    }
    fn_flowtab_remove(&t->tab, &c->key, key_of, t);
    tcb_free_bufs(c);
    push_event(t, flow_id(t, idx), FN_TEV_CLOSED, c->close_err);
    c->state = FN_TCP_CLOSED;
    c->next_free = t->free_head;
    t->free_head = idx;
    t->st.flows_closed++;
    t->st.flows_active--;
}

/* RFC 6528: ISN = M + F(4-tuple, secret), M a 4 µs timer. F is a keyed 64-bit mix here. */
static uint32_t isn_for(const struct fn_tcp *t, const struct fn_flowkey *k, uint64_t now) {
    uint64_t w[5], h = t->cfg.isn_secret[0];
    memcpy(w, k, sizeof(w));
    for (int i = 0; i < 5; i++) {
        h ^= w[i] + t->cfg.isn_secret[1];
        h *= 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return (uint32_t)(h >> 16) + (uint32_t)(now / 4);
}

/* ------------------------------------------------------------------------------------------ */
/* output */

static uint16_t window_field(struct fn_tcp *t, struct fn_tcb *c, int syn) {
    uint32_t right = c->host_seq + t->cfg.rx_buf;
    uint32_t w = fn_seq_gt(right, c->rcv_nxt) ? right - c->rcv_nxt : 0;
    uint32_t f;
    if (syn) {
        f = w > 0xffff ? 0xffff : w; /* RFC 7323 §2.2: the window in a SYN is never scaled */
        c->rcv_adv = c->rcv_nxt + f;
        return (uint16_t)f;
    }
    f = w >> c->rcv_wscale;
    if (f > 0xffff)
        f = 0xffff;
    uint32_t edge = c->rcv_nxt + (f << c->rcv_wscale);
    if (fn_seq_gt(edge, c->rcv_adv))
        c->rcv_adv = edge;
    return (uint16_t)f;
}

/* Fill spec with the header for a segment of this flow. */
static int sack_blocks(struct fn_tcb *c, struct fn_tcp_spec *s, int k, int max);

static void seg_spec(struct fn_tcp *t, struct fn_tcb *c, struct fn_tcp_spec *s, uint32_t seq, uint8_t flags) {
    memset(s, 0, sizeof(*s));
    s->sport = c->key.remote_port;
    s->dport = c->key.guest_port;
    s->seq = seq;
    s->flags = flags;
    if (flags & FN_TCP_ACK)
        s->ack = c->rcv_nxt;
    int syn = (flags & FN_TCP_SYN) != 0;
    s->window = (flags & FN_TCP_RST) ? 0 : window_field(t, c, syn);
    int offer = syn && c->state == FN_TCP_SYN_SENT; /* our own SYN offers everything */
    if (syn) {
        s->opts |= FN_TCPB_MSS;
        s->o.mss = t->cfg.mss;
        /* A SYN-ACK only answers what the guest's SYN offered (RFC 7323 §2.2, RFC 2018 §2). */
        if (offer || (c->flags & FN_TCBF_WSCALE)) {
            s->opts |= FN_TCPB_WSCALE;
            s->o.wscale = offer ? our_wscale(t) : c->rcv_wscale;
        }
        if (offer || (c->flags & FN_TCBF_SACK))
            s->opts |= FN_TCPB_SACK_PERM;
    }
    if (offer && !(flags & FN_TCP_ACK)) {
        s->opts |= FN_TCPB_TS;
        s->o.ts_val = ts_now(t->now);
        s->o.ts_ecr = 0;
    } else if ((c->flags & FN_TCBF_TS) && !(flags & FN_TCP_RST)) {
        s->opts |= FN_TCPB_TS;
        s->o.ts_val = ts_now(t->now);
        s->o.ts_ecr = (flags & FN_TCP_ACK) ? c->ts_recent : 0;
    }
    if ((flags & FN_TCP_ACK) && !syn && (c->flags & FN_TCBF_SACK) && (asm_n(c->oo) || (c->flags & FN_TCBF_DSACK))) {
        int max = (c->flags & FN_TCBF_TS) ? 3 : 4, k = 0;
        if (c->flags & FN_TCBF_DSACK) {
            /* RFC 2883 §4: a duplicate just received goes first (D-SACK, reported once). */
            s->o.sack[k][0] = c->dsack_l;
            s->o.sack[k][1] = c->dsack_r;
            k++;
            c->flags &= ~FN_TCBF_DSACK;
            t->st.dsacks_out++;
        }
        k = sack_blocks(c, s, k, max);
        s->opts |= FN_TCPB_SACK;
        s->o.nsack = (uint8_t)k;
    }
}

/* The held range containing sequence number seq, or -1. */
static int oo_range_of(const struct fn_tcb *c, uint32_t seq);

/* Data at seq went into a held range: remember the range for the next ACK's SACK blocks. */
static void sack_touched(struct fn_tcb *c, uint32_t seq) {
    int r = oo_range_of(c, seq);
    for (int i = 0; i < c->sack_ntouch; i++)
        if (oo_range_of(c, c->sack_touch[i]) == r) { /* already listed: make it the newest */
            memmove(&c->sack_touch[i], &c->sack_touch[i + 1], sizeof(uint32_t) * (size_t)(c->sack_ntouch - i - 1));
            c->sack_ntouch--;
            break;
        }
    if (c->sack_ntouch == FN_SACK_TOUCH) { /* the oldest gives way */
        memmove(&c->sack_touch[0], &c->sack_touch[1], sizeof(uint32_t) * (FN_SACK_TOUCH - 1));
        c->sack_ntouch--;
    }
    c->sack_touch[c->sack_ntouch++] = seq;
}

/* The held range containing sequence number seq, or -1. */
static int oo_range_of(const struct fn_tcb *c, uint32_t seq) {
    const struct fn_assembler *a = asm_ro(c->oo);
    uint32_t off = seq - c->rcv_nxt;
    if (fn_seq_lt(seq, c->rcv_nxt))
        return -1; /* delivered since */
    for (int i = 0; i < a->n; i++)
        if (a->r[i].start <= off && off < a->r[i].end)
            return i;
    return -1;
}

/* SACK blocks from slot k on (RFC 2018 §4): first the ranges that took data since the last
 * ACK, the latest first; then the ranges reported first in the two previous ACKs (each block
 * is repeated, so one lost ACK loses no information); then the lowest ranges. A range the
 * guest never hears of looks lost to it and is resent needlessly; ranges that took data but
 * did not fit stay in sack_touch for the next ACK (the flush sends one at once). */
static int sack_blocks(struct fn_tcb *c, struct fn_tcp_spec *s, int k, int max) {
    const struct fn_assembler *a = asm_ro(c->oo);
    if (!a->n) {
        c->sack_ntouch = 0;
        return k;
    }
    int pick[FN_TCP_MAX_SACK], np = 0, nt = c->sack_ntouch;
    int cand[FN_SACK_TOUCH + 3];
    for (int i = 0; i < nt; i++)
        cand[i] = oo_range_of(c, c->sack_touch[nt - 1 - i]);
    cand[nt] = a->last;
    cand[nt + 1] = oo_range_of(c, c->sack_prev[0]);
    cand[nt + 2] = oo_range_of(c, c->sack_prev[1]);
    int ncand = nt + 3, taken = 0; /* touched entries consumed, newest first */
    for (int i = -ncand; i < a->n && k + np < max; i++) {
        int r = i < 0 ? cand[i + ncand] : i;
        int dup = r < 0;
        for (int j = 0; j < np && !dup; j++)
            dup = pick[j] == r;
        if (!dup)
            pick[np++] = r;
        if (i + ncand < nt)
            taken = i + ncand + 1;
    }
    /* What did not fit (the oldest touched) waits for the next ACK. */
    c->sack_ntouch = (uint8_t)(nt - taken);
    for (int j = 0; j < np; j++, k++) {
        s->o.sack[k][0] = c->rcv_nxt + a->r[pick[j]].start;
        s->o.sack[k][1] = c->rcv_nxt + a->r[pick[j]].end;
    }
    uint32_t first = c->rcv_nxt + a->r[a->last].start;
    if (oo_range_of(c, c->sack_prev[0]) != a->last) {
        c->sack_prev[1] = c->sack_prev[0];
        c->sack_prev[0] = first;
    }
    return k;
}

static size_t write_headers(struct fn_tcp *t, struct fn_tcb *c, uint8_t *fr, const struct fn_tcp_spec *s,
                            uint32_t plen) {
    struct fn_ipv4_spec ip;
    size_t th = fn_tcp_hlen(s);
    fn_build_eth(fr, c->guest_mac, t->cfg.gw_mac, FN_ETHERTYPE_IPV4);
    memset(&ip, 0, sizeof(ip));
    memcpy(ip.src, rip(c), 4);
    memcpy(ip.dst, gip(c), 4);
    ip.proto = FN_IPPROTO_TCP;
    ip.ttl = 64;
    ip.id = (uint16_t)t->ip_id++;
    ip.frag = FN_IPV4_FLAG_DF;
    fn_build_ipv4(fr + FN_ETH_HLEN, &ip, th + plen);
    fn_build_tcp(fr + HDR_V4, s);
    return HDR_V4 + th;
}

/* Fill the TCP checksum (or the pseudo-header part for a link that completes it). */
static void finish_csum(struct fn_tcp *t, struct fn_tcb *c, uint8_t *fr, size_t hl, uint32_t plen, struct fn_txd *d) {
    uint8_t *tcp = fr + HDR_V4;
    uint32_t l4 = (uint32_t)(hl - HDR_V4) + plen;
    uint32_t ps = fn_csum_pseudo4(rip(c), gip(c), FN_IPPROTO_TCP, l4);
    d->hdr_len = (uint8_t)hl;
    if (t->cfg.tx_csum_partial) {
        fn_st_be16(tcp + FN_TCP_OFF_CSUM, (uint16_t)ps);
        d->flags |= FN_TXD_CSUM_PARTIAL;
        d->csum_start = HDR_V4;
        d->csum_off = FN_TCP_OFF_CSUM;
    } else {
        fn_st_be16(tcp + FN_TCP_OFF_CSUM, fn_checksum(tcp, l4, ps));
    }
}

/* A segment without payload. Returns 0, or -1 when the transmit queue is full. */
static int send_ctl(struct fn_tcp *t, struct fn_tcb *c, uint32_t seq, uint8_t flags) {
    struct fn_tcp_spec s;
    seg_spec(t, c, &s, seq, flags);
    uint8_t *fr = fn_txq_reserve(t->txq, HDR_V4 + FN_TCP_MAX_HLEN);
    if (!fr)
        return -1;
    size_t hl = write_headers(t, c, fr, &s, 0);
    struct fn_txd *d = fn_txq_commit(t->txq, fr, (uint32_t)hl);
    finish_csum(t, c, fr, hl, 0, d);
    t->st.segs_out++;
    if (flags & FN_TCP_RST)
        t->st.rst_out++;
    if (flags & FN_TCP_ACK)
        c->flags &= ~(FN_TCBF_ACK_NOW | FN_TCBF_WND_UPDATE);
    return 0;
}

/* RST for a segment that matches no flow (RFC 9293 §3.10.7.1), built from the segment itself. */
static void send_rst_for(struct fn_tcp *t, const uint8_t *p, const struct fn_frame *f) {
    const uint8_t *ip = p + f->l3_off, *th = p + f->l4_off;
    uint8_t flags = th[FN_TCP_OFF_FLAGS];
    struct fn_tcb tmp;
    memset(&tmp, 0, sizeof(tmp));
    fn_flowkey_v4(&tmp.key, FN_IPPROTO_TCP, ip + FN_IPV4_OFF_SRC, fn_ld_be16(th), ip + FN_IPV4_OFF_DST,
                  fn_ld_be16(th + 2));
    memcpy(tmp.guest_mac, p + FN_ETH_OFF_SRC, 6);
    uint32_t seq = 0;
    uint8_t rflags = FN_TCP_RST;
    if (flags & FN_TCP_ACK) {
        seq = fn_ld_be32(th + FN_TCP_OFF_ACK);
    } else {
        rflags |= FN_TCP_ACK;
        tmp.rcv_nxt = fn_ld_be32(th + FN_TCP_OFF_SEQ) + f->payload_len + !!(flags & FN_TCP_SYN) + !!(flags & FN_TCP_FIN);
    }
    send_ctl(t, &tmp, seq, rflags);
}

/* ICMP destination unreachable for the guest's SYN (RFC 792, RFC 1122 §3.2.2.1): the quoted
 * datagram is the SYN's IP header and first 8 TCP bytes, rebuilt from the flow. */
static void send_unreach(struct fn_tcp *t, struct fn_tcb *c, uint8_t code) {
    uint8_t *fr = fn_txq_reserve(t->txq, FN_ETH_HLEN + FN_IPV4_HLEN + FN_ICMP_HLEN + FN_IPV4_HLEN + 8);
    if (!fr)
        return;
    struct fn_ipv4_spec ip;
    uint8_t *icmp = fr + HDR_V4, *q = icmp + FN_ICMP_HLEN;
    fn_build_eth(fr, c->guest_mac, t->cfg.gw_mac, FN_ETHERTYPE_IPV4);
    /* The quoted SYN: from the guest to the destination, as the guest sent it. */
    memset(&ip, 0, sizeof(ip));
    memcpy(ip.src, gip(c), 4);
    memcpy(ip.dst, rip(c), 4);
    ip.proto = FN_IPPROTO_TCP;
    ip.ttl = 64;
    ip.frag = FN_IPV4_FLAG_DF;
    fn_build_ipv4(q, &ip, 20 + 20);
    fn_st_be16(q + FN_IPV4_HLEN, c->key.guest_port);
    fn_st_be16(q + FN_IPV4_HLEN + 2, c->key.remote_port);
    fn_st_be32(q + FN_IPV4_HLEN + 4, c->irs);
    fn_build_icmp(icmp, 3, code, 0);
    fn_st_be16(icmp + FN_ICMP_OFF_CSUM, fn_checksum(icmp, FN_ICMP_HLEN + FN_IPV4_HLEN + 8, 0));
    /* The ICMP message comes from the destination address (as a router on the path would say
     * it; the guest matches it by the quoted header). */
    memset(&ip, 0, sizeof(ip));
    memcpy(ip.src, rip(c), 4);
    memcpy(ip.dst, gip(c), 4);
    ip.proto = FN_IPPROTO_ICMP;
    ip.ttl = 64;
    ip.id = (uint16_t)t->ip_id++;
    fn_build_ipv4(fr + FN_ETH_HLEN, &ip, FN_ICMP_HLEN + FN_IPV4_HLEN + 8);
    fn_txq_commit(t->txq, fr, FN_ETH_HLEN + FN_IPV4_HLEN + FN_ICMP_HLEN + FN_IPV4_HLEN + 8);
    t->st.segs_out++;
}

static void block(struct fn_tcp *t, struct fn_tcb *c) {
    if (!(c->flags & FN_TCBF_BLOCKED)) {
        c->flags |= FN_TCBF_BLOCKED;
        c->next_blocked = t->blocked_head;
        t->blocked_head = idx_of(t, c);
    }
}

static void host_failed(struct fn_tcp *t, struct fn_tcb *c, int err);

/* Send [seq, seq + len) of host data (len ≤ what one run covers) by peeking into frames.
 * Returns bytes sent, 0 at end of stream, -EAGAIN when nothing is there, -ENOBUFS when the
 * transmit queue is full, or another -errno from the host socket. */
static long send_run(struct fn_tcp *t, struct fn_tcb *c, uint32_t seq, uint32_t len, uint32_t *asked) {
    struct fn_tcp_spec s;
    seg_spec(t, c, &s, seq, FN_TCP_ACK);
    uint32_t th = (uint32_t)fn_tcp_hlen(&s);
    /* snd_mss already excludes the timestamp option; SACK blocks take more (RFC 6691). */
    uint32_t extra = th - FN_TCP_HLEN - ((c->flags & FN_TCBF_TS) ? 12 : 0);
    uint32_t seg = c->snd_mss > extra + 64 ? c->snd_mss - extra : 64, fmax = seg;
    /* A GSO super-frame carries a whole number of segments, so the link cuts equal ones, and
     * its IPv4 total length stays within 16 bits. */
    if (t->cfg.tx_gso && t->cfg.tx_seg_max > seg) {
        uint32_t lim = t->cfg.tx_seg_max < 65535 - FN_IPV4_HLEN - th ? t->cfg.tx_seg_max : 65535 - FN_IPV4_HLEN - th;
        fmax = lim - lim % seg;
    }
    uint32_t k = (len + fmax - 1) / fmax;
    if (k > MAX_RUN)
        k = MAX_RUN;
    if (k * fmax < len)
        len = k * fmax;
    *asked = len;
    uint32_t stride;
    uint8_t *first = fn_txq_reserve_run(t->txq, k, HDR_V4 + th + fmax, &stride);
    if (!first)
        return -ENOBUFS;
    struct iovec iov[MAX_RUN];
    for (uint32_t i = 0; i < k; i++) {
        iov[i].iov_base = first + (size_t)i * stride + HDR_V4 + th;
        iov[i].iov_len = i + 1 < k ? fmax : len - (k - 1) * fmax;
    }
    uint32_t off = seq - c->consumed;
    set_now(t, t->now); /* a flush may run for milliseconds: log this run's own send time */
    long n = t->ops.peek(t->ops.ctx, c->fd, off, &c->peek_off, iov, (int)k);
    t->st.host_peeks++;
    if (n <= 0)
        return n;
    uint32_t done = 0;
    for (uint32_t i = 0; i < k && done < (uint32_t)n; i++) {
        uint32_t pl = (uint32_t)n - done < fmax ? (uint32_t)n - done : fmax;
        uint8_t *fr = first + (size_t)i * stride;
        uint8_t flags = FN_TCP_ACK;
        if (done + pl == (uint32_t)n)
            flags |= FN_TCP_PSH;
        s.seq = seq + done;
        s.flags = flags;
        size_t hl = write_headers(t, c, fr, &s, pl);
        struct fn_txd *d = fn_txq_commit(t->txq, fr, (uint32_t)hl + pl);
        if (pl > seg) {
            d->flags |= FN_TXD_GSO_TCPV4;
            d->gso_size = (uint16_t)seg;
        }
        finish_csum(t, c, fr, hl, pl, d);
        done += pl;
        t->st.segs_out++;
    }
    if (fn_txlog_sent(&c->txlog, seq, seq + (uint32_t)n, t->now) < 0)
        t->st.nomem++; /* the log keeps a coarser picture: see fn_txlog_sent() */
    t->st.bytes_out += (uint64_t)n;
    c->bytes_h2g += (uint64_t)n;
    c->flags &= ~(FN_TCBF_ACK_NOW | FN_TCBF_WND_UPDATE);
    return n;
}

/* Arm the retransmission timer; with SACK and an RTT known, a tail-loss probe timeout of two
 * round trips (at least 10 ms) comes first when it is shorter (RFC 8985 §7.2). Unlike RFC
 * 8985 the probe is armed during recovery too: when a retransmission is lost and nothing new
 * can follow it (the guest's window or the host socket's data is used up), no later delivery
 * lets RACK see the loss, and only a timer repairs it; the probe does so at two round trips
 * instead of the RTO, without collapsing the window. */
static void rto_start(struct fn_tcp *t, struct fn_tcb *c) {
    uint64_t rto = c->rto;
    c->flags &= ~FN_TCBF_TLP;
    if (t->cfg.tail_loss_probe && c->srtt && (c->flags & FN_TCBF_SACK) && synchronized(c->state) &&
        !(c->flags & (FN_TCBF_PROBING | FN_TCBF_TLP_SENT))) {
        uint64_t pto = 2 * (uint64_t)c->srtt;
        if (pto < 10000)
            pto = 10000;
        if (pto < rto) {
            rto = pto;
            c->flags |= FN_TCBF_TLP;
        }
    }
    c->t_rexmit = t->now + rto;
    timer_arm(t, c);
}

/* Our FIN at host_fin_seq (RFC 9293 §3.6). */
static int send_fin(struct fn_tcp *t, struct fn_tcb *c) {
    if (send_ctl(t, c, c->host_fin_seq, FN_TCP_FIN | FN_TCP_ACK) < 0)
        return -1;
    /* The FIN takes a sequence number and is recovered like data. */
    fn_txlog_sent(&c->txlog, c->host_fin_seq, c->host_fin_seq + 1, t->now);
    c->flags |= FN_TCBF_FIN_SENT;
    c->snd_nxt = c->host_fin_seq + 1;
    if (fn_seq_gt(c->snd_nxt, c->snd_max))
        c->snd_max = c->snd_nxt;
    if (c->state == FN_TCP_ESTABLISHED)
        c->state = FN_TCP_FIN_WAIT_1;
    else if (c->state == FN_TCP_CLOSE_WAIT)
        c->state = FN_TCP_LAST_ACK;
    if (c->flags & FN_TCBF_KEEPALIVE) {
        /* From here the flow is bounded by the FIN timeout, not keepalives. */
        c->flags &= ~FN_TCBF_KEEPALIVE;
        c->t_state = t->now + t->cfg.fin_timeout;
    }
    if (!c->t_rexmit)
        rto_start(t, c);
    timer_arm(t, c);
    return 0;
}

/* How many bytes beyond snd_una the congestion and receive windows allow. */
static uint32_t pipe_bytes(const struct fn_tcb *c);

/* Where new data must stop: the guest's window, and the congestion window — counted against
 * the pipe while recovering (RFC 6675 §5 step (C)), against the flight otherwise. */
static uint32_t send_limit(const struct fn_tcb *c) {
    uint32_t wnd_edge = c->snd_una + c->snd_wnd;
    /* The congestion window bounds what is in the network (RFC 6675 §5 pipe), not the span
     * from snd_una: data the guest SACKed has left it. While a hole waits out RACK's
     * reordering window, new data keeps flowing instead of the window stalling on the hole
     * (Linux counts packets in flight the same way). */
    if ((c->flags & FN_TCBF_RECOVERY) || c->txlog.sacked) {
        uint32_t pipe = pipe_bytes(c);
        uint32_t room = c->cwnd > pipe ? c->cwnd - pipe : 0;
        uint32_t edge = c->snd_max + room;
        return fn_seq_lt(edge, wnd_edge) ? edge : wnd_edge;
    }
    uint32_t w = c->snd_wnd < c->cwnd ? c->snd_wnd : c->cwnd;
    return c->snd_una + w;
}

/* Send new data (and the FIN) as far as the windows allow. */
static void send_data(struct fn_tcp *t, struct fn_tcb *c) {
    if (c->fd < 0 || !synchronized(c->state) || c->state == FN_TCP_TIME_WAIT)
        return;
    uint32_t budget = t->cfg.send_burst;
    for (;;) {
        if ((c->flags & FN_TCBF_HOST_EOF) && c->snd_nxt == c->host_fin_seq) {
            /* The FIN takes one sequence number of the guest's window, as data would. */
            if (fn_seq_lt(c->snd_nxt, c->snd_una + c->snd_wnd)) {
                if (send_fin(t, c) < 0)
                    block(t, c);
            } else if (c->snd_una == c->snd_max && !c->t_rexmit) {
                c->flags |= FN_TCBF_PROBING;
                rto_start(t, c);
            }
            return;
        }
        if ((c->flags & FN_TCBF_HOST_EOF) && fn_seq_gt(c->snd_nxt, c->host_fin_seq))
            return;
        uint32_t limit = send_limit(c);
        if (fn_seq_ge(c->snd_nxt, limit) || budget == 0) {
            if (c->snd_wnd == 0 && c->snd_una == c->snd_max && !c->t_rexmit) {
                /* Zero window with nothing in flight: the persist timer (RFC 9293 §3.8.6.1). */
                c->flags |= FN_TCBF_PROBING;
                rto_start(t, c);
            }
            return;
        }
        /* Beyond snd_max the socket has data only if it said so; below it, data is known. */
        if (fn_seq_ge(c->snd_nxt, c->snd_max) && !(c->flags & FN_TCBF_READABLE))
            return;
        uint32_t want = limit - c->snd_nxt;
        if ((c->flags & FN_TCBF_HOST_EOF) && fn_seq_lt(c->host_fin_seq, c->snd_nxt + want))
            want = c->host_fin_seq - c->snd_nxt;
        if (fn_seq_lt(c->snd_nxt, c->snd_max) && fn_seq_lt(c->snd_max, c->snd_nxt + want))
            want = c->snd_max - c->snd_nxt; /* retransmit up to snd_max first, then read anew */
        if (want > budget)
            want = budget;
        uint32_t asked;
        long n = send_run(t, c, c->snd_nxt, want, &asked);
        if (n == -ENOBUFS) {
            block(t, c);
            return;
        }
        if (n == -EAGAIN) {
            c->flags &= ~FN_TCBF_READABLE;
            return;
        }
        if (n == 0) {
            /* End of stream at snd_nxt: everything before it has been read (RFC 9293 §3.6). */
            c->flags |= FN_TCBF_HOST_EOF;
            c->flags &= ~FN_TCBF_READABLE;
            c->host_fin_seq = c->snd_nxt;
            continue;
        }
        if (n < 0) {
            host_failed(t, c, (int)-n);
            return;
        }
        int fresh = fn_seq_ge(c->snd_nxt, c->snd_max);
        if (fresh && !c->rtt_time && !(c->flags & FN_TCBF_TS)) {
            c->rtt_seq = c->snd_nxt; /* Karn: time a segment that is not a retransmission */
            c->rtt_time = t->now;
        }
        c->snd_nxt += (uint32_t)n;
        if (fn_seq_gt(c->snd_nxt, c->snd_max))
            c->snd_max = c->snd_nxt;
        if (!c->t_rexmit || (c->flags & FN_TCBF_PROBING)) {
            c->flags &= ~FN_TCBF_PROBING;
            rto_start(t, c);
        }
        budget -= (uint32_t)n < budget ? (uint32_t)n : budget;
        /* Drained for now; the next EPOLLIN edge re-arms. Not once the peer's FIN arrived
         * (EPOLLRDHUP): no edge comes again, so peek once more to read the end of stream. */
        if ((uint32_t)n < asked && fresh && !(c->flags & FN_TCBF_HOST_RDHUP))
            c->flags &= ~FN_TCBF_READABLE;
    }
}

/* Retransmit one segment at seq (RFC 5681 §3.2, RFC 6298 §5.4). */
/* Returns the sequence space sent (bytes, or 1 for the FIN), 0 for nothing, -1 on failure. */
static int retransmit(struct fn_tcp *t, struct fn_tcb *c, uint32_t seq, uint32_t maxlen) {
    if ((c->flags & FN_TCBF_HOST_EOF) && seq == c->host_fin_seq) {
        if (send_ctl(t, c, seq, FN_TCP_FIN | FN_TCP_ACK) < 0) {
            block(t, c); /* the transmit queue is full: try again when the link drains */
            return -1;
        }
        fn_txlog_sent(&c->txlog, seq, seq + 1, t->now);
        t->st.rexmits++;
        c->rexmits++;
        return 1;
    }
    uint32_t len = c->snd_mss;
    if (len > maxlen)
        len = maxlen;
    if ((c->flags & FN_TCBF_HOST_EOF) && fn_seq_lt(c->host_fin_seq, seq + len))
        len = c->host_fin_seq - seq;
    if (len == 0)
        return 0;
    uint32_t asked;
    long n = send_run(t, c, seq, len, &asked);
    if (n == -ENOBUFS) {
        block(t, c); /* the transmit queue is full: try again when the link drains */
        return -1;
    }
    if (n < 0 && n != -EAGAIN) {
        host_failed(t, c, (int)-n);
        return -1;
    }
    if (n > 0) {
        t->st.rexmits++;
        c->rexmits++;
        fn_txlog_rxt_note(&c->txlog, seq, seq + (uint32_t)n);
        if (c->rtt_time && fn_seq_le(seq, c->rtt_seq))
            c->rtt_time = 0; /* Karn's algorithm: no sample from retransmitted data */
    }
    return n > 0 ? (int)n : 0;
}

/* Bytes of log entry e below lim that the guest has not SACKed (the log is the scoreboard). */
static uint32_t unsacked(const struct fn_tcb *c, const struct fn_txlog_ent *e, uint32_t lim) {
    if (e->sacked)
        return 0;
    uint32_t from = fn_seq_max(e->start, c->snd_una);
    return fn_seq_lt(from, lim) ? lim - from : 0;
}

/* RFC 6675 §4 SetPipe: bytes in flight = outstanding, not SACKed, not deemed lost (a lost
 * range counts again once retransmitted: the log clears its mark). */
static uint32_t pipe_bytes(const struct fn_tcb *c) {
    uint32_t pipe = 0;
    for (uint32_t i = 0; i < c->txlog.n; i++) {
        const struct fn_txlog_ent *e = &c->txlog.e[i];
        if (!e->lost)
            pipe += unsacked(c, e, e->end);
    }
    /* Without SACK each duplicate ACK stands for one segment that left the network (the
     * window inflation of RFC 6582 §3.2, in pipe terms). */
    if (!(c->flags & FN_TCBF_SACK)) {
        uint64_t left = (uint64_t)c->dupacks * c->snd_mss;
        pipe = left < pipe ? pipe - (uint32_t)left : 0;
    }
    return pipe;
}

/* RACK's reordering window (RFC 8985 §6.2): a quarter of the minimum RTT, at least 1 ms on
 * this link (frames of a guest link can be held back that long by a busy vCPU), widened by
 * D-SACKs that proved a retransmission needless, and never beyond the smoothed RTT (step 4;
 * at least the 1 ms floor). The bound matters: while a hole waits out the window, una stands
 * still and the data held for the guest piles up in the host socket, whose buffer stops the
 * flow after a few milliseconds at these rates; a needless retransmission costs a segment. */
static uint64_t reo_wnd(const struct fn_tcb *c) {
    uint64_t base = c->min_rtt / 4 > 1000 ? c->min_rtt / 4 : 1000;
    uint64_t w = base * (c->reo_mult ? c->reo_mult : 1);
    uint64_t cap = c->srtt > 1000 ? c->srtt : 1000;
    return w < cap ? w : cap;
}

/* RACK.xmit_ts (RFC 8985 §6.1): the newest send time among the log ranges overlapping data the
 * guest just delivered (cumulatively or by SACK). An ACK of a retransmitted range may be for
 * the original transmission: with timestamps the echo tells (TSecr older than the resend), and
 * an ACK within a minimum RTT of the resend cannot be for it (§6.1 step 2). */
static void rack_delivered(struct fn_tcp *t, struct fn_tcb *c, uint32_t start, uint32_t end, uint32_t tsecr) {
    for (uint32_t i = 0; i < c->txlog.n; i++) {
        const struct fn_txlog_ent *e = &c->txlog.e[i];
        if (!fn_seq_lt(e->start, end))
            break;
        if (!fn_seq_gt(e->end, start) || e->sacked) /* delivered before: counted then */
            continue;
        if (e->rexmit && ((tsecr && fn_seq_lt(tsecr, ts_now(e->sent))) || t->now - e->sent < c->min_rtt))
            continue;
        uint32_t hi = fn_seq_lt(e->end, end) ? e->end : end;
        if (e->sent > c->rack_xmit || (e->sent == c->rack_xmit && fn_seq_gt(hi, c->rack_end))) {
            c->rack_xmit = e->sent;
            c->rack_end = hi;
            c->rack_rtt = (uint32_t)(t->now - e->sent);
        }
    }
}

/* Enter loss recovery, remembering what an undo restores when the guest later shows the
 * retransmissions were not needed (RFC 3708, RFC 4015). `lost` is the longest run of
 * consecutive bytes just found lost, which decides the reduction. */
/* Back off for a loss episode: CUBIC's beta = 0.7 of the flight (RFC 9438 §4.6; Reno's 0.5 is
 * for shared Internet paths), and after a timeout restart from one segment (RFC 5681 eqn. 4). */
static void reduce_window(struct fn_tcp *t, struct fn_tcb *c, int timeout) {
    t->st.cwnd_reductions++;
    uint32_t reduced = (uint32_t)((uint64_t)(c->snd_max - c->snd_una) * 7 / 10);
    c->ssthresh = reduced > 2u * c->snd_mss ? reduced : 2u * c->snd_mss;
    c->cwnd = timeout ? c->snd_mss : c->ssthresh;
    c->cwnd_acc = 0;
    c->flags &= ~FN_TCBF_NOREDUCE;
}

/* RFC 5681 §3.1 growth for `acked` newly acknowledged bytes. */
static void cwnd_grow(struct fn_tcb *c, uint32_t acked) {
    if (c->cwnd < c->ssthresh) {
        c->cwnd += acked; /* slow start, byte counting (RFC 3465): stretch ACKs are common */
        return;
    }
    c->cwnd_acc += acked; /* congestion avoidance: one MSS per window of ACKed bytes */
    if (c->cwnd_acc >= c->cwnd) {
        c->cwnd_acc -= c->cwnd;
        c->cwnd += c->snd_mss;
    }
}

static void enter_recovery(struct fn_tcp *t, struct fn_tcb *c, int timeout, uint32_t lost) {
    if (!(c->flags & (FN_TCBF_RECOVERY | FN_TCBF_RTO_LOSS))) {
        c->prior_cwnd = c->cwnd;
        c->prior_ssthresh = c->ssthresh;
        c->flags |= FN_TCBF_UNDO;
        c->undo_retrans = 0;
    }
    /* How much to back off. The guest link is point to point: its only queue is the guest's
     * own receive backlog, and when that overflows it drops the tail of a burst, several
     * segments in a row. A short loss with delivered data after it is link noise (a lost or
     * corrupted frame), and shrinking the window for it only slows the transfer (Mathis: at
     * 1 % loss Reno gets ~12 segments per round trip); a big window at 1 % noise has dozens
     * of such holes, so it is the length of a run that tells, not the total. So: runs of up
     * to two segments are retransmitted with cwnd and ssthresh left as they are (and the
     * episode's end leaves them too); a longer run, found now or later in the episode, or a
     * timeout, reduce the window. */
    if (timeout || lost > 2u * c->snd_mss)
        reduce_window(t, c, timeout);
    else
        c->flags |= FN_TCBF_NOREDUCE;
    c->recover = c->snd_max;
    c->flags |= FN_TCBF_RECOVERY | FN_TCBF_RXT_FIRST;
    if (c->reo_persist && --c->reo_persist == 0)
        c->reo_mult = 1;
    if (timeout)
        c->flags |= FN_TCBF_RTO_LOSS;
    /* A probe timer armed before the loss was found counts from now: the retransmissions
     * about to leave need their round trip (and it must stay a probe, not become an RTO). */
    if (c->flags & FN_TCBF_TLP)
        rto_start(t, c);
}

/* RACK loss detection (RFC 8985 §6.2): a range sent before the newest delivered data, and
 * not delivered itself RACK.rtt plus the reordering window after it was sent, is lost. Ranges
 * not yet that old arm the reordering timer. */
static void rack_detect(struct fn_tcp *t, struct fn_tcb *c) {
    if (!(c->flags & FN_TCBF_SACK) || !c->rack_xmit)
        return;
    uint64_t wait = (uint64_t)c->rack_rtt + reo_wnd(c), next = 0;
    uint32_t lost = 0;
    for (uint32_t i = 0; i < c->txlog.n; i++) {
        struct fn_txlog_ent *e = &c->txlog.e[i];
        if (e->lost)
            continue;
        /* Sent before the delivered data: earlier, or in the same burst at a lower sequence
         * (one log entry can hold a whole burst). */
        uint32_t lim;
        if (e->sent < c->rack_xmit)
            lim = e->end;
        else if (e->sent == c->rack_xmit && fn_seq_lt(e->start, c->rack_end))
            lim = fn_seq_lt(e->end, c->rack_end) ? e->end : c->rack_end;
        else
            continue;
        uint32_t u = unsacked(c, e, lim);
        if (!u)
            continue;
        if (e->sent + wait <= t->now) {
            if (e->rexmit)
                t->st.lost_rexmits++;
            if (lim != e->end)
                fn_txlog_mark_lost(&c->txlog, e->start, lim); /* splits the entry */
            else
                e->lost = 1;
            lost += u;
        } else if (!next || e->sent + wait < next) {
            next = e->sent + wait;
        }
    }
    c->t_reo = next;
    if (next)
        timer_arm(t, c);
    if (lost) {
        /* The longest run of consecutive lost bytes (see enter_recovery). */
        uint32_t run = 0, longest = 0;
        for (uint32_t i = 0; i < c->txlog.n; i++) {
            const struct fn_txlog_ent *e = &c->txlog.e[i];
            run = e->lost ? run + unsacked(c, e, e->end) : 0;
            if (run > longest)
                longest = run;
        }
        if ((c->flags & FN_TCBF_NOREDUCE) && longest > 2u * c->snd_mss)
            reduce_window(t, c, 0); /* the episode turned out to be more than noise */
        if (!(c->flags & FN_TCBF_RECOVERY)) {
            enter_recovery(t, c, 0, longest);
            t->st.fast_rexmits++;
        }
        touch(t, c);
    }
}

/* What a retransmission timeout deems lost. Without SACK, everything outstanding (RFC 6675
 * §5.1, RFC 5681 §3.1: go back N). With SACK, RACK's rule (RFC 8985 §6.3): the first
 * un-SACKed range, sent an RTO ago, and any other range sent longer than RACK.rtt plus the
 * reordering window ago. Data sent just before the timer fired is in flight, not lost:
 * marking it too would resend a window's worth the guest mostly receives anyway, and the
 * D-SACKs for that would widen the reordering window for nothing. */
static void rto_mark_lost(struct fn_tcp *t, struct fn_tcb *c) {
    if (!(c->flags & FN_TCBF_SACK)) {
        fn_txlog_mark_lost(&c->txlog, c->snd_una, c->snd_max);
        return;
    }
    uint64_t wait = (uint64_t)(c->rack_rtt ? c->rack_rtt : c->srtt) + reo_wnd(c);
    int head = 1;
    for (uint32_t i = 0; i < c->txlog.n; i++) {
        struct fn_txlog_ent *e = &c->txlog.e[i];
        if (!unsacked(c, e, e->end))
            continue;
        if (head || e->sent + wait <= t->now)
            e->lost = 1;
        head = 0;
    }
}

static void undo_recovery(struct fn_tcp *t, struct fn_tcb *c) {
    /* RFC 3708 / RFC 4015: the loss was reordering or delay; give the window back. */
    if (c->prior_cwnd > c->cwnd)
        c->cwnd = c->prior_cwnd;
    if (c->prior_ssthresh > c->ssthresh)
        c->ssthresh = c->prior_ssthresh;
    c->flags &= ~(FN_TCBF_RECOVERY | FN_TCBF_RTO_LOSS | FN_TCBF_UNDO | FN_TCBF_RXT_FIRST | FN_TCBF_NOREDUCE);
    c->dupacks = 0;
    fn_txlog_clear_lost(&c->txlog);
    t->st.undos++;
}

/* The first byte of a lost, un-SACKed range (and how much of it is contiguous), or 0 length. */
static uint32_t next_lost(const struct fn_tcb *c, uint32_t *len) {
    for (uint32_t i = 0; i < c->txlog.n; i++) {
        const struct fn_txlog_ent *e = &c->txlog.e[i];
        if (!e->lost)
            continue;
        uint32_t seq = fn_seq_max(e->start, c->snd_una), end = e->end;
        while (i + 1 < c->txlog.n && c->txlog.e[i + 1].lost) /* lost is never SACKed */
            end = c->txlog.e[++i].end;
        *len = end - seq;
        return seq;
    }
    *len = 0;
    return 0;
}

/* While in recovery: retransmit lost ranges, then new data, as long as the pipe allows. */
static void recovery_send(struct fn_tcp *t, struct fn_tcb *c) {
    for (int k = 0; k < 64; k++) {
        /* The first lost segment goes at once, whatever the pipe (RFC 5681 §3.2 step 2,
         * RFC 6675 §5 step 4.3); the rest as the pipe drains. */
        if (pipe_bytes(c) >= c->cwnd && !(c->flags & FN_TCBF_RXT_FIRST))
            return;
        uint32_t len, seq = next_lost(c, &len);
        if (!len)
            break;
        int n = retransmit(t, c, seq, len);
        if (n <= 0)
            return;
        c->flags &= ~FN_TCBF_RXT_FIRST;
        c->undo_retrans++;
        if (fn_seq_gt(seq + (uint32_t)n, c->snd_nxt))
            c->snd_nxt = seq + (uint32_t)n;
    }
    /* Nothing lost is left to resend: new data next, within cwnd - pipe (RFC 6675 rule 2). */
    uint32_t len;
    next_lost(c, &len);
    if (!len && fn_seq_lt(c->snd_nxt, c->snd_max))
        c->snd_nxt = c->snd_max;
}

/* ------------------------------------------------------------------------------------------ */
/* guest → host data */

static int ring_alloc(struct fn_tcp *t, struct fn_tcb *c) {
    if (c->ring)
        return 0;
    c->ring = malloc(t->cfg.rx_buf);
    if (!c->ring) {
        t->st.nomem++;
        return -1;
    }
    return 0;
}

static void ring_put(struct fn_tcp *t, struct fn_tcb *c, uint32_t seq, const uint8_t *d, uint32_t n) {
    uint32_t mask = t->cfg.rx_buf - 1, at = seq & mask;
    uint32_t first = t->cfg.rx_buf - at < n ? t->cfg.rx_buf - at : n;
    memcpy(c->ring + at, d, first);
    if (n > first)
        memcpy(c->ring, d + first, n - first);
}

/* Bytes [host_seq, host_seq + n) sit in the ring; write as much as the socket takes. */
static int ring_flush(struct fn_tcp *t, struct fn_tcb *c, uint32_t n) {
    if (!n || c->fd < 0)
        return 0;
    uint32_t mask = t->cfg.rx_buf - 1, at = c->host_seq & mask;
    struct iovec iov[2];
    int cnt = 1;
    iov[0].iov_base = c->ring + at;
    iov[0].iov_len = t->cfg.rx_buf - at < n ? t->cfg.rx_buf - at : n;
    if (iov[0].iov_len < n) {
        iov[1].iov_base = c->ring;
        iov[1].iov_len = n - iov[0].iov_len;
        cnt = 2;
    }
    long w = t->ops.send(t->ops.ctx, c->fd, iov, cnt);
    t->st.host_writes++;
    if (w == -EAGAIN) {
        c->flags &= ~FN_TCBF_WRITABLE;
        return 0;
    }
    if (w < 0) {
        host_failed(t, c, (int)-w);
        return -1;
    }
    c->host_seq += (uint32_t)w;
    c->bytes_g2h += (uint64_t)w;
    if ((uint32_t)w < n) {
        c->flags &= ~FN_TCBF_WRITABLE;
        t->st.host_partial_writes++;
    }
    return 0;
}

static inline uint32_t data_end(const struct fn_tcb *c) {
    return (c->flags & FN_TCBF_GUEST_FIN) ? c->fin_seq : c->rcv_nxt;
}

/* Every guest byte received so far is in the host socket (none pending, none in the ring). A
 * clean close() before that would hand the host peer a truncated stream that looks complete. */
static inline int host_delivered(const struct fn_tcb *c) {
    return c->pend_bytes == 0 && c->host_seq == data_end(c);
}

/* Bytes waiting in the ring for the host socket: [host_seq, pend_seq or data_end). */
static inline uint32_t ring_bytes(const struct fn_tcb *c) {
    return (c->pend_bytes ? c->pend_seq : data_end(c)) - c->host_seq;
}

/* The flow's pending direct writes (iovecs into this batch's frames) go out in one sendmsg
 * when nothing older waits in the ring; what the socket does not take is copied into the
 * ring at its sequence position (the window guarantees room), where it waits for EPOLLOUT. */
static int pend_flush(struct fn_tcp *t, struct fn_tcb *c) {
    if (c->pend_head == NONE)
        return 0;
    struct iovec iov[64];
    uint32_t total = c->pend_bytes;
    uint32_t w = 0;
    if (c->fd >= 0 && (c->flags & FN_TCBF_WRITABLE) && c->host_seq == c->pend_seq) {
        uint32_t i = c->pend_head;
        while (i != NONE) {
            int cnt = 0;
            uint32_t bytes = 0;
            while (i != NONE && cnt < 64) {
                iov[cnt++] = t->pend[i].iov;
                bytes += (uint32_t)t->pend[i].iov.iov_len;
                i = t->pend[i].next;
            }
            long r = t->ops.send(t->ops.ctx, c->fd, iov, cnt);
            t->st.host_writes++;
            if (r == -EAGAIN)
                r = 0;
            if (r < 0) {
                c->pend_head = c->pend_tail = NONE;
                c->pend_bytes = 0;
                host_failed(t, c, (int)-r);
                return -1;
            }
            w += (uint32_t)r;
            if ((uint32_t)r < bytes) {
                c->flags &= ~FN_TCBF_WRITABLE;
                t->st.host_partial_writes++;
                break;
            }
        }
        c->host_seq += w;
        c->bytes_g2h += w;
    }
    if (w < total) {
        if (ring_alloc(t, c) < 0) {
            c->pend_head = c->pend_tail = NONE;
            c->pend_bytes = 0;
            host_failed(t, c, ENOMEM);
            return -1;
        }
        uint32_t skip = w, seq = c->pend_seq + w;
        for (uint32_t i = c->pend_head; i != NONE; i = t->pend[i].next) {
            uint32_t l = (uint32_t)t->pend[i].iov.iov_len;
            if (skip >= l) {
                skip -= l;
                continue;
            }
            ring_put(t, c, seq, (const uint8_t *)t->pend[i].iov.iov_base + skip, l - skip);
            seq += l - skip;
            skip = 0;
        }
    }
    c->pend_head = c->pend_tail = NONE;
    c->pend_bytes = 0;
    return 0;
}

/* Move pending direct writes into the ring without writing (order must be kept behind them). */
static int pend_spill(struct fn_tcp *t, struct fn_tcb *c) {
    uint32_t wf = c->flags & FN_TCBF_WRITABLE;
    c->flags &= ~FN_TCBF_WRITABLE;
    int r = pend_flush(t, c);
    c->flags |= wf;
    return r;
}

/* In-order payload at rcv_nxt. Zero copy when nothing waits before it; else into the ring. */
static int accept_inorder(struct fn_tcp *t, struct fn_tcb *c, const uint8_t *d, uint32_t n) {
    if (ring_bytes(c) == 0 && asm_n(c->oo) == 0) {
        if (t->npend == t->cap_pend && pend_flush(t, c) < 0)
            return -1; /* the batch's iovec table is full: write this flow's share now */
        if (t->npend < t->cap_pend && ring_bytes(c) == 0) {
            uint32_t i = t->npend++;
            t->pend[i].iov.iov_base = (void *)d;
            t->pend[i].iov.iov_len = n;
            t->pend[i].next = NONE;
            if (c->pend_tail == NONE) {
                c->pend_head = i;
                c->pend_seq = c->rcv_nxt;
            } else {
                t->pend[c->pend_tail].next = i;
            }
            c->pend_tail = i;
            c->pend_bytes += n;
            c->rcv_nxt += n;
            return 0;
        }
    }
    /* Behind ring data or next to held out-of-order data: this goes to the ring too, and
     * pending direct writes before it move there first so the order holds. */
    if (c->pend_bytes && pend_spill(t, c) < 0)
        return -1;
    if (ring_alloc(t, c) < 0)
        return -1;
    ring_put(t, c, c->rcv_nxt, d, n);
    c->rcv_nxt += n;
    if (c->oo) {
        fn_asm_advance(c->oo, n);
        c->rcv_nxt += fn_asm_remove_front(c->oo);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* input */

static void parse_syn_options(struct fn_tcp *t, struct fn_tcb *c, const struct fn_frame *f) {
    uint16_t mss = (f->flags & FN_FRAME_TCP_MSS) ? f->tcp.mss : DEFAULT_MSS;
    if (mss > t->cfg.mss)
        mss = t->cfg.mss; /* never larger than our own link allows */
    if (mss < 64)
        mss = 64;
    if (f->flags & FN_FRAME_TCP_WSCALE) {
        /* RFC 7323 §2.3: shifts above 14 are treated as 14. */
        c->snd_wscale = f->tcp.wscale > 14 ? 14 : f->tcp.wscale;
        c->rcv_wscale = our_wscale(t);
        c->flags |= FN_TCBF_WSCALE;
    } else {
        c->snd_wscale = c->rcv_wscale = 0;
    }
    c->flags &= ~(FN_TCBF_SACK | FN_TCBF_TS);
    if (f->flags & FN_FRAME_TCP_SACK_PERM)
        c->flags |= FN_TCBF_SACK;
    if (f->flags & FN_FRAME_TCP_TS) {
        c->flags |= FN_TCBF_TS;
        c->ts_recent = f->tcp.ts_val;
    }
    c->snd_mss = (uint16_t)(mss - ((c->flags & FN_TCBF_TS) ? 12 : 0));
}

static void cc_init(struct fn_tcp *t, struct fn_tcb *c) {
    c->cwnd = t->cfg.init_cwnd * c->snd_mss; /* RFC 6928 */
    c->ssthresh = UINT32_MAX / 2;            /* RFC 5681 §3.1: arbitrarily high */
}

/* RTT sample in µs (RFC 6298 §2). */
static void rtt_sample(struct fn_tcp *t, struct fn_tcb *c, uint64_t r) {
    if (r > 0x7fffffff)
        r = 0x7fffffff;
    uint32_t rtt = (uint32_t)r;
    if (!c->srtt) {
        c->srtt = rtt;
        c->rttvar = rtt / 2;
    } else {
        uint32_t d = c->srtt > rtt ? c->srtt - rtt : rtt - c->srtt;
        c->rttvar = (3 * c->rttvar + d) / 4;
        c->srtt = (7 * c->srtt + rtt) / 8;
    }
    if (!c->min_rtt || rtt < c->min_rtt)
        c->min_rtt = rtt ? (uint32_t)rtt : 1;
    uint64_t rto = (uint64_t)c->srtt + 4 * (uint64_t)c->rttvar;
    if (rto < t->cfg.rto_min)
        rto = t->cfg.rto_min;
    if (rto > t->cfg.rto_max)
        rto = t->cfg.rto_max;
    c->rto = (uint32_t)rto;
}

static void become_established(struct fn_tcp *t, struct fn_tcb *c) {
    c->state = FN_TCP_ESTABLISHED;
    c->t_rexmit = 0;
    c->retries = 0;
    c->flags |= FN_TCBF_WRITABLE | FN_TCBF_READABLE;
    if (t->cfg.idle_timeout) {
        c->t_state = t->now + t->cfg.idle_timeout;
        c->flags |= FN_TCBF_KEEPALIVE;
    }
    timer_arm(t, c);
    push_event(t, flow_id(t, idx_of(t, c)), FN_TEV_ESTABLISHED, 0);
}

/* Process an acceptable ACK field (RFC 9293 §3.10.7.4 fifth check, RFC 5681, RFC 6582). */
/* Returns -1 when the segment must be dropped (it acknowledges data never sent). */
static int process_ack(struct fn_tcp *t, struct fn_tcb *c, uint32_t ack, uint32_t seq, uint32_t win,
                       const struct fn_frame *f, uint32_t plen, uint8_t flags) {
    if (fn_seq_gt(ack, c->snd_max)) {
        /* Acknowledges something not yet sent: ACK and drop (RFC 9293 §3.10.7.4). */
        c->flags |= FN_TCBF_ACK_NOW;
        return -1;
    }
    uint32_t wnd = win << c->snd_wscale;
    /* SACK scoreboard (RFC 2018 §5): remember what the guest holds above snd_una. A first
     * block below the ACK, or inside the second block, is a D-SACK (RFC 2883 §4): it reports
     * a duplicate, i.e. one of our retransmissions was not needed. */
    int new_sack = 0;
    uint32_t tsecr = (c->flags & FN_TCBF_TS) && (f->flags & FN_FRAME_TCP_TS) ? f->tcp.ts_ecr : 0;
    if ((c->flags & FN_TCBF_SACK) && (f->flags & FN_FRAME_TCP_SACK)) {
        for (int i = 0; i < f->tcp.nsack; i++) {
            uint32_t l = f->tcp.sack[i][0], r = f->tcp.sack[i][1];
            if (i == 0 && fn_seq_lt(l, r) &&
                (fn_seq_le(r, ack) || (f->tcp.nsack > 1 && fn_seq_ge(l, f->tcp.sack[1][0]) &&
                                       fn_seq_le(r, f->tcp.sack[1][1])))) {
                t->st.dsacks_in++;
                if (fn_txlog_rxt_match(&c->txlog, l, r)) {
                    /* One of our retransmissions was needless: the reordering window was too
                     * short. Widen it once per round trip, and keep it wide for 16 recoveries
                     * (RFC 8985 §6.2 step 4). */
                    if (c->undo_retrans)
                        c->undo_retrans--;
                    if (!c->dsack_round || fn_seq_ge(c->snd_una, c->dsack_round)) {
                        c->dsack_round = c->snd_max;
                        if (c->reo_mult < 8)
                            c->reo_mult = c->reo_mult ? c->reo_mult + 1 : 2;
                    }
                    c->reo_persist = 16;
                }
                continue;
            }
            if (fn_seq_lt(l, ack))
                l = ack;
            if (fn_seq_le(r, l) || fn_seq_gt(r, c->snd_max))
                continue;
            if (fn_seq_lt(l, c->snd_una))
                continue;
            rack_delivered(t, c, l, r, tsecr); /* first: it looks only at data not yet SACKed */
            if (fn_txlog_sack(&c->txlog, l, r))
                new_sack = 1;
        }
    }
    /* Eifel detection (RFC 3522): after a timeout, an ACK echoing a timestamp older than the
     * retransmission acknowledges the original transmission: the timeout was spurious. */
    if ((c->flags & FN_TCBF_RTO_LOSS) && (c->flags & FN_TCBF_UNDO) && (f->flags & FN_FRAME_TCP_TS) &&
        f->tcp.ts_ecr && fn_seq_lt(f->tcp.ts_ecr, c->rto_tsval) && fn_seq_gt(ack, c->snd_una)) {
        undo_recovery(t, c);
        c->snd_nxt = c->snd_max; /* resume with new data (RFC 4015 §3.2) */
        c->rto = c->rto / 2 > t->cfg.rto_min ? c->rto / 2 : (uint32_t)t->cfg.rto_min;
    }
    if (fn_seq_gt(ack, c->snd_una)) {
        uint32_t acked = ack - c->snd_una;
        /* RTT (RFC 7323 §4.1 with timestamps; RFC 6298 §3 Karn timing otherwise). */
        if ((c->flags & FN_TCBF_TS) && (f->flags & FN_FRAME_TCP_TS) && f->tcp.ts_ecr)
            rtt_sample(t, c, (uint64_t)(uint32_t)(ts_now(t->now) - f->tcp.ts_ecr) * TS_TICK + TS_TICK / 2);
        else if (c->rtt_time && fn_seq_gt(ack, c->rtt_seq)) {
            rtt_sample(t, c, t->now - c->rtt_time);
            c->rtt_time = 0;
        }
        rack_delivered(t, c, c->snd_una, ack, tsecr);
        fn_txlog_acked(&c->txlog, ack);
        /* The cumulative ACK stopped at (or inside) data the guest had SACKed: it dropped
         * that data again (reneging, RFC 2018 §8: Linux prunes its out-of-order queue under
         * memory pressure). Forget every SACK; RACK then finds what is missing instead of the
         * scoreboard hiding it until a timeout. */
        if (c->txlog.n && c->txlog.e[0].sacked) {
            fn_txlog_clear_sacked(&c->txlog);
            t->st.reneged++;
        }
        c->snd_una = ack;
        if (fn_seq_lt(c->snd_nxt, ack))
            c->snd_nxt = ack;
        c->retries = 0;
        c->probes = 0;
        c->dupacks = 0;
        /* Congestion control. */
        if (c->flags & FN_TCBF_RECOVERY) {
            if (fn_seq_ge(ack, c->recover)) {
                /* The episode is over (RFC 6675 §5 step C, RFC 6582 §3.2 step 3). When the
                 * guest reported every retransmission as a duplicate, none was needed: undo. */
                int undo = (c->flags & FN_TCBF_UNDO) && c->undo_retrans == 0 && !(c->flags & FN_TCBF_RTO_LOSS);
                c->flags &= ~(FN_TCBF_RECOVERY | FN_TCBF_RTO_LOSS | FN_TCBF_RXT_FIRST);
                if (undo) {
                    undo_recovery(t, c);
                    /* Reordering, not loss, set off that fast retransmit: wait for more
                     * duplicate ACKs next time (Linux raises its reordering degree alike). */
                    if (c->dupthresh < 8)
                        c->dupthresh++;
                }
                else if (!(c->flags & FN_TCBF_NOREDUCE) && c->cwnd > c->ssthresh)
                    c->cwnd = c->ssthresh; /* below it (slow start after a timeout) it goes on growing */
                c->flags &= ~(FN_TCBF_UNDO | FN_TCBF_NOREDUCE);
                /* Data sent during the episode and found lost in it starts the next one. */
                uint32_t len;
                next_lost(c, &len);
                if (len && !undo)
                    enter_recovery(t, c, 0, len);
            } else {
                if (c->flags & FN_TCBF_RTO_LOSS)
                    c->cwnd += acked < c->snd_mss ? acked : c->snd_mss; /* slow start after a timeout */
                else if (c->flags & FN_TCBF_NOREDUCE)
                    cwnd_grow(c, acked); /* noise, not congestion: the window grows on as before */
                /* NewReno partial ACK (RFC 6582 §3.2 step 4): without SACK, the segment at the
                 * new snd_una is lost too. */
                if (!(c->flags & FN_TCBF_SACK))
                    fn_txlog_mark_lost(&c->txlog, ack, ack + c->snd_mss);
            }
        } else {
            cwnd_grow(c, acked);
        }
        /* RFC 6298 §5.2/5.3: stop the timer when all is acknowledged, else restart it. */
        c->flags &= ~(FN_TCBF_PROBING | FN_TCBF_TLP | FN_TCBF_TLP_SENT);
        if (c->snd_una == c->snd_max)
            c->t_rexmit = 0;
        else
            rto_start(t, c);
        touch(t, c);
    } else if (ack == c->snd_una && c->snd_una != c->snd_max && plen == 0 &&
               !(flags & (FN_TCP_SYN | FN_TCP_FIN)) && (wnd == c->snd_wnd || new_sack)) {
        /* A duplicate ACK (RFC 5681 §2; one carrying new SACK information counts too). */
        c->dupacks++;
        touch(t, c);
    }
    /* Loss detection. With SACK, by time (RACK, RFC 8985 §6.2): data sent after a hole was
     * delivered, so the hole is lost unless it is merely late. On this link reordering is far
     * more common than loss and a duplicate-ACK count cannot tell them apart, while a small
     * window or a tail loss never produces enough duplicates; time also finds a lost
     * retransmission, which no count of duplicates does. Without SACK, RFC 5681's duplicate
     * ACK threshold. */
    if (c->snd_una != c->snd_max) {
        if (c->flags & FN_TCBF_SACK) {
            if (c->txlog.sacked || (c->flags & FN_TCBF_RECOVERY))
                rack_detect(t, c);
        } else if (!(c->flags & FN_TCBF_RECOVERY) && c->dupacks >= c->dupthresh) {
            fn_txlog_mark_lost(&c->txlog, c->snd_una, c->snd_una + c->snd_mss);
            enter_recovery(t, c, 0, c->snd_mss);
            t->st.fast_rexmits++;
            touch(t, c);
        }
    }
    /* Window update (RFC 9293 §3.10.7.4): only from a segment newer than the last update. */
    if (fn_seq_lt(c->snd_wl1, seq) || (c->snd_wl1 == seq && fn_seq_le(c->snd_wl2, ack))) {
        if (wnd > c->snd_wnd)
            touch(t, c);
        c->snd_wnd = wnd;
        c->snd_wl1 = seq;
        c->snd_wl2 = ack;
    }
    return 0;
}

/* TIME-WAIT only absorbs retransmitted FINs: the host socket has nothing left to do. */
static void enter_time_wait(struct fn_tcp *t, struct fn_tcb *c) {
    c->state = FN_TCP_TIME_WAIT;
    c->flags &= ~FN_TCBF_KEEPALIVE;
    c->t_rexmit = 0;
    c->t_state = t->now + t->cfg.time_wait;
    if (c->fd >= 0 && host_delivered(c)) {
        consume_acked(t, c); /* before close(), see consume_acked() */
        t->ops.close(t->ops.ctx, c->fd, 0);
        c->fd = -1;
    } else if (c->fd >= 0) {
        /* The host has yet to take the guest's last bytes: flush_flow() closes the socket once
         * it did and starts the 2 MSL then; until then the FIN timeout bounds the wait. */
        c->t_state = t->now + t->cfg.fin_timeout;
    }
    timer_arm(t, c);
}

static void guest_fin(struct fn_tcp *t, struct fn_tcb *c) {
    c->fin_seq = c->rcv_nxt;
    c->rcv_nxt++;
    c->flags |= FN_TCBF_GUEST_FIN | FN_TCBF_ACK_NOW;
    c->flags &= ~FN_TCBF_FIN_OOO;
    switch (c->state) {
    case FN_TCP_SYN_RECEIVED:
    case FN_TCP_ESTABLISHED:
        c->state = FN_TCP_CLOSE_WAIT;
        break;
    case FN_TCP_FIN_WAIT_1:
        /* Our FIN not yet acknowledged: simultaneous close (RFC 9293 §3.6 case 3). */
        c->state = FN_TCP_CLOSING;
        break;
    case FN_TCP_FIN_WAIT_2:
        enter_time_wait(t, c);
        break;
    default:
        break;
    }
}

/* A guest SYN for a new connection. `reuse` is a TIME-WAIT TCB of the same 4-tuple, taken
 * over in place (its previous occupant is reported closed). */
static void new_guest_flow(struct fn_tcp *t, const uint8_t *p, const struct fn_frame *f, const struct fn_flowkey *k,
                           struct fn_tcb *reuse) {
    const uint8_t *th = p + f->l4_off;
    struct fn_tcb *c = reuse;
    if (c) {
        push_event(t, flow_id(t, idx_of(t, c)), FN_TEV_CLOSED, 0);
        if (c->fd >= 0)
            t->ops.close(t->ops.ctx, c->fd, !host_delivered(c)); /* never a silent truncation */
        tcb_reinit(t, c, k);
    } else {
        c = flow_alloc(t, k);
    }
    if (!c) {
        send_rst_for(t, p, f); /* table full: refuse rather than stay silent */
        return;
    }
    memcpy(c->guest_mac, p + FN_ETH_OFF_SRC, 6);
    c->state = FN_TCP_CONNECTING;
    c->irs = fn_ld_be32(th + FN_TCP_OFF_SEQ);
    c->rcv_nxt = c->host_seq = c->rcv_adv = c->irs + 1;
    c->snd_wnd = fn_ld_be16(th + FN_TCP_OFF_WIN); /* never scaled in a SYN */
    parse_syn_options(t, c, f);
    c->last_rx = t->now;
    c->t_rexmit = t->now + t->cfg.connect_timeout;
    timer_arm(t, c);
    push_event(t, flow_id(t, idx_of(t, c)), FN_TEV_NEW_FLOW, 0);
}

/* Our FIN acknowledged: FIN-WAIT-1 → FIN-WAIT-2, CLOSING → TIME-WAIT, LAST-ACK → closed
 * (RFC 9293 §3.6). Returns 1 when the flow is done with the segment. */
static int fin_acked(struct fn_tcp *t, struct fn_tcb *c) {
    uint64_t now = t->now;
    if ((c->flags & FN_TCBF_FIN_SENT) && fn_seq_gt(c->snd_una, c->host_fin_seq)) {
        switch (c->state) {
        case FN_TCP_FIN_WAIT_1:
            c->state = FN_TCP_FIN_WAIT_2;
            c->flags &= ~FN_TCBF_KEEPALIVE;
            c->t_state = now + t->cfg.fin_timeout; /* the guest may never close: bounded */
            timer_arm(t, c);
            break;
        case FN_TCP_CLOSING:
            enter_time_wait(t, c);
            break;
        case FN_TCP_LAST_ACK:
            /* Both directions done with the guest (RFC 9293 §3.6). The host socket is closed
             * once the guest's last bytes are in it (flush_flow), within the FIN timeout. */
            if (c->fd < 0 || host_delivered(c)) {
                flow_close(t, c, 0, 0);
                return 1;
            }
            if (!c->t_state || c->t_state > now + t->cfg.fin_timeout)
                c->t_state = now + t->cfg.fin_timeout; /* set once: later ACKs do not extend it */
            timer_arm(t, c);
            touch(t, c);
            return 1;
        default:
            break;
        }
    }
    return 0;
}

int fn_tcp_input(struct fn_tcp *t, const uint8_t *p, const struct fn_frame *f, int csum_ok, uint64_t now) {
    set_now(t, now);
    t->st.segs_in++;
    if (f->kind != FN_KIND_TCP4)
        return -1;
    if (!csum_ok && t->cfg.rx_csum_verify &&
        (fn_ipv4_verify(p + f->l3_off) != FN_OK || fn_l4_verify(p, f) != FN_OK)) {
        t->st.bad_csum++; /* a corrupted segment is dropped, never delivered (RFC 9293 §3.1) */
        return -1;
    }
    const uint8_t *ip = p + f->l3_off, *th = p + f->l4_off;
    uint8_t flags = th[FN_TCP_OFF_FLAGS];
    uint32_t seq = fn_ld_be32(th + FN_TCP_OFF_SEQ), ack = fn_ld_be32(th + FN_TCP_OFF_ACK);
    uint32_t win = fn_ld_be16(th + FN_TCP_OFF_WIN);
    const uint8_t *data = p + f->payload_off;
    uint32_t plen = f->payload_len;
    t->st.bytes_in += plen;

    struct fn_flowkey k;
    fn_flowkey_v4(&k, FN_IPPROTO_TCP, ip + FN_IPV4_OFF_SRC, fn_ld_be16(th), ip + FN_IPV4_OFF_DST, fn_ld_be16(th + 2));
    uint32_t idx = fn_flowtab_find(&t->tab, &k, key_of, t);
    if (idx == NONE) {
        if (flags & FN_TCP_RST)
            return 0; /* RFC 9293 §3.10.7.1: an RST to nothing is discarded */
        if ((flags & (FN_TCP_SYN | FN_TCP_ACK | FN_TCP_FIN)) == FN_TCP_SYN) {
            new_guest_flow(t, p, f, &k, NULL);
            return 0;
        }
        t->st.no_flow++;
        send_rst_for(t, p, f);
        return 0;
    }
    struct fn_tcb *c = &t->tcb[idx];
    if (c->flags & FN_TCBF_CLOSE)
        return 0;
    c->last_rx = now;
    if (c->flags & FN_TCBF_KEEPALIVE) {
        c->t_state = now + t->cfg.idle_timeout;
        c->probes = 0;
        timer_arm(t, c); /* may be earlier than a pending probe (idle_timeout < 75 s) */
    } else if (c->state == FN_TCP_FIN_WAIT_2) {
        /* Half-closed is not dead: the guest may send for as long as it likes (RFC 9293 has
         * no FIN-WAIT-2 limit); the bound is on its silence. */
        c->t_state = now + t->cfg.fin_timeout;
    }

    switch (c->state) {
    case FN_TCP_CONNECTING:
        if ((flags & FN_TCP_SYN) && seq == c->irs)
            t->st.syn_absorbed++; /* the guest retransmits while the host connect runs */
        else if ((flags & FN_TCP_RST) && seq == c->irs + 1)
            flow_close(t, c, FN_CLOSE_GUEST_RST, 1); /* the guest gave up */
        return 0;

    case FN_TCP_SYN_SENT: /* RFC 9293 §3.10.7.3 */
        if ((flags & FN_TCP_ACK) && ack != c->iss + 1) {
            if (!(flags & FN_TCP_RST))
                send_rst_for(t, p, f);
            return 0;
        }
        if (flags & FN_TCP_RST) {
            if (flags & FN_TCP_ACK) {
                t->st.rst_in++;
                flow_close(t, c, FN_CLOSE_GUEST_RST, 1); /* the host client gets a reset */
            }
            return 0;
        }
        if (!(flags & FN_TCP_SYN))
            return 0;
        c->irs = seq;
        c->rcv_nxt = c->host_seq = c->rcv_adv = seq + 1;
        parse_syn_options(t, c, f);
        c->snd_wnd = win; /* unscaled in a SYN */
        c->snd_wl1 = seq;
        c->snd_wl2 = ack;
        cc_init(t, c);
        if (flags & FN_TCP_ACK) {
            c->snd_una = c->snd_nxt = c->snd_max = ack;
            c->consumed = ack;
            c->t_rexmit = 0;
            if (c->rtt_time) {
                rtt_sample(t, c, now - c->rtt_time);
                c->rtt_time = 0;
            }
            become_established(t, c);
            c->flags |= FN_TCBF_ACK_NOW;
        } else {
            c->state = FN_TCP_SYN_RECEIVED; /* simultaneous open (RFC 9293 §3.5) */
            send_ctl(t, c, c->iss, FN_TCP_SYN | FN_TCP_ACK);
        }
        touch(t, c);
        return 0;

    default:
        break;
    }

    /* RFC 7323 §5.3 PAWS: drop a segment whose timestamp is older than TS.Recent — with a
     * tolerance of PAWS_WINDOW ticks. PAWS exists to reject segments from a wrapped sequence
     * space, which are at least 2^31 bytes old (0.9 s even at 20 Gbit/s); a segment merely
     * reordered behind the guest's own later ACKs is a few ms old and must not be lost (Linux
     * allows one tick, too little for a reordering link). */
    int has_ts = (c->flags & FN_TCBF_TS) && (f->flags & FN_FRAME_TCP_TS);
    if (has_ts && !(flags & FN_TCP_RST) && fn_seq_lt(f->tcp.ts_val + PAWS_WINDOW, c->ts_recent)) {
        c->flags |= FN_TCBF_ACK_NOW;
        t->st.bad_seq++;
        touch(t, c);
        return 0;
    }

    /* First check: sequence acceptability (RFC 9293 §3.10.7.4 table). */
    /* The window is what the ring can hold beyond the bytes the host has not taken; we never
     * advertise more, and accept up to it even when the last advertisement said less. */
    uint32_t cap_right = c->host_seq + t->cfg.rx_buf;
    uint32_t wnd = fn_seq_gt(cap_right, c->rcv_nxt) ? cap_right - c->rcv_nxt : 0;
    uint32_t slen = plen + !!(flags & FN_TCP_SYN) + !!(flags & FN_TCP_FIN);
    int ok;
    if (slen == 0)
        ok = wnd == 0 ? seq == c->rcv_nxt : fn_seq_in(seq, c->rcv_nxt, c->rcv_nxt + wnd) || seq == c->rcv_nxt;
    else if (wnd == 0)
        ok = 0;
    else
        ok = fn_seq_in(seq, c->rcv_nxt, c->rcv_nxt + wnd) || fn_seq_in(seq + slen - 1, c->rcv_nxt, c->rcv_nxt + wnd);
    if (!ok && c->state == FN_TCP_SYN_RECEIVED && (flags & FN_TCP_SYN) && !(flags & (FN_TCP_ACK | FN_TCP_RST)) &&
        seq == c->irs) {
        /* The guest retransmits its SYN: our SYN-ACK was lost. Send it again at once (the SYN
         * is below RCV.NXT, so this is decided before the generic answer to an unacceptable
         * segment, a bare ACK that the guest in SYN-SENT drops). Karn: no RTT sample now. */
        c->rtt_time = 0;
        send_ctl(t, c, c->iss, FN_TCP_SYN | FN_TCP_ACK);
        return 0;
    }
    if (!ok && c->state == FN_TCP_TIME_WAIT && (flags & FN_TCP_SYN) && !(flags & FN_TCP_ACK)) {
        /* A new connection reusing the 4-tuple (RFC 9293 §3.10.7.4, RFC 6191): start afresh. */
        new_guest_flow(t, p, f, &k, c);
        return 0;
    }
    /* RFC 7323 §4.3: TS.Recent follows any segment at or below the left edge, old duplicates
     * included (PAWS has already rejected older timestamps). Otherwise the duplicate ACK we
     * send echoes a stale TSval, and the guest measures a round trip of seconds. */
    if (has_ts && !(flags & FN_TCP_RST) && fn_seq_le(seq, c->rcv_nxt) && fn_seq_ge(f->tcp.ts_val, c->ts_recent))
        c->ts_recent = f->tcp.ts_val;
    if (!ok && plen && !(flags & FN_TCP_RST) && fn_seq_le(seq + plen, c->rcv_nxt) &&
        fn_seq_gt(seq + plen, c->rcv_nxt - t->cfg.rx_buf)) {
        c->dsack_l = seq; /* an old duplicate: D-SACK it (RFC 2883 §4 case 1) */
        c->dsack_r = seq + plen;
        c->flags |= FN_TCBF_DSACK;
    }
    if (!ok) {
        if (!(flags & FN_TCP_RST)) {
            c->flags |= FN_TCBF_ACK_NOW; /* RFC 9293: an unacceptable segment gets an ACK */
            t->st.dup_segs++;
            /* The ACK field may still carry news (a window update after a zero window, RFC
             * 9293 §3.10.7.4 "special allowance ... to accept valid ACKs"). Not before the
             * handshake completed: SYN-RECEIVED is left only through an acceptable ACK. */
            if ((flags & FN_TCP_ACK) && c->state != FN_TCP_SYN_RECEIVED) {
                process_ack(t, c, ack, seq, win, f, 0, flags);
                /* A retransmitted FIN may carry the ACK of ours: the state must follow. */
                if (fin_acked(t, c))
                    return 0;
            }
            if (c->state == FN_TCP_TIME_WAIT && (flags & FN_TCP_FIN) && c->fd < 0) {
                /* A retransmission of the guest's FIN (it sits below RCV.NXT): acknowledge it
                 * and restart the 2 MSL timeout (RFC 9293 §3.10.7.4, TIME-WAIT). */
                c->t_state = now + t->cfg.time_wait;
                timer_arm(t, c);
            }
            touch(t, c);
        }
        return 0;
    }

    /* Second check: RST (RFC 5961 §3.2). */
    if (flags & FN_TCP_RST) {
        if (seq == c->rcv_nxt) {
            t->st.rst_in++;
            if ((c->flags & FN_TCBF_GUEST_FIN) && c->fd >= 0 && !host_delivered(c)) {
                /* The guest's stream had ended (its FIN is in) and we acknowledged every byte
                 * of it: the reset only concerns our direction. Those bytes still go to the
                 * host, then the socket closes cleanly (TIME-WAIT does both, bounded). */
                c->close_err = FN_CLOSE_GUEST_RST;
                enter_time_wait(t, c);
                touch(t, c);
            } else {
                flow_close(t, c, FN_CLOSE_GUEST_RST, 1);
            }
        } else {
            t->st.challenge_acks++;
            c->flags |= FN_TCBF_ACK_NOW;
            touch(t, c);
        }
        return 0;
    }

    /* Fourth check: SYN in a synchronized state gets a challenge ACK (RFC 5961 §4.2). */
    if (flags & FN_TCP_SYN) {
        t->st.challenge_acks++;
        c->flags |= FN_TCBF_ACK_NOW;
        touch(t, c);
        return 0;
    }

    /* Fifth check: ACK. */
    if (!(flags & FN_TCP_ACK))
        return 0;
    if (c->state == FN_TCP_SYN_RECEIVED) {
        if (!(fn_seq_gt(ack, c->snd_una) && fn_seq_le(ack, c->snd_max))) {
            send_rst_for(t, p, f);
            return 0;
        }
        c->snd_una = c->snd_nxt = ack;
        c->consumed = ack;
        c->snd_wnd = win << c->snd_wscale;
        c->snd_wl1 = seq;
        c->snd_wl2 = ack;
        if (c->rtt_time) {
            rtt_sample(t, c, now - c->rtt_time);
            c->rtt_time = 0;
        }
        cc_init(t, c);
        become_established(t, c);
        touch(t, c);
    } else if (process_ack(t, c, ack, seq, win, f, plen, flags) < 0) {
        /* "send an ACK, drop the segment, and return" (RFC 9293 §3.10.7.4, RFC 5961 §5.2):
         * neither its data nor its FIN may be taken. */
        touch(t, c);
        return 0;
    }
    if (fin_acked(t, c))
        return 0;
    if (c->state == FN_TCP_TIME_WAIT) {
        if (flags & FN_TCP_FIN) {
            c->flags |= FN_TCBF_ACK_NOW; /* a retransmitted FIN: ACK it, restart 2MSL */
            c->t_state = now + t->cfg.time_wait;
            timer_arm(t, c);
            touch(t, c);
        }
        return 0;
    }

    /* Seventh check: segment text (ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2). */
    int can_receive = c->state == FN_TCP_ESTABLISHED || c->state == FN_TCP_FIN_WAIT_1 ||
                      c->state == FN_TCP_FIN_WAIT_2;
    int dup_acked = 0; /* the immediate duplicate ACK for out-of-order data went out */
    if (plen && can_receive && !(c->flags & FN_TCBF_GUEST_FIN)) {
        uint32_t s = seq;
        if (fn_seq_lt(s, c->rcv_nxt)) { /* trim what we already have */
            uint32_t skip = c->rcv_nxt - s;
            /* Report the duplicated part (RFC 2883 §4 case 1), so the guest can tell a
             * needless retransmission and undo its window reduction. */
            c->dsack_l = s;
            c->dsack_r = skip >= plen ? s + plen : c->rcv_nxt;
            c->flags |= FN_TCBF_DSACK;
            if (skip >= plen) {
                plen = 0;
                t->st.dup_segs++;
            } else {
                data += skip;
                plen -= skip;
                s = c->rcv_nxt;
            }
            c->flags |= FN_TCBF_ACK_NOW;
        }
        if (plen && fn_seq_gt(s + plen, cap_right)) { /* trim beyond the window */
            plen = fn_seq_gt(cap_right, s) ? cap_right - s : 0;
            c->flags |= FN_TCBF_ACK_NOW;
        }
        if (plen && s == c->rcv_nxt) {
            if (accept_inorder(t, c, data, plen) < 0)
                return 0;
            if (asm_n(c->oo) == 0 && (c->flags & FN_TCBF_FIN_OOO) && c->rcv_nxt == c->fin_seq)
                guest_fin(t, c);
        } else if (plen) {
            /* Out of order: keep it (RFC 9293 §3.10.7.4 "segments with higher beginning
             * sequence numbers SHOULD be held"), SACK it, and ACK at once (RFC 5681 §4.2). */
            t->st.ooo_segs++;
            if (c->oo && fn_asm_contains(c->oo, s - c->rcv_nxt, plen)) {
                /* All of it is held already: a duplicate (RFC 2883 §4 case 2, D-SACK). */
                c->dsack_l = s;
                c->dsack_r = s + plen;
                c->flags |= FN_TCBF_DSACK;
            } else if (ring_alloc(t, c) == 0 && asm_get(&c->oo) && fn_asm_add(c->oo, s - c->rcv_nxt, plen) == 0) {
                ring_put(t, c, s, data, plen);
                sack_touched(c, s);
            } else
                t->st.ooo_dropped++;
            c->flags |= FN_TCBF_ACK_NOW;
            /* Without SACK the guest counts duplicate ACKs (RFC 5681 §3.2): one per segment,
             * at once. With SACK one ACK at the end of the batch says it all, microseconds
             * later (Linux's GRO coalesces alike), and a frame merely reordered within the
             * batch never looks like a hole to the guest's loss detection. */
            if (!(c->flags & FN_TCBF_SACK))
                dup_acked = send_ctl(t, c, c->snd_nxt, FN_TCP_ACK) == 0;
        }
        if (plen && !dup_acked)
            c->flags |= FN_TCBF_ACK_NOW;
    }
    /* Eighth check: FIN. */
    if ((flags & FN_TCP_FIN) && !(c->flags & FN_TCBF_GUEST_FIN) && c->state != FN_TCP_CLOSE_WAIT &&
        c->state != FN_TCP_LAST_ACK && c->state != FN_TCP_CLOSING) {
        uint32_t fseq = seq + f->payload_len;
        if (fseq == c->rcv_nxt)
            guest_fin(t, c);
        else if (fn_seq_gt(fseq, c->rcv_nxt)) {
            c->flags |= FN_TCBF_FIN_OOO; /* processed when the data before it arrives */
            c->fin_seq = fseq;
        }
        if (!dup_acked)
            c->flags |= FN_TCBF_ACK_NOW;
    }
    touch(t, c);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* host side */

static void host_failed(struct fn_tcp *t, struct fn_tcb *c, int err) {
    /* The host connection broke: the guest gets an RST (never a silent stall). */
    if (c->flags & FN_TCBF_CLOSE)
        return;
    if (synchronized(c->state) || c->state == FN_TCP_SYN_RECEIVED)
        send_ctl(t, c, c->snd_max, FN_TCP_RST | FN_TCP_ACK);
    flow_close(t, c, err, 1);
}

static void connect_done(struct fn_tcp *t, struct fn_tcb *c) {
    int err = t->ops.error(t->ops.ctx, c->fd);
    if (err) {
        int how = FN_REFUSE_RST;
        if (err == ENETUNREACH)
            how = FN_REFUSE_NET_UNREACH;
        else if (err == EHOSTUNREACH)
            how = FN_REFUSE_HOST_UNREACH;
        fn_tcp_refuse(t, flow_id(t, idx_of(t, c)), how, t->now);
        c->close_err = err;
        return;
    }
    /* The host said yes: now the guest gets its SYN-ACK (RFC 9293 §3.5 from our side). */
    c->flags |= FN_TCBF_CONNECTED;
    c->iss = isn_for(t, &c->key, t->now);
    c->snd_una = c->snd_nxt = c->iss;
    c->snd_max = c->iss + 1;
    c->consumed = c->iss + 1;
    c->state = FN_TCP_SYN_RECEIVED;
    c->rtt_time = t->now;
    c->rtt_seq = c->iss;
    if (send_ctl(t, c, c->iss, FN_TCP_SYN | FN_TCP_ACK) < 0)
        block(t, c);
    c->snd_nxt = c->iss + 1;
    c->t_rexmit = t->now + c->rto;
    timer_arm(t, c);
}

int fn_tcp_attach(struct fn_tcp *t, uint64_t flow, int fd, uint64_t now) {
    set_now(t, now);
    struct fn_tcb *c = by_id(t, flow);
    if (!c || c->state != FN_TCP_CONNECTING || c->fd >= 0)
        return -1;
    c->fd = fd;
    if (t->ops.watch(t->ops.ctx, fd, flow) < 0) {
        c->fd = -1;
        return -1;
    }
    return 0;
}

int fn_tcp_refuse(struct fn_tcp *t, uint64_t flow, int how, uint64_t now) {
    set_now(t, now);
    struct fn_tcb *c = by_id(t, flow);
    if (!c || c->state != FN_TCP_CONNECTING || (c->flags & FN_TCBF_CLOSE))
        return -1;
    switch (how) {
    case FN_REFUSE_RST: /* RFC 9293: <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK> */
        send_ctl(t, c, 0, FN_TCP_RST | FN_TCP_ACK);
        break;
    case FN_REFUSE_NET_UNREACH:
        send_unreach(t, c, 0);
        break;
    case FN_REFUSE_HOST_UNREACH:
        send_unreach(t, c, 1);
        break;
    case FN_REFUSE_PORT_UNREACH:
        send_unreach(t, c, 3);
        break;
    case FN_REFUSE_ADMIN:
        send_unreach(t, c, 13);
        break;
    default:
        break;
    }
    t->st.refused++;
    flow_close(t, c, FN_CLOSE_REFUSED, 1);
    return 0;
}

uint64_t fn_tcp_open(struct fn_tcp *t, const uint8_t guest_mac[6], const uint8_t guest_ip[4], uint16_t guest_port,
                     const uint8_t remote_ip[4], uint16_t remote_port, int fd, uint64_t now) {
    set_now(t, now);
    struct fn_flowkey k;
    fn_flowkey_v4(&k, FN_IPPROTO_TCP, guest_ip, guest_port, remote_ip, remote_port);
    if (fn_flowtab_find(&t->tab, &k, key_of, t) != NONE)
        return 0;
    struct fn_tcb *c = flow_alloc(t, &k);
    if (!c)
        return 0;
    uint64_t id = flow_id(t, idx_of(t, c));
    memcpy(c->guest_mac, guest_mac, 6);
    c->fd = fd;
    if (t->ops.watch(t->ops.ctx, fd, id) < 0) {
        c->fd = -1;
        flow_close(t, c, EBADF, 0); /* freed at the next flush */
        return 0;
    }
    c->flags |= FN_TCBF_ACTIVE | FN_TCBF_CONNECTED;
    c->snd_mss = t->cfg.mss;
    c->state = FN_TCP_SYN_SENT;
    c->iss = isn_for(t, &k, now);
    c->snd_una = c->iss;
    c->snd_nxt = c->snd_max = c->iss + 1;
    c->rtt_time = now;
    c->rtt_seq = c->iss;
    c->last_rx = now;
    c->rcv_nxt = c->host_seq = c->rcv_adv = 0;
    if (send_ctl(t, c, c->iss, FN_TCP_SYN) < 0)
        block(t, c);
    c->t_rexmit = now + c->rto;
    c->t_state = now + t->cfg.syn_timeout;
    timer_arm(t, c);
    return id;
}

int fn_tcp_close(struct fn_tcp *t, uint64_t flow, int abort_, uint64_t now) {
    set_now(t, now);
    struct fn_tcb *c = by_id(t, flow);
    if (!c || (c->flags & FN_TCBF_CLOSE))
        return -1;
    if (abort_ || !synchronized(c->state)) {
        if (synchronized(c->state) || c->state == FN_TCP_SYN_RECEIVED)
            send_ctl(t, c, c->snd_max, FN_TCP_RST | FN_TCP_ACK);
        else if (c->state == FN_TCP_CONNECTING)
            send_ctl(t, c, 0, FN_TCP_RST | FN_TCP_ACK);
        flow_close(t, c, FN_CLOSE_ADMIN, 1);
        return 0;
    }
    /* A clean close: stop reading the host, FIN after what was already sent. */
    if (!(c->flags & FN_TCBF_HOST_EOF)) {
        c->flags |= FN_TCBF_HOST_EOF;
        c->host_fin_seq = c->snd_max;
        if (c->flags & FN_TCBF_FIN_SENT)
            c->host_fin_seq--;
    }
    touch(t, c);
    return 0;
}

void fn_tcp_host_event(struct fn_tcp *t, uint64_t flow, uint32_t ev, uint64_t now) {
    set_now(t, now);
    struct fn_tcb *c = by_id(t, flow);
    if (!c || (c->flags & FN_TCBF_CLOSE) || c->fd < 0)
        return;
    if (c->state == FN_TCP_CONNECTING) {
        if (ev & (FN_HEV_OUT | FN_HEV_ERR | FN_HEV_HUP))
            connect_done(t, c);
        touch(t, c);
        /* The event that completes the connect may also say the host peer already wrote and
         * shut down (edge-triggered epoll says so once): keep that, or its FIN is never seen. */
        if (c->state == FN_TCP_CONNECTING || (c->flags & FN_TCBF_CLOSE) || c->fd < 0)
            return;
        ev &= ~FN_HEV_ERR; /* connect_done() consumed the socket error */
    }
    if (ev & (FN_HEV_IN | FN_HEV_RDHUP | FN_HEV_HUP))
        c->flags |= FN_TCBF_READABLE;
    if (ev & (FN_HEV_RDHUP | FN_HEV_HUP))
        c->flags |= FN_TCBF_HOST_RDHUP;
    if (ev & FN_HEV_OUT)
        c->flags |= FN_TCBF_WRITABLE;
    if (ev & FN_HEV_ERR) {
        int err = t->ops.error(t->ops.ctx, c->fd);
        if (err) {
            host_failed(t, c, err);
            return;
        }
    }
    touch(t, c);
}

/* ------------------------------------------------------------------------------------------ */
/* end of batch */

static void flush_flow(struct fn_tcp *t, struct fn_tcb *c) {
    if (c->flags & FN_TCBF_CLOSE)
        return;
    /* 1. Guest data to the host: ring first (it is older), then this batch's direct writes. */
    if (c->fd >= 0 && synchronized(c->state)) {
        uint32_t rb = ring_bytes(c);
        if (rb && (c->flags & FN_TCBF_WRITABLE) && ring_flush(t, c, rb) < 0)
            return;
        if (c->pend_bytes && pend_flush(t, c) < 0)
            return;
        /* Free an empty ring: idle flows cost no buffer. */
        if (c->ring && c->host_seq == data_end(c) && asm_n(c->oo) == 0) {
            free(c->ring);
            c->ring = NULL;
        }
        /* The window opened by at least min(buffer/2, MSS) since we last said: tell the guest
         * (RFC 9293 §3.8.6.2.2, receiver-side SWS avoidance). */
        uint32_t right = c->host_seq + t->cfg.rx_buf;
        uint32_t step = t->cfg.rx_buf / 2 < t->cfg.mss ? t->cfg.rx_buf / 2 : t->cfg.mss;
        /* After the guest's FIN no more data can come: a window update would only reach a
         * peer that may be gone (and draw an RST). */
        if (fn_seq_ge(right, c->rcv_adv + step) && fn_seq_lt(c->rcv_adv, c->rcv_nxt + step) &&
            !(c->flags & FN_TCBF_GUEST_FIN))
            c->flags |= FN_TCBF_WND_UPDATE;
        /* 2. Guest FIN reaches the host once every byte before it did. */
        if ((c->flags & FN_TCBF_GUEST_FIN) && !(c->flags & FN_TCBF_HOST_SHUT) && c->host_seq == c->fin_seq) {
            t->ops.shutdown_wr(t->ops.ctx, c->fd);
            c->flags |= FN_TCBF_HOST_SHUT;
        }
        /* 3. Drop what the guest acknowledged from the host socket. */
        int r = consume_acked(t, c);
        if (r < 0) {
            host_failed(t, c, -r);
            return;
        }
        /* In TIME-WAIT both directions are done: once the guest's last bytes reached the host
         * socket, close it (cleanly), as enter_time_wait() does when nothing was pending. */
        if (c->state == FN_TCP_TIME_WAIT && host_delivered(c)) {
            t->ops.close(t->ops.ctx, c->fd, 0);
            c->fd = -1;
            c->t_state = t->now + t->cfg.time_wait;
            timer_arm(t, c);
        }
        /* LAST-ACK with our FIN acknowledged was only waiting for the same. */
        if (c->state == FN_TCP_LAST_ACK && (c->flags & FN_TCBF_FIN_SENT) &&
            fn_seq_gt(c->snd_una, c->host_fin_seq) && host_delivered(c)) {
            flow_close(t, c, 0, 0);
            return;
        }
        /* 4. Lost holes first when recovering, then new data (and the FIN) to the guest. */
        if (c->flags & FN_TCBF_RECOVERY)
            recovery_send(t, c);
        if (!(c->flags & FN_TCBF_RECOVERY) || !fn_seq_lt(c->snd_nxt, c->snd_max))
            send_data(t, c);
        if (c->flags & FN_TCBF_CLOSE)
            return;
    }
    /* 5. An ACK if one is owed and nothing carried it; up to two more while held ranges that
     * took data in this batch are still unreported (three or four SACK blocks per ACK). */
    if (c->flags & (FN_TCBF_ACK_NOW | FN_TCBF_WND_UPDATE)) {
        if (synchronized(c->state) || c->state == FN_TCP_SYN_RECEIVED) {
            int r = send_ctl(t, c, c->snd_nxt, FN_TCP_ACK);
            for (int i = 0; i < 2 && r == 0 && c->sack_ntouch && (c->flags & FN_TCBF_SACK); i++)
                r = send_ctl(t, c, c->snd_nxt, FN_TCP_ACK);
            if (r < 0)
                block(t, c);
        }
    }
    /* 6. Both directions finished? */
    if (c->state == FN_TCP_CLOSE_WAIT && (c->flags & FN_TCBF_HOST_EOF) && !(c->flags & FN_TCBF_FIN_SENT))
        send_data(t, c);
}

void fn_tcp_flush(struct fn_tcp *t, uint64_t now) {
    set_now(t, now);
    while (t->touched_head != NONE) {
        uint32_t idx = t->touched_head;
        struct fn_tcb *c = &t->tcb[idx];
        t->touched_head = c->next_touched;
        c->flags &= ~FN_TCBF_TOUCHED;
        if (c->state == FN_TCP_CLOSED)
            continue;
        flush_flow(t, c);
        if (c->flags & FN_TCBF_CLOSE) {
            c->pend_head = c->pend_tail = NONE;
            c->pend_bytes = 0;
            /* Freed only when on no list, so a reused TCB is never linked twice. */
            if (!(c->flags & (FN_TCBF_BLOCKED | FN_TCBF_TOUCHED)))
                flow_free(t, c);
        }
    }
    t->npend = 0;
}

void fn_tcp_link_ready(struct fn_tcp *t, uint64_t now) {
    set_now(t, now);
    uint32_t i = t->blocked_head;
    t->blocked_head = NONE;
    while (i != NONE) {
        struct fn_tcb *c = &t->tcb[i];
        uint32_t next = c->next_blocked;
        c->flags &= ~FN_TCBF_BLOCKED;
        if (c->state != FN_TCP_CLOSED) {
            if (c->state == FN_TCP_SYN_RECEIVED && c->snd_max == c->iss + 1 && !c->snd_wnd)
                send_ctl(t, c, c->iss, FN_TCP_SYN | FN_TCP_ACK);
            touch(t, c);
        }
        i = next;
    }
    fn_tcp_flush(t, now);
}

/* ------------------------------------------------------------------------------------------ */
/* timers */

static void on_rexmit_timer(struct fn_tcp *t, struct fn_tcb *c) {
    c->t_rexmit = 0;
    switch (c->state) {
    case FN_TCP_CONNECTING:
        /* The host never answered: RST after the connect timeout. */
        fn_tcp_refuse(t, flow_id(t, idx_of(t, c)), FN_REFUSE_RST, t->now);
        c->close_err = FN_CLOSE_TIMEOUT;
        return;
    case FN_TCP_SYN_SENT:
    case FN_TCP_SYN_RECEIVED:
        if (++c->retries > 6) {
            t->st.timeouts++;
            if (c->state == FN_TCP_SYN_RECEIVED)
                send_ctl(t, c, c->snd_max, FN_TCP_RST | FN_TCP_ACK);
            flow_close(t, c, FN_CLOSE_TIMEOUT, 1);
            return;
        }
        c->rtt_time = 0;
        c->rto = c->rto * 2 > t->cfg.rto_max ? (uint32_t)t->cfg.rto_max : c->rto * 2;
        send_ctl(t, c, c->iss, c->state == FN_TCP_SYN_SENT ? FN_TCP_SYN : FN_TCP_SYN | FN_TCP_ACK);
        rto_start(t, c);
        return;
    default:
        break;
    }
    if (c->flags & FN_TCBF_PROBING) {
        /* Zero-window probe (RFC 9293 §3.8.6.1): a segment just below the window elicits an
         * ACK with the current window (Linux's tcp_xmit_probe_skb does the same). */
        if (c->snd_wnd == 0 && c->snd_una == c->snd_max) {
            t->st.zero_window_probes++;
            send_ctl(t, c, c->snd_una - 1, FN_TCP_ACK);
            c->rto = c->rto * 2 > t->cfg.rto_max ? (uint32_t)t->cfg.rto_max : c->rto * 2;
            rto_start(t, c);
        } else {
            c->flags &= ~FN_TCBF_PROBING;
            touch(t, c);
        }
        return;
    }
    if (c->snd_una == c->snd_max)
        return;
    if (c->flags & FN_TCBF_TLP) {
        /* Tail-loss probe (RFC 8985 §7.3): resend the last segment so the guest's SACK shows
         * what is missing and fast recovery, not a timeout, repairs it. */
        c->flags &= ~FN_TCBF_TLP;
        c->flags |= FN_TCBF_TLP_SENT;
        uint32_t len;
        next_lost(c, &len);
        if (len) { /* known losses wait to be resent (this pass found them): no probe needed */
            touch(t, c);
            rto_start(t, c);
            return;
        }
        t->st.tail_probes++;
        if (c->txlog.sacked && !c->txlog.e[0].sacked) {
            /* The guest SACKed data beyond a hole at snd_una: the tail arrived, and what is
             * missing is the hole (its retransmission lost, with nothing sent after it to
             * show that). Resend its first segment. */
            retransmit(t, c, c->snd_una, c->txlog.e[0].end - c->snd_una);
            c->undo_retrans++;
        } else if ((c->flags & FN_TCBF_FIN_SENT) && c->snd_max == c->host_fin_seq + 1)
            retransmit(t, c, c->host_fin_seq, 1);
        else {
            uint32_t len = c->snd_max - c->snd_una < c->snd_mss ? c->snd_max - c->snd_una : c->snd_mss;
            retransmit(t, c, c->snd_max - len, len);
        }
        rto_start(t, c);
        return;
    }
    /* Retransmission timeout (RFC 6298 §5.4-5.7, RFC 5681 §3.1 eqn. 4). */
    if (++c->retries > t->cfg.max_retries) {
        t->st.timeouts++;
        /* SND.MAX, not the rewound SND.NXT: the guest may hold everything sent (its ACKs lost),
         * and an RST below its RCV.NXT is dropped unseen (RFC 5961 §3.2). */
        send_ctl(t, c, c->snd_max, FN_TCP_RST | FN_TCP_ACK);
        flow_close(t, c, FN_CLOSE_TIMEOUT, 1);
        return;
    }
    t->st.timeouts++;
    int was_recovering = (c->flags & FN_TCBF_RECOVERY) != 0;
    c->flags &= ~(FN_TCBF_RECOVERY | FN_TCBF_RTO_LOSS);
    rto_mark_lost(t, c);
    enter_recovery(t, c, 1, c->snd_max - c->snd_una);
    if (was_recovering)
        c->flags &= ~FN_TCBF_UNDO; /* a timeout inside recovery is no candidate for undo */
    c->rto_tsval = ts_now(t->now);
    c->dupacks = 0;
    c->rtt_time = 0;
    c->rto = c->rto * 2 > t->cfg.rto_max ? (uint32_t)t->cfg.rto_max : c->rto * 2;
    c->snd_nxt = c->snd_una; /* go back: the holes are resent, SACKed data is skipped */
    c->t_reo = 0;
    recovery_send(t, c);
    rto_start(t, c);
}

static void on_state_timer(struct fn_tcp *t, struct fn_tcb *c) {
    c->t_state = 0;
    switch (c->state) {
    case FN_TCP_TIME_WAIT:
        if (c->fd >= 0 && !host_delivered(c)) /* the host never took it all: say so */
            flow_close(t, c, FN_CLOSE_TIMEOUT, 1);
        else
            flow_close(t, c, 0, 0);
        return;
    case FN_TCP_SYN_SENT:
        t->st.timeouts++;
        flow_close(t, c, FN_CLOSE_TIMEOUT, 1);
        return;
    case FN_TCP_FIN_WAIT_1:
    case FN_TCP_FIN_WAIT_2:
    case FN_TCP_CLOSING:
    case FN_TCP_LAST_ACK:
        t->st.timeouts++;
        send_ctl(t, c, c->snd_max, FN_TCP_RST | FN_TCP_ACK);
        flow_close(t, c, FN_CLOSE_TIMEOUT, 1);
        return;
    default:
        break;
    }
    if (c->flags & FN_TCBF_KEEPALIVE) {
        /* Silence from the guest: probe it (RFC 1122 §4.2.3.6), reset after 9 probes. */
        if (c->probes >= 9) {
            t->st.timeouts++;
            send_ctl(t, c, c->snd_max, FN_TCP_RST | FN_TCP_ACK);
            flow_close(t, c, FN_CLOSE_TIMEOUT, 1);
            return;
        }
        c->probes++;
        send_ctl(t, c, c->snd_una - 1, FN_TCP_ACK);
        c->t_state = t->now + 75000000; /* 75 s between probes, as Linux */
    }
}

uint64_t fn_tcp_timers(struct fn_tcp *t, uint64_t now) {
    set_now(t, now);
    now = t->now;
    while (t->nheap && t->heap[0].when <= now) {
        struct fn_theap_ent e = t->heap[0];
        heap_pop(t);
        struct fn_tcb *c = &t->tcb[e.idx];
        if (c->gen != e.gen || c->state == FN_TCP_CLOSED || c->t_heap != e.when)
            continue; /* stale */
        c->t_heap = 0;
        if (!(c->flags & FN_TCBF_CLOSE)) {
            if (c->t_reo && c->t_reo <= now) {
                /* RACK's reordering timer (RFC 8985 §6.3): look again now that the window has
                 * passed. */
                c->t_reo = 0;
                if (c->snd_una != c->snd_max && synchronized(c->state) && !(c->flags & FN_TCBF_PROBING))
                    rack_detect(t, c);
            }
            if (c->t_rexmit && c->t_rexmit <= now)
                on_rexmit_timer(t, c);
            if (!(c->flags & FN_TCBF_CLOSE) && c->t_state && c->t_state <= now)
                on_state_timer(t, c);
        }
        if (!(c->flags & FN_TCBF_CLOSE))
            timer_arm(t, c);
        touch(t, c);
    }
    /* Drop stale entries at the top so the deadline we report is real. */
    while (t->nheap) {
        struct fn_theap_ent *e = &t->heap[0];
        struct fn_tcb *c = &t->tcb[e->idx];
        if (c->gen == e->gen && c->state != FN_TCP_CLOSED && c->t_heap == e->when)
            return e->when;
        heap_pop(t);
    }
    return 0;
}
