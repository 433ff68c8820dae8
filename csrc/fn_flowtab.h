/* Flow table: 4-tuple → flow index, open addressing with linear probing and backward-shift
 * deletion (no tombstones), keyed hash (random seed per table) so a guest cannot aim
 * collisions. Load factor stays at most 1/2; the table doubles when it would exceed it.
 * Keys hold 16-byte addresses so IPv6 fits without changing the table (IPv4 is stored
 * v4-mapped, ::ffff:a.b.c.d). */
#ifndef FN_FLOWTAB_H
#define FN_FLOWTAB_H

#include <stdint.h>

struct fn_flowkey {
    uint8_t guest_ip[16];
    uint8_t remote_ip[16];
    uint16_t guest_port;
    uint16_t remote_port;
    uint8_t proto;
    uint8_t pad[3];
};

struct fn_flowtab {
    uint32_t *slot;      /* flow index + 1; 0 = empty */
    uint32_t *hash;      /* cached hash per slot */
    uint32_t mask;       /* capacity - 1 (power of two) */
    uint32_t count;
    uint64_t seed;
};

/* The table needs the key of an index: a callback into the owner's storage. */
typedef const struct fn_flowkey *(*fn_flowtab_key_fn)(void *owner, uint32_t idx);

int fn_flowtab_init(struct fn_flowtab *t, uint32_t capacity, uint64_t seed);
void fn_flowtab_free(struct fn_flowtab *t);
uint32_t fn_flowkey_hash(const struct fn_flowtab *t, const struct fn_flowkey *k);
/* Index for key, or UINT32_MAX. */
uint32_t fn_flowtab_find(const struct fn_flowtab *t, const struct fn_flowkey *k, fn_flowtab_key_fn key, void *owner);
/* Insert idx under key (absent). Returns 0 or -1 (out of memory growing). */
int fn_flowtab_insert(struct fn_flowtab *t, const struct fn_flowkey *k, uint32_t idx, fn_flowtab_key_fn key, void *owner);
/* Remove key. Returns 0 or -1 when absent. */
int fn_flowtab_remove(struct fn_flowtab *t, const struct fn_flowkey *k, fn_flowtab_key_fn key, void *owner);

void fn_flowkey_v4(struct fn_flowkey *k, uint8_t proto, const uint8_t guest_ip[4], uint16_t guest_port,
                   const uint8_t remote_ip[4], uint16_t remote_port);

#endif
