/* The op graph: tensor arena and the builder functions.
 *
 * Every builder checks the shapes and types of its arguments when the node is built, so a
 * mistake in stage code is reported at the line that made it, naming both tensors. A NULL
 * required argument returns NULL silently (the error that produced it is already set). */
#include "graph-impl.h"
#include "util.h"

#include <stdarg.h>
#include <math.h>

/* Sane upper bound for any dimension and for a tensor's byte size (1 TiB). */
#define MMP_MAX_NE    ((int64_t)1 << 40)
#define MMP_MAX_BYTES ((uint64_t)1 << 40)

const char *mmp__tensor_label(const mmp_tensor *t, char *buf, size_t size) {
    if (!t) { snprintf(buf, size, "(null)"); return buf; }
    if (t->name[0]) return t->name;
    snprintf(buf, size, "<%s #%d>", mmp_op_name(t->op), (int)t->id);
    return buf;
}

#define LBL(t, b) mmp__tensor_label((t), (b), sizeof(b))

static const char *const OP_NAMES[MMP_OP_COUNT] = {
    "none", "mul_mat", "mul_mat_id", "get_rows", "add", "sub", "mul", "div", "scale", "clamp",
    "unary", "glu", "rms_norm", "layer_norm", "group_norm", "softmax", "rope", "conv1d", "conv2d",
    "upsample", "pool1d", "pool2d", "concat", "view", "cont", "attn", "top_k", "argmax", "cpy",
    "sum_rows",
};

const char *mmp_op_name(enum mmp_op op) {
    if ((int)op < 0 || op >= MMP_OP_COUNT) return "unknown";
    return OP_NAMES[op];
}

/* ---------------------------------------------------------------- graph ---- */

mmp_graph_params mmp_graph_params_default(void) {
    mmp_graph_params p = { .max_tensors = 8192 };
    return p;
}

mmp_graph *mmp_graph_new(mmp_graph_params params) {
    if (params.max_tensors <= 0 || params.max_tensors > (1 << 24))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_graph_new: max_tensors=%d (must be 1..%d)",
                               (int)params.max_tensors, 1 << 24);
    mmp_graph *g = mmp__calloc(1, sizeof *g);
    if (!g) return NULL;
    g->cap = params.max_tensors;
    g->tensors = mmp__malloc((size_t)g->cap * sizeof *g->tensors);
    g->order = mmp__malloc((size_t)g->cap * sizeof *g->order);
    g->offs = mmp__malloc((size_t)g->cap * sizeof *g->offs);
    g->scratch = mmp__malloc((size_t)g->cap * 2 * sizeof *g->scratch);
    g->free_blocks = mmp__malloc(((size_t)g->cap * 2 + 2) * 2 * sizeof *g->free_blocks);
    if (!g->tensors || !g->order || !g->offs || !g->scratch || !g->free_blocks) { mmp_graph_free(g); return NULL; }
    return g;
}

void mmp__buffer_release(struct mmp__buffer *buf);   /* backend.c */

void mmp_graph_free(mmp_graph *g) {
    if (!g) return;
    mmp__buffer_release(g->buf);
    free(g->tensors);
    free(g->order);
    free(g->offs);
    free(g->scratch);
    free(g->free_blocks);
    free(g);
}

void mmp_graph_reset(mmp_graph *g) {
    if (!g) return;
    g->n = 0;
    g->planned = false;
    g->stale = false;
    g->n_order = 0;
    memset(&g->stats, 0, sizeof g->stats);
}

int32_t mmp_graph_n_tensors(const mmp_graph *g) { return g ? g->n : 0; }

mmp_tensor *mmp_graph_tensor(const mmp_graph *g, int32_t i) {
    if (!g || i < 0 || i >= g->n) return NULL;
    return &g->tensors[i];
}

mmp_tensor *mmp_graph_get_tensor(const mmp_graph *g, const char *name) {
    if (!g || !name) return NULL;
    for (int32_t i = 0; i < g->n; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

void mmp_graph_print(const mmp_graph *g, FILE *out) {
    if (!g || !out) return;
    fprintf(out, "graph: %d tensors%s\n", (int)g->n, g->planned ? " (planned)" : "");
    for (int32_t i = 0; i < g->n; i++) {
        const mmp_tensor *t = &g->tensors[i];
        char b[80];
        fprintf(out, "%5d %-10s %-5s [%lld, %lld, %lld, %lld] %-24s", (int)i, mmp_op_name(t->op),
                mmp_type_name(t->type), (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                (long long)t->ne[3], LBL(t, b));
        for (int s = 0; s < MMP_MAX_SRC; s++)
            if (t->src[s]) fprintf(out, " %d", (int)t->src[s]->id);
        if (t->flags & MMP_TENSOR_OUTPUT) fprintf(out, " out");
        if (t->flags & MMP_TENSOR_INPUT) fprintf(out, " in");
        if (t->flags & MMP_TENSOR_WEIGHT) fprintf(out, " weight");
        if (g->planned && i < g->planned_n && g->offs[i] != SIZE_MAX) fprintf(out, " @%zu", g->offs[i]);
        fprintf(out, "\n");
    }
    if (g->planned)
        fprintf(out, "planned: %d nodes, %zu bytes (no reuse: %zu), work %zu\n", (int)g->stats.n_nodes,
                g->stats.planned_bytes, g->stats.naive_bytes, g->stats.work_bytes);
}

/* ------------------------------------------------------------- tensors ---- */

int64_t mmp_nelements(const mmp_tensor *t) { return t ? t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3] : 0; }
int64_t mmp_nrows(const mmp_tensor *t) { return t ? t->ne[1] * t->ne[2] * t->ne[3] : 0; }

size_t mmp_tensor_nbytes(const mmp_tensor *t) {
    if (!t) return 0;
    const mmp_type_traits *tr = mmp_type_get_traits(t->type);
    if (!tr) return 0;
    for (int i = 0; i < 4; i++) if (t->ne[i] <= 0) return 0;
    size_t n = (size_t)(t->ne[0] / tr->blck_size) * t->nb[0];
    for (int i = 1; i < 4; i++) n += (size_t)(t->ne[i] - 1) * t->nb[i];
    return n;
}

bool mmp_is_contiguous(const mmp_tensor *t) {
    if (!t) return false;
    const mmp_type_traits *tr = mmp_type_get_traits(t->type);
    if (!tr || t->nb[0] != tr->type_size) return false;
    size_t next = (size_t)(t->ne[0] / tr->blck_size) * tr->type_size;
    for (int i = 1; i < 4; i++) {
        if (t->ne[i] != 1 && t->nb[i] != next) return false;
        next *= (size_t)t->ne[i];
    }
    return true;
}

bool mmp_same_shape(const mmp_tensor *a, const mmp_tensor *b) {
    if (!a || !b) return false;
    for (int i = 0; i < 4; i++) if (a->ne[i] != b->ne[i]) return false;
    return true;
}

int mmp_n_dims(const mmp_tensor *t) {
    if (!t) return 0;
    for (int i = 3; i >= 1; i--) if (t->ne[i] > 1) return i + 1;
    return 1;
}

mmp_tensor *mmp_set_name(mmp_tensor *t, const char *fmt, ...) {
    if (!t || !fmt) return t;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    return t;
}

mmp_tensor *mmp_set_output(mmp_tensor *t) {
    if (t) t->flags |= MMP_TENSOR_OUTPUT;
    return t;
}

/* Contiguous strides for type/shape. */
static void set_strides(mmp_tensor *t) {
    const mmp_type_traits *tr = mmp_type_get_traits(t->type);
    t->nb[0] = tr->type_size;
    t->nb[1] = (size_t)(t->ne[0] / tr->blck_size) * tr->type_size;
    for (int i = 2; i < 4; i++) t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
}

/* Take a tensor from the arena and fill the common fields. Shape is validated (positive,
 * bounded, ne0 a multiple of the block size, byte size bounded). */
static mmp_tensor *new_tensor_impl(mmp_graph *g, const char *fn, enum mmp_type type, const int64_t ne[4],
                                   enum mmp_op op) {
    const mmp_type_traits *tr = mmp_type_get_traits((int)type);
    if (!tr) return mmp__error_null(MMP_ERR_UNSUPPORTED, "%s: unknown tensor type %d", fn, (int)type);
    uint64_t bytes = tr->type_size;
    for (int i = 0; i < 4; i++) {
        if (ne[i] <= 0 || ne[i] > MMP_MAX_NE)
            return mmp__error_null(MMP_ERR_SHAPE, "%s: ne[%d]=%lld out of range", fn, i, (long long)ne[i]);
    }
    if (ne[0] % tr->blck_size != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: ne[0]=%lld is not a multiple of the %s block size %lld", fn,
                               (long long)ne[0], tr->name, (long long)tr->blck_size);
    uint64_t nblk = (uint64_t)(ne[0] / tr->blck_size);
    if (!mmp__mul_ok(bytes, nblk, &bytes) || !mmp__mul_ok(bytes, (uint64_t)ne[1], &bytes) ||
        !mmp__mul_ok(bytes, (uint64_t)ne[2], &bytes) || !mmp__mul_ok(bytes, (uint64_t)ne[3], &bytes) ||
        bytes > MMP_MAX_BYTES)
        return mmp__error_null(MMP_ERR_NOMEM, "%s: tensor [%lld, %lld, %lld, %lld] %s is too large", fn,
                               (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3], tr->name);
    if (g->n >= g->cap)
        return mmp__error_null(MMP_ERR_NOMEM, "%s: graph is full (max_tensors=%d)", fn, (int)g->cap);
    mmp_tensor *t = &g->tensors[g->n];
    memset(t, 0, sizeof *t);
    t->id = g->n++;
    t->type = type;
    for (int i = 0; i < 4; i++) t->ne[i] = ne[i];
    t->op = op;
    set_strides(t);
    if (g->planned) { g->planned = false; g->stale = true; }  /* growing invalidates a plan */
    return t;
}

/* A view/alias tensor: no memory of its own. Shares the root of `a`. */
static mmp_tensor *new_view(mmp_graph *g, const char *fn, mmp_tensor *a, const int64_t ne[4], const size_t nb[4],
                            size_t offs) {
    mmp_tensor *t = new_tensor_impl(g, fn, a->type, ne, MMP_OP_VIEW);
    if (!t) return NULL;
    for (int i = 0; i < 4; i++) t->nb[i] = nb[i];
    mmp_tensor *root = mmp__root(a);
    t->view_src = root;
    t->view_offs = a->view_offs + offs;
    if (a->view_src == NULL) t->view_offs = offs;
    t->src[0] = a;
    if (root->data) t->data = (char *)root->data + t->view_offs;
    return t;
}

static bool dims_ok(int n_dims, const int64_t *ne, const char *fn) {
    if (n_dims < 1 || n_dims > 4 || !ne) {
        mmp__error(MMP_ERR_INVALID_ARG, "%s: n_dims=%d (must be 1..4)", fn, n_dims);
        return false;
    }
    return true;
}

static void fill_ne(int n_dims, const int64_t *ne, int64_t out[4]) {
    for (int i = 0; i < 4; i++) out[i] = i < n_dims ? ne[i] : 1;
}

mmp_tensor *mmp_new_tensor(mmp_graph *g, enum mmp_type type, int n_dims, const int64_t *ne) {
    if (!g) return NULL;
    if (!dims_ok(n_dims, ne, "mmp_new_tensor")) return NULL;
    int64_t n4[4];
    fill_ne(n_dims, ne, n4);
    mmp_tensor *t = new_tensor_impl(g, "mmp_new_tensor", type, n4, MMP_OP_NONE);
    if (t) t->flags |= MMP_TENSOR_INPUT;
    return t;
}

mmp_tensor *mmp_new_tensor_1d(mmp_graph *g, enum mmp_type type, int64_t ne0) {
    int64_t ne[1] = {ne0};
    return mmp_new_tensor(g, type, 1, ne);
}
mmp_tensor *mmp_new_tensor_2d(mmp_graph *g, enum mmp_type type, int64_t ne0, int64_t ne1) {
    int64_t ne[2] = {ne0, ne1};
    return mmp_new_tensor(g, type, 2, ne);
}
mmp_tensor *mmp_new_tensor_3d(mmp_graph *g, enum mmp_type type, int64_t ne0, int64_t ne1, int64_t ne2) {
    int64_t ne[3] = {ne0, ne1, ne2};
    return mmp_new_tensor(g, type, 3, ne);
}
mmp_tensor *mmp_new_tensor_4d(mmp_graph *g, enum mmp_type type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    int64_t ne[4] = {ne0, ne1, ne2, ne3};
    return mmp_new_tensor(g, type, 4, ne);
}

mmp_tensor *mmp_new_tensor_ext(mmp_graph *g, enum mmp_type type, int n_dims, const int64_t *ne, void *data) {
    if (!g) return NULL;
    if (!data) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_new_tensor_ext: data is NULL");
    if (!dims_ok(n_dims, ne, "mmp_new_tensor_ext")) return NULL;
    int64_t n4[4];
    fill_ne(n_dims, ne, n4);
    mmp_tensor *t = new_tensor_impl(g, "mmp_new_tensor_ext", type, n4, MMP_OP_NONE);
    if (!t) return NULL;
    t->flags |= MMP_TENSOR_WEIGHT;
    t->data = data;
    return t;
}

/* ------------------------------------------------------------- checks ---- */

#define SHP(t) (long long)(t)->ne[0], (long long)(t)->ne[1], (long long)(t)->ne[2], (long long)(t)->ne[3]
#define SHPF "[%lld, %lld, %lld, %lld]"

static bool is_float_type(enum mmp_type t) { return t == MMP_TYPE_F32 || t == MMP_TYPE_F16 || t == MMP_TYPE_BF16; }

static bool need_type(const char *fn, const char *what, const mmp_tensor *t, enum mmp_type want) {
    if (t->type == want) return true;
    char b[80];
    mmp__error(MMP_ERR_SHAPE, "%s: %s must be %s, got %s (%s='%s')", fn, what, mmp_type_name(want),
               mmp_type_name(t->type), what, LBL(t, b));
    return false;
}

/* Row-wise ops read elements with nb[0] == element size. */
static bool need_rows_contig(const char *fn, const char *what, const mmp_tensor *t) {
    const mmp_type_traits *tr = mmp_type_get_traits(t->type);
    if (tr && t->nb[0] == tr->type_size) return true;
    char b[80];
    mmp__error(MMP_ERR_SHAPE, "%s: %s must have contiguous rows (nb[0]=%zu) (%s='%s'); use mmp_cont", fn, what,
               t->nb[0], what, LBL(t, b));
    return false;
}

/* b broadcasts over a: b.ne[i] divides a.ne[i]. */
static bool can_repeat(const mmp_tensor *b, const mmp_tensor *a) {
    for (int i = 0; i < 4; i++) if (a->ne[i] % b->ne[i] != 0) return false;
    return true;
}

/* New f32 node with a's shape (contiguous). */
static mmp_tensor *new_like(mmp_graph *g, const char *fn, const mmp_tensor *a, enum mmp_op op) {
    return new_tensor_impl(g, fn, MMP_TYPE_F32, a->ne, op);
}

/* ----------------------------------------------------------- builders ---- */

mmp_tensor *mmp_mul_mat(mmp_graph *g, mmp_tensor *a, mmp_tensor *b) {
    static const char fn[] = "mmp_mul_mat";
    if (!g || !a || !b) return NULL;
    char ba[80], bb[80];
    if (a->ne[0] != b->ne[0])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a.ne[0]=%lld != b.ne[0]=%lld (a='%s', b='%s')", fn,
                               (long long)a->ne[0], (long long)b->ne[0], LBL(a, ba), LBL(b, bb));
    if (b->ne[2] % a->ne[2] != 0 || b->ne[3] % a->ne[3] != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: batch dims of b " SHPF " are not multiples of a " SHPF " (a='%s', b='%s')",
                               fn, SHP(b), SHP(a), LBL(a, ba), LBL(b, bb));
    if (!need_type(fn, "b", b, MMP_TYPE_F32)) return NULL;
    const mmp_type_traits *tr = mmp_type_get_traits(a->type);
    if (!is_float_type(a->type) && !tr->is_quantized)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a has type %s, which is not a weight type (a='%s')", fn,
                               mmp_type_name(a->type), LBL(a, ba));
    if (!need_rows_contig(fn, "a", a)) return NULL;
    int64_t ne[4] = {a->ne[1], b->ne[1], b->ne[2], b->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_MUL_MAT);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = b;
    return t;
}

mmp_tensor *mmp_mul_mat_id(mmp_graph *g, mmp_tensor *as, mmp_tensor *b, mmp_tensor *ids) {
    static const char fn[] = "mmp_mul_mat_id";
    if (!g || !as || !b || !ids) return NULL;
    char ba[80], bb[80], bi[80];
    if (as->ne[0] != b->ne[0])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: as.ne[0]=%lld != b.ne[0]=%lld (as='%s', b='%s')", fn,
                               (long long)as->ne[0], (long long)b->ne[0], LBL(as, ba), LBL(b, bb));
    if (as->ne[3] != 1)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: as must be 3-D [K, M, n_expert], got " SHPF " (as='%s')", fn,
                               SHP(as), LBL(as, ba));
    if (!need_type(fn, "ids", ids, MMP_TYPE_I32) || !need_type(fn, "b", b, MMP_TYPE_F32)) return NULL;
    if (ids->ne[2] != 1 || ids->ne[3] != 1 || b->ne[3] != 1)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: ids " SHPF " must be 2-D and b " SHPF " 3-D (ids='%s', b='%s')",
                               fn, SHP(ids), SHP(b), LBL(ids, bi), LBL(b, bb));
    if (b->ne[2] != ids->ne[1])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: b.ne[2]=%lld (tokens) != ids.ne[1]=%lld (b='%s', ids='%s')", fn,
                               (long long)b->ne[2], (long long)ids->ne[1], LBL(b, bb), LBL(ids, bi));
    if (b->ne[1] != 1 && b->ne[1] != ids->ne[0])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: b.ne[1]=%lld must be 1 or ids.ne[0]=%lld (b='%s', ids='%s')", fn,
                               (long long)b->ne[1], (long long)ids->ne[0], LBL(b, bb), LBL(ids, bi));
    const mmp_type_traits *tr = mmp_type_get_traits(as->type);
    if (!is_float_type(as->type) && !tr->is_quantized)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: as has type %s, which is not a weight type (as='%s')", fn,
                               mmp_type_name(as->type), LBL(as, ba));
    if (!need_rows_contig(fn, "as", as) || !need_rows_contig(fn, "ids", ids) || !need_rows_contig(fn, "b", b)) return NULL;
    int64_t ne[4] = {as->ne[1], ids->ne[0], ids->ne[1], 1};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_MUL_MAT_ID);
    if (!t) return NULL;
    t->src[0] = as;
    t->src[1] = b;
    t->src[2] = ids;
    return t;
}

mmp_tensor *mmp_get_rows(mmp_graph *g, mmp_tensor *a, mmp_tensor *ids) {
    static const char fn[] = "mmp_get_rows";
    if (!g || !a || !ids) return NULL;
    char ba[80], bi[80];
    if (!need_type(fn, "ids", ids, MMP_TYPE_I32)) return NULL;
    if (a->ne[3] != 1 || ids->ne[3] != 1)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a " SHPF " and ids " SHPF " must be at most 3-D (a='%s', ids='%s')",
                               fn, SHP(a), SHP(ids), LBL(a, ba), LBL(ids, bi));
    if (a->ne[2] > 1 && (ids->ne[1] != a->ne[2] || ids->ne[2] != 1))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a.ne[2]=%lld tables need ids [n, %lld], got " SHPF " (a='%s', ids='%s')",
                               fn, (long long)a->ne[2], (long long)a->ne[2], SHP(ids), LBL(a, ba), LBL(ids, bi));
    const mmp_type_traits *tr = mmp_type_get_traits(a->type);
    if (!is_float_type(a->type) && !tr->is_quantized && a->type != MMP_TYPE_I32)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a has type %s (a='%s')", fn, mmp_type_name(a->type), LBL(a, ba));
    if (!need_rows_contig(fn, "a", a) || !need_rows_contig(fn, "ids", ids)) return NULL;
    int64_t ne[4] = {a->ne[0], ids->ne[0], ids->ne[1], ids->ne[2]};
    mmp_tensor *t = new_tensor_impl(g, fn, a->type == MMP_TYPE_I32 ? MMP_TYPE_I32 : MMP_TYPE_F32, ne, MMP_OP_GET_ROWS);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = ids;
    return t;
}

static mmp_tensor *binary(mmp_graph *g, const char *fn, mmp_tensor *a, mmp_tensor *b, enum mmp_op op) {
    if (!g || !a || !b) return NULL;
    char ba[80], bb[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32) || !need_type(fn, "b", b, MMP_TYPE_F32)) return NULL;
    if (!can_repeat(b, a))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: b " SHPF " does not broadcast to a " SHPF " (a='%s', b='%s')", fn,
                               SHP(b), SHP(a), LBL(a, ba), LBL(b, bb));
    mmp_tensor *t = new_like(g, fn, a, op);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = b;
    return t;
}

mmp_tensor *mmp_add(mmp_graph *g, mmp_tensor *a, mmp_tensor *b) { return binary(g, "mmp_add", a, b, MMP_OP_ADD); }
mmp_tensor *mmp_sub(mmp_graph *g, mmp_tensor *a, mmp_tensor *b) { return binary(g, "mmp_sub", a, b, MMP_OP_SUB); }
mmp_tensor *mmp_mul(mmp_graph *g, mmp_tensor *a, mmp_tensor *b) { return binary(g, "mmp_mul", a, b, MMP_OP_MUL); }
mmp_tensor *mmp_div(mmp_graph *g, mmp_tensor *a, mmp_tensor *b) { return binary(g, "mmp_div", a, b, MMP_OP_DIV); }

static mmp_tensor *unary_node(mmp_graph *g, const char *fn, mmp_tensor *a, enum mmp_op op) {
    if (!g || !a) return NULL;
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    mmp_tensor *t = new_like(g, fn, a, op);
    if (t) t->src[0] = a;
    return t;
}

mmp_tensor *mmp_scale_bias(mmp_graph *g, mmp_tensor *a, float s, float b) {
    mmp_tensor *t = unary_node(g, "mmp_scale", a, MMP_OP_SCALE);
    if (!t) return NULL;
    mmp__set_param_f(t, 0, s);
    mmp__set_param_f(t, 1, b);
    return t;
}
mmp_tensor *mmp_scale(mmp_graph *g, mmp_tensor *a, float s) { return mmp_scale_bias(g, a, s, 0.0f); }

mmp_tensor *mmp_clamp(mmp_graph *g, mmp_tensor *a, float lo, float hi) {
    if (a && !(lo <= hi))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_clamp: lo=%g > hi=%g", (double)lo, (double)hi);
    mmp_tensor *t = unary_node(g, "mmp_clamp", a, MMP_OP_CLAMP);
    if (!t) return NULL;
    mmp__set_param_f(t, 0, lo);
    mmp__set_param_f(t, 1, hi);
    return t;
}

mmp_tensor *mmp_unary(mmp_graph *g, mmp_tensor *a, enum mmp_unary op) {
    if ((int)op < 0 || op >= MMP_UNARY_COUNT)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_unary: unknown op %d", (int)op);
    mmp_tensor *t = unary_node(g, "mmp_unary", a, MMP_OP_UNARY);
    if (t) t->op_params[0] = (int32_t)op;
    return t;
}
mmp_tensor *mmp_gelu(mmp_graph *g, mmp_tensor *a) { return mmp_unary(g, a, MMP_UNARY_GELU); }
mmp_tensor *mmp_gelu_tanh(mmp_graph *g, mmp_tensor *a) { return mmp_unary(g, a, MMP_UNARY_GELU_TANH); }
mmp_tensor *mmp_quick_gelu(mmp_graph *g, mmp_tensor *a) { return mmp_unary(g, a, MMP_UNARY_QUICK_GELU); }
mmp_tensor *mmp_silu(mmp_graph *g, mmp_tensor *a) { return mmp_unary(g, a, MMP_UNARY_SILU); }
mmp_tensor *mmp_relu(mmp_graph *g, mmp_tensor *a) { return mmp_unary(g, a, MMP_UNARY_RELU); }
mmp_tensor *mmp_sigmoid(mmp_graph *g, mmp_tensor *a) { return mmp_unary(g, a, MMP_UNARY_SIGMOID); }
mmp_tensor *mmp_tanh(mmp_graph *g, mmp_tensor *a) { return mmp_unary(g, a, MMP_UNARY_TANH); }

mmp_tensor *mmp_glu(mmp_graph *g, mmp_tensor *a, mmp_tensor *b, enum mmp_unary act) {
    static const char fn[] = "mmp_glu";
    if (!g || !a || !b) return NULL;
    if ((int)act < 0 || act >= MMP_UNARY_COUNT)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: unknown activation %d", fn, (int)act);
    char ba[80], bb[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32) || !need_type(fn, "b", b, MMP_TYPE_F32)) return NULL;
    if (!mmp_same_shape(a, b))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a " SHPF " and b " SHPF " differ (a='%s', b='%s')", fn, SHP(a), SHP(b),
                               LBL(a, ba), LBL(b, bb));
    mmp_tensor *t = new_like(g, fn, a, MMP_OP_GLU);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = b;
    t->op_params[0] = (int32_t)act;
    return t;
}
mmp_tensor *mmp_swiglu(mmp_graph *g, mmp_tensor *a, mmp_tensor *b) { return mmp_glu(g, a, b, MMP_UNARY_SILU); }
mmp_tensor *mmp_geglu(mmp_graph *g, mmp_tensor *a, mmp_tensor *b) { return mmp_glu(g, a, b, MMP_UNARY_GELU); }

mmp_tensor *mmp_sum_rows(mmp_graph *g, mmp_tensor *a) {
    static const char fn[] = "mmp_sum_rows";
    if (!g || !a) return NULL;
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    int64_t ne[4] = {1, a->ne[1], a->ne[2], a->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_SUM_ROWS);
    if (t) t->src[0] = a;
    return t;
}

/* norm weight/bias: f32 vectors of n elements. */
static bool vec_ok(const char *fn, const char *what, const mmp_tensor *v, int64_t n, const mmp_tensor *a) {
    if (!v) return true;
    char bv[80], ba[80];
    if (!need_type(fn, what, v, MMP_TYPE_F32) || !need_rows_contig(fn, what, v)) return false;
    if (v->ne[0] != n || mmp_nelements(v) != n) {
        mmp__error(MMP_ERR_SHAPE, "%s: %s " SHPF " must have %lld elements (%s='%s', a='%s')", fn, what, SHP(v),
                   (long long)n, what, LBL(v, bv), LBL(a, ba));
        return false;
    }
    return true;
}

mmp_tensor *mmp_rms_norm(mmp_graph *g, mmp_tensor *a, float eps) {
    mmp_tensor *t = unary_node(g, "mmp_rms_norm", a, MMP_OP_RMS_NORM);
    if (t) mmp__set_param_f(t, 0, eps);
    return t;
}

mmp_tensor *mmp_layer_norm(mmp_graph *g, mmp_tensor *a, mmp_tensor *w, mmp_tensor *b, float eps) {
    static const char fn[] = "mmp_layer_norm";
    if (!g || !a) return NULL;
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    if (!vec_ok(fn, "w", w, a->ne[0], a) || !vec_ok(fn, "b", b, a->ne[0], a)) return NULL;
    mmp_tensor *t = new_like(g, fn, a, MMP_OP_LAYER_NORM);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = w;
    t->src[2] = b;
    mmp__set_param_f(t, 0, eps);
    return t;
}

mmp_tensor *mmp_group_norm(mmp_graph *g, mmp_tensor *a, int n_groups, mmp_tensor *w, mmp_tensor *b, float eps) {
    static const char fn[] = "mmp_group_norm";
    if (!g || !a) return NULL;
    char ba[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    if (n_groups <= 0 || a->ne[2] % n_groups != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: channels a.ne[2]=%lld not divisible by n_groups=%d (a='%s')", fn,
                               (long long)a->ne[2], n_groups, LBL(a, ba));
    if (!vec_ok(fn, "w", w, a->ne[2], a) || !vec_ok(fn, "b", b, a->ne[2], a)) return NULL;
    mmp_tensor *t = new_like(g, fn, a, MMP_OP_GROUP_NORM);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = w;
    t->src[2] = b;
    t->op_params[0] = n_groups;
    mmp__set_param_f(t, 1, eps);
    return t;
}

mmp_tensor *mmp_softmax_ext(mmp_graph *g, mmp_tensor *a, mmp_tensor *mask, float scale, bool causal, int n_past) {
    static const char fn[] = "mmp_softmax";
    if (!g || !a) return NULL;
    char ba[80], bm[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    if (mask) {
        if (!need_type(fn, "mask", mask, MMP_TYPE_F32) || !need_rows_contig(fn, "mask", mask)) return NULL;
        if (mask->ne[0] != a->ne[0] || mask->ne[1] != a->ne[1] || (mask->ne[2] != 1 && mask->ne[2] != a->ne[2]) ||
            mask->ne[3] != 1)
            return mmp__error_null(MMP_ERR_SHAPE, "%s: mask " SHPF " does not fit a " SHPF " (mask='%s', a='%s')", fn,
                                   SHP(mask), SHP(a), LBL(mask, bm), LBL(a, ba));
    }
    if (causal && n_past < 0)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: n_past=%d < 0 (a='%s')", fn, n_past, LBL(a, ba));
    mmp_tensor *t = new_like(g, fn, a, MMP_OP_SOFTMAX);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = mask;
    mmp__set_param_f(t, 0, scale);
    t->op_params[1] = causal ? 1 : 0;
    t->op_params[2] = n_past;
    return t;
}

mmp_tensor *mmp_softmax(mmp_graph *g, mmp_tensor *a) { return mmp_softmax_ext(g, a, NULL, 1.0f, false, 0); }

mmp_tensor *mmp_rope_ext(mmp_graph *g, mmp_tensor *a, mmp_tensor *pos, int n_rot, enum mmp_rope_mode mode,
                         float theta_base, float freq_scale) {
    static const char fn[] = "mmp_rope";
    if (!g || !a || !pos) return NULL;
    char ba[80], bp[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32) || !need_type(fn, "pos", pos, MMP_TYPE_I32)) return NULL;
    if (mode != MMP_ROPE_NORMAL && mode != MMP_ROPE_NEOX)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: unknown mode %d", fn, (int)mode);
    if (n_rot <= 0 || n_rot % 2 != 0 || n_rot > a->ne[0])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: n_rot=%d must be even and in 2..a.ne[0]=%lld (a='%s')", fn, n_rot,
                               (long long)a->ne[0], LBL(a, ba));
    if (mmp_nelements(pos) != a->ne[2] || a->ne[3] != 1)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a " SHPF " is [D, H, T] and needs pos [T], got pos " SHPF " (a='%s', pos='%s')",
                               fn, SHP(a), SHP(pos), LBL(a, ba), LBL(pos, bp));
    if (!need_rows_contig(fn, "pos", pos)) return NULL;
    if (!(theta_base > 0.0f) || !isfinite(freq_scale))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: theta_base=%g freq_scale=%g", fn, (double)theta_base, (double)freq_scale);
    mmp_tensor *t = new_like(g, fn, a, MMP_OP_ROPE);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = pos;
    t->op_params[0] = n_rot;
    t->op_params[1] = (int32_t)mode;
    mmp__set_param_f(t, 2, theta_base);
    mmp__set_param_f(t, 3, freq_scale);
    return t;
}

mmp_tensor *mmp_rope(mmp_graph *g, mmp_tensor *a, mmp_tensor *pos, int n_rot, enum mmp_rope_mode mode, float theta_base) {
    return mmp_rope_ext(g, a, pos, n_rot, mode, theta_base, 1.0f);
}

static bool conv_weight_ok(const char *fn, const mmp_tensor *w) {
    char b[80];
    if ((w->type != MMP_TYPE_F32 && w->type != MMP_TYPE_F16) || !mmp_is_contiguous(w)) {
        mmp__error(MMP_ERR_SHAPE, "%s: weight must be contiguous f32 or f16, got %s (w='%s')", fn,
                   mmp_type_name(w->type), LBL(w, b));
        return false;
    }
    return true;
}

mmp_tensor *mmp_conv1d(mmp_graph *g, mmp_tensor *w, mmp_tensor *x, int stride, int pad, int dilation) {
    static const char fn[] = "mmp_conv1d";
    if (!g || !w || !x) return NULL;
    char bw[80], bx[80];
    if (!conv_weight_ok(fn, w) || !need_type(fn, "x", x, MMP_TYPE_F32)) return NULL;
    if (stride < 1 || pad < 0 || dilation < 1)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: stride=%d pad=%d dilation=%d (w='%s')", fn, stride, pad, dilation, LBL(w, bw));
    if (w->ne[1] != x->ne[1] || w->ne[3] != 1 || x->ne[3] != 1)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: w " SHPF " is [K, Cin, Cout] and x " SHPF " is [L, Cin, N]: Cin differs (w='%s', x='%s')",
                               fn, SHP(w), SHP(x), LBL(w, bw), LBL(x, bx));
    int64_t lout = (x->ne[0] + 2 * (int64_t)pad - (int64_t)dilation * (w->ne[0] - 1) - 1) / stride + 1;
    if (x->ne[0] + 2 * (int64_t)pad - (int64_t)dilation * (w->ne[0] - 1) - 1 < 0 || lout < 1)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: input length %lld too short for kernel %lld (dilation %d, pad %d) (w='%s', x='%s')",
                               fn, (long long)x->ne[0], (long long)w->ne[0], dilation, pad, LBL(w, bw), LBL(x, bx));
    int64_t ne[4] = {lout, w->ne[2], x->ne[2], 1};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_CONV1D);
    if (!t) return NULL;
    t->src[0] = w;
    t->src[1] = x;
    t->op_params[0] = stride;
    t->op_params[1] = pad;
    t->op_params[2] = dilation;
    return t;
}

mmp_tensor *mmp_conv2d(mmp_graph *g, mmp_tensor *w, mmp_tensor *x, int s0, int s1, int p0, int p1, int d0, int d1) {
    static const char fn[] = "mmp_conv2d";
    if (!g || !w || !x) return NULL;
    char bw[80], bx[80];
    if (!conv_weight_ok(fn, w) || !need_type(fn, "x", x, MMP_TYPE_F32)) return NULL;
    if (s0 < 1 || s1 < 1 || p0 < 0 || p1 < 0 || d0 < 1 || d1 < 1)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: stride=(%d,%d) pad=(%d,%d) dilation=(%d,%d) (w='%s')", fn, s0, s1,
                               p0, p1, d0, d1, LBL(w, bw));
    if (w->ne[2] != x->ne[2])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: w " SHPF " is [Kw, Kh, Cin, Cout] and x " SHPF " is [W, H, Cin, N]: Cin differs (w='%s', x='%s')",
                               fn, SHP(w), SHP(x), LBL(w, bw), LBL(x, bx));
    int64_t e0 = x->ne[0] + 2 * (int64_t)p0 - (int64_t)d0 * (w->ne[0] - 1) - 1;
    int64_t e1 = x->ne[1] + 2 * (int64_t)p1 - (int64_t)d1 * (w->ne[1] - 1) - 1;
    if (e0 < 0 || e1 < 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: input %lldx%lld too small for kernel %lldx%lld (w='%s', x='%s')", fn,
                               (long long)x->ne[0], (long long)x->ne[1], (long long)w->ne[0], (long long)w->ne[1],
                               LBL(w, bw), LBL(x, bx));
    int64_t ne[4] = {e0 / s0 + 1, e1 / s1 + 1, w->ne[3], x->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_CONV2D);
    if (!t) return NULL;
    t->src[0] = w;
    t->src[1] = x;
    int32_t p[6] = {s0, s1, p0, p1, d0, d1};
    memcpy(t->op_params, p, sizeof p);
    return t;
}

mmp_tensor *mmp_upsample_nearest(mmp_graph *g, mmp_tensor *a, int k) {
    static const char fn[] = "mmp_upsample_nearest";
    if (!g || !a) return NULL;
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    if (k < 1 || k > 64) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: k=%d (must be 1..64)", fn, k);
    int64_t ne[4] = {a->ne[0] * k, a->ne[1] * k, a->ne[2], a->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_UPSAMPLE);
    if (!t) return NULL;
    t->src[0] = a;
    t->op_params[0] = k;
    return t;
}

mmp_tensor *mmp_avg_pool1d(mmp_graph *g, mmp_tensor *a, int k, int s, int p) {
    static const char fn[] = "mmp_avg_pool1d";
    if (!g || !a) return NULL;
    char ba[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    if (k < 1 || s < 1 || p < 0 || p * 2 > k || a->ne[0] + 2 * (int64_t)p < k)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: k=%d s=%d p=%d for length %lld (a='%s')", fn, k, s, p,
                               (long long)a->ne[0], LBL(a, ba));
    int64_t ne[4] = {(a->ne[0] + 2 * p - k) / s + 1, a->ne[1], a->ne[2], a->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_POOL1D);
    if (!t) return NULL;
    t->src[0] = a;
    t->op_params[0] = k;
    t->op_params[1] = s;
    t->op_params[2] = p;
    return t;
}

mmp_tensor *mmp_avg_pool2d(mmp_graph *g, mmp_tensor *a, int k0, int k1, int s0, int s1, int p0, int p1) {
    static const char fn[] = "mmp_avg_pool2d";
    if (!g || !a) return NULL;
    char ba[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    if (k0 < 1 || k1 < 1 || s0 < 1 || s1 < 1 || p0 < 0 || p1 < 0 || 2 * p0 > k0 || 2 * p1 > k1 ||
        a->ne[0] + 2 * (int64_t)p0 < k0 || a->ne[1] + 2 * (int64_t)p1 < k1)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: k=(%d,%d) s=(%d,%d) p=(%d,%d) for %lldx%lld (a='%s')", fn, k0, k1,
                               s0, s1, p0, p1, (long long)a->ne[0], (long long)a->ne[1], LBL(a, ba));
    int64_t ne[4] = {(a->ne[0] + 2 * p0 - k0) / s0 + 1, (a->ne[1] + 2 * p1 - k1) / s1 + 1, a->ne[2], a->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_POOL2D);
    if (!t) return NULL;
    t->src[0] = a;
    int32_t p[6] = {k0, k1, s0, s1, p0, p1};
    memcpy(t->op_params, p, sizeof p);
    return t;
}

mmp_tensor *mmp_concat(mmp_graph *g, mmp_tensor *a, mmp_tensor *b, int dim) {
    static const char fn[] = "mmp_concat";
    if (!g || !a || !b) return NULL;
    char ba[80], bb[80];
    if (dim < 0 || dim > 3) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: dim=%d (must be 0..3)", fn, dim);
    if (!need_type(fn, "a", a, MMP_TYPE_F32) || !need_type(fn, "b", b, MMP_TYPE_F32)) return NULL;
    for (int i = 0; i < 4; i++)
        if (i != dim && a->ne[i] != b->ne[i])
            return mmp__error_null(MMP_ERR_SHAPE, "%s: a " SHPF " and b " SHPF " differ in dim %d (concat dim %d) (a='%s', b='%s')",
                                   fn, SHP(a), SHP(b), i, dim, LBL(a, ba), LBL(b, bb));
    int64_t ne[4] = {a->ne[0], a->ne[1], a->ne[2], a->ne[3]};
    ne[dim] += b->ne[dim];
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_CONCAT);
    if (!t) return NULL;
    t->src[0] = a;
    t->src[1] = b;
    t->op_params[0] = dim;
    return t;
}

/* --------------------------------------------------------------- views ---- */

/* The last byte a view touches must lie within its root's extent. */
static mmp_tensor *view_checked(mmp_graph *g, const char *fn, mmp_tensor *a, const int64_t ne[4], const size_t nb[4],
                                size_t offset) {
    char ba[80];
    const mmp_type_traits *tr = mmp_type_get_traits(a->type);
    for (int i = 0; i < 4; i++)
        if (ne[i] <= 0)
            return mmp__error_null(MMP_ERR_SHAPE, "%s: ne[%d]=%lld (a='%s')", fn, i, (long long)ne[i], LBL(a, ba));
    if (ne[0] % tr->blck_size != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: ne[0]=%lld not a multiple of the block size (a='%s')", fn,
                               (long long)ne[0], LBL(a, ba));
    /* element-aligned offsets and strides: kernels load elements with their natural alignment */
    if (offset % tr->type_size != 0 || nb[1] % tr->type_size != 0 || nb[2] % tr->type_size != 0 ||
        nb[3] % tr->type_size != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: offset %zu / strides (%zu, %zu, %zu) not multiples of the %s element size %zu (a='%s')",
                               fn, offset, nb[1], nb[2], nb[3], tr->name, tr->type_size, LBL(a, ba));
    uint64_t end = offset + (uint64_t)(ne[0] / tr->blck_size) * nb[0], x;
    for (int i = 1; i < 4; i++) {
        if (!mmp__mul_ok((uint64_t)(ne[i] - 1), nb[i], &x) || !mmp__add_ok(end, x, &end))
            return mmp__error_null(MMP_ERR_SHAPE, "%s: strides overflow (a='%s')", fn, LBL(a, ba));
    }
    /* Extent of a: a view of a view is checked against its parent. */
    uint64_t extent = mmp_tensor_nbytes(a);
    if (end > extent)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: view [%lld, %lld, %lld, %lld] at offset %zu ends at byte %llu, past the %llu bytes of a " SHPF " (a='%s')",
                               fn, (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3], offset,
                               (unsigned long long)end, (unsigned long long)extent, SHP(a), LBL(a, ba));
    return new_view(g, fn, a, ne, nb, offset);
}

mmp_tensor *mmp_view_4d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, size_t nb1,
                        size_t nb2, size_t nb3, size_t offset) {
    if (!g || !a) return NULL;
    int64_t ne[4] = {ne0, ne1, ne2, ne3};
    size_t nb[4] = {a->nb[0], nb1, nb2, nb3};
    return view_checked(g, "mmp_view", a, ne, nb, offset);
}
mmp_tensor *mmp_view_3d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1, size_t nb2, size_t offset) {
    return mmp_view_4d(g, a, ne0, ne1, ne2, 1, nb1, nb2, nb2 * (size_t)(ne2 > 0 ? ne2 : 1), offset);
}
mmp_tensor *mmp_view_2d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset) {
    size_t n1 = (size_t)(ne1 > 0 ? ne1 : 1);
    return mmp_view_4d(g, a, ne0, ne1, 1, 1, nb1, nb1 * n1, nb1 * n1, offset);
}
mmp_tensor *mmp_view_1d(mmp_graph *g, mmp_tensor *a, int64_t ne0, size_t offset) {
    if (!g || !a) return NULL;
    const mmp_type_traits *tr = mmp_type_get_traits(a->type);
    size_t row = (size_t)((ne0 > 0 ? ne0 : 1) / tr->blck_size) * tr->type_size;
    return mmp_view_4d(g, a, ne0, 1, 1, 1, row, row, row, offset);
}

mmp_tensor *mmp_reshape(mmp_graph *g, mmp_tensor *a, int n_dims, const int64_t *ne) {
    static const char fn[] = "mmp_reshape";
    if (!g || !a) return NULL;
    if (!dims_ok(n_dims, ne, fn)) return NULL;
    char ba[80];
    int64_t n4[4];
    fill_ne(n_dims, ne, n4);
    int64_t n = 1;
    for (int i = 0; i < 4; i++) {
        if (n4[i] <= 0 || n4[i] > MMP_MAX_NE)
            return mmp__error_null(MMP_ERR_SHAPE, "%s: ne[%d]=%lld (a='%s')", fn, i, (long long)n4[i], LBL(a, ba));
        n *= n4[i];
    }
    if (n != mmp_nelements(a))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: [%lld, %lld, %lld, %lld] has %lld elements but a " SHPF " has %lld (a='%s')",
                               fn, (long long)n4[0], (long long)n4[1], (long long)n4[2], (long long)n4[3], (long long)n,
                               SHP(a), (long long)mmp_nelements(a), LBL(a, ba));
    if (!mmp_is_contiguous(a))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a is not contiguous; use mmp_cont first (a='%s')", fn, LBL(a, ba));
    const mmp_type_traits *tr = mmp_type_get_traits(a->type);
    if (n4[0] % tr->blck_size != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: ne[0]=%lld not a multiple of the %s block size (a='%s')", fn,
                               (long long)n4[0], tr->name, LBL(a, ba));
    mmp_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.type = a->type;
    for (int i = 0; i < 4; i++) tmp.ne[i] = n4[i];
    set_strides(&tmp);
    return new_view(g, fn, a, n4, tmp.nb, 0);
}
mmp_tensor *mmp_reshape_1d(mmp_graph *g, mmp_tensor *a, int64_t ne0) {
    int64_t ne[1] = {ne0};
    return mmp_reshape(g, a, 1, ne);
}
mmp_tensor *mmp_reshape_2d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1) {
    int64_t ne[2] = {ne0, ne1};
    return mmp_reshape(g, a, 2, ne);
}
mmp_tensor *mmp_reshape_3d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2) {
    int64_t ne[3] = {ne0, ne1, ne2};
    return mmp_reshape(g, a, 3, ne);
}
mmp_tensor *mmp_reshape_4d(mmp_graph *g, mmp_tensor *a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    int64_t ne[4] = {ne0, ne1, ne2, ne3};
    return mmp_reshape(g, a, 4, ne);
}

mmp_tensor *mmp_permute(mmp_graph *g, mmp_tensor *a, int axis0, int axis1, int axis2, int axis3) {
    static const char fn[] = "mmp_permute";
    if (!g || !a) return NULL;
    char ba[80];
    int ax[4] = {axis0, axis1, axis2, axis3};
    int seen = 0;
    for (int i = 0; i < 4; i++) {
        if (ax[i] < 0 || ax[i] > 3 || (seen & (1 << ax[i])))
            return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: axes (%d, %d, %d, %d) are not a permutation of 0..3 (a='%s')",
                                   fn, axis0, axis1, axis2, axis3, LBL(a, ba));
        seen |= 1 << ax[i];
    }
    const mmp_type_traits *tr = mmp_type_get_traits(a->type);
    if (tr->blck_size != 1 && ax[0] != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: cannot move dim 0 of a block-quantized tensor (a='%s')", fn, LBL(a, ba));
    int64_t ne[4];
    size_t nb[4];
    for (int i = 0; i < 4; i++) {
        ne[ax[i]] = a->ne[i];
        nb[ax[i]] = a->nb[i];
    }
    return new_view(g, fn, a, ne, nb, 0);
}

mmp_tensor *mmp_transpose(mmp_graph *g, mmp_tensor *a) { return mmp_permute(g, a, 1, 0, 2, 3); }

mmp_tensor *mmp_cont(mmp_graph *g, mmp_tensor *a) {
    static const char fn[] = "mmp_cont";
    if (!g || !a) return NULL;
    char ba[80];
    if (!is_float_type(a->type) && a->type != MMP_TYPE_I32)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: a has type %s (f32/f16/bf16/i32 only) (a='%s')", fn,
                               mmp_type_name(a->type), LBL(a, ba));
    mmp_tensor *t = new_tensor_impl(g, fn, a->type == MMP_TYPE_I32 ? MMP_TYPE_I32 : MMP_TYPE_F32, a->ne, MMP_OP_CONT);
    if (t) t->src[0] = a;
    return t;
}

/* ----------------------------------------------------------- attention ---- */

mmp_tensor *mmp_attn(mmp_graph *g, mmp_tensor *q, mmp_tensor *k, mmp_tensor *v, mmp_tensor *mask, float scale,
                     bool causal, int n_past) {
    static const char fn[] = "mmp_attn";
    if (!g || !q || !k || !v) return NULL;
    char bq[80], bk[80], bv[80], bm[80];
    if (!need_type(fn, "q", q, MMP_TYPE_F32)) return NULL;
    if ((k->type != MMP_TYPE_F32 && k->type != MMP_TYPE_F16) || (v->type != MMP_TYPE_F32 && v->type != MMP_TYPE_F16))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: k and v must be f32 or f16, got %s and %s (k='%s', v='%s')", fn,
                               mmp_type_name(k->type), mmp_type_name(v->type), LBL(k, bk), LBL(v, bv));
    if (!need_rows_contig(fn, "q", q) || !need_rows_contig(fn, "k", k) || !need_rows_contig(fn, "v", v)) return NULL;
    if (q->ne[0] != k->ne[0])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: head dim q.ne[0]=%lld != k.ne[0]=%lld (q='%s', k='%s')", fn,
                               (long long)q->ne[0], (long long)k->ne[0], LBL(q, bq), LBL(k, bk));
    if (k->ne[1] != v->ne[1] || k->ne[2] != v->ne[2] || k->ne[3] != v->ne[3])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: k " SHPF " and v " SHPF " differ in [Tk, Hkv, B] (k='%s', v='%s')", fn,
                               SHP(k), SHP(v), LBL(k, bk), LBL(v, bv));
    if (q->ne[2] % k->ne[2] != 0)
        return mmp__error_null(MMP_ERR_SHAPE, "%s: q heads %lld not a multiple of kv heads %lld (q='%s', k='%s')", fn,
                               (long long)q->ne[2], (long long)k->ne[2], LBL(q, bq), LBL(k, bk));
    if (q->ne[3] != k->ne[3])
        return mmp__error_null(MMP_ERR_SHAPE, "%s: batch q.ne[3]=%lld != k.ne[3]=%lld (q='%s', k='%s')", fn,
                               (long long)q->ne[3], (long long)k->ne[3], LBL(q, bq), LBL(k, bk));
    if (mask) {
        if (!need_type(fn, "mask", mask, MMP_TYPE_F32) || !need_rows_contig(fn, "mask", mask)) return NULL;
        if (mask->ne[0] != k->ne[1] || mask->ne[1] != q->ne[1] || (mask->ne[2] != 1 && mask->ne[2] != q->ne[2]) ||
            mask->ne[3] != 1)
            return mmp__error_null(MMP_ERR_SHAPE, "%s: mask " SHPF " must be [Tk=%lld, Tq=%lld] or [Tk, Tq, H=%lld] (mask='%s', q='%s')",
                                   fn, SHP(mask), (long long)k->ne[1], (long long)q->ne[1], (long long)q->ne[2],
                                   LBL(mask, bm), LBL(q, bq));
    }
    if (causal && n_past < 0)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: n_past=%d < 0 (q='%s')", fn, n_past, LBL(q, bq));
    int64_t ne[4] = {v->ne[0], q->ne[2], q->ne[1], q->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_F32, ne, MMP_OP_ATTN);
    if (!t) return NULL;
    t->src[0] = q;
    t->src[1] = k;
    t->src[2] = v;
    t->src[3] = mask;
    mmp__set_param_f(t, 0, scale);
    t->op_params[1] = causal ? 1 : 0;
    t->op_params[2] = n_past;
    return t;
}

/* ----------------------------------------------------------- selection ---- */

mmp_tensor *mmp_top_k(mmp_graph *g, mmp_tensor *a, int k) {
    static const char fn[] = "mmp_top_k";
    if (!g || !a) return NULL;
    char ba[80];
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    if (k < 1 || k > a->ne[0])
        return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: k=%d must be in 1..a.ne[0]=%lld (a='%s')", fn, k,
                               (long long)a->ne[0], LBL(a, ba));
    int64_t ne[4] = {k, a->ne[1], a->ne[2], a->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_I32, ne, MMP_OP_TOP_K);
    if (!t) return NULL;
    t->src[0] = a;
    t->op_params[0] = k;
    return t;
}

mmp_tensor *mmp_argmax(mmp_graph *g, mmp_tensor *a) {
    static const char fn[] = "mmp_argmax";
    if (!g || !a) return NULL;
    if (!need_type(fn, "a", a, MMP_TYPE_F32)) return NULL;
    int64_t ne[4] = {1, a->ne[1], a->ne[2], a->ne[3]};
    mmp_tensor *t = new_tensor_impl(g, fn, MMP_TYPE_I32, ne, MMP_OP_ARGMAX);
    if (t) t->src[0] = a;
    return t;
}

/* --------------------------------------------------------------- writes ---- */

mmp_tensor *mmp_cpy(mmp_graph *g, mmp_tensor *src, mmp_tensor *dst) {
    static const char fn[] = "mmp_cpy";
    if (!g || !src || !dst) return NULL;
    char bs[80], bd[80];
    if (!need_type(fn, "src", src, MMP_TYPE_F32)) return NULL;
    if (!is_float_type(dst->type))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: dst must be f32, f16 or bf16, got %s (dst='%s')", fn,
                               mmp_type_name(dst->type), LBL(dst, bd));
    if (mmp_nelements(src) != mmp_nelements(dst))
        return mmp__error_null(MMP_ERR_SHAPE, "%s: src " SHPF " has %lld elements, dst " SHPF " has %lld (src='%s', dst='%s')",
                               fn, SHP(src), (long long)mmp_nelements(src), SHP(dst), (long long)mmp_nelements(dst),
                               LBL(src, bs), LBL(dst, bd));
    mmp_tensor *t = new_view(g, fn, dst, dst->ne, dst->nb, 0);
    if (!t) return NULL;
    t->op = MMP_OP_CPY;
    t->src[0] = src;
    t->src[1] = dst;
    return t;
}
