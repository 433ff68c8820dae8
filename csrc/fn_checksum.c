/* Internet checksum, RFC 1071, with the incremental update of RFC 1624.
 *
 * Speed: the ones'-complement sum is independent of byte order (RFC 1071 §2(B)), so the
 * loop adds native-order 32-bit words into 64-bit accumulators (no carry handling in the
 * loop: 2^32 additions fit) and swaps bytes once at the end on little-endian hosts. The
 * main loop is unrolled by hand to 32 bytes with four independent accumulators, which
 * keeps the adders busy without relying on the auto-vectoriser (a -O2 build gets the same
 * code as -O3, and no -march flag is needed). */
#include "fn_checksum.h"

FN_INLINE uint32_t fold64(uint64_t s) {
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffu) + (s >> 16);
    s = (s & 0xffffu) + (s >> 16);
    s = (s & 0xffffu) + (s >> 16);
    return (uint32_t)s;
}

FN_INLINE uint64_t ld64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Native-order partial sum, unfolded. Caller guarantees n < 2^34 so nothing overflows. */
static uint64_t sum_native(const uint8_t *p, size_t n) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    while (n >= 32) {
        uint64_t w0 = ld64(p), w1 = ld64(p + 8), w2 = ld64(p + 16), w3 = ld64(p + 24);
        a0 += (w0 & 0xffffffffu) + (w0 >> 32);
        a1 += (w1 & 0xffffffffu) + (w1 >> 32);
        a2 += (w2 & 0xffffffffu) + (w2 >> 32);
        a3 += (w3 & 0xffffffffu) + (w3 >> 32);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        uint64_t w = ld64(p);
        a0 += (w & 0xffffffffu) + (w >> 32);
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        a1 += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        a2 += w;
        p += 2;
        n -= 2;
    }
    if (n) {
        /* The odd last byte is the high byte of a zero-padded big-endian word. */
        uint8_t pad[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, pad, 2);
        a3 += w;
    }
    /* Each accumulator holds at most n/8 values below 2^33: no overflow for n < 2^34. */
    return fold64(a0) + (uint64_t)fold64(a1) + fold64(a2) + fold64(a3);
}

uint32_t fn_csum_partial(const uint8_t *p, size_t n, uint32_t sum) {
    /* Chunks of 1 GiB (even, so word boundaries stay put) keep the accumulators safe. */
    const size_t chunk = (size_t)1 << 30;
    uint64_t acc = 0;
    while (n > chunk) {
        acc += fold64(sum_native(p, chunk));
        p += chunk;
        n -= chunk;
    }
    acc += sum_native(p, n);
    uint32_t s = fold64(acc);
#if !FN_BIG_ENDIAN
    s = FN_BSWAP16((uint16_t)s);
#endif
    return fold64((uint64_t)s + (sum & 0xffffu) + (sum >> 16));
}

uint32_t fn_csum_combine(uint32_t a, uint32_t b, size_t len_a) {
    if (len_a & 1)
        b = FN_BSWAP16((uint16_t)b);
    return fold64((uint64_t)a + b);
}

uint32_t fn_csum_pseudo4(const uint8_t src[4], const uint8_t dst[4], uint8_t proto, uint32_t l4_len) {
    uint64_t s = (uint64_t)fn_ld_be16(src) + fn_ld_be16(src + 2) + fn_ld_be16(dst) +
                 fn_ld_be16(dst + 2) + proto + (l4_len & 0xffffu) + (l4_len >> 16);
    return fold64(s);
}

uint32_t fn_csum_pseudo6(const uint8_t src[16], const uint8_t dst[16], uint8_t proto, uint32_t l4_len) {
    uint64_t s = (uint64_t)proto + (l4_len & 0xffffu) + (l4_len >> 16);
    for (int i = 0; i < 16; i += 2)
        s += (uint64_t)fn_ld_be16(src + i) + fn_ld_be16(dst + i);
    return fold64(s);
}

uint16_t fn_checksum(const uint8_t *p, size_t n, uint32_t initial) {
    return fn_csum_finish(fn_csum_partial(p, n, initial));
}

uint16_t fn_csum_update16(uint16_t check, uint16_t old_word, uint16_t new_word) {
    /* RFC 1624 eqn. 3; eqn. 2 (HC' = HC - ~m - m') can produce 0xffff wrongly, §3. */
    uint64_t s = (uint64_t)(uint16_t)~check + (uint16_t)~old_word + new_word;
    return (uint16_t)~fold64(s);
}

uint16_t fn_csum_update32(uint16_t check, uint32_t old_word, uint32_t new_word) {
    uint64_t s = (uint64_t)(uint16_t)~check + (uint16_t)~(old_word >> 16) +
                 (uint16_t)~(old_word & 0xffffu) + (new_word >> 16) + (new_word & 0xffffu);
    return (uint16_t)~fold64(s);
}

uint16_t fn_csum_update_bytes(uint16_t check, const uint8_t *old_bytes, const uint8_t *new_bytes, size_t n) {
    uint64_t s = (uint16_t)~check;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint64_t)(uint16_t)~fn_ld_be16(old_bytes + i) + fn_ld_be16(new_bytes + i);
    return (uint16_t)~fold64(s);
}
