/* The TCP engine: terminates the guest's TCP connections and relays each byte stream to a host
 * socket (RFC 9293; window scaling and timestamps RFC 7323; SACK RFC 2018/6675; congestion
 * control RFC 5681/6582; RTO RFC 6298; RST/SYN robustness RFC 5961; ISNs RFC 6528).
 *
 * The design (docs/design.md has the long form):
 *  - Sans-IO at the level of the whole flow table: time arrives as an argument (microseconds),
 *    frames arrive parsed (struct fn_frame) and leave through a transmit queue (fn_txq), and
 *    host sockets are reached only through a table of operations (fn_host_ops), so tests run
 *    the real engine against in-memory sockets with a fake clock.
 *  - Guest → host: in-order payload is written to the host socket straight from the received
 *    frame, coalesced per flow per batch into one sendmsg (no intermediate copy). What the
 *    socket does not take, and out-of-order data, go to a per-flow receive ring at the
 *    position given by their sequence number (allocated on first need, freed when empty). The
 *    advertised window is the ring space left after the bytes the host has not yet taken, so
 *    a slow host reader closes the window and nothing is buffered without bound.
 *  - Host → guest: data stays in the host socket's receive queue until the guest acknowledges
 *    it (the kernel buffer is the retransmission queue). Segments are filled by peeking
 *    (MSG_PEEK with SO_PEEK_OFF) straight into frames in the transmit queue, one recvmsg for
 *    many segments; acknowledged bytes are then dropped with MSG_TRUNC.
 *  - Python is told about flow events (a new guest SYN needing a host connect, establishment,
 *    close) through an event queue; it never sees a segment.
 */
#ifndef FN_TCP_H
#define FN_TCP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "fn_assembler.h"
#include "fn_flowtab.h"
#include "fn_txlog.h"
#include "fn_txq.h"
#include "fn_wire.h"

/* ---- host socket operations ---- */

/* Events delivered for a host socket (epoll's bits, so the real backend passes them through). */
#define FN_HEV_IN 0x001
#define FN_HEV_OUT 0x004
#define FN_HEV_ERR 0x008
#define FN_HEV_HUP 0x010
#define FN_HEV_RDHUP 0x2000

struct fn_host_ops {
    /* Write iov to the socket without blocking: bytes taken, or -errno (-EAGAIN when full). */
    long (*send)(void *ctx, int fd, const struct iovec *iov, int iovcnt);
    /* Copy bytes starting `off` bytes past the head of the receive queue into iov without
     * consuming them: bytes copied, 0 at end of stream (peer closed and nothing at off),
     * -EAGAIN when nothing is there yet, or -errno (-ECONNRESET...). *koff is the flow's
     * record of the kernel's peek offset (SO_PEEK_OFF), which the backend may use and update. */
    long (*peek)(void *ctx, int fd, size_t off, uint32_t *koff, const struct iovec *iov, int iovcnt);
    /* Drop n acknowledged bytes from the head of the receive queue (the kernel moves its peek
     * offset back by n; *koff follows). 0 or -errno. */
    int (*consume)(void *ctx, int fd, size_t n, uint32_t *koff);
    /* shutdown(SHUT_WR). */
    int (*shutdown_wr)(void *ctx, int fd);
    /* Close; with rst != 0 the peer gets a reset (SO_LINGER 0). */
    void (*close)(void *ctx, int fd, int rst);
    /* The pending socket error (SO_ERROR) as a positive errno, 0 for none. */
    int (*error)(void *ctx, int fd);
    /* Register fd for events tagged with flow id (edge-triggered in, out, err, hup, rdhup). */
    int (*watch)(void *ctx, int fd, uint64_t flow);
    /* The time in µs on the clock callers pass as `now`, or NULL. With it the engine reads the
     * time again while it works: one flush can send megabytes, and RACK (RFC 8985) needs each
     * run's real send time, not the wake-up's. Without it (tests) time is only what is passed. */
    uint64_t (*clock)(void *ctx);
    void *ctx;
};

#define FN_PEEK_UNKNOWN 0xfffffffeu
#define FN_PEEK_NONE 0xffffffffu

/* ---- configuration ---- */

struct fn_tcp_config {
    uint8_t gw_mac[6];          /* source MAC of every frame we send */
    uint16_t mss;               /* the MSS we announce: link MTU - 40 */
    uint32_t tx_seg_max;        /* payload bytes per frame we send (> mss with link GSO) */
    uint8_t tx_csum_partial;    /* the link completes L4 checksums (fill the pseudo-header sum only) */
    uint8_t tx_gso;             /* the link segments TCP super-frames (tx_seg_max > mss) */
    uint8_t rx_csum_verify;     /* verify guest checksums (off only for tests measuring the engine) */
    uint32_t rx_buf;            /* per-flow receive ring size (window), power of two */
    uint32_t max_flows;
    uint64_t connect_timeout;   /* µs before a pending host connect becomes RST */
    uint64_t syn_timeout;       /* µs before an active open (we sent SYN) gives up */
    uint64_t time_wait;         /* µs in TIME-WAIT */
    uint64_t fin_timeout;       /* µs in FIN-WAIT-2 / LAST-ACK / CLOSING before giving up */
    uint64_t idle_timeout;      /* µs of silence before keepalive probes to the guest */
    uint64_t rto_min, rto_max, rto_initial;
    uint32_t max_retries;       /* retransmissions of one segment before the flow is reset */
    uint32_t init_cwnd;         /* segments (RFC 6928 allows 10) */
    uint32_t send_burst;        /* bytes at most per flow per flush, for fairness */
    uint8_t tail_loss_probe;    /* RFC 8985 §7 probes before a retransmission timeout */
    uint64_t isn_secret[2];     /* RFC 6528 key */
};

void fn_tcp_config_default(struct fn_tcp_config *c);

/* ---- states ---- */

enum fn_tcp_state {
    FN_TCP_CLOSED = 0,
    FN_TCP_CONNECTING,    /* guest SYN held while the host connect runs (fastnet's own state) */
    FN_TCP_SYN_SENT,      /* we sent SYN to the guest (published port) */
    FN_TCP_SYN_RECEIVED,  /* we sent SYN-ACK */
    FN_TCP_ESTABLISHED,
    FN_TCP_FIN_WAIT_1,
    FN_TCP_FIN_WAIT_2,
    FN_TCP_CLOSE_WAIT,
    FN_TCP_CLOSING,
    FN_TCP_LAST_ACK,
    FN_TCP_TIME_WAIT,
    FN_TCP_STATE_COUNT
};

/* ---- events for the Python layer ---- */

enum fn_tcp_event_type {
    FN_TEV_NEW_FLOW = 1,   /* guest SYN for an unknown 4-tuple: attach a host socket or refuse */
    FN_TEV_ESTABLISHED,    /* handshake done with the guest */
    FN_TEV_CLOSED,         /* flow freed; err says why (0 clean, else errno-like) */
};

struct fn_tcp_event {
    uint64_t flow;
    uint8_t type;
    uint8_t pad[3];
    int32_t err;
};

/* How a refused guest SYN is answered. */
enum fn_tcp_refusal {
    FN_REFUSE_RST = 0,         /* connection refused, timeout, policy */
    FN_REFUSE_NET_UNREACH,     /* ICMP destination unreachable, code 0 */
    FN_REFUSE_HOST_UNREACH,    /* code 1 */
    FN_REFUSE_PORT_UNREACH,    /* code 3 */
    FN_REFUSE_ADMIN,           /* code 13: administratively prohibited */
    FN_REFUSE_DROP,            /* say nothing (the guest times out) */
};

/* Close reasons (FN_TEV_CLOSED err), besides 0 and errno values from the host socket. */
#define FN_CLOSE_GUEST_RST 1000
#define FN_CLOSE_TIMEOUT 1001
#define FN_CLOSE_REFUSED 1002
#define FN_CLOSE_ADMIN 1003
#define FN_CLOSE_NOMEM 1004

/* ---- per-flow state (TCB) ---- */

#define FN_SACK_TOUCH 6 /* held ranges one batch's ACKs report for certain (fn_tcb.sack_touch) */

struct fn_tcb {
    struct fn_flowkey key;      /* guest ip/port, remote ip/port (v4-mapped) */
    uint8_t guest_mac[6];
    uint8_t state;              /* enum fn_tcp_state */
    uint8_t snd_wscale;         /* shift applied to the guest's window field */
    uint32_t flags;             /* FN_TCBF_* */
    uint32_t gen;               /* generation: flow id = gen << 32 | index */
    int fd;                     /* host socket, -1 when none */

    /* receive side (guest → us) */
    uint32_t irs;               /* guest's ISN */
    uint32_t rcv_nxt;
    uint32_t host_seq;          /* guest bytes before this were written to the host socket */
    uint32_t rcv_adv;           /* right edge last advertised */
    uint32_t fin_seq;           /* guest FIN's sequence number (FN_TCBF_GUEST_FIN / _FIN_OOO) */
    uint32_t pend_seq;          /* sequence number of the first pending byte */
    uint32_t pend_bytes;        /* bytes queued for a direct write in this batch */
    uint32_t pend_head, pend_tail; /* this flow's pending direct writes (indexes, NONE = none) */
    uint8_t *ring;              /* rx_buf bytes, byte s at ring[s & (rx_buf-1)]; NULL until needed */
    struct fn_assembler *oo;    /* out-of-order ranges held, offsets from rcv_nxt (NULL: none yet) */
    uint32_t dsack_l, dsack_r;  /* a duplicate to report as the first SACK block (RFC 2883) */
    uint32_t sack_prev[2];      /* starts of the last two first SACK blocks sent, to repeat (RFC 2018 §4) */
    uint32_t sack_touch[FN_SACK_TOUCH]; /* held ranges that took data since the last ACK (a sequence number in each) */
    uint8_t sack_ntouch;

    /* send side (us → guest) */
    uint32_t iss;
    uint32_t snd_una;
    uint32_t snd_nxt;
    uint32_t snd_max;           /* highest sequence sent + 1 */
    uint32_t snd_wnd;           /* guest's window, scaled */
    uint32_t snd_wl1, snd_wl2;
    uint32_t consumed;          /* host bytes before this sequence number were dropped from the socket */
    uint32_t host_fin_seq;      /* where our FIN goes (FN_TCBF_HOST_EOF) */
    uint32_t peek_off;          /* the kernel's SO_PEEK_OFF for fd, as we last left it
                                   (FN_PEEK_UNKNOWN before the first peek, FN_PEEK_NONE when
                                   the socket has none and is peeked from its head) */
    uint32_t cwnd, ssthresh;
    uint32_t cwnd_acc;          /* bytes acknowledged towards the next congestion-avoidance step */
    uint32_t recover;           /* recovery point (RFC 6582 / RFC 6675) */
    uint32_t prior_cwnd, prior_ssthresh; /* before the last reduction, for undo (RFC 3708, 4015) */
    uint32_t undo_retrans;      /* retransmissions of this episode not yet reported as D-SACK */
    uint32_t rto_tsval;         /* our TSval when the retransmission timer fired (Eifel, RFC 3522) */
    struct fn_txlog txlog;      /* when each outstanding range was last sent (RACK) */
    uint64_t rack_xmit;         /* RACK.xmit_ts: send time of the most recently sent delivered data */
    uint32_t rack_end;          /* ... and its end sequence (ties within one burst go by order) */
    uint32_t rack_rtt;          /* RACK.rtt: µs from that send to its delivery */
    uint32_t min_rtt;           /* µs */
    uint32_t dsack_round;       /* RACK.dsack_round: one widening per round trip */
    uint8_t reo_mult;           /* reordering window multiplier, raised by D-SACKs (RFC 8985 §6.2) */
    uint8_t reo_persist;        /* recoveries left before reo_mult falls back to 1 */
    uint16_t dupacks;
    uint16_t dupthresh;         /* adaptive: raised when reordering proves a retransmission spurious */
    uint16_t snd_mss;           /* payload per segment towards the guest (options excluded) */
    uint8_t rcv_wscale;
    uint8_t retries;
    uint8_t probes;

    /* timestamps (RFC 7323) */
    uint32_t ts_recent;

    /* RTT/RTO (RFC 6298), µs */
    uint32_t srtt, rttvar, rto;
    uint32_t rtt_seq;           /* Karn timing without timestamps: segment being timed */
    uint64_t rtt_time;          /* 0 = none being timed */

    /* timers (absolute µs; 0 = off) */
    uint64_t t_rexmit;          /* retransmission, persist, SYN, connect */
    uint64_t t_state;           /* TIME-WAIT, FIN-WAIT-2, LAST-ACK, keepalive */
    uint64_t t_reo;             /* RACK reordering window: holes below SACKed data are lost then */
    uint64_t t_heap;            /* deadline of this flow's live entry in the timer heap, 0 if none */
    uint64_t last_rx;           /* last segment from the guest */

    uint32_t next_touched;      /* list of flows to flush at the end of the batch */
    uint32_t next_blocked;      /* list of flows waiting for transmit-queue room */
    uint32_t next_free;

    uint64_t bytes_g2h, bytes_h2g;
    uint32_t rexmits;
    int32_t close_err;          /* reason reported in FN_TEV_CLOSED */
};

#define FN_TCBF_TOUCHED 0x0001      /* on the touched list */
#define FN_TCBF_GUEST_FIN 0x0002    /* guest FIN received in order (fin_seq valid) */
#define FN_TCBF_HOST_SHUT 0x0004    /* shutdown(SHUT_WR) done on the host socket */
#define FN_TCBF_HOST_EOF 0x0008     /* host socket reached end of stream (host_fin_seq valid) */
#define FN_TCBF_ACK_NOW 0x0010      /* an ACK is owed to the guest */
#define FN_TCBF_SACK 0x0020         /* SACK permitted both ways */
#define FN_TCBF_TS 0x0040           /* timestamps in use */
#define FN_TCBF_READABLE 0x0080     /* the host socket may have data beyond what we peeked */
#define FN_TCBF_WRITABLE 0x0100     /* the host socket may take more */
#define FN_TCBF_FIN_OOO 0x0200      /* a FIN arrived beyond rcv_nxt, at fin_seq */
#define FN_TCBF_RECOVERY 0x0400     /* in fast recovery */
#define FN_TCBF_FIN_SENT 0x0800     /* our FIN went out at least once */
#define FN_TCBF_CLOSE 0x1000        /* free at the end of the flush */
#define FN_TCBF_ACTIVE 0x2000       /* we opened (published port) */
#define FN_TCBF_PROBING 0x8000      /* the rexmit timer is the persist timer (zero window) */
#define FN_TCBF_KEEPALIVE 0x10000   /* t_state is the keepalive timer */
#define FN_TCBF_BLOCKED 0x20000     /* on the blocked list (waiting for transmit-queue room) */
#define FN_TCBF_HOST_ERR 0x40000    /* the host socket failed: reset the guest */
#define FN_TCBF_CONNECTED 0x80000   /* host connect completed */
#define FN_TCBF_WND_UPDATE 0x100000 /* send a window update */
#define FN_TCBF_WSCALE 0x200000     /* window scaling agreed (both SYNs carried the option) */
#define FN_TCBF_HOST_RDHUP 0x400000 /* the host peer closed its side: read until end of stream */
#define FN_TCBF_DSACK 0x800000      /* dsack_l/dsack_r wait to be reported */
#define FN_TCBF_RTO_LOSS 0x1000000  /* recovering after a timeout: every hole is lost */
#define FN_TCBF_TLP 0x2000000       /* the rexmit timer is a tail-loss probe (RFC 8985 §7) */
#define FN_TCBF_UNDO 0x4000000      /* prior_cwnd/ssthresh hold what an undo restores */
#define FN_TCBF_TLP_SENT 0x8000000  /* a tail-loss probe went out; the next timer is an RTO */
#define FN_TCBF_RXT_FIRST 0x10000000 /* recovery just began: the first lost segment goes at once */
#define FN_TCBF_NOREDUCE 0x20000000  /* this recovery left the window alone (link noise, not congestion) */

struct fn_tcp_stats {
    uint64_t segs_in, segs_out, bytes_in, bytes_out;
    uint64_t flows_opened, flows_closed, flows_active;
    uint64_t rst_in, rst_out, challenge_acks;
    uint64_t bad_csum, bad_seq, no_flow, ooo_segs, ooo_dropped, dup_segs;
    uint64_t rexmits, fast_rexmits, timeouts, zero_window_probes;
    uint64_t tail_probes, dsacks_in, dsacks_out, undos, lost_rexmits, reneged;
    uint64_t cwnd_reductions;   /* loss episodes that cut the window (not link noise) */
    uint64_t host_writes, host_peeks, host_partial_writes;
    uint64_t syn_absorbed, refused, nomem;
};

struct fn_pend {
    struct iovec iov;
    uint32_t next;              /* next pending write of the same flow, or UINT32_MAX */
};

struct fn_theap_ent {
    uint64_t when;
    uint32_t idx;
    uint32_t gen;
};

struct fn_tcp {
    struct fn_tcp_config cfg;
    struct fn_host_ops ops;
    struct fn_txq *txq;
    struct fn_flowtab tab;
    struct fn_tcb *tcb;
    uint32_t ntcb, cap_tcb;
    uint32_t free_head;
    uint32_t touched_head;
    uint32_t blocked_head;       /* flows that wanted to send but the txq was full */
    struct fn_pend *pend;
    uint32_t npend, cap_pend;
    struct fn_theap_ent *heap;
    uint32_t nheap, cap_heap;
    struct fn_tcp_event *ev;
    uint32_t ev_head, ev_tail, ev_cap;
    uint64_t now;
    uint32_t ip_id;
    struct fn_tcp_stats st;
};

struct fn_tcp *fn_tcp_new(const struct fn_tcp_config *cfg, const struct fn_host_ops *ops, struct fn_txq *txq);
void fn_tcp_free(struct fn_tcp *t);

/* A TCP segment from the guest (frame p, parsed f, kind FN_KIND_TCP4). csum_ok: the link
 * vouches for the checksum (virtio NEEDS_CSUM/DATA_VALID); otherwise it is verified when
 * cfg.rx_csum_verify. The frame must stay valid until fn_tcp_flush(). Returns 0 or -1 when
 * the segment was dropped (counted). */
int fn_tcp_input(struct fn_tcp *t, const uint8_t *p, const struct fn_frame *f, int csum_ok, uint64_t now);
/* Events for a host socket (from epoll, or from a test). */
void fn_tcp_host_event(struct fn_tcp *t, uint64_t flow, uint32_t events, uint64_t now);
/* End of a batch: pending host writes, ACKs, data to the guest for every touched flow. */
void fn_tcp_flush(struct fn_tcp *t, uint64_t now);
/* Run due timers; returns the next deadline (µs) or 0 when none. Call fn_tcp_flush after. */
uint64_t fn_tcp_timers(struct fn_tcp *t, uint64_t now);
/* The link drained: retry flows that were blocked on transmit-queue space. */
void fn_tcp_link_ready(struct fn_tcp *t, uint64_t now);

/* Answer a FN_TEV_NEW_FLOW: fd is a non-blocking socket with connect() started (or done). */
int fn_tcp_attach(struct fn_tcp *t, uint64_t flow, int fd, uint64_t now);
int fn_tcp_refuse(struct fn_tcp *t, uint64_t flow, int how, uint64_t now);
/* Active open towards the guest for host socket fd (a published port's accepted client):
 * SYN from remote_ip:remote_port to guest_ip:guest_port. Returns the flow id or 0. */
uint64_t fn_tcp_open(struct fn_tcp *t, const uint8_t guest_mac[6], const uint8_t guest_ip[4], uint16_t guest_port,
                     const uint8_t remote_ip[4], uint16_t remote_port, int fd, uint64_t now);
/* Administrative close: RST to the guest and the host peer (abort) or a clean FIN (!abort). */
int fn_tcp_close(struct fn_tcp *t, uint64_t flow, int abort_, uint64_t now);

int fn_tcp_next_event(struct fn_tcp *t, struct fn_tcp_event *ev);
const struct fn_tcb *fn_tcp_get(const struct fn_tcp *t, uint64_t flow);
/* Iterate live flows: start with *cursor = 0; returns a flow id, or 0 when done. */
uint64_t fn_tcp_iter(const struct fn_tcp *t, uint32_t *cursor);
const char *fn_tcp_state_name(int state);

/* The real host operations: syscalls on socket fds, epoll_fd for watch(). */
void fn_host_ops_sys(struct fn_host_ops *ops, int *epoll_fd);
/* CLOCK_MONOTONIC in µs (Python's time.monotonic clock), for fn_host_ops.clock. */
uint64_t fn_host_clock_monotonic(void *ctx);

#endif
