from fastnet._csrc cimport fn_host_ops, fn_memhost, fn_tcp, fn_txq


cdef class TcpEngine:
    cdef fn_tcp *t
    cdef fn_txq *txq           # the transmit queue frames go to (own or a link's)
    cdef fn_txq own_txq
    cdef bint owns_txq
    cdef object _txq_owner     # keeps a link's queue alive while the engine writes to it
    cdef fn_host_ops ops
    cdef fn_memhost mem
    cdef bint memory
    cdef int epfd
    cdef list _keep            # input frames kept alive until flush
    cdef list _sink            # frames taken from the own transmit queue
    cdef object __weakref__

    cdef int _poll_host(self, unsigned long long now) except -1
    cdef void _use_txq(self, fn_txq *q, object owner)
