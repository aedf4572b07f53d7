/* Private: the graph body, shared by the builders (graph.c), the planner (plan.c) and the
 * backends (backend.c, backend_cpu.c, cpu_*.c). */
#ifndef MMP_CORE_GRAPH_IMPL_H
#define MMP_CORE_GRAPH_IMPL_H

#include "mmpipe/graph.h"
#include "mmpipe/backend.h"
#include <string.h>

struct mmp__buffer;
struct mmp__backend_iface;

struct mmp_graph {
    mmp_tensor *tensors;       /* arena: cap tensor structs, allocated once */
    int32_t n, cap;

    /* ---- plan (plan.c) ---- */
    bool planned;
    bool stale;                /* tensors were added after a plan (inputs would move) */
    int32_t planned_n;         /* n when planned: adding tensors afterwards invalidates it */
    const struct mmp__backend_iface *planned_iface;
    int planned_threads;       /* work scratch is sized per thread: compute with at most this many */
    int32_t *order;            /* [cap] ids of the nodes to compute, in build order */
    int32_t n_order;
    size_t *offs;              /* [cap] byte offset of each planned tensor in buf (SIZE_MAX: none) */
    int32_t *scratch;          /* [2*cap] planner scratch (last use, flags) */
    size_t *free_blocks;       /* [2*(2*cap+2)] planner free list (offset, size pairs) */
    struct mmp__buffer *buf;   /* planned memory: tensors [0, planned_bytes), then work */
    void *work;                /* scratch of the ops (inside buf) */
    size_t work_size;
    mmp_graph_stats stats;
};

/* op params as floats (bit-cast into int32 slots). */
static inline void mmp__set_param_f(mmp_tensor *t, int i, float v) { memcpy(&t->op_params[i], &v, sizeof v); }
static inline float mmp__param_f(const mmp_tensor *t, int i) { float v; memcpy(&v, &t->op_params[i], sizeof v); return v; }

/* The tensor whose memory t uses (t itself unless a view/cpy). */
static inline mmp_tensor *mmp__root(mmp_tensor *t) { return t->view_src ? t->view_src : t; }

/* Name for messages: the tensor's name or "<op #id>" (buf: at least 80 bytes). */
const char *mmp__tensor_label(const mmp_tensor *t, char *buf, size_t size);

#endif
