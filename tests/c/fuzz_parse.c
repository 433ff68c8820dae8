/* Sanitizer harness for csrc (built with -fsanitize=address,undefined by test_csrc_sanitized.py).
 *
 * Reads frames from argv[1] (each behind a 4-byte big-endian length) and, for each, parses
 * every truncation and a stream of seeded random mutations, each from an exactly-sized heap
 * copy so that any read past the end trips AddressSanitizer. Also checks the checksum against
 * a byte-at-a-time reference at every length and alignment up to 600 bytes, and runs the
 * batch classifier over random bytes. Exit status 0 means no finding; a sanitizer aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastnet.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static int check_frame(const uint8_t *src, size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    memcpy(p, src, n);
    struct fn_frame f;
    int rc = fn_parse_frame(p, n, &f);
    if (rc == FN_OK) {
        /* The contract: every region named lies inside the buffer. */
        if (f.len > n || f.l3_off + f.l3_len > n || f.l4_off + f.l4_len > n ||
            f.payload_off + f.payload_len > n) {
            fprintf(stderr, "region outside buffer: n=%zu len=%u l3=%u+%u l4=%u+%u pl=%u+%u\n", n, f.len,
                    f.l3_off, f.l3_len, f.l4_off, f.l4_len, f.payload_off, f.payload_len);
            free(p);
            return 1;
        }
        (void)fn_l4_verify(p, &f);
        if (f.ethertype == FN_ETHERTYPE_IPV4 && f.kind != FN_KIND_ARP && f.kind != FN_KIND_ETHERNET)
            (void)fn_ipv4_verify(p + f.l3_off);
        fn_l4_fill(p, &f);
    } else if (rc < FN_ERROR_MIN || fn_strerror(rc) == NULL) {
        free(p);
        return 1;
    }
    struct fn_frame g;
    (void)fn_parse_ip(p, n, &g);
    free(p);
    return 0;
}

static uint32_t ref_sum(const uint8_t *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint32_t)s;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_parse FRAMES\n");
        return 2;
    }
    FILE *fp = fopen(argv[1], "rb");
    if (!fp) {
        perror(argv[1]);
        return 2;
    }
    static uint8_t buf[1 << 20];
    size_t total = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    size_t pos = 0, frames = 0, cases = 0;
    while (pos + 4 <= total) {
        size_t len = fn_ld_be32(buf + pos);
        pos += 4;
        if (len > total - pos)
            break;
        const uint8_t *fr = buf + pos;
        for (size_t cut = 0; cut <= len; cut++, cases++)
            if (check_frame(fr, cut))
                return 1;
        uint8_t *m = malloc(len);
        for (int k = 0; k < 3000; k++, cases++) {
            memcpy(m, fr, len);
            int flips = 1 + (int)(rnd() % 4);
            for (int j = 0; j < flips && len; j++) {
                size_t at = rnd() % len;
                m[at] = (rnd() & 1) ? (uint8_t)rnd() : (uint8_t)(m[at] ^ (1u << (rnd() % 8)));
            }
            size_t cut = (rnd() % 4 == 0 && len) ? rnd() % len : len;
            if (check_frame(m, cut))
                return 1;
        }
        free(m);
        pos += len;
        frames++;
    }
    /* Random bytes, with a plausible Ethernet/IP prefix half of the time. */
    for (int k = 0; k < 20000; k++, cases++) {
        uint8_t r[256];
        size_t n = rnd() % sizeof(r);
        for (size_t i = 0; i < n; i++)
            r[i] = (uint8_t)rnd();
        if ((k & 1) && n > 14) {
            static const uint16_t types[] = {0x0800, 0x86dd, 0x0806, 0x8100};
            fn_st_be16(r + 12, types[rnd() % 4]);
            if (n > 15)
                r[14] = (uint8_t)((r[12] == 0x86 ? 0x60 : 0x40) | (r[14] & 0x0f));
        }
        if (check_frame(r, n))
            return 1;
    }
    /* Checksum: every length to 600 at every alignment 0..7, from exact heap copies. */
    for (size_t n = 0; n <= 600; n++) {
        for (size_t a = 0; a < 8; a++) {
            uint8_t *p = malloc(n + a + 1);
            for (size_t i = 0; i < n + a; i++)
                p[i] = (uint8_t)rnd();
            uint32_t got = fn_csum_partial(p + a, n, 0), want = ref_sum(p + a, n);
            if (got % 0xffff != want % 0xffff) {
                fprintf(stderr, "checksum mismatch n=%zu align=%zu: %x vs %x\n", n, a, got, want);
                return 1;
            }
            free(p);
        }
    }
    /* Batch classifier over random streams. */
    struct fn_summary out[64];
    for (int k = 0; k < 5000; k++) {
        size_t n = rnd() % 512;
        uint8_t *p = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)rnd();
        size_t consumed;
        size_t c = fn_classify_stream(p, n, (k & 1) ? 2 : 4, k & 2, 0, out, 64, &consumed);
        if (consumed > n || c > 64) {
            free(p);
            return 1;
        }
        free(p);
    }
    printf("ok frames=%zu cases=%zu\n", frames, cases);
    return 0;
}
