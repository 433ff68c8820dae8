"""Answers from upstream kept for as long as their TTLs allow, handed out with the TTLs counted
down (RFC 1035 §3.2.1, RFC 2181 §8), negative answers for as long as their SOA says (RFC 2308 §5).

An entry lives for the smallest TTL of its records: once one record has expired the answer as a
whole is no longer what the authority said. Least recently used entries go first when full."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from fastnet.services.dns_messages import MAX_WIRE_TTL, reply_from

Key = tuple


def cache_key(query: dns.message.Message) -> Key:
    """What an answer depends on besides the question: DO (DNSSEC records wanted, RFC 3225), CD
    (validation off, RFC 4035 §3.2.2) and RD. Names compare case-insensitively."""
    q = query.question[0]
    return (q.name, q.rdtype, q.rdclass, bool(query.ednsflags & dns.flags.DO),
            bool(query.flags & dns.flags.CD), bool(query.flags & dns.flags.RD))


def answer_ttl(msg: dns.message.Message) -> int | None:
    """How long msg may be cached, or None for never: truncated answers, failures, and negative
    answers without an SOA to say for how long (RFC 2308 §5)."""
    if msg.flags & dns.flags.TC:
        return None
    rcode = msg.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    sections = msg.answer + msg.authority + msg.additional
    if rcode == dns.rcode.NOERROR and msg.answer:
        ttls = [r.ttl for r in sections]
    else:
        soas = [r for r in msg.authority if r.rdtype == dns.rdatatype.SOA and len(r)]
        if not soas:
            return None
        # RFC 2308 §5: the lesser of the SOA record's TTL and its MINIMUM field.
        ttls = [min(soas[0].ttl, soas[0][0].minimum)] + [r.ttl for r in sections]
    ttls = [0 if t > MAX_WIRE_TTL else t for t in ttls]
    ttl = min(ttls)
    return ttl if ttl > 0 else None


class AnswerCache:
    def __init__(self, size: int = 4096, max_ttl: int = 86400, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.max_ttl = max_ttl
        self.clock = clock
        self._entries: OrderedDict[Key, tuple[dns.message.Message, float, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: Key, msg: dns.message.Message) -> int | None:
        """Keep msg if it may be cached; the TTL it was kept for, or None."""
        ttl = answer_ttl(msg)
        if ttl is None or self.size == 0:
            return None
        ttl = min(ttl, self.max_ttl)
        now = self.clock()
        self._entries[key] = (msg, now, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
            self.evictions += 1
        return ttl

    def get(self, key: Key, query: dns.message.Message, *, our_payload: int) -> dns.message.Message | None:
        """A response to query from a live entry, its TTLs reduced by the entry's age."""
        entry = self._entries.get(key)
        now = self.clock()
        if entry is None or entry[2] <= now:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        cached, stored, expires = entry
        return reply_from(cached, query, age=int(now - stored), life=math.ceil(expires - now),
                          our_payload=our_payload)

    def clear(self) -> None:
        self._entries.clear()

    def stats(self) -> dict:
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses,
                "evictions": self.evictions}
