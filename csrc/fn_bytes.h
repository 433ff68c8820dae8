/* Big-endian loads and stores at any alignment.
 *
 * memcpy into a local is how C99 spells an unaligned load; compilers turn it into one
 * mov (plus bswap), so these cost nothing over a cast and stay defined behaviour. */
#ifndef FN_BYTES_H
#define FN_BYTES_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define FN_INLINE static inline __attribute__((always_inline))
#define FN_LIKELY(x) __builtin_expect(!!(x), 1)
#define FN_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FN_BSWAP16(x) __builtin_bswap16(x)
#define FN_BSWAP32(x) __builtin_bswap32(x)
#else
#define FN_INLINE static inline
#define FN_LIKELY(x) (x)
#define FN_UNLIKELY(x) (x)
#define FN_BSWAP16(x) ((uint16_t)((((x) & 0xffu) << 8) | (((x) >> 8) & 0xffu)))
#define FN_BSWAP32(x) ((((x) & 0xffu) << 24) | (((x) & 0xff00u) << 8) | \
                       (((x) >> 8) & 0xff00u) | (((x) >> 24) & 0xffu))
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FN_BIG_ENDIAN 1
#else
#define FN_BIG_ENDIAN 0
#endif

FN_INLINE uint16_t fn_ld_be16(const uint8_t *p) {
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

FN_INLINE uint32_t fn_ld_be32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if FN_BIG_ENDIAN
    return v;
#else
    return FN_BSWAP32(v);
#endif
}

FN_INLINE void fn_st_be16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

FN_INLINE void fn_st_be32(uint8_t *p, uint32_t v) {
#if !FN_BIG_ENDIAN
    v = FN_BSWAP32(v);
#endif
    memcpy(p, &v, 4);
}

FN_INLINE uint16_t fn_ld_le16(const uint8_t *p) {
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

FN_INLINE uint32_t fn_ld_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

FN_INLINE void fn_st_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

#endif
