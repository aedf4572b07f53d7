/* Stages: port types and their connect check, host arrays, the registry, stage lifetime. */
#include "mmpipe/stage.h"
#include "stage-impl.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static const char *const role_names[MMP_ROLE_COUNT] = {
    "any", "pixels", "audio", "mel", "tokens", "embeddings", "hidden", "logits",
    "conditioning", "latents", "image", "timestep", "text", "counts",
};

const char *mmp_port_role_name(enum mmp_port_role r) {
    return ((int)r >= 0 && r < MMP_ROLE_COUNT) ? role_names[r] : "unknown";
}

char *mmp_port_type_str(const mmp_port_type *t, char *buf, size_t size) {
    if (!buf || size == 0) return buf;
    size_t n = (size_t)snprintf(buf, size, "%s[", mmp_port_role_name(t->role));
    for (int i = 0; i < t->n_dims && n < size; i++) {
        if (t->dims[i] == MMP_DIM_ANY) n += (size_t)snprintf(buf + n, size - n, "%s*", i ? "," : "");
        else n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    }
    if (n < size) snprintf(buf + n, size - n, "] %s", mmp_type_name(t->type));
    return buf;
}

enum mmp_status mmp_port_check_connect(const char *from_name, const mmp_port_type *from,
                                       const char *to_name, const mmp_port_type *to) {
    char a[128], b[128];
    if (!from || !to) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_port_check_connect: NULL port type");
    mmp_port_type_str(from, a, sizeof a);
    mmp_port_type_str(to, b, sizeof b);
#define MISMATCH(...) do { char why_[160]; snprintf(why_, sizeof why_, __VA_ARGS__); \
    return mmp__error(MMP_ERR_SHAPE, "%s is %s but %s wants %s: %s", from_name, a, to_name, b, why_); } while (0)
    if (from->role != to->role && from->role != MMP_ROLE_ANY && to->role != MMP_ROLE_ANY)
        MISMATCH("role %s is not %s", mmp_port_role_name(from->role), mmp_port_role_name(to->role));
    if (from->type != to->type)
        MISMATCH("element type %s is not %s", mmp_type_name(from->type), mmp_type_name(to->type));
    if (from->n_dims != to->n_dims)
        MISMATCH("%d dims, expected %d", from->n_dims, to->n_dims);
    for (int i = 0; i < to->n_dims; i++) {
        int64_t f = from->dims[i], t = to->dims[i];
        if (f != MMP_DIM_ANY && t != MMP_DIM_ANY && f != t)
            MISMATCH("dim %d is %lld, expected %lld", i, (long long)f, (long long)t);
    }
#undef MISMATCH
    return MMP_OK;
}

/* ---- arrays ---- */

static enum mmp_status array_size(enum mmp_type type, int n_dims, const int64_t *dims, size_t *bytes) {
    const mmp_type_traits *tr = mmp_type_get_traits(type);
    if (!tr || tr->is_quantized)
        return mmp__error(MMP_ERR_UNSUPPORTED, "array: element type %d (%s) is not a plain type", (int)type, mmp_type_name(type));
    if (n_dims < 1 || n_dims > MMP_PORT_MAX_DIMS || !dims)
        return mmp__error(MMP_ERR_INVALID_ARG, "array: n_dims %d out of range 1..%d", n_dims, MMP_PORT_MAX_DIMS);
    uint64_t n = tr->type_size;
    for (int i = 0; i < n_dims; i++) {
        /* the outermost dim may be 0: an empty list (a generated answer of no tokens) */
        if (dims[i] < (i == 0 ? 0 : 1) || dims[i] > ((int64_t)1 << 40))
            return mmp__error(MMP_ERR_INVALID_ARG, "array: dim %d = %lld out of range", i, (long long)dims[i]);
        if (!mmp__mul_ok(n, (uint64_t)dims[i], &n) || n > ((uint64_t)1 << 40))
            return mmp__error(MMP_ERR_NOMEM, "array: %d-D shape is too large", n_dims);
    }
    *bytes = (size_t)n;
    return MMP_OK;
}

static mmp_array *array_make(enum mmp_type type, int n_dims, const int64_t *dims, void *data) {
    size_t bytes = 0;
    if (array_size(type, n_dims, dims, &bytes) != MMP_OK) return NULL;
    mmp_array *a = mmp__calloc(1, sizeof *a);
    if (!a) return NULL;
    a->type = type;
    a->n_dims = n_dims;
    for (int i = 0; i < MMP_PORT_MAX_DIMS; i++) a->dims[i] = i < n_dims ? dims[i] : 1;
    if (data) {
        a->data = data;
    } else {
        a->data = mmp__calloc(1, bytes ? bytes : 1);
        if (!a->data) { free(a); return NULL; }
        a->owns_data = true;
    }
    return a;
}

mmp_array *mmp_array_new(enum mmp_type type, int n_dims, const int64_t *dims) {
    return array_make(type, n_dims, dims, NULL);
}

mmp_array *mmp_array_wrap(enum mmp_type type, int n_dims, const int64_t *dims, void *data) {
    if (!data) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_array_wrap: NULL data");
    return array_make(type, n_dims, dims, data);
}

void mmp_array_free(mmp_array *a) {
    if (!a) return;
    if (a->owns_data) free(a->data);
    free(a);
}

int64_t mmp_array_nelements(const mmp_array *a) {
    int64_t n = 1;
    for (int i = 0; i < a->n_dims; i++) n *= a->dims[i];
    return n;
}

size_t mmp_array_nbytes(const mmp_array *a) {
    const mmp_type_traits *tr = mmp_type_get_traits(a->type);
    return tr ? (size_t)mmp_array_nelements(a) * tr->type_size : 0;
}

enum mmp_status mmp_array_check(const char *what, const mmp_array *a, const mmp_port_type *t) {
    if (!a) return mmp__error(MMP_ERR_INVALID_ARG, "%s: no array given", what);
    mmp_port_type have = { .role = t->role, .type = a->type, .n_dims = a->n_dims };
    for (int i = 0; i < a->n_dims; i++) have.dims[i] = a->dims[i];
    char nm[160];
    snprintf(nm, sizeof nm, "the array given for %s", what);
    return mmp_port_check_connect(nm, &have, what, t);
}

/* ---- registry ---- */

struct mmp_registry {
    const mmp_stage_kind **kinds;
    int n, cap;
};

static enum mmp_status check_kind(const mmp_stage_kind *k) {
    if (!k || !k->name || !*k->name) return mmp__error(MMP_ERR_INVALID_ARG, "stage kind without a name");
    if (!k->create || !k->run || !k->destroy)
        return mmp__error(MMP_ERR_INVALID_ARG, "stage kind '%s': create, run and destroy are required", k->name);
    if (k->n_inputs < 0 || k->n_inputs > MMP_STAGE_MAX_PORTS || k->n_outputs < 0 || k->n_outputs > MMP_STAGE_MAX_PORTS)
        return mmp__error(MMP_ERR_INVALID_ARG, "stage kind '%s': %d inputs / %d outputs (at most %d each)",
                          k->name, k->n_inputs, k->n_outputs, MMP_STAGE_MAX_PORTS);
    for (int side = 0; side < 2; side++) {
        const mmp_port *ports = side ? k->outputs : k->inputs;
        int n = side ? k->n_outputs : k->n_inputs;
        for (int i = 0; i < n; i++) {
            if (!ports[i].name || !*ports[i].name)
                return mmp__error(MMP_ERR_INVALID_ARG, "stage kind '%s': %s port %d has no name", k->name, side ? "output" : "input", i);
            if (ports[i].type.n_dims < 1 || ports[i].type.n_dims > MMP_PORT_MAX_DIMS)
                return mmp__error(MMP_ERR_INVALID_ARG, "stage kind '%s': port '%s' has %d dims", k->name, ports[i].name, ports[i].type.n_dims);
            for (int j = 0; j < i; j++)
                if (!strcmp(ports[i].name, ports[j].name))
                    return mmp__error(MMP_ERR_INVALID_ARG, "stage kind '%s': duplicate %s port '%s'", k->name, side ? "output" : "input", ports[i].name);
        }
    }
    return MMP_OK;
}

mmp_registry *mmp_registry_new(void) {
    mmp_registry *r = mmp__calloc(1, sizeof *r);
    if (!r) return NULL;
    for (int i = 0; mmp__builtin_kinds[i]; i++) {
        if (mmp_registry_add(r, mmp__builtin_kinds[i]) != MMP_OK) {
            mmp__error_prefix("built-in stage kinds: ");
            mmp_registry_free(r);
            return NULL;
        }
    }
    return r;
}

void mmp_registry_free(mmp_registry *r) {
    if (!r) return;
    free(r->kinds);
    free(r);
}

enum mmp_status mmp_registry_add(mmp_registry *r, const mmp_stage_kind *kind) {
    if (!r) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_registry_add: NULL registry");
    enum mmp_status st = check_kind(kind);
    if (st != MMP_OK) return st;
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->kinds[i]->name, kind->name))
            return mmp__error(MMP_ERR_INVALID_ARG, "stage kind '%s' is already registered", kind->name);
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        const mmp_stage_kind **k = realloc(r->kinds, (size_t)cap * sizeof *k);
        if (!k) return mmp__error(MMP_ERR_NOMEM, "out of memory growing the stage registry");
        r->kinds = k;
        r->cap = cap;
    }
    r->kinds[r->n++] = kind;
    return MMP_OK;
}

int mmp_registry_count(const mmp_registry *r) { return r ? r->n : 0; }

const mmp_stage_kind *mmp_registry_at(const mmp_registry *r, int i) {
    return (r && i >= 0 && i < r->n) ? r->kinds[i] : NULL;
}

const mmp_stage_kind *mmp_registry_find(const mmp_registry *r, const char *name) {
    if (!r || !name) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_registry_find: NULL argument");
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->kinds[i]->name, name)) return r->kinds[i];
    char list[768] = "";
    size_t n = 0;
    for (int i = 0; i < r->n && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", r->kinds[i]->name);
    return mmp__error_null(MMP_ERR_NOT_FOUND, "unknown stage kind '%s' (known: %s)", name, r->n ? list : "none");
}

/* ---- stages ---- */

struct mmp_stage {
    const mmp_stage_kind *kind;
    mmp_stage_params params;
    void *state;
    mmp_port inputs[MMP_STAGE_MAX_PORTS];
    mmp_port outputs[MMP_STAGE_MAX_PORTS];
};

mmp_stage_params mmp_stage_params_default(void) {
    mmp_stage_params p;
    memset(&p, 0, sizeof p);
    p.n_threads = 1;
    return p;
}

mmp_stage *mmp_stage_new(const mmp_stage_kind *kind, const mmp_stage_params *p) {
    if (check_kind(kind) != MMP_OK) return NULL;
    mmp_stage *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = kind;
    s->params = p ? *p : mmp_stage_params_default();
    if (s->params.n_threads <= 0) s->params.n_threads = 1;
    mmp_port_type in_t[MMP_STAGE_MAX_PORTS], out_t[MMP_STAGE_MAX_PORTS];
    for (int i = 0; i < kind->n_inputs; i++) { s->inputs[i] = kind->inputs[i]; in_t[i] = kind->inputs[i].type; }
    for (int i = 0; i < kind->n_outputs; i++) { s->outputs[i] = kind->outputs[i]; out_t[i] = kind->outputs[i].type; }
    mmp_clear_error();
    s->state = kind->create(&s->params, in_t, out_t);
    if (!s->state) {
        if (!*mmp_last_error()) mmp__error(MMP_ERR_INTERNAL, "stage '%s' failed to load without saying why", kind->name);
        /* name the kind, unless the kind's own message starts with it already */
        size_t kl = strlen(kind->name);
        const char *msg = mmp_last_error();
        if (strncmp(msg, kind->name, kl) != 0 || msg[kl] != ':') mmp__error_prefix("%s: ", kind->name);
        free(s);
        return NULL;
    }
    for (int i = 0; i < kind->n_inputs; i++) s->inputs[i].type = in_t[i];
    for (int i = 0; i < kind->n_outputs; i++) s->outputs[i].type = out_t[i];
    return s;
}

void mmp_stage_free(mmp_stage *s) {
    if (!s) return;
    s->kind->destroy(s->state);
    free(s);
}

const mmp_stage_kind *mmp_stage_get_kind(const mmp_stage *s) { return s ? s->kind : NULL; }
int mmp_stage_n_inputs(const mmp_stage *s) { return s ? s->kind->n_inputs : 0; }
int mmp_stage_n_outputs(const mmp_stage *s) { return s ? s->kind->n_outputs : 0; }
const mmp_port *mmp_stage_input(const mmp_stage *s, int i) {
    return (s && i >= 0 && i < s->kind->n_inputs) ? &s->inputs[i] : NULL;
}
const mmp_port *mmp_stage_output(const mmp_stage *s, int i) {
    return (s && i >= 0 && i < s->kind->n_outputs) ? &s->outputs[i] : NULL;
}

static int find_port(const mmp_stage *s, const mmp_port *ports, int n, const char *name, const char *side) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ports[i].name, name)) return i;
    char list[512] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", ports[i].name);
    mmp__error(MMP_ERR_NOT_FOUND, "stage '%s' has no %s port '%s' (it has: %s)", s->kind->name, side, name, n ? list : "none");
    return -1;
}

int mmp_stage_find_input(const mmp_stage *s, const char *name) {
    return (s && name) ? find_port(s, s->inputs, s->kind->n_inputs, name, "input") : -1;
}

int mmp_stage_find_output(const mmp_stage *s, const char *name) {
    return (s && name) ? find_port(s, s->outputs, s->kind->n_outputs, name, "output") : -1;
}

enum mmp_status mmp_stage_run(mmp_stage *s, const mmp_array *const *inputs, mmp_array **outputs) {
    if (!s || (!inputs && s->kind->n_inputs) || !outputs)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_stage_run: NULL argument");
    for (int i = 0; i < s->kind->n_inputs; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s.%s", s->kind->name, s->inputs[i].name);
        if (!inputs[i]) {
            if (s->inputs[i].optional) continue;
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: input is required", what);
        }
        enum mmp_status st = mmp_array_check(what, inputs[i], &s->inputs[i].type);
        if (st != MMP_OK) return st;
    }
    for (int i = 0; i < s->kind->n_outputs; i++) outputs[i] = NULL;
    enum mmp_status st = s->kind->run(s->state, &s->params, inputs, outputs);
    if (st != MMP_OK) {
        for (int i = 0; i < s->kind->n_outputs; i++) { mmp_array_free(outputs[i]); outputs[i] = NULL; }
        return st;
    }
    for (int i = 0; i < s->kind->n_outputs; i++)
        if (!outputs[i] && !s->outputs[i].optional) {
            for (int k = 0; k < s->kind->n_outputs; k++) { mmp_array_free(outputs[k]); outputs[k] = NULL; }
            return mmp__error(MMP_ERR_INTERNAL, "stage '%s' produced no '%s'", s->kind->name, s->outputs[i].name);
        }
    return MMP_OK;
}

int mmp__opts_parse(const char *kind, const char *opts, mmp__opt *items, int max, char **storage) {
    *storage = NULL;
    if (!opts || !*opts) return 0;
    size_t len = strlen(opts);
    char *buf = mmp__malloc(len + 1);
    if (!buf) return -1;
    int n = 0;
    size_t o = 0;
    const char *p = opts;
    while (*p) {
        if (n == max) {
            free(buf);
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: more than %d options in '%s'", kind, max, opts), -1;
        }
        const char *key = buf + o, *val = NULL;
        for (; *p && *p != ','; p++) {
            if (*p == '\\') {
                if (!p[1]) {
                    free(buf);
                    return mmp__error(MMP_ERR_INVALID_ARG, "%s: options '%s' end with a lone backslash", kind, opts), -1;
                }
                buf[o++] = *++p;
            } else if (*p == '=' && !val) {
                buf[o++] = 0;
                val = buf + o;
            } else buf[o++] = *p;
        }
        buf[o++] = 0;
        if (*p == ',') p++;
        if (!*key && !val) continue;   /* empty item: "a=1,,b=2" or a trailing comma */
        if (!*key) {
            free(buf);
            return mmp__error(MMP_ERR_INVALID_ARG, "%s: an option in '%s' has no name before '='", kind, opts), -1;
        }
        items[n].key = key;
        items[n].val = val ? val : "";
        items[n].bare = val == NULL;
        n++;
    }
    *storage = buf;
    return n;
}
