/* The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Conventions used by every function here:
 *  - a *sum* is the 16-bit ones'-complement sum of the data read as big-endian 16-bit
 *    words, already folded, not complemented, as a value in [0, 0xffff];
 *  - sums of adjacent pieces combine with fn_csum_combine(), which needs the byte length
 *    of the first piece (an odd length swaps the bytes of the second sum, RFC 1071 §2(B));
 *  - the value written into a header is fn_csum_finish(sum) = ~sum (0 is kept as 0 only
 *    by callers that need UDP's "no checksum" rule, RFC 768). */
#ifndef FN_CHECKSUM_H
#define FN_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#include "fn_bytes.h"

/* Ones'-complement sum of n bytes starting at p, added to sum (an earlier folded sum). */
uint32_t fn_csum_partial(const uint8_t *p, size_t n, uint32_t sum);

/* Folded sum of pieces a (len_a bytes) followed by b. */
uint32_t fn_csum_combine(uint32_t a, uint32_t b, size_t len_a);

/* Pseudo-header sums: IPv4 (RFC 793 §3.1, RFC 768) and IPv6 (RFC 8200 §8.1). Addresses are
 * the bytes as they appear on the wire; l4_len is the upper-layer length. */
uint32_t fn_csum_pseudo4(const uint8_t src[4], const uint8_t dst[4], uint8_t proto, uint32_t l4_len);
uint32_t fn_csum_pseudo6(const uint8_t src[16], const uint8_t dst[16], uint8_t proto, uint32_t l4_len);

/* The 16-bit field value: ~sum. */
FN_INLINE uint16_t fn_csum_finish(uint32_t sum) { return (uint16_t)~sum; }

/* fn_csum_finish(fn_csum_partial(p, n, initial)) */
uint16_t fn_checksum(const uint8_t *p, size_t n, uint32_t initial);

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). check is the field value now in the header,
 * old/new the 16-bit word being rewritten (both read big-endian). Returns the new field. */
uint16_t fn_csum_update16(uint16_t check, uint16_t old_word, uint16_t new_word);
/* The same for a 32-bit value (an IPv4 address) as two 16-bit words. */
uint16_t fn_csum_update32(uint16_t check, uint32_t old_word, uint32_t new_word);
/* The same for n bytes (n even) at any position: a rewritten IPv6 address, say. */
uint16_t fn_csum_update_bytes(uint16_t check, const uint8_t *old_bytes, const uint8_t *new_bytes, size_t n);

#endif
