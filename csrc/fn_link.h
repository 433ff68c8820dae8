/* Links: where guest Ethernet frames come from and go to, read and written in batches.
 *
 *  - TAP: one frame per read()/write() on a /dev/net/tun descriptor, optionally behind a
 *    virtio_net_hdr (IFF_VNET_HDR): then the guest kernel may hand over TCP super-frames of up
 *    to 64 KiB with partial checksums, and takes them back the same way (TSO/GSO), which is
 *    the largest lever for throughput at small MTUs.
 *  - STREAM: frames behind a length prefix on a stream socket: 4-byte big-endian (QEMU
 *    -netdev stream/socket) or 2-byte little-endian (HyperKit/vpnkit vmnet, stdio). One
 *    large read yields many frames; one writev sends many (partial writes resume later).
 *  - DGRAM: one frame per datagram (vfkit's unixgram), recvmmsg/sendmmsg.
 *
 * A read fills `rx` with frames pointing into the link's buffer; they stay valid until the
 * next read. Writes drain the link's transmit queue; when the peer cannot take more the link
 * reports "blocked" and keeps the rest (back-pressure, no loss). */
#ifndef FN_LINK_H
#define FN_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "fn_fault.h"
#include "fn_txq.h"

enum fn_link_kind { FN_LINK_TAP = 1, FN_LINK_STREAM, FN_LINK_DGRAM };

struct fn_rxf {
    uint32_t off, len;
    uint8_t csum_ok;      /* the link vouches for the L4 checksum (virtio NEEDS_CSUM/DATA_VALID) */
    uint8_t pad[3];
};

struct fn_link_stats {
    uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes;
    uint64_t reads, writes, eagain, rx_bad_len, tx_dropped, rx_gso, tx_gso;
};

struct fn_link {
    int kind;
    int fd;
    int wfd;                  /* where frames are written: fd, except for stdio (stdout) */
    uint32_t vnet;            /* TAP: virtio_net_hdr bytes (0, 10 or 12) */
    uint32_t prefix;          /* STREAM: 2 or 4 */
    int prefix_be;
    uint32_t max_frame;       /* largest frame accepted from the guest */
    uint32_t batch;           /* frames per read at most */
    uint8_t *rbuf;
    uint32_t rcap, rlen, rpos;
    struct fn_rxf *rx;
    uint32_t nrx, cap_rx;
    struct fn_txq txq;
    uint32_t tx_off;          /* STREAM: bytes of the head frame already written */
    uint32_t judged;          /* txq descriptors already seen by the output fault injector */
    int blocked;              /* the last write stopped at EAGAIN */
    int eof;                  /* the peer closed the link */
    int err;                  /* errno of a fatal link error */
    struct fn_fault *fault_in, *fault_out;
    uint8_t *fbuf;            /* frames released by the input fault injector this batch */
    uint32_t fcap, flen;
    int pcap_fd;              /* every frame in and out is recorded here (-1: off) */
    uint8_t *pbuf;
    uint32_t plen, pcap_snap;
    uint64_t pcap_frames;
    struct fn_link_stats st;
};

/* rx[i].off with this bit set points into fbuf (a frame released by the fault injector). */
#define FN_RXF_FBUF 0x80000000u

static inline const uint8_t *fn_link_frame(const struct fn_link *l, const struct fn_rxf *r) {
    return (r->off & FN_RXF_FBUF) ? l->fbuf + (r->off & ~FN_RXF_FBUF) : l->rbuf + r->off;
}

/* kind FN_LINK_TAP: vnet_or_prefix = virtio header size; FN_LINK_STREAM: prefix size, negative
 * for little-endian (-2 = HyperKit); FN_LINK_DGRAM: 0. Returns 0 or -1 (out of memory). */
int fn_link_init(struct fn_link *l, int kind, int fd, int vnet_or_prefix, uint32_t max_frame,
                 uint32_t txq_bytes, uint32_t txq_frames);
void fn_link_free(struct fn_link *l);
/* Read one batch into l->rx (l->nrx frames). Returns nrx, or -1 with l->eof/l->err set. */
int fn_link_read(struct fn_link *l, uint64_t now);
/* Write queued frames. 0: everything went; 1: blocked (wait for writability); -1: error. */
int fn_link_write(struct fn_link *l, uint64_t now);
/* The txq flush callback links install (used when the queue fills mid-batch). */
int fn_link_txq_flush(void *ctx, struct fn_txq *q);
/* Record every frame (both directions) to a pcap file on fd (the global header is written
 * here); snaplen 0 = whole frames. fd -1 stops recording (buffered records are flushed). */
int fn_link_pcap(struct fn_link *l, int fd, uint32_t snaplen);
void fn_link_pcap_flush(struct fn_link *l);
/* Next time a fault-held frame is due (0 = none). */
uint64_t fn_link_deadline(const struct fn_link *l);
/* A stream read can bring in more whole frames than one batch takes: they wait in the read
 * buffer, where no readiness event will announce them. 1 when at least one does. */
int fn_link_pending(const struct fn_link *l);

/* Open (creating it if needed) the TAP device `name` inside the network namespace at
 * netns_path (NULL: the current one). vnet_hdr asks for IFF_VNET_HDR and, with offload != 0,
 * TSO/checksum offload towards us (TUNSETOFFLOAD). Non-blocking. Returns the fd or -errno;
 * the interface name is written to name_out (IFNAMSIZ bytes). */
int fn_tap_open(const char *name, const char *netns_path, int vnet_hdr, int offload, char *name_out);

/* In the current network namespace: set the interface's MTU, IPv4 address/prefix and MAC (NULL:
 * keep), bring it and lo up, and add a default route via gw (0 = none). Returns 0 or -errno.
 * (netdevice(7) ioctls, so a fresh namespace needs no iproute2.) */
int fn_if_configure(const char *name, uint32_t mtu, const uint8_t ip[4], int prefix, const uint8_t gw[4],
                    const uint8_t mac[6]);

#endif
