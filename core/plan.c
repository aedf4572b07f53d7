/* The planner: which nodes run, in which order, and where their results live.
 *
 * Order: the nodes needed for the outputs (and every mmp_cpy node, which writes memory as a
 * side effect) in build order. Build order is a topological order because a builder can
 * only take tensors that already exist, and it keeps writes (mmp_cpy into a KV cache) before
 * the reads built after them.
 *
 * Memory: every planner-owned root (inputs, and computed nodes that are not views) gets a
 * 64-byte aligned range of the graph's buffer. A range is allocated when its node runs and
 * freed after the last node that reads it (directly or through any view) has run; freed
 * ranges are reused best-fit. Inputs and outputs (and whatever an output view aliases) are
 * never freed. The ops' work scratch follows the tensors in the same buffer. */
#include "backend-impl.h"
#include "util.h"

#define ALIGN 64
static size_t align_up(size_t x) { return (x + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

struct block { size_t off, size; };   /* layout matches g->free_blocks pairs */

struct allocator {
    struct block *free;   /* sorted by offset, non-adjacent */
    int n_free;
    size_t top;           /* end of the highest allocated range */
    size_t peak;
};

static size_t alloc_range(struct allocator *a, size_t size) {
    int best = -1;
    for (int i = 0; i < a->n_free; i++)
        if (a->free[i].size >= size && (best < 0 || a->free[i].size < a->free[best].size)) best = i;
    if (best >= 0) {
        size_t off = a->free[best].off;
        a->free[best].off += size;
        a->free[best].size -= size;
        if (a->free[best].size == 0) {
            memmove(&a->free[best], &a->free[best + 1], (size_t)(a->n_free - best - 1) * sizeof *a->free);
            a->n_free--;
        }
        return off;
    }
    /* No hole fits: grow at the top (absorbing a free block that ends there). */
    size_t off = a->top;
    if (a->n_free > 0 && a->free[a->n_free - 1].off + a->free[a->n_free - 1].size == a->top) {
        off = a->free[a->n_free - 1].off;
        a->n_free--;
    }
    a->top = off + size;
    if (a->top > a->peak) a->peak = a->top;
    return off;
}

static void free_range(struct allocator *a, size_t off, size_t size) {
    int i = 0;
    while (i < a->n_free && a->free[i].off < off) i++;
    memmove(&a->free[i + 1], &a->free[i], (size_t)(a->n_free - i) * sizeof *a->free);
    a->free[i].off = off;
    a->free[i].size = size;
    a->n_free++;
    /* merge with the next, then with the previous */
    if (i + 1 < a->n_free && a->free[i].off + a->free[i].size == a->free[i + 1].off) {
        a->free[i].size += a->free[i + 1].size;
        memmove(&a->free[i + 1], &a->free[i + 2], (size_t)(a->n_free - i - 2) * sizeof *a->free);
        a->n_free--;
    }
    if (i > 0 && a->free[i - 1].off + a->free[i - 1].size == a->free[i].off) {
        a->free[i - 1].size += a->free[i].size;
        memmove(&a->free[i], &a->free[i + 1], (size_t)(a->n_free - i - 1) * sizeof *a->free);
        a->n_free--;
        i--;
    }
    /* a hole at the top shrinks the top */
    if (i == a->n_free - 1 && a->free[i].off + a->free[i].size == a->top) {
        a->top = a->free[i].off;
        a->n_free--;
    }
}

/* Planner-owned: a root (not a view) that is computed, or an input leaf (not caller memory). */
static bool owned(const mmp_tensor *t) {
    return t->view_src == NULL && !(t->flags & MMP_TENSOR_WEIGHT);
}

static bool computes(const mmp_tensor *t) { return t->op != MMP_OP_NONE && t->op != MMP_OP_VIEW; }

enum mmp_status mmp__graph_plan(mmp_backend *b, mmp_graph *g) {
    const int32_t n = g->n;
    int32_t *flag = g->scratch;          /* bit 0 needed, bit 1 persistent, bit 2 allocated */
    int32_t *last = g->scratch + g->cap; /* order position of the last reader of a root */
    g->planned = false;
    g->n_order = 0;

    for (int32_t i = 0; i < n; i++) {
        const mmp_tensor *t = &g->tensors[i];
        flag[i] = ((t->flags & MMP_TENSOR_OUTPUT) || t->op == MMP_OP_CPY) ? 1 : 0;
        last[i] = -1;
        g->offs[i] = SIZE_MAX;
    }
    /* Sources always have smaller ids: one backward sweep marks everything needed. */
    for (int32_t i = n - 1; i >= 0; i--) {
        if (!(flag[i] & 1)) continue;
        const mmp_tensor *t = &g->tensors[i];
        for (int s = 0; s < MMP_MAX_SRC; s++) if (t->src[s]) flag[t->src[s]->id] |= 1;
        if (t->view_src) flag[t->view_src->id] |= 1;
    }
    for (int32_t i = 0; i < n; i++) {
        const mmp_tensor *t = &g->tensors[i];
        if (!(flag[i] & 1)) continue;
        /* outputs keep their memory (and the memory their view aliases); inputs too */
        if (t->flags & MMP_TENSOR_OUTPUT) flag[mmp__root((mmp_tensor *)t)->id] |= 2;
        if (t->op == MMP_OP_NONE) flag[i] |= 2;
    }

    size_t work = 0;
    for (int32_t i = 0; i < n; i++) {
        mmp_tensor *t = &g->tensors[i];
        if (!(flag[i] & 1) || !computes(t)) continue;
        if (!b->iface->supports_op(b, t)) {
            char lb[80];
            return mmp__error(MMP_ERR_UNSUPPORTED, "mmp_graph_plan: backend '%s' cannot compute %s of type %s (node '%s', a=%s)",
                              b->iface->name, mmp_op_name(t->op), mmp_type_name(t->type), mmp__tensor_label(t, lb, sizeof lb),
                              t->src[0] ? mmp_type_name(t->src[0]->type) : "-");
        }
        size_t w = b->iface->work_size(b, t);
        if (w > work) work = w;
        g->order[g->n_order++] = i;
    }
    /* Liveness: a node reads the roots of its sources; a cpy node also writes its root. */
    for (int32_t p = 0; p < g->n_order; p++) {
        mmp_tensor *t = &g->tensors[g->order[p]];
        for (int s = 0; s < MMP_MAX_SRC; s++)
            if (t->src[s]) last[mmp__root(t->src[s])->id] = p;
        last[mmp__root(t)->id] = p > last[mmp__root(t)->id] ? p : last[mmp__root(t)->id];
    }

    /* free list: at most one block per allocated range plus one (preallocated with the graph) */
    struct allocator A = {0};
    A.free = (struct block *)g->free_blocks;
    size_t naive = 0;
    /* Inputs first: they live for the whole graph. */
    for (int32_t i = 0; i < n; i++) {
        mmp_tensor *t = &g->tensors[i];
        if ((flag[i] & 1) && t->op == MMP_OP_NONE && owned(t)) {
            size_t sz = align_up(mmp_tensor_nbytes(t));
            g->offs[i] = alloc_range(&A, sz);
            naive += sz;
        }
    }
    for (int32_t p = 0; p < g->n_order; p++) {
        mmp_tensor *t = &g->tensors[g->order[p]];
        if (owned(t)) {
            size_t sz = align_up(mmp_tensor_nbytes(t));
            g->offs[t->id] = alloc_range(&A, sz);
            flag[t->id] |= 4;
            naive += sz;
        }
        /* Free the roots whose last reader was this node. */
        for (int s = -1; s < MMP_MAX_SRC; s++) {
            mmp_tensor *r = s < 0 ? t : t->src[s];
            if (!r) continue;
            r = mmp__root(r);
            int32_t id = r->id;
            if (last[id] == p && (flag[id] & 4) && !(flag[id] & 2)) {
                free_range(&A, g->offs[id], align_up(mmp_tensor_nbytes(r)));
                flag[id] &= ~4;
            }
        }
    }

    size_t total = align_up(A.peak);
    work = align_up(work);
    size_t need = total + work;
    if (need == 0) need = ALIGN;
    if (g->buf && (g->buf->iface != b->iface || g->buf->size < need)) {
        mmp__buffer_release(g->buf);
        g->buf = NULL;
    }
    if (!g->buf) {
        g->buf = b->iface->buffer_alloc(b, need);
        if (!g->buf) return MMP_ERR_NOMEM;
    }
    char *base = g->buf->base;
    for (int32_t i = 0; i < n; i++) {
        mmp_tensor *t = &g->tensors[i];
        if (g->offs[i] != SIZE_MAX) t->data = base + g->offs[i];
        else if (owned(t)) t->data = NULL;   /* not needed: no memory */
    }
    for (int32_t i = 0; i < n; i++) {
        mmp_tensor *t = &g->tensors[i];
        if (t->view_src) t->data = t->view_src->data ? (char *)t->view_src->data + t->view_offs : NULL;
    }
    g->work = base + total;
    g->work_size = work;
    g->planned = true;
    g->stale = false;
    g->planned_n = n;
    g->planned_iface = b->iface;
    g->planned_threads = b->n_threads;
    g->stats.n_tensors = n;
    g->stats.n_nodes = g->n_order;
    g->stats.planned_bytes = total;
    g->stats.naive_bytes = naive;
    g->stats.work_bytes = work;
    return MMP_OK;
}
