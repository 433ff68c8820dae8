/* A seeded fault injector for a link direction (smoltcp's FaultInjector is the model): drop,
 * duplicate, reorder, corrupt and delay frames, so loss and reordering can be tested on a
 * kernel without netem. Decisions come from a xorshift generator seeded by the caller, so a
 * run is reproducible for the same frame sequence.
 *
 * Reorder holds a frame back and releases it after 1-3 later frames (or after hold_us when no
 * frame follows): uncorrelated, unlike netem's "reorder 5% 50%", which barely reorders.
 * Delay holds every frame for delay_us. Held frames are copied (the link reuses its buffers). */
#ifndef FN_FAULT_H
#define FN_FAULT_H

#include <stddef.h>
#include <stdint.h>

struct fn_fault_cfg {
    uint32_t drop_ppm, dup_ppm, reorder_ppm, corrupt_ppm; /* probabilities in parts per million */
    uint32_t delay_us;
    uint32_t hold_us;      /* release a reordered frame after this long if nothing follows */
    uint64_t seed;
};

struct fn_fault_held {
    uint8_t *data;
    uint32_t len;
    uint32_t after;        /* frames still to pass before release (reorder) */
    uint64_t when;         /* release time (delay, or reorder's hold limit) */
    uint8_t meta;          /* caller's per-frame flags, kept with the copy */
};

struct fn_fault {
    struct fn_fault_cfg cfg;
    uint64_t rng;
    struct fn_fault_held *held;
    uint32_t nheld, cap_held;
    uint64_t seen, dropped, duplicated, reordered, corrupted, delayed;
};

enum fn_fault_verdict { FN_FAULT_PASS = 0, FN_FAULT_DROP, FN_FAULT_DUP, FN_FAULT_HOLD };

int fn_fault_init(struct fn_fault *f, const struct fn_fault_cfg *cfg);
void fn_fault_free(struct fn_fault *f);
/* Decide for one frame (p may be corrupted in place). HOLD: the frame was copied and will be
 * returned by fn_fault_release; DUP: deliver it twice; DROP: not at all. */
int fn_fault_apply(struct fn_fault *f, uint8_t *p, uint32_t len, uint8_t meta, uint64_t now);
/* Count one delivered frame towards reorder release; call after each frame passes. */
void fn_fault_tick(struct fn_fault *f);
/* The next held frame due at `now`, copied into out when it fits in cap bytes: its length, or 0
 * when none is due or it does not fit (it stays held). *meta gets its flags. */
uint32_t fn_fault_release(struct fn_fault *f, uint64_t now, uint8_t *out, uint32_t cap, uint8_t *meta);
/* Earliest release time of a held frame, or 0. */
uint64_t fn_fault_deadline(const struct fn_fault *f);

#endif
