/* safetensors reader (single files and sharded *.index.json) and writer.
 * See include/mmpipe/safetensors.h for the layout and what is validated. */
#include "mmpipe/safetensors.h"
#include "mapfile.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#define ST_MAX_JSON_DEPTH 16       /* a header is 3 levels deep; allow slack, refuse abuse */
#define ST_MAX_INDEX (64u << 20)   /* *.index.json size limit */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact in a double */

typedef struct {
    int64_t *slot;
    uint64_t cap;
} hashtab;

struct mmp_safetensors {
    char *path;
    mmp__mapfile *files;
    int n_files;
    mmp_tensor_info *t;
    int64_t n_t, cap_t;
    char **mk, **mv;
    int64_t n_meta, cap_meta;
    hashtab ht;
};

static const struct {
    const char *name;
    enum mmp_type type;
    size_t size;
} st_dtypes[] = {
    {"F32", MMP_TYPE_F32, 4}, {"F16", MMP_TYPE_F16, 2}, {"BF16", MMP_TYPE_BF16, 2}, {"F64", MMP_TYPE_F64, 8},
    {"I64", MMP_TYPE_I64, 8}, {"I32", MMP_TYPE_I32, 4}, {"I16", MMP_TYPE_I16, 2},   {"I8", MMP_TYPE_I8, 1},
    {"U8", MMP_TYPE_U8, 1},   {"BOOL", MMP_TYPE_U8, 1},
};

const char *mmp_safetensors_dtype_name(enum mmp_type t) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].type == t) return st_dtypes[i].name;
    return NULL;
}

static size_t dtype_size(enum mmp_type t) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].type == t) return st_dtypes[i].size;
    return 0;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Index of `name` in st->t, or -1; if absent and insert >= 0, records `insert`. */
static int64_t ht_find(const mmp_safetensors *st, const char *name, int64_t insert) {
    if (!st->ht.slot) return -1;
    uint64_t mask = st->ht.cap - 1, i = hash_str(name) & mask;
    for (;;) {
        int64_t s = st->ht.slot[i];
        if (s == 0) {
            if (insert >= 0) st->ht.slot[i] = insert + 1;
            return -1;
        }
        if (strcmp(st->t[s - 1].name, name) == 0) return s - 1;
        i = (i + 1) & mask;
    }
}

void mmp_safetensors_free(mmp_safetensors *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n_t; i++) free((char *)st->t[i].name);
    free(st->t);
    for (int64_t i = 0; i < st->n_meta; i++) {
        free(st->mk[i]);
        free(st->mv[i]);
    }
    free(st->mk);
    free(st->mv);
    for (int i = 0; i < st->n_files; i++) mmp__mapfile_close(&st->files[i]);
    free(st->files);
    free(st->ht.slot);
    free(st->path);
    free(st);
}

static enum mmp_status add_meta(mmp_safetensors *st, const char *k, const char *v) {
    if (st->n_meta == st->cap_meta) {
        int64_t cap = st->cap_meta ? st->cap_meta * 2 : 8;
        char **a = realloc(st->mk, (size_t)cap * sizeof *a);
        if (!a) return mmp__error(MMP_ERR_NOMEM, "safetensors: out of memory");
        st->mk = a;
        char **b = realloc(st->mv, (size_t)cap * sizeof *b);
        if (!b) return mmp__error(MMP_ERR_NOMEM, "safetensors: out of memory");
        st->mv = b;
        st->cap_meta = cap;
    }
    char *kk = mmp__strdup(k), *vv = mmp__strdup(v);
    if (!kk || !vv) {
        free(kk);
        free(vv);
        return MMP_ERR_NOMEM;
    }
    st->mk[st->n_meta] = kk;
    st->mv[st->n_meta] = vv;
    st->n_meta++;
    return MMP_OK;
}

/* A JSON number that must be a non-negative integer below 2^53. */
static bool json_uint(const cJSON *x, uint64_t *out) {
    if (!cJSON_IsNumber(x)) return false;
    double d = x->valuedouble;
    if (!(d >= 0) || d >= ST_MAX_EXACT || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

static const char *json_kind(const cJSON *x) {
    if (!x) return "missing";
    if (cJSON_IsNumber(x)) return "a number";
    if (cJSON_IsString(x)) return "a string";
    if (cJSON_IsBool(x)) return "a bool";
    if (cJSON_IsNull(x)) return "null";
    if (cJSON_IsArray(x)) return "an array";
    if (cJSON_IsObject(x)) return "an object";
    return "invalid";
}

/* Parse `len` bytes of JSON text with the depth guard; `what` and `path` name it. */
static cJSON *parse_json(const char *text, size_t len, const char *path, const char *what) {
    if (mmp__json_too_deep(text, len, ST_MAX_JSON_DEPTH))
        return mmp__error_null(MMP_ERR_LIMIT, "%s: %s nests deeper than %d levels", path, what, ST_MAX_JSON_DEPTH);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return mmp__error_null(MMP_ERR_FORMAT, "%s: %s is not valid JSON (error near byte %zu of %zu)", path, what, at, len);
    }
    /* trailing garbage other than whitespace (the spec pads with spaces) */
    for (const char *p = end; p && p < text + len; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != 0) {
            cJSON_Delete(root);
            return mmp__error_null(MMP_ERR_FORMAT, "%s: %s has trailing bytes after the JSON at byte %zu", path, what, (size_t)(p - text));
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mmp__error_null(MMP_ERR_FORMAT, "%s: %s is %s, expected a JSON object", path, what, json_kind(root));
    }
    return root;
}

static int cmp_offset(const void *a, const void *b) {
    const mmp_tensor_info *x = *(const mmp_tensor_info *const *)a, *y = *(const mmp_tensor_info *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : 0;
}

/* Parse file `fi` (already mapped into st->files[fi]) and append its tensors. */
static enum mmp_status parse_file(mmp_safetensors *st, int fi, bool take_meta) {
    const mmp__mapfile *mf = &st->files[fi];
    const char *path = mf->path;
    if (mf->size < 8)
        return mmp__error(MMP_ERR_FORMAT, "%s: %zu bytes is too small for a safetensors file (8-byte header length)", path, mf->size);
    uint64_t hlen;
    memcpy(&hlen, mf->data, 8);
    if (hlen > MMP_ST_MAX_HEADER)
        return mmp__error(MMP_ERR_LIMIT, "%s: header length %llu exceeds the safetensors limit of %u bytes", path,
                          (unsigned long long)hlen, MMP_ST_MAX_HEADER);
    if (hlen > mf->size - 8)
        return mmp__error(MMP_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                          (unsigned long long)hlen, mf->size);
    if (hlen < 2) return mmp__error(MMP_ERR_FORMAT, "%s: header length %llu is too small for a JSON object", path, (unsigned long long)hlen);
    const char *hdr = (const char *)mf->data + 8;
    if (hdr[0] != '{')
        return mmp__error(MMP_ERR_FORMAT, "%s: header does not start with '{' (byte 0x%02x): not a safetensors file", path, (uint8_t)hdr[0]);
    if (!mmp__utf8_valid(hdr, (size_t)hlen)) return mmp__error(MMP_ERR_FORMAT, "%s: header is not valid UTF-8", path);
    cJSON *root = parse_json(hdr, (size_t)hlen, path, "header");
    if (!root) return MMP_ERR_FORMAT; /* message set by parse_json */
    const uint64_t data_start = 8 + hlen, data_size = mf->size - data_start;
    const int64_t first = st->n_t;
    enum mmp_status s = MMP_OK;
    for (const cJSON *e = root->child; e && !s; e = e->next) {
        const char *name = e->string;
        if (!name) { s = mmp__error(MMP_ERR_FORMAT, "%s: header member without a name", path); break; }
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) { s = mmp__error(MMP_ERR_FORMAT, "%s: __metadata__ is %s, expected an object", path, json_kind(e)); break; }
            if (take_meta)
                for (const cJSON *m = e->child; m && !s; m = m->next)
                    if (cJSON_IsString(m) && m->string) s = add_meta(st, m->string, m->valuestring);
            continue;
        }
        if (!name[0] || strlen(name) > 4096) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor name of %zu bytes (must be 1..4096)", path, strlen(name)); break; }
        if (!cJSON_IsObject(e)) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' is %s, expected an object", path, name, json_kind(e)); break; }
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(jd)) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' dtype is %s, expected a string", path, name, json_kind(jd)); break; }
        if (!cJSON_IsArray(js)) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' shape is %s, expected an array", path, name, json_kind(js)); break; }
        if (!cJSON_IsArray(jo)) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' data_offsets is %s, expected an array", path, name, json_kind(jo)); break; }
        mmp_tensor_info t = {0};
        size_t esz = 0;
        for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
            if (strcmp(jd->valuestring, st_dtypes[i].name) == 0) { t.type = st_dtypes[i].type; esz = st_dtypes[i].size; }
        if (!esz) { s = mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' dtype '%.32s' is not supported (F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL)", path, name, jd->valuestring); break; }
        int nd = cJSON_GetArraySize(js);
        if (nd > 4) { s = mmp__error(MMP_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dims (at most 4 are supported)", path, name, nd); break; }
        t.n_dims = nd;
        for (int d = 0; d < 4; d++) t.ne[d] = 1;
        uint64_t nel = 1;
        int d = 0;
        for (const cJSON *x = js->child; x; x = x->next, d++) {
            uint64_t v;
            if (!json_uint(x, &v)) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' shape[%d] is not a non-negative integer (%s)", path, name, d, json_kind(x)); break; }
            if (!mmp__mul_ok(nel, v, &nel) || nel > (uint64_t)INT64_MAX) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' element count overflows at shape[%d] = %llu", path, name, d, (unsigned long long)v); break; }
            t.ne[nd - 1 - d] = (int64_t)v; /* numpy order -> ggml order */
        }
        if (s) break;
        uint64_t b, en, nb;
        if (cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b) || !json_uint(jo->child->next, &en)) {
            s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' data_offsets must be two non-negative integers", path, name);
            break;
        }
        if (b > en) { s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' data_offsets [%llu, %llu]: begin > end", path, name, (unsigned long long)b, (unsigned long long)en); break; }
        if (en > data_size) {
            s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' data_offsets end %llu is past the end of the data (%llu bytes)", path, name,
                           (unsigned long long)en, (unsigned long long)data_size);
            break;
        }
        if (!mmp__mul_ok(nel, esz, &nb) || nb != en - b) {
            s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' data_offsets [%llu, %llu] span %llu bytes but %s x %llu elements need %llu", path,
                           name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b), jd->valuestring,
                           (unsigned long long)nel, (unsigned long long)(nel * esz));
            break;
        }
        t.nbytes = (size_t)nb;
        t.offset = data_start + b;
        t.data = mf->data + t.offset;
        t.file = path;
        if (st->n_t == st->cap_t) {
            int64_t cap = st->cap_t ? st->cap_t * 2 : 64;
            mmp_tensor_info *p = realloc(st->t, (size_t)cap * sizeof *p);
            if (!p) { s = mmp__error(MMP_ERR_NOMEM, "safetensors: out of memory"); break; }
            st->t = p;
            st->cap_t = cap;
        }
        if (!(t.name = mmp__strdup(name))) { s = MMP_ERR_NOMEM; break; }
        st->t[st->n_t++] = t;
    }
    cJSON_Delete(root);
    if (s) return s;
    /* overlap check within this file */
    int64_t n = st->n_t - first;
    if (n > 1) {
        const mmp_tensor_info **order = mmp__calloc((size_t)n, sizeof *order);
        if (!order) return MMP_ERR_NOMEM;
        for (int64_t i = 0; i < n; i++) order[i] = &st->t[first + i];
        qsort(order, (size_t)n, sizeof *order, cmp_offset);
        for (int64_t i = 0; i + 1 < n && !s; i++)
            if (order[i]->offset + order[i]->nbytes > order[i + 1]->offset)
                s = mmp__error(MMP_ERR_FORMAT, "%s: tensor '%s' (data_offsets %llu..%llu) overlaps tensor '%s' (begins at %llu)", path,
                               order[i]->name, (unsigned long long)(order[i]->offset - data_start),
                               (unsigned long long)(order[i]->offset - data_start + order[i]->nbytes), order[i + 1]->name,
                               (unsigned long long)(order[i + 1]->offset - data_start));
        free(order);
    }
    return s;
}

/* Build the name hash over all tensors; duplicate names (within or across shards) are errors. */
static enum mmp_status build_index(mmp_safetensors *st) {
    uint64_t cap = 16;
    while (cap < (uint64_t)st->n_t * 2) cap <<= 1;
    st->ht.slot = mmp__calloc(cap, sizeof *st->ht.slot);
    if (!st->ht.slot) return MMP_ERR_NOMEM;
    st->ht.cap = cap;
    for (int64_t i = 0; i < st->n_t; i++) {
        int64_t j = ht_find(st, st->t[i].name, i);
        if (j >= 0)
            return mmp__error(MMP_ERR_FORMAT, "%s: duplicate tensor name '%s' (in %s and %s)", st->path, st->t[i].name, st->t[j].file,
                              st->t[i].file);
    }
    return MMP_OK;
}

static mmp_safetensors *st_new(const char *path, int n_files) {
    mmp_safetensors *st = mmp__calloc(1, sizeof *st);
    if (!st) return NULL;
    st->path = mmp__strdup(path ? path : "<memory>");
    st->files = mmp__calloc((size_t)(n_files ? n_files : 1), sizeof *st->files);
    if (!st->path || !st->files) {
        mmp_safetensors_free(st);
        return NULL;
    }
    return st;
}

mmp_safetensors *mmp_safetensors_open_memory(const void *data, size_t size, const char *name) {
    mmp_safetensors *st = st_new(name, 1);
    if (!st) return NULL;
    if (mmp__mapfile_from_memory(&st->files[0], data, size, name)) goto fail;
    st->n_files = 1;
    if (parse_file(st, 0, true) || build_index(st)) goto fail;
    return st;
fail:
    mmp_safetensors_free(st);
    return NULL;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static mmp_safetensors *open_index(const char *path) {
    mmp__mapfile mf;
    if (mmp__mapfile_open(&mf, path)) return NULL;
    if (mf.size > ST_MAX_INDEX) {
        mmp__error(MMP_ERR_LIMIT, "%s: index of %zu bytes exceeds the limit of %u", path, mf.size, ST_MAX_INDEX);
        mmp__mapfile_close(&mf);
        return NULL;
    }
    cJSON *root = parse_json((const char *)mf.data, mf.size, path, "index");
    mmp__mapfile_close(&mf);
    if (!root) return NULL;
    mmp_safetensors *st = NULL;
    char *dir = NULL;
    const char **shards = NULL;
    int n_shards = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        mmp__error(MMP_ERR_FORMAT, "%s: weight_map is %s, expected an object", path, json_kind(wm));
        goto fail;
    }
    int n_entries = cJSON_GetArraySize(wm);
    shards = mmp__calloc((size_t)(n_entries ? n_entries : 1), sizeof *shards);
    if (!shards) goto fail;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            mmp__error(MMP_ERR_FORMAT, "%s: weight_map['%s'] is %s, expected a file name", path, e->string ? e->string : "?", json_kind(e));
            goto fail;
        }
        const char *f = e->valuestring;
        if (!f[0] || strchr(f, '/') || strchr(f, '\\') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0) {
            mmp__error(MMP_ERR_FORMAT, "%s: weight_map['%s'] names '%s', not a plain file name next to the index", path, e->string, f);
            goto fail;
        }
        int k = 0;
        while (k < n_shards && strcmp(shards[k], f) != 0) k++;
        if (k == n_shards) shards[n_shards++] = f;
    }
    if (n_shards == 0) {
        mmp__error(MMP_ERR_FORMAT, "%s: weight_map is empty", path);
        goto fail;
    }
    st = st_new(path, n_shards);
    if (!st) goto fail;
    {
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) : 1;
        dir = mmp__malloc(dl + 1);
        if (!dir) goto fail;
        memcpy(dir, slash ? path : ".", dl);
        dir[dl] = 0;
    }
    for (int i = 0; i < n_shards; i++) {
        char *sp = mmp__path_join(dir, shards[i]);
        if (!sp) goto fail;
        enum mmp_status s = mmp__mapfile_open(&st->files[i], sp);
        free(sp);
        if (s) {
            mmp__error_prefix("%s: shard named in weight_map: ", path);
            goto fail;
        }
        st->n_files = i + 1;
        if (parse_file(st, i, i == 0)) goto fail;
    }
    if (build_index(st)) goto fail;
    /* every weight_map entry must be in the shard it names */
    for (const cJSON *e = wm->child; e; e = e->next) {
        int64_t j = ht_find(st, e->string, -1);
        if (j < 0 || !ends_with(st->t[j].file, e->valuestring)) {
            mmp__error(MMP_ERR_FORMAT, "%s: weight_map says tensor '%s' is in %s, but %s", path, e->string, e->valuestring,
                       j < 0 ? "no shard has it" : "it is in another shard");
            goto fail;
        }
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (cJSON_IsObject(meta))
        for (const cJSON *m = meta->child; m; m = m->next) {
            char buf[64];
            const char *v = NULL;
            if (cJSON_IsString(m)) v = m->valuestring;
            else if (cJSON_IsNumber(m)) { snprintf(buf, sizeof buf, "%.17g", m->valuedouble); v = buf; }
            if (v && m->string && add_meta(st, m->string, v)) goto fail;
        }
    free(dir);
    free(shards);
    cJSON_Delete(root);
    return st;
fail:
    free(dir);
    free(shards);
    cJSON_Delete(root);
    mmp_safetensors_free(st);
    return NULL;
}

mmp_safetensors *mmp_safetensors_open(const char *path) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_safetensors_open: NULL path");
    if (ends_with(path, ".json")) return open_index(path);
    mmp_safetensors *st = st_new(path, 1);
    if (!st) return NULL;
    if (mmp__mapfile_open(&st->files[0], path)) goto fail;
    st->n_files = 1;
    if (parse_file(st, 0, true) || build_index(st)) goto fail;
    return st;
fail:
    mmp_safetensors_free(st);
    return NULL;
}

int mmp_safetensors_n_files(const mmp_safetensors *st) { return st ? st->n_files : 0; }
const char *mmp_safetensors_file(const mmp_safetensors *st, int i) { return st && i >= 0 && i < st->n_files ? st->files[i].path : NULL; }
int64_t mmp_safetensors_n_tensors(const mmp_safetensors *st) { return st ? st->n_t : 0; }
const mmp_tensor_info *mmp_safetensors_tensor(const mmp_safetensors *st, int64_t i) { return st && i >= 0 && i < st->n_t ? &st->t[i] : NULL; }

const mmp_tensor_info *mmp_safetensors_find(const mmp_safetensors *st, const char *name) {
    if (!st || !name) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_safetensors_find: NULL argument");
    int64_t i = ht_find(st, name, -1);
    if (i < 0) return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: tensor '%s' not found", st->path, name);
    return &st->t[i];
}

int64_t mmp_safetensors_n_meta(const mmp_safetensors *st) { return st ? st->n_meta : 0; }
const char *mmp_safetensors_meta_key(const mmp_safetensors *st, int64_t i) { return st && i >= 0 && i < st->n_meta ? st->mk[i] : NULL; }
const char *mmp_safetensors_meta_value(const mmp_safetensors *st, int64_t i) { return st && i >= 0 && i < st->n_meta ? st->mv[i] : NULL; }
const char *mmp_safetensors_meta(const mmp_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int64_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->mk[i], key) == 0) return st->mv[i];
    return NULL;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    enum mmp_type type;
    int n_dims;
    int64_t shape[4]; /* numpy order */
    void *data;
    size_t nbytes;
} wt;

struct mmp_safetensors_writer {
    wt *t;
    size_t n_t, cap_t;
    char **mk, **mv;
    size_t n_meta, cap_meta;
};

typedef struct {
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->failed = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_fmt(sbuf *b, const char *fmt, long long v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, fmt, v);
    sb_str(b, tmp);
}
/* JSON string literal with escapes. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; sb_put(b, e, 2); }
        else if (c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); sb_str(b, e); }
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

mmp_safetensors_writer *mmp_safetensors_writer_new(void) { return mmp__calloc(1, sizeof(mmp_safetensors_writer)); }

void mmp_safetensors_writer_free(mmp_safetensors_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->t);
    free(w->mk);
    free(w->mv);
    free(w);
}

enum mmp_status mmp_safetensors_writer_add_meta(mmp_safetensors_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: NULL argument");
    if (!mmp__utf8_valid(key, strlen(key)) || !mmp__utf8_valid(value, strlen(value)))
        return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: metadata '%s' is not UTF-8", key);
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->mk[i], key) == 0) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: duplicate metadata key '%s'", key);
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? w->cap_meta * 2 : 8;
        char **a = realloc(w->mk, cap * sizeof *a);
        if (!a) return mmp__error(MMP_ERR_NOMEM, "safetensors writer: out of memory");
        w->mk = a;
        char **b = realloc(w->mv, cap * sizeof *b);
        if (!b) return mmp__error(MMP_ERR_NOMEM, "safetensors writer: out of memory");
        w->mv = b;
        w->cap_meta = cap;
    }
    char *k = mmp__strdup(key), *v = mmp__strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return MMP_ERR_NOMEM;
    }
    w->mk[w->n_meta] = k;
    w->mv[w->n_meta] = v;
    w->n_meta++;
    return MMP_OK;
}

enum mmp_status mmp_safetensors_writer_add(mmp_safetensors_writer *w, const char *name, enum mmp_type type, int n_dims,
                                           const int64_t *shape, const void *data) {
    if (!w || !name || (n_dims > 0 && !shape)) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: NULL argument");
    size_t esz = dtype_size(type);
    if (!esz) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: tensor '%s': type %s has no safetensors dtype", name, mmp_type_name((int)type));
    if (!name[0] || strcmp(name, "__metadata__") == 0 || !mmp__utf8_valid(name, strlen(name)))
        return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: bad tensor name '%s'", name);
    if (n_dims < 0 || n_dims > 4) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: tensor '%s': n_dims %d not in 0..4", name, n_dims);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: duplicate tensor '%s'", name);
    wt t = {0};
    t.type = type;
    t.n_dims = n_dims;
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || !mmp__mul_ok(nel, (uint64_t)shape[d], &nel))
            return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: tensor '%s': bad shape[%d] = %lld", name, d, (long long)shape[d]);
        t.shape[d] = shape[d];
    }
    uint64_t nb;
    if (!mmp__mul_ok(nel, esz, &nb) || nb > SIZE_MAX) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: tensor '%s' too large", name);
    if (nb && !data) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: tensor '%s': NULL data", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wt *p = realloc(w->t, cap * sizeof *p);
        if (!p) return mmp__error(MMP_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = p;
        w->cap_t = cap;
    }
    t.nbytes = (size_t)nb;
    t.name = mmp__strdup(name);
    t.data = mmp__malloc(t.nbytes);
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return MMP_ERR_NOMEM;
    }
    if (t.nbytes) memcpy(t.data, data, t.nbytes);
    w->t[w->n_t++] = t;
    return MMP_OK;
}

enum mmp_status mmp_safetensors_writer_add_ne(mmp_safetensors_writer *w, const char *name, enum mmp_type type, int n_dims,
                                              const int64_t *ne, const void *data) {
    if (n_dims < 0 || n_dims > 4 || (n_dims > 0 && !ne))
        return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: tensor '%s': n_dims %d not in 0..4", name ? name : "?", n_dims);
    int64_t shape[4];
    for (int d = 0; d < n_dims; d++) shape[d] = ne[n_dims - 1 - d];
    return mmp_safetensors_writer_add(w, name, type, n_dims, shape, data);
}

/* The complete header (8-byte length + JSON padded with spaces to a multiple of 8). */
static enum mmp_status writer_header(const mmp_safetensors_writer *w, sbuf *b) {
    sb_str(b, "        {");
    bool first = true;
    if (w->n_meta) {
        sb_str(b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_str(b, ",");
            sb_json_str(b, w->mk[i]);
            sb_str(b, ":");
            sb_json_str(b, w->mv[i]);
        }
        sb_str(b, "}");
        first = false;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wt *t = &w->t[i];
        if (!first) sb_str(b, ",");
        first = false;
        sb_json_str(b, t->name);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, mmp_safetensors_dtype_name(t->type));
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) sb_fmt(b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_str(b, "],\"data_offsets\":[");
        sb_fmt(b, "%lld", (long long)off);
        off += t->nbytes;
        sb_fmt(b, ",%lld]}", (long long)off);
    }
    sb_str(b, "}");
    while (!b->failed && b->n % 8) sb_str(b, " ");
    if (b->failed) return mmp__error(MMP_ERR_NOMEM, "safetensors writer: out of memory");
    uint64_t hlen = b->n - 8;
    memcpy(b->p, &hlen, 8);
    return MMP_OK;
}

enum mmp_status mmp_safetensors_writer_write_memory(mmp_safetensors_writer *w, void **out, size_t *len) {
    if (!w || !out || !len) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: NULL argument");
    sbuf b = {0};
    enum mmp_status s = writer_header(w, &b);
    for (size_t i = 0; !s && i < w->n_t; i++) sb_put(&b, w->t[i].data, w->t[i].nbytes);
    if (!s && b.failed) s = mmp__error(MMP_ERR_NOMEM, "safetensors writer: out of memory");
    if (s) {
        free(b.p);
        return s;
    }
    *out = b.p;
    *len = b.n;
    return MMP_OK;
}

enum mmp_status mmp_safetensors_writer_write(mmp_safetensors_writer *w, const char *path) {
    if (!w || !path) return mmp__error(MMP_ERR_INVALID_ARG, "safetensors writer: NULL argument");
    sbuf b = {0};
    enum mmp_status s = writer_header(w, &b);
    if (s) {
        free(b.p);
        return s;
    }
    size_t n = strlen(path);
    char *tmp = mmp__malloc(n + 24);
    if (!tmp) {
        free(b.p);
        return MMP_ERR_NOMEM;
    }
    snprintf(tmp, n + 24, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(b.p);
        free(tmp);
        return mmp__error(MMP_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    bool ok = fwrite(b.p, 1, b.n, f) == b.n;
    for (size_t i = 0; ok && i < w->n_t; i++) ok = fwrite(w->t[i].data, 1, w->t[i].nbytes, f) == w->t[i].nbytes;
    int e = errno;
    if (fclose(f) != 0 && ok) { ok = false; e = errno; }
    free(b.p);
    if (!ok) s = mmp__error(MMP_ERR_IO, "%s: write failed: %s", path, strerror(e));
    else if (rename(tmp, path) != 0) { e = errno; s = mmp__error(MMP_ERR_IO, "%s: cannot rename the temporary file into place: %s", path, strerror(e)); }
    if (s) remove(tmp);
    free(tmp);
    return s;
}
