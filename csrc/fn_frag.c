#include "fn_frag.h"

#include <stdlib.h>
#include <string.h>

#include "fn_checksum.h"

#define BUFSZ (60 + 65535)

void fn_frag_init(struct fn_frag *r, uint64_t timeout) {
    memset(r, 0, sizeof(*r));
    r->timeout = timeout;
}

void fn_frag_free(struct fn_frag *r) {
    for (int i = 0; i < FN_FRAG_SLOTS; i++)
        free(r->s[i].buf);
    memset(r->s, 0, sizeof(r->s));
}

void fn_frag_expire(struct fn_frag *r, uint64_t now) {
    for (int i = 0; i < FN_FRAG_SLOTS; i++)
        if (r->s[i].used && r->s[i].deadline <= now) {
            r->s[i].used = 0;
            r->st.timeouts++;
        }
}

static struct fn_frag_slot *slot_for(struct fn_frag *r, const uint8_t *ip, uint64_t now) {
    struct fn_frag_slot *free_s = NULL, *oldest = NULL;
    uint16_t id = fn_ld_be16(ip + FN_IPV4_OFF_ID);
    for (int i = 0; i < FN_FRAG_SLOTS; i++) {
        struct fn_frag_slot *s = &r->s[i];
        if (s->used && s->deadline <= now) {
            s->used = 0;
            r->st.timeouts++;
        }
        if (!s->used) {
            if (!free_s)
                free_s = s;
            continue;
        }
        /* RFC 791: a datagram is identified by source, destination, protocol and id. */
        if (s->id == id && s->proto == ip[FN_IPV4_OFF_PROTO] && memcmp(s->src, ip + FN_IPV4_OFF_SRC, 4) == 0 &&
            memcmp(s->dst, ip + FN_IPV4_OFF_DST, 4) == 0)
            return s;
        if (!oldest || s->deadline < oldest->deadline)
            oldest = s;
    }
    struct fn_frag_slot *s = free_s;
    if (!s) {
        s = oldest;
        r->st.recycled++;
    }
    if (!s->buf && !(s->buf = malloc(BUFSZ)))
        return NULL;
    s->used = 1;
    s->id = id;
    s->proto = ip[FN_IPV4_OFF_PROTO];
    memcpy(s->src, ip + FN_IPV4_OFF_SRC, 4);
    memcpy(s->dst, ip + FN_IPV4_OFF_DST, 4);
    s->hlen = 0;
    s->total = 0;
    s->deadline = now + r->timeout;
    fn_asm_init(&s->have);
    return s;
}

const uint8_t *fn_frag_input(struct fn_frag *r, const uint8_t *p, const struct fn_frame *f, uint64_t now,
                             uint32_t *len, uint8_t mac[6]) {
    r->st.fragments++;
    const uint8_t *ip = p + f->l3_off;
    uint32_t off = (uint32_t)f->frag_off * 8, n = f->payload_len;
    int more = (f->flags & FN_FRAME_MF) != 0;
    if (off + n > 65535u - f->l3_hlen || (more && (n & 7))) {
        r->st.dropped++; /* too long, or a middle fragment not a multiple of 8 (RFC 791) */
        return NULL;
    }
    struct fn_frag_slot *s = slot_for(r, ip, now);
    if (!s) {
        r->st.dropped++;
        return NULL;
    }
    if (!more) {
        if (s->total && s->total != off + n) {
            s->used = 0; /* two different ends: drop the datagram */
            r->st.dropped++;
            return NULL;
        }
        s->total = off + n;
    }
    if (off == 0) {
        s->hlen = f->l3_hlen;
        memcpy(s->buf, ip, f->l3_hlen);
        memcpy(mac, p + 6, 6);
        memcpy(s->mac, p + 6, 6);
    }
    if (fn_asm_add(&s->have, off, n) < 0) {
        s->used = 0;
        r->st.dropped++;
        return NULL;
    }
    memcpy(s->buf + 60 + off, p + f->payload_off, n);
    if (!s->total || !s->hlen || s->have.n != 1 || s->have.r[0].start != 0 || s->have.r[0].end != s->total)
        return NULL;
    /* Complete: header of the first fragment, fragment fields cleared, lengths fixed. */
    uint8_t *out = s->buf + 60 - s->hlen;
    memmove(out, s->buf, s->hlen);
    fn_st_be16(out + FN_IPV4_OFF_LEN, (uint16_t)(s->hlen + s->total));
    fn_st_be16(out + FN_IPV4_OFF_FRAG, 0);
    fn_st_be16(out + FN_IPV4_OFF_CSUM, 0);
    fn_st_be16(out + FN_IPV4_OFF_CSUM, fn_checksum(out, s->hlen, 0));
    memcpy(mac, s->mac, 6);
    *len = s->hlen + s->total;
    s->used = 0;
    r->st.reassembled++;
    return out;
}
