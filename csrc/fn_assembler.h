/* Out-of-order reassembly bookkeeping: which byte ranges beyond the in-order point are held.
 *
 * Metadata only (smoltcp's Assembler idea): the data itself is written once, straight into the
 * flow's receive ring at its final position. Ranges are offsets from the in-order point
 * (rcv_nxt), kept sorted, disjoint and non-adjacent:
 *     0 <= r[0].start < r[0].end < r[1].start < r[1].end < ... (at most FN_ASM_MAX ranges)
 * Range 0 never starts at 0 after fn_asm_remove_front() (that data would be in order). */
#ifndef FN_ASSEMBLER_H
#define FN_ASSEMBLER_H

#include <stdint.h>

#define FN_ASM_MAX 64
#define FN_ETOOMANYHOLES (-30)

struct fn_asm_range {
    uint32_t start, end;
};

struct fn_assembler {
    uint8_t n;       /* ranges in use */
    uint8_t last;    /* index of the range most recently added to (first SACK block, RFC 2018 §4) */
    struct fn_asm_range r[FN_ASM_MAX];
};

void fn_asm_init(struct fn_assembler *a);
/* Record [off, off + len) as held. Returns 0, or FN_ETOOMANYHOLES with the state unchanged. */
int fn_asm_add(struct fn_assembler *a, uint32_t off, uint32_t len);
/* If data is held at offset 0, remove that range and return its length; else 0. The remaining
 * ranges are rebased so that offsets stay relative to the new in-order point. */
uint32_t fn_asm_remove_front(struct fn_assembler *a);
/* Rebase after the in-order point advanced by k bytes with no held data at the front (the
 * caller delivered bytes [0, k) from elsewhere); ranges below k are trimmed. */
void fn_asm_advance(struct fn_assembler *a, uint32_t k);
/* Whether [off, off+len) is entirely held. */
int fn_asm_contains(const struct fn_assembler *a, uint32_t off, uint32_t len);

#endif
