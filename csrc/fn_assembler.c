#include "fn_assembler.h"

#include <string.h>

void fn_asm_init(struct fn_assembler *a) {
    a->n = 0;
    a->last = 0;
}

int fn_asm_add(struct fn_assembler *a, uint32_t off, uint32_t len) {
    if (len == 0)
        return 0;
    uint32_t s = off, e = off + len;
    int i = 0;
    /* First range that ends at or after s (touching counts: adjacent ranges merge). */
    while (i < a->n && a->r[i].end < s)
        i++;
    int j = i;
    /* Ranges [i, j) overlap or touch [s, e). */
    while (j < a->n && a->r[j].start <= e)
        j++;
    if (i == j) {
        /* A new range at position i. */
        if (a->n == FN_ASM_MAX)
            return FN_ETOOMANYHOLES;
        memmove(&a->r[i + 1], &a->r[i], (size_t)(a->n - i) * sizeof(a->r[0]));
        a->r[i].start = s;
        a->r[i].end = e;
        a->n++;
        a->last = (uint8_t)i;
        return 0;
    }
    if (a->r[i].start < s)
        s = a->r[i].start;
    if (a->r[j - 1].end > e)
        e = a->r[j - 1].end;
    a->r[i].start = s;
    a->r[i].end = e;
    if (j - i > 1) {
        memmove(&a->r[i + 1], &a->r[j], (size_t)(a->n - j) * sizeof(a->r[0]));
        a->n = (uint8_t)(a->n - (j - i - 1));
    }
    a->last = (uint8_t)i;
    return 0;
}

void fn_asm_advance(struct fn_assembler *a, uint32_t k) {
    int i = 0, o = 0;
    for (; i < a->n; i++) {
        if (a->r[i].end <= k)
            continue;
        a->r[o].start = a->r[i].start > k ? a->r[i].start - k : 0;
        a->r[o].end = a->r[i].end - k;
        if (a->last == i)
            a->last = (uint8_t)o;
        o++;
    }
    if (a->last >= o)
        a->last = 0;
    a->n = (uint8_t)o;
}

uint32_t fn_asm_remove_front(struct fn_assembler *a) {
    if (a->n == 0 || a->r[0].start != 0)
        return 0;
    uint32_t k = a->r[0].end;
    fn_asm_advance(a, k);
    return k;
}

int fn_asm_contains(const struct fn_assembler *a, uint32_t off, uint32_t len) {
    for (int i = 0; i < a->n; i++)
        if (a->r[i].start <= off && off + len <= a->r[i].end)
            return 1;
    return 0;
}
