/* Backend-independent entry points: dispatch through the backend vtable (backend-impl.h). */
#include "backend-impl.h"
#include "util.h"

void mmp_backend_free(mmp_backend *b) {
    if (!b) return;
    b->iface->free(b);
}

const char *mmp_backend_name(const mmp_backend *b) { return b ? b->iface->name : "(null)"; }
int mmp_backend_n_threads(const mmp_backend *b) { return b ? b->n_threads : 0; }

bool mmp_backend_supports(const mmp_backend *b, const mmp_tensor *t) {
    if (!b || !t) return false;
    return b->iface->supports_op(b, t);
}

void mmp__buffer_release(struct mmp__buffer *buf) {
    if (buf) buf->iface->buffer_free(buf);
}

enum mmp_status mmp_graph_plan(mmp_backend *b, mmp_graph *g) {
    if (!b || !g) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_graph_plan: backend or graph is NULL");
    return mmp__graph_plan(b, g);
}

enum mmp_status mmp_graph_compute(mmp_backend *b, mmp_graph *g, mmp_abort_fn abort_cb, void *abort_user) {
    if (!b || !g) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_graph_compute: backend or graph is NULL");
    if (!g->planned) {
        if (g->stale)
            return mmp__error(MMP_ERR_INVALID_ARG,
                              "mmp_graph_compute: tensors were added after mmp_graph_plan; plan again and rewrite the inputs");
        /* Never planned: fine only if no input needs memory from the planner (its data would be unset). */
        for (int32_t i = 0; i < g->n; i++) {
            const mmp_tensor *t = &g->tensors[i];
            if ((t->flags & MMP_TENSOR_INPUT) && !t->data)
                return mmp__error(MMP_ERR_INVALID_ARG,
                                  "mmp_graph_compute: input '%s' has no data: call mmp_graph_plan, then write the inputs",
                                  t->name[0] ? t->name : "(unnamed)");
        }
        enum mmp_status s = mmp__graph_plan(b, g);
        if (s != MMP_OK) return s;
    }
    if (g->planned_iface != b->iface)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_graph_compute: graph was planned for backend '%s', not '%s'",
                          g->planned_iface ? g->planned_iface->name : "?", b->iface->name);
    if (b->n_threads > g->planned_threads)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_graph_compute: graph was planned for %d threads, backend has %d; plan again",
                          g->planned_threads, b->n_threads);
    return b->iface->compute(b, g, abort_cb, abort_user);
}

mmp_graph_stats mmp_graph_get_stats(const mmp_graph *g) {
    mmp_graph_stats s;
    memset(&s, 0, sizeof s);
    if (g && g->planned) s = g->stats;
    if (g) s.n_tensors = g->n;
    return s;
}

static enum mmp_status check_io(const char *fn, const mmp_tensor *t, size_t offset, size_t size) {
    if (!t) return mmp__error(MMP_ERR_INVALID_ARG, "%s: tensor is NULL", fn);
    if (!t->data)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: tensor '%s' has no memory (plan the graph first)", fn, t->name);
    if (!mmp_is_contiguous(t))
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: tensor '%s' is not contiguous", fn, t->name);
    size_t n = mmp_tensor_nbytes(t);
    if (offset > n || size > n - offset)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: bytes [%zu, %zu+%zu) outside tensor '%s' of %zu bytes", fn, offset,
                          offset, size, t->name, n);
    return MMP_OK;
}

enum mmp_status mmp_backend_tensor_set(mmp_backend *b, mmp_tensor *t, const void *data, size_t offset, size_t size) {
    if (!b || (!data && size)) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_backend_tensor_set: NULL argument");
    enum mmp_status s = check_io("mmp_backend_tensor_set", t, offset, size);
    if (s != MMP_OK) return s;
    return b->iface->tensor_set(b, t, data, offset, size);
}

enum mmp_status mmp_backend_tensor_get(mmp_backend *b, const mmp_tensor *t, void *data, size_t offset, size_t size) {
    if (!b || (!data && size)) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_backend_tensor_get: NULL argument");
    enum mmp_status s = check_io("mmp_backend_tensor_get", t, offset, size);
    if (s != MMP_OK) return s;
    return b->iface->tensor_get(b, t, data, offset, size);
}
