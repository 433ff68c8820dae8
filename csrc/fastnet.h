/* Umbrella header for the pure-C99 core (no Python.h anywhere under csrc/).
 * Every symbol is prefixed fn_ (functions, structs) or FN_ (macros, constants). */
#ifndef FASTNET_H
#define FASTNET_H

#include "fn_bytes.h"
#include "fn_checksum.h"
#include "fn_wire.h"
#include "fn_build.h"
#include "fn_seq.h"
#include "fn_assembler.h"
#include "fn_flowtab.h"
#include "fn_txlog.h"
#include "fn_txq.h"
#include "fn_tcp.h"
#include "fn_memhost.h"
#include "fn_fault.h"
#include "fn_link.h"
#include "fn_frag.h"
#include "fn_dgram.h"
#include "fn_stack.h"

#endif
