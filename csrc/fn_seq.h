/* TCP sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4): a < b when (int32)(a - b) < 0.
 * Meaningful while the two numbers are less than 2^31 apart, which the window rules ensure. */
#ifndef FN_SEQ_H
#define FN_SEQ_H

#include <stdint.h>

#include "fn_bytes.h"

FN_INLINE int fn_seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
FN_INLINE int fn_seq_le(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }
FN_INLINE int fn_seq_gt(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }
FN_INLINE int fn_seq_ge(uint32_t a, uint32_t b) { return (int32_t)(a - b) >= 0; }
FN_INLINE uint32_t fn_seq_max(uint32_t a, uint32_t b) { return fn_seq_gt(a, b) ? a : b; }
FN_INLINE uint32_t fn_seq_min(uint32_t a, uint32_t b) { return fn_seq_lt(a, b) ? a : b; }
/* lo <= s < hi */
FN_INLINE int fn_seq_in(uint32_t s, uint32_t lo, uint32_t hi) { return fn_seq_ge(s, lo) && fn_seq_lt(s, hi); }

#endif
