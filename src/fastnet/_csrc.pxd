# The one mirror of csrc/ headers. Every function here is pure C with no Python API, so all of
# it is declared nogil; callers release the GIL only around bulk work.
from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from posix.uio cimport iovec


cdef extern from "fastnet.h" nogil:
    # fn_bytes.h
    uint16_t fn_ld_be16(const uint8_t *p)
    uint32_t fn_ld_be32(const uint8_t *p)
    void fn_st_be16(uint8_t *p, uint16_t v)
    void fn_st_be32(uint8_t *p, uint32_t v)
    uint16_t fn_ld_le16(const uint8_t *p)
    void fn_st_le16(uint8_t *p, uint16_t v)

    # fn_checksum.h
    uint32_t fn_csum_partial(const uint8_t *p, size_t n, uint32_t sum)
    uint32_t fn_csum_combine(uint32_t a, uint32_t b, size_t len_a)
    uint32_t fn_csum_pseudo4(const uint8_t *src, const uint8_t *dst, uint8_t proto, uint32_t l4_len)
    uint32_t fn_csum_pseudo6(const uint8_t *src, const uint8_t *dst, uint8_t proto, uint32_t l4_len)
    uint16_t fn_csum_finish(uint32_t sum)
    uint16_t fn_checksum(const uint8_t *p, size_t n, uint32_t initial)
    uint16_t fn_csum_update16(uint16_t check, uint16_t old_word, uint16_t new_word)
    uint16_t fn_csum_update32(uint16_t check, uint32_t old_word, uint32_t new_word)
    uint16_t fn_csum_update_bytes(uint16_t check, const uint8_t *old_bytes, const uint8_t *new_bytes, size_t n)

    # fn_wire.h
    enum:
        FN_ETH_HLEN
        FN_VLAN_HLEN
        FN_ETHERTYPE_IPV4
        FN_ETHERTYPE_ARP
        FN_ETHERTYPE_VLAN
        FN_ETHERTYPE_IPV6
        FN_ARP_LEN
        FN_ARP_OFF_OPER
        FN_ARP_OFF_SHA
        FN_ARP_OFF_SPA
        FN_ARP_OFF_THA
        FN_ARP_OFF_TPA
        FN_IPV4_HLEN
        FN_IPV4_OFF_TOS
        FN_IPV4_OFF_LEN
        FN_IPV4_OFF_ID
        FN_IPV4_OFF_FRAG
        FN_IPV4_OFF_TTL
        FN_IPV4_OFF_PROTO
        FN_IPV4_OFF_CSUM
        FN_IPV4_OFF_SRC
        FN_IPV4_OFF_DST
        FN_IPV4_FLAG_DF
        FN_IPV4_FLAG_MF
        FN_IPV4_FRAG_MASK
        FN_IPV6_HLEN
        FN_IPV6_OFF_PLEN
        FN_IPV6_OFF_NXT
        FN_IPV6_OFF_HLIM
        FN_IPV6_OFF_SRC
        FN_IPV6_OFF_DST
        FN_IPPROTO_ICMP
        FN_IPPROTO_TCP
        FN_IPPROTO_UDP
        FN_IPPROTO_ICMPV6
        FN_TCP_HLEN
        FN_TCP_OFF_SPORT
        FN_TCP_OFF_DPORT
        FN_TCP_OFF_SEQ
        FN_TCP_OFF_ACK
        FN_TCP_OFF_DOFF
        FN_TCP_OFF_FLAGS
        FN_TCP_OFF_WIN
        FN_TCP_OFF_CSUM
        FN_TCP_OFF_URG
        FN_TCP_MAX_HLEN
        FN_TCP_MAX_SACK
        FN_UDP_HLEN
        FN_UDP_OFF_LEN
        FN_UDP_OFF_CSUM
        FN_ICMP_HLEN
        FN_ICMP_OFF_CSUM
        FN_ICMPV6_MIN_LEN
        FN_FRAME_VLAN
        FN_FRAME_IP_OPTIONS
        FN_FRAME_DF
        FN_FRAME_MF
        FN_FRAME_TCP_MSS
        FN_FRAME_TCP_WSCALE
        FN_FRAME_TCP_SACK_PERM
        FN_FRAME_TCP_TS
        FN_FRAME_TCP_SACK
        FN_FRAME_PADDED
        FN_FRAME_UDP_TRAILER

    enum fn_kind:
        FN_KIND_INVALID
        FN_KIND_ETHERNET
        FN_KIND_ARP
        FN_KIND_IPV4
        FN_KIND_IPV4_FRAG
        FN_KIND_TCP4
        FN_KIND_UDP4
        FN_KIND_ICMP4
        FN_KIND_IPV6
        FN_KIND_IPV6_FRAG
        FN_KIND_TCP6
        FN_KIND_UDP6
        FN_KIND_ICMP6
        FN_KIND_COUNT

    enum fn_error:
        FN_OK
        FN_ETRUNC_ETH
        FN_ETRUNC_VLAN
        FN_ETRUNC_ARP
        FN_EARP_FORMAT
        FN_ETRUNC_IPV4
        FN_EIP_VERSION
        FN_EIPV4_IHL
        FN_EIPV4_TOTLEN
        FN_ETRUNC_IPV6
        FN_EIPV6_PLEN
        FN_EIPV6_EXT
        FN_ETRUNC_TCP
        FN_ETCP_DOFF
        FN_ETCP_OPT
        FN_ETRUNC_UDP
        FN_EUDP_LEN
        FN_ETRUNC_ICMP
        FN_EIPV4_CSUM
        FN_EL4_CSUM
        FN_EFRAME_LEN
        FN_ERROR_MIN

    struct fn_tcp_opts:
        uint16_t mss
        uint8_t wscale
        uint8_t nsack
        uint32_t ts_val
        uint32_t ts_ecr
        uint32_t sack[4][2]

    struct fn_frame:
        uint32_t len
        uint16_t flags
        uint8_t kind
        uint8_t l4_proto
        uint16_t ethertype
        uint16_t vlan_tci
        uint32_t l3_off
        uint32_t l3_len
        uint32_t l4_off
        uint32_t l4_len
        uint32_t payload_off
        uint32_t payload_len
        uint16_t frag_off
        uint16_t l3_hlen
        fn_tcp_opts tcp

    int fn_parse_frame(const uint8_t *p, size_t n, fn_frame *f)
    int fn_parse_ip(const uint8_t *p, size_t n, fn_frame *f)
    int fn_parse_tcp_options(const uint8_t *p, size_t n, fn_tcp_opts *o, uint16_t *flags)
    int fn_ipv4_verify(const uint8_t *ip)
    int fn_l4_verify(const uint8_t *p, const fn_frame *f)
    void fn_l4_fill(uint8_t *p, const fn_frame *f)
    const char *fn_strerror(int code)
    const char *fn_kind_name(int kind)

    struct fn_summary:
        uint32_t off
        uint32_t len
        int8_t status
        uint8_t kind
        uint8_t l4_proto
        uint8_t tcp_flags
        uint32_t l3_off
        uint32_t l4_off
        uint32_t payload_off
        uint32_t payload_len

    size_t fn_classify_stream(const uint8_t *p, size_t n, int prefix, int big_endian, size_t max_frame,
                              fn_summary *out, size_t out_cap, size_t *consumed)
    size_t fn_classify_spans(const uint8_t *p, size_t n, const uint32_t *offs, const uint32_t *lens,
                             size_t count, fn_summary *out)

    # fn_build.h
    size_t fn_build_eth(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t ethertype)
    size_t fn_build_eth_vlan(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t tci, uint16_t ethertype)
    size_t fn_build_arp(uint8_t *p, uint16_t oper, const uint8_t *sha, const uint8_t *spa,
                        const uint8_t *tha, const uint8_t *tpa)

    struct fn_ipv4_spec:
        uint8_t src[4]
        uint8_t dst[4]
        uint8_t proto
        uint8_t ttl
        uint8_t tos
        uint8_t opt_len
        uint16_t id
        uint16_t frag
        const uint8_t *options

    size_t fn_build_ipv4(uint8_t *p, const fn_ipv4_spec *s, size_t payload_len)
    size_t fn_build_ipv6(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t next_header,
                         uint8_t hop_limit, uint32_t flow_label, uint8_t traffic_class, size_t payload_len)

    enum:
        FN_TCPB_MSS
        FN_TCPB_WSCALE
        FN_TCPB_SACK_PERM
        FN_TCPB_TS
        FN_TCPB_SACK

    struct fn_tcp_spec:
        uint16_t sport
        uint16_t dport
        uint32_t seq
        uint32_t ack
        uint8_t flags
        uint8_t opts
        uint16_t window
        uint16_t urgent
        fn_tcp_opts o

    size_t fn_build_tcp(uint8_t *p, const fn_tcp_spec *s)
    size_t fn_tcp_hlen(const fn_tcp_spec *s)
    size_t fn_build_udp(uint8_t *p, uint16_t sport, uint16_t dport, size_t payload_len)
    size_t fn_build_icmp(uint8_t *p, uint8_t type, uint8_t code, uint32_t rest)
    void fn_ipv4_fill_l4(uint8_t *ip)
    void fn_ipv6_fill_l4(uint8_t *ip)

    # fn_seq.h
    bint fn_seq_lt(uint32_t a, uint32_t b)
    bint fn_seq_le(uint32_t a, uint32_t b)
    bint fn_seq_gt(uint32_t a, uint32_t b)
    bint fn_seq_ge(uint32_t a, uint32_t b)

    # fn_assembler.h
    enum:
        FN_ASM_MAX
        FN_ETOOMANYHOLES

    struct fn_asm_range:
        uint32_t start
        uint32_t end

    struct fn_assembler:
        uint8_t n
        uint8_t last
        fn_asm_range r[64]

    void fn_asm_init(fn_assembler *a)
    int fn_asm_add(fn_assembler *a, uint32_t off, uint32_t len)
    uint32_t fn_asm_remove_front(fn_assembler *a)
    void fn_asm_advance(fn_assembler *a, uint32_t k)
    int fn_asm_contains(const fn_assembler *a, uint32_t off, uint32_t len)

    # fn_flowtab.h
    struct fn_flowkey:
        uint8_t guest_ip[16]
        uint8_t remote_ip[16]
        uint16_t guest_port
        uint16_t remote_port
        uint8_t proto

    # fn_txq.h
    enum:
        FN_TXD_CSUM_PARTIAL
        FN_TXD_GSO_TCPV4
        FN_TXD_GSO_TCPV6

    struct fn_txd:
        uint32_t off
        uint32_t len
        uint16_t gso_size
        uint16_t csum_start
        uint16_t csum_off
        uint8_t flags
        uint8_t hdr_len

    ctypedef int (*fn_txq_flush_fn)(void *ctx, fn_txq *q) noexcept

    struct fn_txq:
        uint8_t *buf
        uint32_t cap
        uint32_t used
        uint32_t headroom
        fn_txd *d
        uint32_t nd
        uint32_t cap_d
        uint32_t head
        fn_txq_flush_fn flush
        void *flush_ctx
        uint64_t frames
        uint64_t bytes
        uint64_t flushes
        uint64_t full

    int fn_txq_init(fn_txq *q, uint32_t cap, uint32_t cap_d, uint32_t headroom)
    void fn_txq_free(fn_txq *q)
    uint32_t fn_txq_pending(const fn_txq *q)
    void fn_txq_consumed(fn_txq *q, uint32_t n)
    int fn_txq_flush(fn_txq *q)

    # fn_tcp.h
    enum:
        FN_HEV_IN
        FN_HEV_OUT
        FN_HEV_ERR
        FN_HEV_HUP
        FN_HEV_RDHUP

    struct fn_host_ops:
        uint64_t (*clock)(void *ctx)
        void *ctx

    struct fn_tcp_config:
        uint8_t gw_mac[6]
        uint16_t mss
        uint32_t tx_seg_max
        uint8_t tx_csum_partial
        uint8_t tx_gso
        uint8_t rx_csum_verify
        uint32_t rx_buf
        uint32_t max_flows
        uint64_t connect_timeout
        uint64_t syn_timeout
        uint64_t time_wait
        uint64_t fin_timeout
        uint64_t idle_timeout
        uint64_t rto_min
        uint64_t rto_max
        uint64_t rto_initial
        uint32_t max_retries
        uint32_t init_cwnd
        uint32_t send_burst
        uint8_t tail_loss_probe
        uint64_t isn_secret[2]

    void fn_tcp_config_default(fn_tcp_config *c)

    enum fn_tcp_state:
        FN_TCP_CLOSED
        FN_TCP_CONNECTING
        FN_TCP_SYN_SENT
        FN_TCP_SYN_RECEIVED
        FN_TCP_ESTABLISHED
        FN_TCP_FIN_WAIT_1
        FN_TCP_FIN_WAIT_2
        FN_TCP_CLOSE_WAIT
        FN_TCP_CLOSING
        FN_TCP_LAST_ACK
        FN_TCP_TIME_WAIT
        FN_TCP_STATE_COUNT

    enum:
        FN_TEV_NEW_FLOW
        FN_TEV_ESTABLISHED
        FN_TEV_CLOSED
        FN_REFUSE_RST
        FN_REFUSE_NET_UNREACH
        FN_REFUSE_HOST_UNREACH
        FN_REFUSE_PORT_UNREACH
        FN_REFUSE_ADMIN
        FN_REFUSE_DROP
        FN_CLOSE_GUEST_RST
        FN_CLOSE_TIMEOUT
        FN_CLOSE_REFUSED
        FN_CLOSE_ADMIN
        FN_CLOSE_NOMEM

    struct fn_tcp_event:
        uint64_t flow
        uint8_t type
        int32_t err

    struct fn_txlog:
        uint32_t n
        uint32_t sacked

    struct fn_tcb:
        fn_flowkey key
        uint8_t guest_mac[6]
        uint8_t state
        uint8_t snd_wscale
        uint32_t flags
        uint32_t gen
        int fd
        uint32_t irs
        uint32_t rcv_nxt
        uint32_t host_seq
        uint32_t rcv_adv
        uint8_t *ring
        fn_assembler *oo
        uint32_t iss
        uint32_t snd_una
        uint32_t snd_nxt
        uint32_t snd_max
        uint32_t snd_wnd
        uint32_t cwnd
        uint32_t ssthresh
        uint16_t snd_mss
        uint8_t rcv_wscale
        uint16_t dupthresh
        fn_txlog txlog
        uint32_t srtt
        uint32_t rttvar
        uint32_t rto
        uint64_t t_rexmit
        uint64_t t_state
        uint64_t last_rx
        uint64_t bytes_g2h
        uint64_t bytes_h2g
        uint32_t rexmits

    struct fn_tcp_stats:
        uint64_t segs_in, segs_out, bytes_in, bytes_out
        uint64_t flows_opened, flows_closed, flows_active
        uint64_t rst_in, rst_out, challenge_acks
        uint64_t bad_csum, bad_seq, no_flow, ooo_segs, ooo_dropped, dup_segs
        uint64_t rexmits, fast_rexmits, timeouts, zero_window_probes
        uint64_t tail_probes, dsacks_in, dsacks_out, undos, lost_rexmits, reneged
        uint64_t cwnd_reductions
        uint64_t host_writes, host_peeks, host_partial_writes
        uint64_t syn_absorbed, refused, nomem

    struct fn_tcp:
        fn_tcp_config cfg
        fn_tcp_stats st
        fn_txq *txq

    fn_tcp *fn_tcp_new(const fn_tcp_config *cfg, const fn_host_ops *ops, fn_txq *txq)
    void fn_tcp_free(fn_tcp *t)
    int fn_tcp_input(fn_tcp *t, const uint8_t *p, const fn_frame *f, int csum_ok, uint64_t now)
    void fn_tcp_host_event(fn_tcp *t, uint64_t flow, uint32_t events, uint64_t now)
    void fn_tcp_flush(fn_tcp *t, uint64_t now)
    uint64_t fn_tcp_timers(fn_tcp *t, uint64_t now)
    void fn_tcp_link_ready(fn_tcp *t, uint64_t now)
    int fn_tcp_attach(fn_tcp *t, uint64_t flow, int fd, uint64_t now)
    int fn_tcp_refuse(fn_tcp *t, uint64_t flow, int how, uint64_t now)
    uint64_t fn_tcp_open(fn_tcp *t, const uint8_t *guest_mac, const uint8_t *guest_ip, uint16_t guest_port,
                         const uint8_t *remote_ip, uint16_t remote_port, int fd, uint64_t now)
    int fn_tcp_close(fn_tcp *t, uint64_t flow, int abort_, uint64_t now)
    int fn_tcp_next_event(fn_tcp *t, fn_tcp_event *ev)
    const fn_tcb *fn_tcp_get(const fn_tcp *t, uint64_t flow)
    uint64_t fn_tcp_iter(const fn_tcp *t, uint32_t *cursor)
    const char *fn_tcp_state_name(int state)
    void fn_host_ops_sys(fn_host_ops *ops, int *epoll_fd)
    uint64_t fn_host_clock_monotonic(void *ctx)

    # fn_memhost.h
    enum:
        FN_MEMHOST_FD0

    struct fn_memsock:
        size_t rx_len
        size_t tx_len
        size_t tx_limit
        uint64_t flow
        int in_use, watched, rx_eof, shut_wr, closed, rst
        int error
        int io_error
        uint64_t sends, peeks, consumes

    struct fn_memhost:
        int n

    void fn_memhost_init(fn_memhost *h)
    void fn_memhost_free(fn_memhost *h)
    void fn_memhost_ops(fn_memhost *h, fn_host_ops *ops)
    int fn_memhost_socket(fn_memhost *h, size_t tx_limit)
    fn_memsock *fn_memhost_get(fn_memhost *h, int fd)
    int fn_memhost_push(fn_memhost *h, int fd, const uint8_t *p, size_t n)
    size_t fn_memhost_take(fn_memhost *h, int fd, uint8_t *out, size_t max)

    # fn_fault.h
    struct fn_fault_cfg:
        uint32_t drop_ppm, dup_ppm, reorder_ppm, corrupt_ppm
        uint32_t delay_us
        uint32_t hold_us
        uint64_t seed

    struct fn_fault:
        fn_fault_cfg cfg
        uint32_t nheld
        uint64_t seen, dropped, duplicated, reordered, corrupted, delayed

    int fn_fault_init(fn_fault *f, const fn_fault_cfg *cfg)
    void fn_fault_free(fn_fault *f)

    # fn_link.h
    enum:
        FN_LINK_TAP
        FN_LINK_STREAM
        FN_LINK_DGRAM

    struct fn_rxf:
        uint32_t off
        uint32_t len
        uint8_t csum_ok

    struct fn_link_stats:
        uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes
        uint64_t reads, writes, eagain, rx_bad_len, tx_dropped, rx_gso, tx_gso

    struct fn_link:
        int kind
        int fd
        int wfd
        uint32_t vnet
        uint32_t prefix
        uint32_t max_frame
        uint32_t batch
        fn_rxf *rx
        uint32_t nrx
        fn_txq txq
        int blocked
        int eof
        int err
        fn_fault *fault_in
        fn_fault *fault_out
        uint64_t pcap_frames
        fn_link_stats st

    const uint8_t *fn_link_frame(const fn_link *l, const fn_rxf *r)
    int fn_link_init(fn_link *l, int kind, int fd, int vnet_or_prefix, uint32_t max_frame,
                     uint32_t txq_bytes, uint32_t txq_frames)
    void fn_link_free(fn_link *l)
    int fn_link_read(fn_link *l, uint64_t now)
    int fn_link_write(fn_link *l, uint64_t now)
    uint64_t fn_link_deadline(const fn_link *l)
    int fn_link_pending(const fn_link *l)
    int fn_tap_open(const char *name, const char *netns_path, int vnet_hdr, int offload, char *name_out)
    int fn_if_configure(const char *name, uint32_t mtu, const uint8_t *ip, int prefix, const uint8_t *gw,
                        const uint8_t *mac)
    int fn_link_pcap(fn_link *l, int fd, uint32_t snaplen)
    void fn_link_pcap_flush(fn_link *l)

    # fn_frag.h
    struct fn_frag_stats:
        uint64_t fragments, reassembled, timeouts, dropped, recycled

    struct fn_frag:
        fn_frag_stats st

    void fn_frag_expire(fn_frag *r, uint64_t now)

    # fn_dgram.h
    enum fn_dgram_state:
        FN_DG_FREE
        FN_DG_PENDING
        FN_DG_ACTIVE

    enum:
        FN_DEV_NEW_FLOW
        FN_DEV_CLOSED

    struct fn_dgram_config:
        uint8_t gw_mac[6]
        uint16_t mtu
        uint32_t max_flows
        uint64_t udp_idle
        uint64_t icmp_idle
        uint32_t pending_bytes

    struct fn_dgram_flow:
        fn_flowkey key
        uint8_t guest_mac[6]
        uint8_t state
        uint8_t flags
        int fd
        uint8_t ttl
        uint64_t last
        uint64_t pkts_g2h, pkts_h2g, bytes_g2h, bytes_h2g

    struct fn_dgram_event:
        uint64_t flow
        uint8_t type
        uint8_t proto
        int32_t err

    struct fn_dgram_stats:
        uint64_t datagrams_in, datagrams_out, bytes_in, bytes_out
        uint64_t flows_opened, flows_closed, flows_active, evicted, expired
        uint64_t pending_dropped, send_errors, icmp_errors_in, icmp_errors_out
        uint64_t fragments_out, oversize_dropped, refused, bad_csum

    struct fn_dgram:
        fn_dgram_config cfg
        fn_dgram_stats st
        int epfd

    void fn_dgram_config_default(fn_dgram_config *c)
    fn_dgram *fn_dgram_new(const fn_dgram_config *cfg, fn_txq *txq, uint64_t seed)
    void fn_dgram_free(fn_dgram *d)
    void fn_dgram_poll(fn_dgram *d, uint64_t now)
    uint64_t fn_dgram_timers(fn_dgram *d, uint64_t now)
    int fn_dgram_attach(fn_dgram *d, uint64_t flow, int fd, int raw, uint64_t now)
    int fn_dgram_refuse(fn_dgram *d, uint64_t flow, int how, uint64_t now)
    uint64_t fn_dgram_open(fn_dgram *d, const uint8_t *guest_mac, const uint8_t *guest_ip, uint16_t guest_port,
                           const uint8_t *remote_ip, uint16_t remote_port, int fd, uint64_t now)
    int fn_dgram_close(fn_dgram *d, uint64_t flow)
    int fn_dgram_next_event(fn_dgram *d, fn_dgram_event *ev)
    const fn_dgram_flow *fn_dgram_get(const fn_dgram *d, uint64_t flow)
    uint64_t fn_dgram_iter(const fn_dgram *d, uint32_t *cursor)
    int fn_dgram_emit_udp(fn_txq *q, const uint8_t *dst_mac, const uint8_t *src_mac,
                          const uint8_t *src_ip, uint16_t sport, const uint8_t *dst_ip, uint16_t dport,
                          const uint8_t *payload, uint32_t len, uint16_t mtu, uint16_t ip_id, uint8_t ttl)

    # fn_stack.h
    enum:
        FN_STACK_ERRS

    struct fn_stack_stats:
        uint64_t frames, bytes
        uint64_t kind[13]
        uint64_t malformed[32]
        uint64_t arp_replies, arp_ignored
        uint64_t slow_queued, slow_dropped
        uint64_t not_for_us
        uint64_t polls, link_blocked
        uint64_t gw_echo_replies, dropped_proto

    struct fn_switch:
        int n
        uint64_t switched, flooded, unknown

    void fn_switch_init(fn_switch *sw)
    int fn_switch_add(fn_switch *sw, fn_stack *s)
    void fn_switch_remove(fn_switch *sw, fn_stack *s)
    void fn_switch_flush(fn_switch *sw, uint64_t now)

    struct fn_stack:
        fn_link *link
        uint8_t guest_mac[6]
        int has_guest_mac
        fn_switch *sw
        fn_tcp *tcp
        fn_dgram *dgram
        fn_frag frag
        uint8_t *slow
        uint32_t slow_len
        uint32_t slow_n
        fn_stack_stats st

    int fn_stack_init(fn_stack *s, fn_link *link, fn_tcp *tcp, const uint8_t *gw_mac, uint32_t slow_cap)
    void fn_stack_free(fn_stack *s)
    int fn_stack_add_arp(fn_stack *s, const uint8_t *ip)
    void fn_stack_set_gateway(fn_stack *s, const uint8_t *ip)
    int fn_stack_poll_link(fn_stack *s, uint64_t now)
    void fn_stack_input(fn_stack *s, const uint8_t *p, uint32_t len, int csum_ok, uint64_t now)
    int fn_stack_output(fn_stack *s, uint64_t now)
