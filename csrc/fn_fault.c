#include "fn_fault.h"

#include <stdlib.h>
#include <string.h>

static uint32_t rnd(struct fn_fault *f) {
    uint64_t x = f->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    f->rng = x;
    return (uint32_t)(x >> 32);
}

static int chance(struct fn_fault *f, uint32_t ppm) { return ppm && rnd(f) % 1000000u < ppm; }

int fn_fault_init(struct fn_fault *f, const struct fn_fault_cfg *cfg) {
    memset(f, 0, sizeof(*f));
    f->cfg = *cfg;
    f->rng = cfg->seed ? cfg->seed : 0x9e3779b97f4a7c15ull;
    if (!f->cfg.hold_us)
        f->cfg.hold_us = 1000;
    return 0;
}

void fn_fault_free(struct fn_fault *f) {
    for (uint32_t i = 0; i < f->nheld; i++)
        free(f->held[i].data);
    free(f->held);
    f->held = NULL;
    f->nheld = f->cap_held = 0;
}

static int hold(struct fn_fault *f, const uint8_t *p, uint32_t len, uint8_t meta, uint32_t after, uint64_t when) {
    if (f->nheld == f->cap_held) {
        uint32_t cap = f->cap_held ? f->cap_held * 2 : 64;
        struct fn_fault_held *n = realloc(f->held, sizeof(*n) * cap);
        if (!n)
            return -1;
        f->held = n;
        f->cap_held = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    memcpy(copy, p, len);
    struct fn_fault_held *h = &f->held[f->nheld++];
    h->data = copy;
    h->len = len;
    h->after = after;
    h->when = when;
    h->meta = meta;
    return 0;
}

int fn_fault_apply(struct fn_fault *f, uint8_t *p, uint32_t len, uint8_t meta, uint64_t now) {
    f->seen++;
    if (chance(f, f->cfg.drop_ppm)) {
        f->dropped++;
        return FN_FAULT_DROP;
    }
    if (len && chance(f, f->cfg.corrupt_ppm)) {
        /* Flip one bit past the Ethernet header: a checksum must catch it, not a MAC filter. */
        uint32_t lo = len > 14 ? 14 : 0;
        uint32_t at = lo + rnd(f) % (len - lo);
        p[at] ^= (uint8_t)(1u << (rnd(f) % 8));
        f->corrupted++;
    }
    if (chance(f, f->cfg.reorder_ppm) && hold(f, p, len, meta, 1 + rnd(f) % 3, now + f->cfg.hold_us) == 0) {
        f->reordered++;
        return FN_FAULT_HOLD;
    }
    if (f->cfg.delay_us && hold(f, p, len, meta, 0, now + f->cfg.delay_us) == 0) {
        f->delayed++;
        return FN_FAULT_HOLD;
    }
    if (chance(f, f->cfg.dup_ppm)) {
        f->duplicated++;
        return FN_FAULT_DUP;
    }
    return FN_FAULT_PASS;
}

void fn_fault_tick(struct fn_fault *f) {
    for (uint32_t i = 0; i < f->nheld; i++)
        if (f->held[i].after)
            f->held[i].after--;
}

uint32_t fn_fault_release(struct fn_fault *f, uint64_t now, uint8_t *out, uint32_t cap, uint8_t *meta) {
    for (uint32_t i = 0; i < f->nheld; i++) {
        struct fn_fault_held *h = &f->held[i];
        /* Reordered frames go once enough later frames passed (or their hold time ran out);
         * delayed frames go when due. */
        int due = f->cfg.delay_us ? h->when <= now : (h->after == 0 || h->when <= now);
        if (!due)
            continue;
        if (h->len > cap)
            return 0;
        uint32_t len = h->len;
        memcpy(out, h->data, len);
        *meta = h->meta;
        free(h->data);
        memmove(h, h + 1, sizeof(*h) * (f->nheld - i - 1));
        f->nheld--;
        return len;
    }
    return 0;
}

uint64_t fn_fault_deadline(const struct fn_fault *f) {
    uint64_t d = 0;
    for (uint32_t i = 0; i < f->nheld; i++)
        if (!d || f->held[i].when < d)
            d = f->held[i].when;
    return d;
}
