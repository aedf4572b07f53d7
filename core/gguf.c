/* GGUF v2/v3 reader and v3 writer. See include/mmpipe/gguf.h for the layout and the rules.
 *
 * The reader walks the header once with a bounds-checked cursor, validates everything, builds
 * value records (scalars point into the file; string scalars get NUL-terminated copies;
 * string arrays get an offset table; nested arrays get child records) and two hash tables
 * (keys, tensor names). After open nothing is parsed again. */
#include "mmpipe/gguf.h"
#include "mapfile.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mmpipe reads little-endian GGUF in place: big-endian hosts are not supported"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u

struct mmp_gguf_value {
    uint8_t type;               /* enum mmp_gguf_type */
    uint8_t elem;               /* arrays: element type */
    const char *key;            /* owning key (messages) */
    const mmp_gguf *g;          /* owner (messages) */
    const uint8_t *p;           /* scalar payload, or first array element, in the file */
    uint64_t n;                 /* arrays: element count */
    char *str;                  /* string scalar: owned NUL-terminated copy */
    size_t len;                 /* string scalar: byte length */
    uint64_t *offs;             /* string arrays: offset (from p) of each element's u64 length */
    struct mmp_gguf_value *sub; /* arrays of arrays: n child values */
};

typedef struct {
    char *key;
    mmp_gguf_value val;
} gguf_kv;

typedef struct {
    int64_t *slot; /* index + 1, 0 = empty; size cap (a power of two) */
    uint64_t cap;
} hashtab;

struct mmp_gguf {
    mmp__mapfile mf;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    mmp_tensor_info *tensors;
    char **tensor_names; /* owned NUL-terminated copies */
    hashtab kv_ht, t_ht;
};

/* ---------------------------------------------------------------- helpers */

static const size_t type_size_tab[MMP_GGUF_TYPE_COUNT] = {
    [MMP_GGUF_U8] = 1, [MMP_GGUF_I8] = 1, [MMP_GGUF_U16] = 2, [MMP_GGUF_I16] = 2,
    [MMP_GGUF_U32] = 4, [MMP_GGUF_I32] = 4, [MMP_GGUF_F32] = 4, [MMP_GGUF_BOOL] = 1,
    [MMP_GGUF_STRING] = 0, [MMP_GGUF_ARRAY] = 0, [MMP_GGUF_U64] = 8, [MMP_GGUF_I64] = 8,
    [MMP_GGUF_F64] = 8,
};

const char *mmp_gguf_type_name(int t) {
    static const char *names[MMP_GGUF_TYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    return (t >= 0 && t < MMP_GGUF_TYPE_COUNT) ? names[t] : "unknown";
}

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static bool ht_init(hashtab *ht, int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap <<= 1;
    ht->slot = mmp__calloc(cap, sizeof *ht->slot);
    ht->cap = cap;
    return ht->slot != NULL;
}

/* Find `name` among names[]; returns its index or -1. If absent and `insert` >= 0, stores it. */
static int64_t ht_find(const hashtab *ht, char *const *names, size_t stride, const char *name, int64_t insert) {
    if (!ht->slot) return -1;
    uint64_t mask = ht->cap - 1, i = hash_str(name, strlen(name)) & mask;
    for (;;) {
        int64_t s = ht->slot[i];
        if (s == 0) {
            if (insert >= 0) ht->slot[i] = insert + 1;
            return -1;
        }
        const char *other = *(char *const *)((const char *)names + (size_t)(s - 1) * stride);
        if (strcmp(other, name) == 0) return s - 1;
        i = (i + 1) & mask;
    }
}

/* bounds-checked cursor over the file */
typedef struct {
    const uint8_t *base;
    uint64_t size, pos;
    const char *path;
} cursor;

static uint64_t cur_left(const cursor *c) { return c->size - c->pos; }

static enum mmp_status cur_need(cursor *c, uint64_t n, const char *what) {
    if (n > cur_left(c))
        return mmp__error(MMP_ERR_FORMAT, "%s: truncated: %s needs %llu bytes at offset %llu, only %llu left",
                          c->path, what, (unsigned long long)n, (unsigned long long)c->pos,
                          (unsigned long long)cur_left(c));
    return MMP_OK;
}

static enum mmp_status cur_u32(cursor *c, uint32_t *v, const char *what) {
    enum mmp_status s = cur_need(c, 4, what);
    if (s) return s;
    memcpy(v, c->base + c->pos, 4);
    c->pos += 4;
    return MMP_OK;
}

static enum mmp_status cur_u64(cursor *c, uint64_t *v, const char *what) {
    enum mmp_status s = cur_need(c, 8, what);
    if (s) return s;
    memcpy(v, c->base + c->pos, 8);
    c->pos += 8;
    return MMP_OK;
}

/* A string: u64 length then bytes. *p points into the file. */
static enum mmp_status cur_str(cursor *c, const char **p, uint64_t *len, uint64_t max_len, const char *what) {
    enum mmp_status s = cur_u64(c, len, what);
    if (s) return s;
    if (*len > max_len)
        return mmp__error(MMP_ERR_LIMIT, "%s: %s length %llu exceeds the limit %llu (offset %llu)", c->path, what,
                          (unsigned long long)*len, (unsigned long long)max_len, (unsigned long long)(c->pos - 8));
    if (*len > cur_left(c))
        return mmp__error(MMP_ERR_FORMAT, "%s: %s length %llu runs past the end of the file (offset %llu, %llu bytes left)",
                          c->path, what, (unsigned long long)*len, (unsigned long long)(c->pos - 8),
                          (unsigned long long)cur_left(c));
    *p = (const char *)c->base + c->pos;
    c->pos += *len;
    return MMP_OK;
}

/* Name check for keys and tensor names: non-empty, valid UTF-8, no NUL. `what` + the printable
 * prefix go in the message. */
static enum mmp_status check_name(const cursor *c, const char *s, uint64_t n, const char *what) {
    if (n == 0) return mmp__error(MMP_ERR_FORMAT, "%s: %s is empty (offset %llu)", c->path, what, (unsigned long long)c->pos);
    if (memchr(s, 0, n))
        return mmp__error(MMP_ERR_FORMAT, "%s: %s contains a NUL byte (offset %llu)", c->path, what,
                          (unsigned long long)(c->pos - n));
    if (!mmp__utf8_valid(s, n))
        return mmp__error(MMP_ERR_FORMAT, "%s: %s is not valid UTF-8 (%llu bytes at offset %llu)", c->path, what,
                          (unsigned long long)n, (unsigned long long)(c->pos - n));
    return MMP_OK;
}

static char *dup_n(const char *s, size_t n) {
    char *p = mmp__malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void value_free(mmp_gguf_value *v) {
    if (!v) return;
    free(v->str);
    free(v->offs);
    if (v->sub) {
        for (uint64_t i = 0; i < v->n; i++) value_free(&v->sub[i]);
        free(v->sub);
    }
    memset(v, 0, sizeof *v);
}

/* Smallest encoded size of one element of type t (for count-vs-bytes checks). */
static uint64_t min_elem_size(uint32_t t) {
    if (t == MMP_GGUF_STRING) return 8;
    if (t == MMP_GGUF_ARRAY) return 12;
    return type_size_tab[t];
}

/* Parse a value of `type` at the cursor into *v (zeroed by the caller). */
static enum mmp_status parse_value(cursor *c, mmp_gguf *g, const char *key, uint32_t type, mmp_gguf_value *v, int depth) {
    enum mmp_status s;
    v->type = (uint8_t)type;
    v->key = key;
    v->g = g;
    if (type >= MMP_GGUF_TYPE_COUNT)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s': unknown value type %u (offset %llu)", c->path, key, type,
                          (unsigned long long)(c->pos - 4));
    if (type == MMP_GGUF_STRING) {
        const char *p;
        uint64_t n;
        if ((s = cur_str(c, &p, &n, UINT64_MAX, "string value"))) return mmp__error_prefix("key '%s': ", key), s;
        v->p = (const uint8_t *)p;
        v->len = (size_t)n;
        v->str = dup_n(p, (size_t)n);
        return v->str ? MMP_OK : MMP_ERR_NOMEM;
    }
    if (type != MMP_GGUF_ARRAY) {
        if ((s = cur_need(c, type_size_tab[type], "value"))) return mmp__error_prefix("key '%s': ", key), s;
        v->p = c->base + c->pos;
        if (type == MMP_GGUF_BOOL && v->p[0] > 1)
            return mmp__error(MMP_ERR_FORMAT, "%s: key '%s': bool value %u is neither 0 nor 1", c->path, key, v->p[0]);
        c->pos += type_size_tab[type];
        return MMP_OK;
    }
    /* array */
    if (depth >= MMP_GGUF_MAX_DEPTH)
        return mmp__error(MMP_ERR_LIMIT, "%s: key '%s': arrays nested deeper than %d", c->path, key, MMP_GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    if ((s = cur_u32(c, &et, "array element type")) || (s = cur_u64(c, &n, "array length")))
        return mmp__error_prefix("key '%s': ", key), s;
    if (et >= MMP_GGUF_TYPE_COUNT)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s': unknown array element type %u", c->path, key, et);
    v->elem = (uint8_t)et;
    uint64_t me = min_elem_size(et);
    if (n > cur_left(c) / me)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s': array length %llu of %s needs at least %llu bytes, only %llu left",
                          c->path, key, (unsigned long long)n, mmp_gguf_type_name((int)et),
                          (unsigned long long)(n > UINT64_MAX / me ? UINT64_MAX : n * me), (unsigned long long)cur_left(c));
    v->n = n;
    v->p = c->base + c->pos;
    if (et == MMP_GGUF_STRING) {
        v->offs = mmp__calloc(n ? n : 1, sizeof *v->offs);
        if (!v->offs) return MMP_ERR_NOMEM;
        for (uint64_t i = 0; i < n; i++) {
            v->offs[i] = c->pos - (uint64_t)(v->p - c->base);
            const char *p;
            uint64_t len;
            if ((s = cur_str(c, &p, &len, UINT64_MAX, "array string")))
                return mmp__error_prefix("key '%s' element %llu: ", key, (unsigned long long)i), s;
        }
    } else if (et == MMP_GGUF_ARRAY) {
        v->sub = mmp__calloc(n ? n : 1, sizeof *v->sub);
        if (!v->sub) return MMP_ERR_NOMEM;
        for (uint64_t i = 0; i < n; i++) {
            if ((s = parse_value(c, g, key, MMP_GGUF_ARRAY, &v->sub[i], depth + 1))) {
                v->n = i + 1; /* free what was built */
                return s;
            }
        }
    } else {
        if (et == MMP_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->base[c->pos + i] > 1)
                    return mmp__error(MMP_ERR_FORMAT, "%s: key '%s': bool element %llu is %u, neither 0 nor 1", c->path, key,
                                      (unsigned long long)i, c->base[c->pos + i]);
        c->pos += n * type_size_tab[et];
    }
    return MMP_OK;
}

/* ---------------------------------------------------------------- value access */

static const char *vpath(const mmp_gguf_value *v) { return v && v->g ? v->g->mf.path : "<gguf>"; }
static const char *vkey(const mmp_gguf_value *v) { return v && v->key ? v->key : "?"; }

/* Reads a scalar of a fixed-size type at p as int64/uint64/double. */
static bool scalar_int(uint32_t t, const uint8_t *p, int64_t *si, uint64_t *ui, bool *is_unsigned) {
    *is_unsigned = false;
    switch (t) {
    case MMP_GGUF_U8: *si = p[0]; return true;
    case MMP_GGUF_I8: { int8_t x; memcpy(&x, p, 1); *si = x; return true; }
    case MMP_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); *si = x; return true; }
    case MMP_GGUF_I16: { int16_t x; memcpy(&x, p, 2); *si = x; return true; }
    case MMP_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); *si = x; return true; }
    case MMP_GGUF_I32: { int32_t x; memcpy(&x, p, 4); *si = x; return true; }
    case MMP_GGUF_I64: { int64_t x; memcpy(&x, p, 8); *si = x; return true; }
    case MMP_GGUF_U64: { uint64_t x; memcpy(&x, p, 8); *ui = x; *is_unsigned = true; return true; }
    case MMP_GGUF_BOOL: *si = p[0]; return true;
    default: return false;
    }
}

static bool scalar_f64(uint32_t t, const uint8_t *p, double *out) {
    if (t == MMP_GGUF_F32) { float f; memcpy(&f, p, 4); *out = f; return true; }
    if (t == MMP_GGUF_F64) { memcpy(out, p, 8); return true; }
    int64_t si; uint64_t ui; bool u;
    if (!scalar_int(t, p, &si, &ui, &u)) return false;
    *out = u ? (double)ui : (double)si;
    return true;
}

enum mmp_gguf_type mmp_gguf_value_type(const mmp_gguf_value *v) { return v ? (enum mmp_gguf_type)v->type : MMP_GGUF_TYPE_COUNT; }

static enum mmp_status want(const mmp_gguf_value *v, const char *expected) {
    if (!v) return mmp__error(MMP_ERR_INVALID_ARG, "gguf: NULL value");
    return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' is %s, expected %s", vpath(v), vkey(v), mmp_gguf_type_name(v->type), expected);
}

enum mmp_status mmp_gguf_value_i64(const mmp_gguf_value *v, int64_t *out) {
    int64_t si; uint64_t ui; bool u;
    if (!v || v->type == MMP_GGUF_STRING || v->type == MMP_GGUF_ARRAY || !scalar_int(v->type, v->p, &si, &ui, &u))
        return want(v, "an integer");
    if (u) {
        if (ui > (uint64_t)INT64_MAX)
            return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' value %llu does not fit in int64", vpath(v), vkey(v), (unsigned long long)ui);
        si = (int64_t)ui;
    }
    *out = si;
    return MMP_OK;
}

enum mmp_status mmp_gguf_value_u64(const mmp_gguf_value *v, uint64_t *out) {
    int64_t si; uint64_t ui; bool u;
    if (!v || v->type == MMP_GGUF_STRING || v->type == MMP_GGUF_ARRAY || !scalar_int(v->type, v->p, &si, &ui, &u))
        return want(v, "an unsigned integer");
    if (!u) {
        if (si < 0) return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' value %lld is negative", vpath(v), vkey(v), (long long)si);
        ui = (uint64_t)si;
    }
    *out = ui;
    return MMP_OK;
}

enum mmp_status mmp_gguf_value_f64(const mmp_gguf_value *v, double *out) {
    if (!v || v->type == MMP_GGUF_STRING || v->type == MMP_GGUF_ARRAY || v->type == MMP_GGUF_BOOL || !scalar_f64(v->type, v->p, out))
        return want(v, "a number");
    return MMP_OK;
}

enum mmp_status mmp_gguf_value_bool(const mmp_gguf_value *v, bool *out) {
    if (!v || v->type != MMP_GGUF_BOOL) return want(v, "a bool");
    *out = v->p[0] != 0;
    return MMP_OK;
}

enum mmp_status mmp_gguf_value_str(const mmp_gguf_value *v, const char **out, size_t *len) {
    if (!v || v->type != MMP_GGUF_STRING) return want(v, "a string");
    *out = v->str;
    if (len) *len = v->len;
    return MMP_OK;
}

uint64_t mmp_gguf_arr_n(const mmp_gguf_value *v) { return v && v->type == MMP_GGUF_ARRAY ? v->n : 0; }
enum mmp_gguf_type mmp_gguf_arr_type(const mmp_gguf_value *v) {
    return v && v->type == MMP_GGUF_ARRAY ? (enum mmp_gguf_type)v->elem : MMP_GGUF_TYPE_COUNT;
}
const void *mmp_gguf_arr_data(const mmp_gguf_value *v) {
    if (!v || v->type != MMP_GGUF_ARRAY || v->elem == MMP_GGUF_STRING || v->elem == MMP_GGUF_ARRAY) return NULL;
    return v->p;
}

static enum mmp_status arr_check(const mmp_gguf_value *v, uint64_t i) {
    if (!v || v->type != MMP_GGUF_ARRAY) return want(v, "an array");
    if (i >= v->n)
        return mmp__error(MMP_ERR_INVALID_ARG, "%s: key '%s': index %llu out of range (array of %llu)", vpath(v), vkey(v),
                          (unsigned long long)i, (unsigned long long)v->n);
    return MMP_OK;
}

enum mmp_status mmp_gguf_arr_i64(const mmp_gguf_value *v, uint64_t i, int64_t *out) {
    enum mmp_status s = arr_check(v, i);
    if (s) return s;
    int64_t si; uint64_t ui; bool u;
    if (v->elem == MMP_GGUF_STRING || v->elem == MMP_GGUF_ARRAY || !scalar_int(v->elem, v->p + i * type_size_tab[v->elem], &si, &ui, &u))
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' is an array of %s, expected integers", vpath(v), vkey(v), mmp_gguf_type_name(v->elem));
    if (u && ui > (uint64_t)INT64_MAX)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' element %llu value %llu does not fit in int64", vpath(v), vkey(v),
                          (unsigned long long)i, (unsigned long long)ui);
    *out = u ? (int64_t)ui : si;
    return MMP_OK;
}

enum mmp_status mmp_gguf_arr_f64(const mmp_gguf_value *v, uint64_t i, double *out) {
    enum mmp_status s = arr_check(v, i);
    if (s) return s;
    if (v->elem == MMP_GGUF_STRING || v->elem == MMP_GGUF_ARRAY || v->elem == MMP_GGUF_BOOL ||
        !scalar_f64(v->elem, v->p + i * type_size_tab[v->elem], out))
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' is an array of %s, expected numbers", vpath(v), vkey(v), mmp_gguf_type_name(v->elem));
    return MMP_OK;
}

enum mmp_status mmp_gguf_arr_str(const mmp_gguf_value *v, uint64_t i, const char **out, size_t *len) {
    enum mmp_status s = arr_check(v, i);
    if (s) return s;
    if (v->elem != MMP_GGUF_STRING)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' is an array of %s, expected strings", vpath(v), vkey(v), mmp_gguf_type_name(v->elem));
    uint64_t n;
    memcpy(&n, v->p + v->offs[i], 8);
    *out = (const char *)v->p + v->offs[i] + 8;
    if (len) *len = (size_t)n;
    return MMP_OK;
}

enum mmp_status mmp_gguf_arr_arr(const mmp_gguf_value *v, uint64_t i, const mmp_gguf_value **out) {
    enum mmp_status s = arr_check(v, i);
    if (s) return s;
    if (v->elem != MMP_GGUF_ARRAY)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' is an array of %s, expected arrays", vpath(v), vkey(v), mmp_gguf_type_name(v->elem));
    *out = &v->sub[i];
    return MMP_OK;
}

/* ---------------------------------------------------------------- reader */

void mmp_gguf_free(mmp_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) {
            value_free(&g->kv[i].val);
            free(g->kv[i].key);
        }
    free(g->kv);
    if (g->tensor_names)
        for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensor_names[i]);
    free(g->tensor_names);
    free(g->tensors);
    free(g->kv_ht.slot);
    free(g->t_ht.slot);
    mmp__mapfile_close(&g->mf);
    free(g);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const mmp_tensor_info *x = *(const mmp_tensor_info *const *)a, *y = *(const mmp_tensor_info *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : 0;
}

static enum mmp_status gguf_parse(mmp_gguf *g) {
    cursor c = {g->mf.data, g->mf.size, 0, g->mf.path};
    const char *path = g->mf.path;
    enum mmp_status s;
    if (c.size < 4 || memcmp(c.base, GGUF_MAGIC, 4) != 0) {
        char m[16] = "";
        for (size_t i = 0; i < 4 && i < c.size; i++)
            snprintf(m + strlen(m), sizeof m - strlen(m), "%02x", c.base[i]);
        return mmp__error(MMP_ERR_FORMAT, "%s: not a GGUF file (magic %s%s, expected 'GGUF' = 47475546)", path,
                          c.size ? "0x" : "<none>", m);
    }
    c.pos = 4;
    uint64_t n_tensors, n_kv;
    if ((s = cur_u32(&c, &g->version, "version"))) return s;
    if (g->version == 1)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (re-convert the model; versions 2 and 3 are read)", path);
    if (g->version != 2 && g->version != 3)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: unsupported GGUF version %u (versions 2 and 3 are read)", path, g->version);
    if ((s = cur_u64(&c, &n_tensors, "tensor count")) || (s = cur_u64(&c, &n_kv, "kv count"))) return s;
    /* Minimal encodings: a kv is key(8+1) + type(4) + 1 byte; a tensor info is name(8+1) +
     * n_dims(4) + ne(8) + type(4) + offset(8). */
    if (n_kv > cur_left(&c) / 14)
        return mmp__error(MMP_ERR_FORMAT, "%s: kv count %llu is impossible in a file of %llu bytes", path,
                          (unsigned long long)n_kv, (unsigned long long)c.size);
    if (n_tensors > cur_left(&c) / 33)
        return mmp__error(MMP_ERR_FORMAT, "%s: tensor count %llu is impossible in a file of %llu bytes", path,
                          (unsigned long long)n_tensors, (unsigned long long)c.size);
    g->kv = mmp__calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    if (!g->kv) return MMP_ERR_NOMEM;
    if (!ht_init(&g->kv_ht, (int64_t)n_kv)) return MMP_ERR_NOMEM;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        const char *k;
        uint64_t klen;
        uint32_t type;
        if ((s = cur_str(&c, &k, &klen, MMP_GGUF_MAX_KEY, "key"))) return mmp__error_prefix("kv %llu: ", (unsigned long long)i), s;
        char what[64];
        snprintf(what, sizeof what, "key of kv %llu", (unsigned long long)i);
        if ((s = check_name(&c, k, klen, what))) return s;
        gguf_kv *kv = &g->kv[i];
        if (!(kv->key = dup_n(k, (size_t)klen))) return MMP_ERR_NOMEM;
        g->n_kv = (int64_t)i + 1;
        if (ht_find(&g->kv_ht, &g->kv[0].key, sizeof *g->kv, kv->key, (int64_t)i) >= 0)
            return mmp__error(MMP_ERR_FORMAT, "%s: duplicate key '%s'", path, kv->key);
        if ((s = cur_u32(&c, &type, "value type"))) return mmp__error_prefix("key '%s': ", kv->key), s;
        if ((s = parse_value(&c, g, kv->key, type, &kv->val, 0))) return s;
        if (strcmp(kv->key, "general.alignment") == 0) {
            uint64_t a;
            if ((s = mmp_gguf_value_u64(&kv->val, &a))) return s;
            if (a == 0 || (a & (a - 1)) || a > MMP_GGUF_MAX_ALIGNMENT)
                return mmp__error(MMP_ERR_FORMAT, "%s: general.alignment %llu is not a power of two in 1..%u", path,
                                  (unsigned long long)a, MMP_GGUF_MAX_ALIGNMENT);
            g->alignment = (uint32_t)a;
        }
    }

    if (n_tensors > cur_left(&c) / 33)
        return mmp__error(MMP_ERR_FORMAT, "%s: tensor count %llu is impossible with %llu bytes left after the metadata", path,
                          (unsigned long long)n_tensors, (unsigned long long)cur_left(&c));
    g->tensors = mmp__calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    g->tensor_names = mmp__calloc(n_tensors ? n_tensors : 1, sizeof *g->tensor_names);
    if (!g->tensors || !g->tensor_names || !ht_init(&g->t_ht, (int64_t)n_tensors)) return MMP_ERR_NOMEM;
    for (uint64_t i = 0; i < n_tensors; i++) {
        const char *nm;
        uint64_t nlen;
        uint32_t n_dims, type;
        if ((s = cur_str(&c, &nm, &nlen, MMP_GGUF_MAX_NAME, "tensor name")))
            return mmp__error_prefix("tensor %llu: ", (unsigned long long)i), s;
        char what[64];
        snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)i);
        if ((s = check_name(&c, nm, nlen, what))) return s;
        if (!(g->tensor_names[i] = dup_n(nm, (size_t)nlen))) return MMP_ERR_NOMEM;
        g->n_tensors = (int64_t)i + 1;
        const char *name = g->tensor_names[i];
        mmp_tensor_info *t = &g->tensors[i];
        t->name = name;
        t->file = path;
        if (ht_find(&g->t_ht, g->tensor_names, sizeof(char *), name, (int64_t)i) >= 0)
            return mmp__error(MMP_ERR_FORMAT, "%s: duplicate tensor name '%s'", path, name);
        if ((s = cur_u32(&c, &n_dims, "n_dims"))) return mmp__error_prefix("tensor '%s': ", name), s;
        if (n_dims < 1 || n_dims > 4)
            return mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' n_dims %u is not in 1..4", path, name, n_dims);
        t->n_dims = (int)n_dims;
        uint64_t nel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if ((s = cur_u64(&c, &ne, "ne"))) return mmp__error_prefix("tensor '%s': ", name), s;
            if (ne == 0 || ne > (uint64_t)INT64_MAX)
                return mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' ne[%u] = %lld is not positive", path, name, d, (long long)ne);
            if (!mmp__mul_ok(nel, ne, &nel) || nel > (uint64_t)INT64_MAX)
                return mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' element count overflows at ne[%u] = %llu", path, name, d,
                                  (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
        }
        if ((s = cur_u32(&c, &type, "type"))) return mmp__error_prefix("tensor '%s': ", name), s;
        const mmp_type_traits *tr = mmp_type_get_traits((int)type);
        if (!tr) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' type %u is not a known ggml type", path, name, type);
        t->type = (enum mmp_type)type;
        if (t->ne[0] % tr->blck_size != 0)
            return mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' ne[0] = %lld is not a multiple of the %s block size %lld", path,
                              name, (long long)t->ne[0], tr->name, (long long)tr->blck_size);
        uint64_t nb = (uint64_t)(t->ne[0] / tr->blck_size), rows = (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        if (!mmp__mul_ok(nb, tr->type_size, &nb) || !mmp__mul_ok(nb, rows, &nb) || nb > SIZE_MAX)
            return mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' byte size overflows", path, name);
        t->nbytes = (size_t)nb;
        if ((s = cur_u64(&c, &t->offset, "offset"))) return mmp__error_prefix("tensor '%s': ", name), s;
        if (t->offset % g->alignment)
            return mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' offset %llu is not a multiple of the alignment %u", path, name,
                              (unsigned long long)t->offset, g->alignment);
    }
    /* data section: after the tensor infos, padded to the alignment */
    uint64_t ds = c.pos + (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = ds;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        mmp_tensor_info *t = &g->tensors[i];
        uint64_t begin, end;
        if (!mmp__add_ok(ds, t->offset, &begin) || !mmp__add_ok(begin, t->nbytes, &end) || end > c.size)
            return mmp__error(MMP_ERR_FORMAT,
                              "%s: tensor '%s' offset %llu + %zu bytes runs past the end of the file (data section at %llu, file %llu bytes)",
                              path, t->name, (unsigned long long)t->offset, t->nbytes, (unsigned long long)ds,
                              (unsigned long long)c.size);
        t->data = c.base + begin;
        t->offset = begin; /* from now on: from the start of the file, as mmp_tensor_info says */
    }
    if (g->n_tensors > 1) {
        const mmp_tensor_info **order = mmp__calloc((size_t)g->n_tensors, sizeof *order);
        if (!order) return MMP_ERR_NOMEM;
        for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
        qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_tensor_offset);
        for (int64_t i = 0; i + 1 < g->n_tensors; i++)
            if (order[i]->offset + order[i]->nbytes > order[i + 1]->offset) {
                s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' (offset %llu, %zu bytes) overlaps tensor '%s' (offset %llu)", path,
                               order[i]->name, (unsigned long long)order[i]->offset, order[i]->nbytes, order[i + 1]->name,
                               (unsigned long long)order[i + 1]->offset);
                free(order);
                return s;
            }
        free(order);
    }
    return MMP_OK;
}

static mmp_gguf *gguf_finish(mmp_gguf *g) {
    for (int64_t i = 0; i < g->n_tensors; i++) g->tensors[i].file = g->mf.path;
    return g;
}

mmp_gguf *mmp_gguf_open(const char *path) {
    mmp_gguf *g = mmp__calloc(1, sizeof *g);
    if (!g) return NULL;
    if (mmp__mapfile_open(&g->mf, path) || gguf_parse(g)) {
        mmp_gguf_free(g);
        return NULL;
    }
    return gguf_finish(g);
}

mmp_gguf *mmp_gguf_open_memory(const void *data, size_t size, const char *name) {
    mmp_gguf *g = mmp__calloc(1, sizeof *g);
    if (!g) return NULL;
    if (mmp__mapfile_from_memory(&g->mf, data, size, name) || gguf_parse(g)) {
        mmp_gguf_free(g);
        return NULL;
    }
    return gguf_finish(g);
}

const char *mmp_gguf_path(const mmp_gguf *g) { return g ? g->mf.path : NULL; }
uint32_t mmp_gguf_version(const mmp_gguf *g) { return g ? g->version : 0; }
uint32_t mmp_gguf_alignment(const mmp_gguf *g) { return g ? g->alignment : 0; }
uint64_t mmp_gguf_data_offset(const mmp_gguf *g) { return g ? g->data_offset : 0; }
uint64_t mmp_gguf_file_size(const mmp_gguf *g) { return g ? g->mf.size : 0; }
int64_t mmp_gguf_n_kv(const mmp_gguf *g) { return g ? g->n_kv : 0; }
const char *mmp_gguf_kv_key(const mmp_gguf *g, int64_t i) { return g && i >= 0 && i < g->n_kv ? g->kv[i].key : NULL; }
const mmp_gguf_value *mmp_gguf_kv_value(const mmp_gguf *g, int64_t i) { return g && i >= 0 && i < g->n_kv ? &g->kv[i].val : NULL; }

int64_t mmp_gguf_find_kv(const mmp_gguf *g, const char *key) {
    if (!g || !key) return -1;
    return ht_find(&g->kv_ht, &g->kv[0].key, sizeof *g->kv, key, -1);
}

bool mmp_gguf_has(const mmp_gguf *g, const char *key) { return mmp_gguf_find_kv(g, key) >= 0; }

const mmp_gguf_value *mmp_gguf_get(const mmp_gguf *g, const char *key) {
    if (!g || !key) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_gguf_get: NULL argument");
    int64_t i = mmp_gguf_find_kv(g, key);
    if (i < 0) return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: key '%s' not found", g->mf.path, key);
    return &g->kv[i].val;
}

#define GET_OR_RETURN(v)                                              \
    const mmp_gguf_value *v = mmp_gguf_get(g, key);                   \
    if (!v) return g && key ? MMP_ERR_NOT_FOUND : MMP_ERR_INVALID_ARG

enum mmp_status mmp_gguf_get_i64(const mmp_gguf *g, const char *key, int64_t *out) {
    GET_OR_RETURN(v);
    return mmp_gguf_value_i64(v, out);
}

enum mmp_status mmp_gguf_get_u64(const mmp_gguf *g, const char *key, uint64_t *out) {
    GET_OR_RETURN(v);
    return mmp_gguf_value_u64(v, out);
}

enum mmp_status mmp_gguf_get_u32(const mmp_gguf *g, const char *key, uint32_t *out) {
    GET_OR_RETURN(v);
    uint64_t x;
    enum mmp_status s = mmp_gguf_value_u64(v, &x);
    if (s) return s;
    if (x > UINT32_MAX)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' value %llu does not fit in uint32", g->mf.path, key, (unsigned long long)x);
    *out = (uint32_t)x;
    return MMP_OK;
}

enum mmp_status mmp_gguf_get_i32(const mmp_gguf *g, const char *key, int32_t *out) {
    GET_OR_RETURN(v);
    int64_t x;
    enum mmp_status s = mmp_gguf_value_i64(v, &x);
    if (s) return s;
    if (x < INT32_MIN || x > INT32_MAX)
        return mmp__error(MMP_ERR_FORMAT, "%s: key '%s' value %lld does not fit in int32", g->mf.path, key, (long long)x);
    *out = (int32_t)x;
    return MMP_OK;
}

enum mmp_status mmp_gguf_get_f64(const mmp_gguf *g, const char *key, double *out) {
    GET_OR_RETURN(v);
    return mmp_gguf_value_f64(v, out);
}

enum mmp_status mmp_gguf_get_f32(const mmp_gguf *g, const char *key, float *out) {
    GET_OR_RETURN(v);
    double d;
    enum mmp_status s = mmp_gguf_value_f64(v, &d);
    if (!s) *out = (float)d;
    return s;
}

enum mmp_status mmp_gguf_get_bool(const mmp_gguf *g, const char *key, bool *out) {
    GET_OR_RETURN(v);
    return mmp_gguf_value_bool(v, out);
}

enum mmp_status mmp_gguf_get_str(const mmp_gguf *g, const char *key, const char **out) {
    GET_OR_RETURN(v);
    return mmp_gguf_value_str(v, out, NULL);
}

enum mmp_status mmp_gguf_get_arr(const mmp_gguf *g, const char *key, const mmp_gguf_value **out) {
    GET_OR_RETURN(v);
    if (v->type != MMP_GGUF_ARRAY) return want(v, "an array");
    *out = v;
    return MMP_OK;
}

int64_t mmp_gguf_n_tensors(const mmp_gguf *g) { return g ? g->n_tensors : 0; }
const mmp_tensor_info *mmp_gguf_tensor(const mmp_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const mmp_tensor_info *mmp_gguf_find_tensor(const mmp_gguf *g, const char *name) {
    if (!g || !name) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_gguf_find_tensor: NULL argument");
    int64_t i = ht_find(&g->t_ht, g->tensor_names, sizeof(char *), name, -1);
    if (i < 0) return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: tensor '%s' not found", g->mf.path, name);
    return &g->tensors[i];
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool failed;
} dynbuf;

static void db_put(dynbuf *b, const void *src, size_t n) {
    if (b->failed) return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) { b->failed = true; return; }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->failed = true; return; }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void db_u32(dynbuf *b, uint32_t v) { db_put(b, &v, 4); }
static void db_u64(dynbuf *b, uint64_t v) { db_put(b, &v, 8); }
static void db_str(dynbuf *b, const char *s, size_t n) { db_u64(b, n); db_put(b, s, n); }

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *payload;
    size_t size;
} wkv;

typedef struct {
    char *name;
    enum mmp_type type;
    int n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} wtensor;

struct mmp_gguf_writer {
    uint32_t alignment, version;
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

mmp_gguf_writer *mmp_gguf_writer_new(void) {
    mmp_gguf_writer *w = mmp__calloc(1, sizeof *w);
    if (w) {
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
        w->version = 3;
    }
    return w;
}

void mmp_gguf_writer_free(mmp_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].payload);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

enum mmp_status mmp_gguf_writer_set_alignment(mmp_gguf_writer *w, uint32_t a) {
    if (!w || a == 0 || (a & (a - 1)) || a > MMP_GGUF_MAX_ALIGNMENT)
        return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: alignment %u is not a power of two in 1..%u", a, MMP_GGUF_MAX_ALIGNMENT);
    w->alignment = a;
    return MMP_OK;
}

enum mmp_status mmp_gguf_writer_set_version(mmp_gguf_writer *w, uint32_t v) {
    if (!w || (v != 2 && v != 3)) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: version %u (only 2 and 3 are written)", v);
    w->version = v;
    return MMP_OK;
}

enum mmp_status mmp_gguf_writer_add_raw(mmp_gguf_writer *w, const char *key, enum mmp_gguf_type type, const void *payload, size_t size) {
    if (!w || !key || (!payload && size)) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: NULL argument");
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: duplicate key '%s'", key);
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) return mmp__error(MMP_ERR_NOMEM, "gguf writer: out of memory");
        w->kv = p;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kv[w->n_kv];
    kv->key = mmp__strdup(key);
    kv->payload = mmp__malloc(size);
    if (!kv->key || !kv->payload) {
        free(kv->key);
        free(kv->payload);
        return MMP_ERR_NOMEM;
    }
    if (size) memcpy(kv->payload, payload, size);
    kv->size = size;
    kv->type = (uint32_t)type;
    w->n_kv++;
    return MMP_OK;
}

#define ADD_SCALAR(fn, ctype, gtype) \
    enum mmp_status fn(mmp_gguf_writer *w, const char *key, ctype v) { return mmp_gguf_writer_add_raw(w, key, gtype, &v, sizeof v); }
ADD_SCALAR(mmp_gguf_writer_add_u8, uint8_t, MMP_GGUF_U8)
ADD_SCALAR(mmp_gguf_writer_add_i8, int8_t, MMP_GGUF_I8)
ADD_SCALAR(mmp_gguf_writer_add_u16, uint16_t, MMP_GGUF_U16)
ADD_SCALAR(mmp_gguf_writer_add_i16, int16_t, MMP_GGUF_I16)
ADD_SCALAR(mmp_gguf_writer_add_u32, uint32_t, MMP_GGUF_U32)
ADD_SCALAR(mmp_gguf_writer_add_i32, int32_t, MMP_GGUF_I32)
ADD_SCALAR(mmp_gguf_writer_add_u64, uint64_t, MMP_GGUF_U64)
ADD_SCALAR(mmp_gguf_writer_add_i64, int64_t, MMP_GGUF_I64)
ADD_SCALAR(mmp_gguf_writer_add_f32, float, MMP_GGUF_F32)
ADD_SCALAR(mmp_gguf_writer_add_f64, double, MMP_GGUF_F64)

enum mmp_status mmp_gguf_writer_add_bool(mmp_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return mmp_gguf_writer_add_raw(w, key, MMP_GGUF_BOOL, &b, 1);
}

enum mmp_status mmp_gguf_writer_add_str(mmp_gguf_writer *w, const char *key, const char *v) {
    if (!v) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: NULL string for key '%s'", key ? key : "?");
    dynbuf b = {0};
    db_str(&b, v, strlen(v));
    if (b.failed) { free(b.p); return mmp__error(MMP_ERR_NOMEM, "gguf writer: out of memory"); }
    enum mmp_status s = mmp_gguf_writer_add_raw(w, key, MMP_GGUF_STRING, b.p, b.n);
    free(b.p);
    return s;
}

enum mmp_status mmp_gguf_writer_add_arr(mmp_gguf_writer *w, const char *key, enum mmp_gguf_type elem, const void *data, uint64_t n) {
    if ((int)elem < 0 || elem >= MMP_GGUF_TYPE_COUNT || elem == MMP_GGUF_STRING || elem == MMP_GGUF_ARRAY)
        return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: key '%s': array element type %d is not a fixed-size type", key ? key : "?", (int)elem);
    uint64_t bytes;
    if (!mmp__mul_ok(n, type_size_tab[elem], &bytes) || bytes > SIZE_MAX - 12 || (!data && n))
        return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: key '%s': bad array of %llu elements", key ? key : "?", (unsigned long long)n);
    dynbuf b = {0};
    db_u32(&b, (uint32_t)elem);
    db_u64(&b, n);
    db_put(&b, data, (size_t)bytes);
    if (b.failed) { free(b.p); return mmp__error(MMP_ERR_NOMEM, "gguf writer: out of memory"); }
    enum mmp_status s = mmp_gguf_writer_add_raw(w, key, MMP_GGUF_ARRAY, b.p, b.n);
    free(b.p);
    return s;
}

enum mmp_status mmp_gguf_writer_add_arr_str(mmp_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    if (!strs && n) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: key '%s': NULL strings", key ? key : "?");
    dynbuf b = {0};
    db_u32(&b, MMP_GGUF_STRING);
    db_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) { free(b.p); return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: key '%s': string %llu is NULL", key ? key : "?", (unsigned long long)i); }
        db_str(&b, strs[i], strlen(strs[i]));
    }
    if (b.failed) { free(b.p); return mmp__error(MMP_ERR_NOMEM, "gguf writer: out of memory"); }
    enum mmp_status s = mmp_gguf_writer_add_raw(w, key, MMP_GGUF_ARRAY, b.p, b.n);
    free(b.p);
    return s;
}

enum mmp_status mmp_gguf_writer_add_tensor(mmp_gguf_writer *w, const char *name, enum mmp_type type, int n_dims, const int64_t *ne,
                                           const void *data) {
    if (!w || !name || !ne || !data) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: NULL argument for tensor '%s'", name ? name : "?");
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > MMP_GGUF_MAX_NAME || !mmp__utf8_valid(name, nlen))
        return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: bad tensor name '%s' (empty, longer than %d bytes or not UTF-8)", name, MMP_GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: duplicate tensor '%s'", name);
    const mmp_type_traits *tr = mmp_type_get_traits((int)type);
    if (!tr) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: tensor '%s': unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > 4) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: tensor '%s': n_dims %d not in 1..4", name, n_dims);
    wtensor t = {0};
    t.type = type;
    t.n_dims = n_dims;
    uint64_t rows = 1;
    for (int d = 0; d < 4; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: tensor '%s': ne[%d] = %lld", name, d, (long long)t.ne[d]);
        if (d > 0 && !mmp__mul_ok(rows, (uint64_t)t.ne[d], &rows))
            return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: tensor '%s': size overflows", name);
    }
    if (t.ne[0] % tr->blck_size)
        return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: tensor '%s': ne[0] = %lld is not a multiple of the %s block size %lld", name,
                          (long long)t.ne[0], tr->name, (long long)tr->blck_size);
    uint64_t nb;
    if (!mmp__mul_ok((uint64_t)(t.ne[0] / tr->blck_size) * tr->type_size, rows, &nb) || nb > SIZE_MAX)
        return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: tensor '%s': size overflows", name);
    t.nbytes = (size_t)nb;
    t.data = data;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) return mmp__error(MMP_ERR_NOMEM, "gguf writer: out of memory");
        w->t = p;
        w->cap_t = cap;
    }
    if (!(t.name = mmp__strdup(name))) return MMP_ERR_NOMEM;
    w->t[w->n_t++] = t;
    return MMP_OK;
}

/* Header bytes (magic .. padding to the data section). */
static enum mmp_status writer_header(const mmp_gguf_writer *w, dynbuf *b) {
    bool add_align = w->alignment != GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, "general.alignment") == 0) add_align = false;
    db_put(b, GGUF_MAGIC, 4);
    db_u32(b, w->version);
    db_u64(b, w->n_t);
    db_u64(b, w->n_kv + (add_align ? 1 : 0));
    if (add_align) {
        static const char k[] = "general.alignment";
        db_str(b, k, sizeof k - 1);
        db_u32(b, MMP_GGUF_U32);
        db_u32(b, w->alignment);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        db_str(b, w->kv[i].key, strlen(w->kv[i].key));
        db_u32(b, w->kv[i].type);
        db_put(b, w->kv[i].payload, w->kv[i].size);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        db_str(b, t->name, strlen(t->name));
        db_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) db_u64(b, (uint64_t)t->ne[d]);
        db_u32(b, (uint32_t)t->type);
        off += (w->alignment - off % w->alignment) % w->alignment;
        db_u64(b, off);
        off += t->nbytes;
    }
    static const uint8_t zeros[64] = {0};
    size_t pad = (w->alignment - b->n % w->alignment) % w->alignment;
    while (pad) {
        size_t k = MMP_MIN(pad, sizeof zeros);
        db_put(b, zeros, k);
        pad -= k;
    }
    if (b->failed) return mmp__error(MMP_ERR_NOMEM, "gguf writer: out of memory building the header");
    return MMP_OK;
}

typedef bool (*sink_fn)(void *ctx, const void *p, size_t n);

static enum mmp_status writer_emit(const mmp_gguf_writer *w, sink_fn put, void *ctx) {
    dynbuf h = {0};
    enum mmp_status s = writer_header(w, &h);
    if (s) { free(h.p); return s; }
    bool ok = put(ctx, h.p, h.n);
    free(h.p);
    static const uint8_t zeros[64] = {0};
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        size_t pad = (w->alignment - off % w->alignment) % w->alignment;
        off += pad;
        while (ok && pad) {
            size_t k = MMP_MIN(pad, sizeof zeros);
            ok = put(ctx, zeros, k);
            pad -= k;
        }
        if (ok) ok = put(ctx, w->t[i].data, w->t[i].nbytes);
        off += w->t[i].nbytes;
    }
    size_t pad = (w->alignment - off % w->alignment) % w->alignment;
    while (ok && pad && w->n_t) {
        size_t k = MMP_MIN(pad, sizeof zeros);
        ok = put(ctx, zeros, k);
        pad -= k;
    }
    return ok ? MMP_OK : MMP_ERR_IO;
}

static bool sink_mem(void *ctx, const void *p, size_t n) {
    dynbuf *b = ctx;
    db_put(b, p, n);
    return !b->failed;
}

static bool sink_file(void *ctx, const void *p, size_t n) { return fwrite(p, 1, n, (FILE *)ctx) == n; }

enum mmp_status mmp_gguf_writer_write_memory(mmp_gguf_writer *w, void **out, size_t *len) {
    if (!w || !out || !len) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: NULL argument");
    dynbuf b = {0};
    if (writer_emit(w, sink_mem, &b)) {
        free(b.p);
        return mmp__error(MMP_ERR_NOMEM, "gguf writer: out of memory");
    }
    *out = b.p;
    *len = b.n;
    return MMP_OK;
}

enum mmp_status mmp_gguf_writer_write(mmp_gguf_writer *w, const char *path) {
    if (!w || !path) return mmp__error(MMP_ERR_INVALID_ARG, "gguf writer: NULL argument");
    size_t n = strlen(path);
    char *tmp = mmp__malloc(n + 16);
    if (!tmp) return MMP_ERR_NOMEM;
    snprintf(tmp, n + 16, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        return mmp__error(MMP_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    enum mmp_status s = writer_emit(w, sink_file, f);
    int e = errno;
    if (fclose(f) != 0 && !s) { s = MMP_ERR_IO; e = errno; }
    if (s == MMP_ERR_IO) mmp__error(s, "%s: write failed: %s", path, strerror(e));
    if (!s && rename(tmp, path) != 0) {
        e = errno;
        s = mmp__error(MMP_ERR_IO, "%s: cannot rename the temporary file into place: %s", path, strerror(e));
    }
    if (s) remove(tmp);
    free(tmp);
    return s;
}
