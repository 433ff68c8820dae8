#include "fn_flowtab.h"

#include <stdlib.h>
#include <string.h>

static inline uint64_t mix64(uint64_t x) {
    /* splitmix64 finaliser: full avalanche, cheap. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint32_t fn_flowkey_hash(const struct fn_flowtab *t, const struct fn_flowkey *k) {
    uint64_t w[5];
    memcpy(w, k, sizeof(w));
    uint64_t h = t->seed;
    for (int i = 0; i < 5; i++)
        h = mix64(h ^ w[i]);
    return (uint32_t)h | 1u; /* never 0, so a cached hash of 0 cannot look valid */
}

int fn_flowtab_init(struct fn_flowtab *t, uint32_t capacity, uint64_t seed) {
    uint32_t cap = 16;
    while (cap < capacity * 2 && cap < (1u << 30))
        cap <<= 1;
    t->slot = calloc(cap, sizeof(uint32_t));
    t->hash = calloc(cap, sizeof(uint32_t));
    if (!t->slot || !t->hash) {
        free(t->slot);
        free(t->hash);
        return -1;
    }
    t->mask = cap - 1;
    t->count = 0;
    t->seed = seed;
    return 0;
}

void fn_flowtab_free(struct fn_flowtab *t) {
    free(t->slot);
    free(t->hash);
    t->slot = t->hash = NULL;
}

uint32_t fn_flowtab_find(const struct fn_flowtab *t, const struct fn_flowkey *k, fn_flowtab_key_fn key, void *owner) {
    uint32_t h = fn_flowkey_hash(t, k);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t s = t->slot[i];
        if (s == 0)
            return UINT32_MAX;
        if (t->hash[i] == h && memcmp(key(owner, s - 1), k, sizeof(*k)) == 0)
            return s - 1;
    }
}

static void place(struct fn_flowtab *t, uint32_t h, uint32_t idx) {
    uint32_t i = h & t->mask;
    while (t->slot[i])
        i = (i + 1) & t->mask;
    t->slot[i] = idx + 1;
    t->hash[i] = h;
}

static int grow(struct fn_flowtab *t) {
    uint32_t old_cap = t->mask + 1, cap = old_cap * 2;
    uint32_t *os = t->slot, *oh = t->hash;
    t->slot = calloc(cap, sizeof(uint32_t));
    t->hash = calloc(cap, sizeof(uint32_t));
    if (!t->slot || !t->hash) {
        free(t->slot);
        free(t->hash);
        t->slot = os;
        t->hash = oh;
        return -1;
    }
    t->mask = cap - 1;
    for (uint32_t i = 0; i < old_cap; i++)
        if (os[i])
            place(t, oh[i], os[i] - 1);
    free(os);
    free(oh);
    return 0;
}

int fn_flowtab_insert(struct fn_flowtab *t, const struct fn_flowkey *k, uint32_t idx, fn_flowtab_key_fn key, void *owner) {
    (void)key;
    (void)owner;
    if ((t->count + 1) * 2 > t->mask + 1 && grow(t) < 0)
        return -1;
    place(t, fn_flowkey_hash(t, k), idx);
    t->count++;
    return 0;
}

int fn_flowtab_remove(struct fn_flowtab *t, const struct fn_flowkey *k, fn_flowtab_key_fn key, void *owner) {
    uint32_t h = fn_flowkey_hash(t, k);
    uint32_t i = h & t->mask;
    for (;; i = (i + 1) & t->mask) {
        uint32_t s = t->slot[i];
        if (s == 0)
            return -1;
        if (t->hash[i] == h && memcmp(key(owner, s - 1), k, sizeof(*k)) == 0)
            break;
    }
    /* Backward-shift deletion: move later entries of the probe run into the gap when their
     * home slot is not between the gap and their current slot (cyclically). */
    uint32_t gap = i;
    for (uint32_t j = (i + 1) & t->mask; t->slot[j]; j = (j + 1) & t->mask) {
        uint32_t home = t->hash[j] & t->mask;
        int between = gap <= j ? (gap < home && home <= j) : (gap < home || home <= j);
        if (!between) {
            t->slot[gap] = t->slot[j];
            t->hash[gap] = t->hash[j];
            gap = j;
        }
    }
    t->slot[gap] = 0;
    t->hash[gap] = 0;
    t->count--;
    return 0;
}

void fn_flowkey_v4(struct fn_flowkey *k, uint8_t proto, const uint8_t guest_ip[4], uint16_t guest_port,
                   const uint8_t remote_ip[4], uint16_t remote_port) {
    memset(k, 0, sizeof(*k));
    k->guest_ip[10] = k->guest_ip[11] = 0xff;
    memcpy(k->guest_ip + 12, guest_ip, 4);
    k->remote_ip[10] = k->remote_ip[11] = 0xff;
    memcpy(k->remote_ip + 12, remote_ip, 4);
    k->guest_port = guest_port;
    k->remote_port = remote_port;
    k->proto = proto;
}
