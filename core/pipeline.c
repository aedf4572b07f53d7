/* Pipelines: the stage graph as written (desc), its validation against the kinds' declared port
 * types, creation (stages loaded, connections re-checked with model-narrowed types), the run in
 * topological order, and the text / Graphviz views. The file parser is core/pipeline_file.c. */
#include "mmpipe/pipeline.h"
#include "mmpipe/store.h"
#include "pipeline-impl.h"
#include "util.h"

#include <ctype.h>
#include <inttypes.h>
#include <string.h>

/* "stage.port" or "stage.port[lo:hi]" (a row slice over the outermost dim) */
typedef struct pref {
    char *stage, *port;
    bool slice, has_lo, has_hi;
    int64_t lo, hi;
} pref;

typedef struct p_param { char *name, *def, *val; int line; } p_param;
typedef struct p_stage { char *name, *kind, *model, *aux, *options; int line; } p_stage;
typedef struct p_input { char *name; int line; } p_input;
/* An edge into a stage port: from another stage's port (input < 0) or from pipeline input. */
typedef struct p_edge { int input; pref from, to; int line; } p_edge;
typedef struct p_output { char *name; pref from; int line; } p_output;

struct mmp_pipeline_desc {
    char *name, *source;
    int cur_line;
    p_param *params;   int n_params, cap_params;
    p_stage *stages;   int n_stages, cap_stages;
    p_input *inputs;   int n_inputs, cap_inputs;
    p_edge *edges;     int n_edges, cap_edges;
    p_output *outputs; int n_outputs, cap_outputs;
};

#define MAXP MMP_STAGE_MAX_PORTS
#define MAX_ELEMS 4096   /* stages, edges, ... per pipeline: far above any real pipeline */

/* Grow a (ptr, n, cap) array by one slot; MMP_ERR_NOMEM/LIMIT on failure. */
#define GROW(ptr, n, cap) grow((void **)&(ptr), &(n), &(cap), sizeof *(ptr))
static enum mmp_status grow(void **ptr, int *n, int *cap, size_t elem) {
    if (*n >= MAX_ELEMS) return mmp__error(MMP_ERR_LIMIT, "pipeline: more than %d elements of one kind", MAX_ELEMS);
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 8;
        void *p = realloc(*ptr, (size_t)c * elem);
        if (!p) return mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory");
        *ptr = p;
        *cap = c;
    }
    memset((char *)*ptr + (size_t)*n * elem, 0, elem);
    return MMP_OK;
}

/* ---- messages ---- */

/* "file.pipe:7: " / "pipeline 'llava': " / "" */
static const char *where(const mmp_pipeline_desc *d, int line, char *buf, size_t size) {
    if (line > 0) snprintf(buf, size, "%s:%d: ", d->source ? d->source : (d->name ? d->name : "pipeline"), line);
    else if (d->name) snprintf(buf, size, "pipeline '%s': ", d->name);
    else buf[0] = 0;
    return buf;
}

static void pref_str(const pref *r, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "%s.%s", r->stage, r->port);
    if (r->slice && n < size) {
        char lo[24] = "", hi[24] = "";
        if (r->has_lo) snprintf(lo, sizeof lo, "%" PRId64, r->lo);
        if (r->has_hi) snprintf(hi, sizeof hi, "%" PRId64, r->hi);
        snprintf(buf + n, size - n, "[%s:%s]", lo, hi);
    }
}

/* ---- building ---- */

static bool is_ident(const char *s) {
    if (!s || !*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return false;
    return true;
}

static char *dupn(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (c) { memcpy(c, s, n); c[n] = 0; }
    return c;
}

static void pref_free(pref *r) { free(r->stage); free(r->port); }

/* Parse "stage.port[lo:hi]"; allow_slice false for destinations. */
static enum mmp_status pref_parse(const mmp_pipeline_desc *d, const char *s, bool allow_slice, const char *what, pref *out) {
    char w[256];
    memset(out, 0, sizeof *out);
    if (!s) return mmp__error(MMP_ERR_INVALID_ARG, "%s%s: NULL port reference", where(d, d->cur_line, w, sizeof w), what);
    const char *dot = strchr(s, '.');
    const char *br = strchr(s, '[');
    size_t port_end = br ? (size_t)(br - s) : strlen(s);
    if (!dot || dot == s || (size_t)(dot - s) + 1 >= port_end)
        return mmp__error(MMP_ERR_FORMAT, "%s%s: '%s' is not STAGE.PORT", where(d, d->cur_line, w, sizeof w), what, s);
    out->stage = dupn(s, (size_t)(dot - s));
    out->port = dupn(dot + 1, port_end - (size_t)(dot - s) - 1);
    if (!out->stage || !out->port) { pref_free(out); return mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory"); }
    if (!is_ident(out->stage) || !is_ident(out->port)) {
        enum mmp_status st = mmp__error(MMP_ERR_FORMAT, "%s%s: '%s' is not STAGE.PORT (names are letters, digits, '_' and '-')",
                                        where(d, d->cur_line, w, sizeof w), what, s);
        pref_free(out);
        return st;
    }
    if (br) {
        const char *p = br + 1;
        char *end;
        if (!allow_slice) goto bad_slice;
        out->slice = true;
        if (*p != ':') {
            out->lo = strtoll(p, &end, 10);
            if (end == p) goto bad_slice;
            out->has_lo = true;
            p = end;
        }
        if (*p++ != ':') goto bad_slice;
        if (*p != ']') {
            out->hi = strtoll(p, &end, 10);
            if (end == p) goto bad_slice;
            out->has_hi = true;
            p = end;
        }
        if (p[0] != ']' || p[1] != 0) goto bad_slice;
    }
    return MMP_OK;
bad_slice:;
    enum mmp_status st = allow_slice
        ? mmp__error(MMP_ERR_FORMAT, "%s%s: bad row slice in '%s' (want STAGE.PORT[a:b], a and b integers, either may be left out)",
                     where(d, d->cur_line, w, sizeof w), what, s)
        : mmp__error(MMP_ERR_FORMAT, "%s%s: '%s': a slice is only allowed on the source side", where(d, d->cur_line, w, sizeof w), what, s);
    pref_free(out);
    return st;
}

mmp_pipeline_desc *mmp_pipeline_desc_new(const char *name) {
    mmp_pipeline_desc *d = mmp__calloc(1, sizeof *d);
    if (!d) return NULL;
    if (name && !(d->name = mmp__strdup(name))) { free(d); return NULL; }
    return d;
}

void mmp_pipeline_desc_free(mmp_pipeline_desc *d) {
    if (!d) return;
    for (int i = 0; i < d->n_params; i++) { free(d->params[i].name); free(d->params[i].def); free(d->params[i].val); }
    for (int i = 0; i < d->n_stages; i++) {
        p_stage *s = &d->stages[i];
        free(s->name); free(s->kind); free(s->model); free(s->aux); free(s->options);
    }
    for (int i = 0; i < d->n_inputs; i++) free(d->inputs[i].name);
    for (int i = 0; i < d->n_edges; i++) { pref_free(&d->edges[i].from); pref_free(&d->edges[i].to); }
    for (int i = 0; i < d->n_outputs; i++) { free(d->outputs[i].name); pref_free(&d->outputs[i].from); }
    free(d->params); free(d->stages); free(d->inputs); free(d->edges); free(d->outputs);
    free(d->name); free(d->source);
    free(d);
}

void mmp__pipeline_desc_set_line(mmp_pipeline_desc *d, int line) { if (d) d->cur_line = line; }

static enum mmp_status set_str(char **dst, const char *s) {
    char *c = s ? mmp__strdup(s) : NULL;
    if (s && !c) return MMP_ERR_NOMEM;
    free(*dst);
    *dst = c;
    return MMP_OK;
}

enum mmp_status mmp__pipeline_desc_set_source(mmp_pipeline_desc *d, const char *source) { return set_str(&d->source, source); }

enum mmp_status mmp__pipeline_desc_set_name(mmp_pipeline_desc *d, const char *name) {
    char w[256];
    if (!is_ident(name)) return mmp__error(MMP_ERR_FORMAT, "%spipeline name '%s': use letters, digits, '_' and '-'", where(d, d->cur_line, w, sizeof w), name ? name : "");
    return set_str(&d->name, name);
}

const char *mmp_pipeline_desc_name(const mmp_pipeline_desc *d) { return d && d->name ? d->name : "pipeline"; }

static p_param *find_param(const mmp_pipeline_desc *d, const char *name, size_t len) {
    for (int i = 0; i < d->n_params; i++)
        if (strlen(d->params[i].name) == len && !strncmp(d->params[i].name, name, len)) return &d->params[i];
    return NULL;
}

enum mmp_status mmp_pipeline_desc_add_param(mmp_pipeline_desc *d, const char *name, const char *default_value) {
    char w[256];
    if (!d) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_add_param: NULL pipeline");
    if (!is_ident(name)) return mmp__error(MMP_ERR_FORMAT, "%sparameter name '%s': use letters, digits, '_' and '-'", where(d, d->cur_line, w, sizeof w), name ? name : "");
    const p_param *old = find_param(d, name, strlen(name));
    if (old) return mmp__error(MMP_ERR_INVALID_ARG, "%sparameter '%s' is declared twice (first on line %d)", where(d, d->cur_line, w, sizeof w), name, old->line);
    enum mmp_status st = GROW(d->params, d->n_params, d->cap_params);
    if (st != MMP_OK) return st;
    p_param *p = &d->params[d->n_params];
    p->line = d->cur_line;
    if (set_str(&p->name, name) || set_str(&p->def, default_value)) { free(p->name); free(p->def); return MMP_ERR_NOMEM; }
    d->n_params++;
    return MMP_OK;
}

enum mmp_status mmp_pipeline_desc_set_param(mmp_pipeline_desc *d, const char *name, const char *value) {
    if (!d || !name || !value) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_set_param: NULL argument");
    p_param *p = find_param(d, name, strlen(name));
    if (!p) {
        char list[512] = "";
        size_t n = 0;
        for (int i = 0; i < d->n_params && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", d->params[i].name);
        return mmp__error(MMP_ERR_NOT_FOUND, "pipeline '%s' has no parameter '%s' (it has: %s)", mmp_pipeline_desc_name(d), name,
                          d->n_params ? list : "none");
    }
    return set_str(&p->val, value) ? mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory") : MMP_OK;
}

static const p_stage *find_stage(const mmp_pipeline_desc *d, const char *name, int *idx) {
    for (int i = 0; i < d->n_stages; i++)
        if (!strcmp(d->stages[i].name, name)) { if (idx) *idx = i; return &d->stages[i]; }
    return NULL;
}

enum mmp_status mmp_pipeline_desc_add_stage(mmp_pipeline_desc *d, const char *name, const char *kind,
                                            const char *model, const char *aux, const char *options) {
    char w[256];
    if (!d) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_add_stage: NULL pipeline");
    if (!is_ident(name)) return mmp__error(MMP_ERR_FORMAT, "%sstage name '%s': use letters, digits, '_' and '-'", where(d, d->cur_line, w, sizeof w), name ? name : "");
    if (!kind || !*kind) return mmp__error(MMP_ERR_FORMAT, "%sstage '%s' has no kind", where(d, d->cur_line, w, sizeof w), name);
    const p_stage *old = find_stage(d, name, NULL);
    if (old) return mmp__error(MMP_ERR_INVALID_ARG, "%sstage '%s' is declared twice (first on line %d)", where(d, d->cur_line, w, sizeof w), name, old->line);
    enum mmp_status st = GROW(d->stages, d->n_stages, d->cap_stages);
    if (st != MMP_OK) return st;
    p_stage *s = &d->stages[d->n_stages];
    s->line = d->cur_line;
    if (set_str(&s->name, name) || set_str(&s->kind, kind) || set_str(&s->model, model) || set_str(&s->aux, aux) ||
        set_str(&s->options, options)) {
        free(s->name); free(s->kind); free(s->model); free(s->aux); free(s->options);
        return MMP_ERR_NOMEM;
    }
    d->n_stages++;
    return MMP_OK;
}

enum mmp_status mmp_pipeline_desc_connect(mmp_pipeline_desc *d, const char *from, const char *to) {
    if (!d) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_connect: NULL pipeline");
    pref f, t;
    enum mmp_status st = pref_parse(d, from, true, "edge source", &f);
    if (st != MMP_OK) return st;
    if ((st = pref_parse(d, to, false, "edge destination", &t)) != MMP_OK) { pref_free(&f); return st; }
    if ((st = GROW(d->edges, d->n_edges, d->cap_edges)) != MMP_OK) { pref_free(&f); pref_free(&t); return st; }
    d->edges[d->n_edges++] = (p_edge){ .input = -1, .from = f, .to = t, .line = d->cur_line };
    return MMP_OK;
}

enum mmp_status mmp_pipeline_desc_add_input(mmp_pipeline_desc *d, const char *name, const char *to) {
    char w[256];
    if (!d) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_add_input: NULL pipeline");
    if (!is_ident(name)) return mmp__error(MMP_ERR_FORMAT, "%sinput name '%s': use letters, digits, '_' and '-'", where(d, d->cur_line, w, sizeof w), name ? name : "");
    pref t;
    enum mmp_status st = pref_parse(d, to, false, "input", &t);
    if (st != MMP_OK) return st;
    int idx = -1;
    for (int i = 0; i < d->n_inputs; i++)
        if (!strcmp(d->inputs[i].name, name)) idx = i;
    if (idx < 0) {
        if ((st = GROW(d->inputs, d->n_inputs, d->cap_inputs)) != MMP_OK) { pref_free(&t); return st; }
        if (!(d->inputs[d->n_inputs].name = mmp__strdup(name))) { pref_free(&t); return MMP_ERR_NOMEM; }
        d->inputs[d->n_inputs].line = d->cur_line;
        idx = d->n_inputs++;
    }
    if ((st = GROW(d->edges, d->n_edges, d->cap_edges)) != MMP_OK) { pref_free(&t); return st; }
    d->edges[d->n_edges++] = (p_edge){ .input = idx, .to = t, .line = d->cur_line };
    return MMP_OK;
}

enum mmp_status mmp_pipeline_desc_add_output(mmp_pipeline_desc *d, const char *name, const char *from) {
    char w[256];
    if (!d) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_add_output: NULL pipeline");
    if (!is_ident(name)) return mmp__error(MMP_ERR_FORMAT, "%soutput name '%s': use letters, digits, '_' and '-'", where(d, d->cur_line, w, sizeof w), name ? name : "");
    for (int i = 0; i < d->n_outputs; i++)
        if (!strcmp(d->outputs[i].name, name))
            return mmp__error(MMP_ERR_INVALID_ARG, "%soutput '%s' is declared twice (first on line %d)", where(d, d->cur_line, w, sizeof w), name, d->outputs[i].line);
    pref f;
    enum mmp_status st = pref_parse(d, from, true, "output", &f);
    if (st != MMP_OK) return st;
    if ((st = GROW(d->outputs, d->n_outputs, d->cap_outputs)) != MMP_OK) { pref_free(&f); return st; }
    p_output *o = &d->outputs[d->n_outputs];
    if (!(o->name = mmp__strdup(name))) { pref_free(&f); return MMP_ERR_NOMEM; }
    o->from = f;
    o->line = d->cur_line;
    d->n_outputs++;
    return MMP_OK;
}

/* ---- parameters: ${name} substitution ---- */

/* Substitute ${param} in s. With resolve == false only checks that every reference names a
 * declared parameter. Returns a new string (resolve), v itself (check only), or NULL + message. */
/* Append n bytes to the growing string out[0..*n) (capacity *cap). */
static bool str_append(char **out, size_t *n, size_t *cap, const char *s, size_t len) {
    if (*n + len + 1 > *cap) {
        size_t c = (*n + len + 1) * 2;
        char *o2 = realloc(*out, c);
        if (!o2) return false;
        *out = o2;
        *cap = c;
    }
    memcpy(*out + *n, s, len);
    *n += len;
    (*out)[*n] = 0;
    return true;
}

#define SUBST_MAX_DEPTH 8

/* ${param} substitution in a stage's model / aux / options value. A parameter's value may
 * itself use other parameters (`param encoder = ${model}`), up to SUBST_MAX_DEPTH levels (a
 * loop is reported). In options, substituted values have ',' and '\' escaped with a
 * backslash, so a value with commas stays one option (mmp__opts_parse). With resolve false
 * only the references are checked and v is returned as is. */
static char *subst_impl(const mmp_pipeline_desc *d, const p_stage *s, const char *field, const char *v, bool resolve,
                        int depth, const char *via) {
    char w[256];
    size_t cap = 0, n = 0;
    char *out = NULL;
    if (resolve && !str_append(&out, &n, &cap, "", 0)) return mmp__error_null(MMP_ERR_NOMEM, "pipeline: out of memory");
    const bool escape = !strcmp(field, "options") && depth == 0;  /* nested values come back raw */
    for (const char *p = v; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *e = strchr(p + 2, '}');
            if (!e) {
                free(out);
                return mmp__error_null(MMP_ERR_FORMAT, "%sstage '%s': %s '%s': '${' without '}'", where(d, s->line, w, sizeof w), s->name, field, v);
            }
            const p_param *pp = find_param(d, p + 2, (size_t)(e - p - 2));
            if (!pp) {
                free(out);
                char list[256] = "";
                size_t ln = 0;
                for (int i = 0; i < d->n_params && ln < sizeof list; i++)
                    ln += (size_t)snprintf(list + ln, sizeof list - ln, "%s%s", i ? ", " : "", d->params[i].name);
                return mmp__error_null(MMP_ERR_NOT_FOUND, "%sstage '%s': %s '%s'%s%s uses parameter '%.*s', which the pipeline does not declare (declared: %s)",
                                       where(d, s->line, w, sizeof w), s->name, field, v, via ? " (through parameter " : "",
                                       via ? via : "", (int)(e - p - 2), p + 2, d->n_params ? list : "none");
            }
            if (depth >= SUBST_MAX_DEPTH) {
                free(out);
                return mmp__error_null(MMP_ERR_FORMAT, "%sstage '%s': parameters refer to each other in a loop (or more than %d deep) through '%s'",
                                       where(d, s->line, w, sizeof w), s->name, SUBST_MAX_DEPTH, pp->name);
            }
            const char *val = pp->val ? pp->val : pp->def;
            if (!val && !resolve) {
                p = e + 1;
                continue;
            }
            if (!val) {
                free(out);
                return mmp__error_null(MMP_ERR_INVALID_ARG, "%sstage '%s': %s '%s' needs parameter '%s', which has no value: set it (mmp_pipeline_desc_set_param, or --set %s=...)",
                                       where(d, s->line, w, sizeof w), s->name, field, v, pp->name, pp->name);
            }
            /* the value may use parameters itself */
            char *inner = subst_impl(d, s, field, val, resolve, depth + 1, pp->name);
            if (!inner) { free(out); return NULL; }
            if (resolve) {
                bool ok = true;
                for (const char *c = inner; *c && ok; c++) {
                    if (escape && (*c == ',' || *c == '\\')) ok = str_append(&out, &n, &cap, "\\", 1);
                    if (ok) ok = str_append(&out, &n, &cap, c, 1);
                }
                free(inner);
                if (!ok) { free(out); return mmp__error_null(MMP_ERR_NOMEM, "pipeline: out of memory"); }
            }
            p = e + 1;
        } else {
            if (resolve && !str_append(&out, &n, &cap, p, 1)) { free(out); return mmp__error_null(MMP_ERR_NOMEM, "pipeline: out of memory"); }
            p++;
        }
    }
    if (!resolve) return (char *)v;   /* only checked */
    return out;
}

static char *subst(const mmp_pipeline_desc *d, const p_stage *s, const char *field, const char *v, bool resolve) {
    return subst_impl(d, s, field, v, resolve, 0, NULL);
}

/* ---- the resolved graph ---- */

typedef struct rgraph {
    int ns;
    const mmp_stage_kind **kind;   /* [ns] */
    int *from_s, *from_p;          /* [n_edges]: source stage/port (from_s -1: a pipeline input) */
    int *to_s, *to_p;              /* [n_edges] */
    int *out_s, *out_p;            /* [n_outputs] */
    int *order;                    /* [ns]: run order */
    mmp_port_type *in_type;        /* [n_inputs] */
    bool *in_optional;             /* [n_inputs] */
    mmp_port_type *out_type;       /* [n_outputs] */
} rgraph;

static void rgraph_free(rgraph *g) {
    free(g->kind); free(g->from_s); free(g->from_p); free(g->to_s); free(g->to_p);
    free(g->out_s); free(g->out_p); free(g->order); free(g->in_type); free(g->in_optional); free(g->out_type);
    memset(g, 0, sizeof *g);
}

/* Port lists of stage i: the created stage's (narrowed) when `stages` is given, else the kind's. */
static const mmp_port *port_of(const rgraph *g, mmp_stage *const *stages, int si, bool output, int pi) {
    if (stages) return output ? mmp_stage_output(stages[si], pi) : mmp_stage_input(stages[si], pi);
    return output ? &g->kind[si]->outputs[pi] : &g->kind[si]->inputs[pi];
}

static int port_index(const mmp_stage_kind *k, bool output, const char *name) {
    int n = output ? k->n_outputs : k->n_inputs;
    const mmp_port *ports = output ? k->outputs : k->inputs;
    for (int i = 0; i < n; i++)
        if (!strcmp(ports[i].name, name)) return i;
    return -1;
}

static enum mmp_status no_port(const mmp_pipeline_desc *d, int line, const char *what, const p_stage *s, const mmp_stage_kind *k,
                               bool output, const char *port) {
    char w[256], list[512] = "";
    int n = output ? k->n_outputs : k->n_inputs;
    const mmp_port *ports = output ? k->outputs : k->inputs;
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", ports[i].name);
    return mmp__error(MMP_ERR_NOT_FOUND, "%s%s: stage '%s' (%s) has no %s port '%s' (its %ss: %s)", where(d, line, w, sizeof w), what,
                      s->name, k->name, output ? "output" : "input", port, output ? "output" : "input", n ? list : "none");
}

static enum mmp_status no_stage(const mmp_pipeline_desc *d, int line, const char *what, const char *name) {
    char w[256], list[512] = "";
    size_t len = 0;
    for (int i = 0; i < d->n_stages && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", d->stages[i].name);
    return mmp__error(MMP_ERR_NOT_FOUND, "%s%s: no stage named '%s' (stages: %s)", where(d, line, w, sizeof w), what, name,
                      d->n_stages ? list : "none");
}

static void edge_str(const mmp_pipeline_desc *d, const p_edge *e, char *buf, size_t size) {
    char a[160], b[160];
    if (e->input >= 0) snprintf(a, sizeof a, "input %s", d->inputs[e->input].name);
    else pref_str(&e->from, a, sizeof a);
    pref_str(&e->to, b, sizeof b);
    snprintf(buf, size, "%s -> %s", a, b);
}

/* The type seen by consumers of a source: a row slice frees the outermost dim. */
static mmp_port_type source_type(const mmp_port_type *t, const pref *r) {
    mmp_port_type x = *t;
    if (r->slice && x.n_dims >= 1) x.dims[0] = MMP_DIM_ANY;
    return x;
}

/* Check every connection's types (declared when stages == NULL, narrowed otherwise) and compute
 * the pipeline inputs' and outputs' types. */
static enum mmp_status check_types(const mmp_pipeline_desc *d, rgraph *g, mmp_stage *const *stages) {
    char w[256], an[200], bn[200];
    for (int i = 0; i < d->n_inputs; i++) g->in_optional[i] = true;
    bool *in_set = calloc((size_t)d->n_inputs + 1, sizeof *in_set);
    if (!in_set) return mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory");
    for (int e = 0; e < d->n_edges; e++) {
        const p_edge *ed = &d->edges[e];
        const mmp_port *to = port_of(g, stages, g->to_s[e], false, g->to_p[e]);
        pref_str(&ed->to, bn, sizeof bn);
        if (ed->input < 0) {
            const mmp_port *from = port_of(g, stages, g->from_s[e], true, g->from_p[e]);
            mmp_port_type ft = source_type(&from->type, &ed->from);
            pref_str(&ed->from, an, sizeof an);
            if (mmp_port_check_connect(an, &ft, bn, &to->type) != MMP_OK) {
                free(in_set);
                mmp__error_prefix("%s", where(d, ed->line, w, sizeof w));
                return MMP_ERR_SHAPE;
            }
            continue;
        }
        /* a pipeline input: its type is the meet of the types of the ports it feeds */
        int ii = ed->input;
        if (!to->optional) g->in_optional[ii] = false;
        if (!in_set[ii]) { g->in_type[ii] = to->type; in_set[ii] = true; continue; }
        mmp_port_type *acc = &g->in_type[ii];
        snprintf(an, sizeof an, "input %s", d->inputs[ii].name);
        if (mmp_port_check_connect(an, acc, bn, &to->type) != MMP_OK) {
            free(in_set);
            mmp__error_prefix("%s", where(d, ed->line, w, sizeof w));
            return MMP_ERR_SHAPE;
        }
        if (acc->role == MMP_ROLE_ANY) acc->role = to->type.role;
        for (int k = 0; k < acc->n_dims; k++)
            if (acc->dims[k] == MMP_DIM_ANY) acc->dims[k] = to->type.dims[k];
    }
    free(in_set);
    for (int o = 0; o < d->n_outputs; o++)
        g->out_type[o] = source_type(&port_of(g, stages, g->out_s[o], true, g->out_p[o])->type, &d->outputs[o].from);
    return MMP_OK;
}

/* Structure and declared types. Fills g (freed by the caller with rgraph_free). */
static enum mmp_status resolve(const mmp_pipeline_desc *d, const mmp_registry *r, rgraph *g) {
    char w[256], es[400];
    memset(g, 0, sizeof *g);
    if (!d || !r) return mmp__error(MMP_ERR_INVALID_ARG, "pipeline: NULL pipeline or registry");
    if (d->n_stages == 0) return mmp__error(MMP_ERR_INVALID_ARG, "%shas no stages", where(d, 0, w, sizeof w));
    int ns = g->ns = d->n_stages, ne = d->n_edges, no = d->n_outputs, ni = d->n_inputs;
    g->kind = calloc((size_t)ns, sizeof *g->kind);
    g->from_s = calloc((size_t)ne + 1, sizeof(int)); g->from_p = calloc((size_t)ne + 1, sizeof(int));
    g->to_s = calloc((size_t)ne + 1, sizeof(int));   g->to_p = calloc((size_t)ne + 1, sizeof(int));
    g->out_s = calloc((size_t)no + 1, sizeof(int));  g->out_p = calloc((size_t)no + 1, sizeof(int));
    g->order = calloc((size_t)ns, sizeof(int));
    g->in_type = calloc((size_t)ni + 1, sizeof *g->in_type);
    g->in_optional = calloc((size_t)ni + 1, sizeof *g->in_optional);
    g->out_type = calloc((size_t)no + 1, sizeof *g->out_type);
    int *src = calloc((size_t)ns * MAXP, sizeof(int));   /* edge index + 1 feeding each input port */
    int *indeg = calloc((size_t)ns, sizeof(int));
    enum mmp_status st = MMP_OK;
    if (!g->kind || !g->from_s || !g->from_p || !g->to_s || !g->to_p || !g->out_s || !g->out_p || !g->order ||
        !g->in_type || !g->in_optional || !g->out_type || !src || !indeg) {
        st = mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory");
        goto out;
    }
    /* kinds, and ${params} that name nothing */
    for (int i = 0; i < ns; i++) {
        const p_stage *s = &d->stages[i];
        if (!(g->kind[i] = mmp_registry_find(r, s->kind))) {
            mmp__error_prefix("%sstage '%s': ", where(d, s->line, w, sizeof w), s->name);
            st = MMP_ERR_NOT_FOUND;
            goto out;
        }
        const char *vals[3] = { s->model, s->aux, s->options }, *names[3] = { "model", "aux", "options" };
        for (int k = 0; k < 3; k++)
            if (vals[k] && !subst(d, s, names[k], vals[k], false)) { st = MMP_ERR_NOT_FOUND; if (strstr(mmp_last_error(), "in a loop")) st = MMP_ERR_FORMAT; goto out; }
    }
    /* edges: both ends exist, at most one source per input port */
    for (int e = 0; e < ne; e++) {
        const p_edge *ed = &d->edges[e];
        int si;
        edge_str(d, ed, es, sizeof es);
        if (ed->input < 0) {
            if (!find_stage(d, ed->from.stage, &si)) { st = no_stage(d, ed->line, es, ed->from.stage); goto out; }
            g->from_s[e] = si;
            if ((g->from_p[e] = port_index(g->kind[si], true, ed->from.port)) < 0) {
                st = no_port(d, ed->line, es, &d->stages[si], g->kind[si], true, ed->from.port);
                goto out;
            }
        } else g->from_s[e] = g->from_p[e] = -1;
        if (!find_stage(d, ed->to.stage, &si)) { st = no_stage(d, ed->line, es, ed->to.stage); goto out; }
        g->to_s[e] = si;
        if ((g->to_p[e] = port_index(g->kind[si], false, ed->to.port)) < 0) {
            st = no_port(d, ed->line, es, &d->stages[si], g->kind[si], false, ed->to.port);
            goto out;
        }
        int *slot = &src[si * MAXP + g->to_p[e]];
        if (*slot) {
            const p_edge *first = &d->edges[*slot - 1];
            char fs[400];
            edge_str(d, first, fs, sizeof fs);
            char fl[32] = "";
            if (first->line > 0) snprintf(fl, sizeof fl, " (line %d)", first->line);
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s%s.%s has two sources: '%s'%s and '%s' (an input port takes one edge)",
                            where(d, ed->line, w, sizeof w), ed->to.stage, ed->to.port, fs, fl, es);
            goto out;
        }
        *slot = e + 1;
        if (ed->input < 0) indeg[si]++;
    }
    for (int o = 0; o < no; o++) {
        const p_output *op = &d->outputs[o];
        int si;
        char what[300];
        snprintf(what, sizeof what, "output %s", op->name);
        if (!find_stage(d, op->from.stage, &si)) { st = no_stage(d, op->line, what, op->from.stage); goto out; }
        g->out_s[o] = si;
        if ((g->out_p[o] = port_index(g->kind[si], true, op->from.port)) < 0) {
            st = no_port(d, op->line, what, &d->stages[si], g->kind[si], true, op->from.port);
            goto out;
        }
    }
    /* required input ports left open */
    for (int i = 0; i < ns; i++) {
        const mmp_stage_kind *k = g->kind[i];
        for (int p = 0; p < k->n_inputs; p++) {
            if (src[i * MAXP + p] || k->inputs[p].optional) continue;
            char t[128];
            mmp_port_type_str(&k->inputs[p].type, t, sizeof t);
            st = mmp__error(MMP_ERR_INVALID_ARG, "%sstage '%s' (%s): input port %s.%s (%s) is not connected: add an edge into it or a pipeline input",
                            where(d, d->stages[i].line, w, sizeof w), d->stages[i].name, k->name, d->stages[i].name, k->inputs[p].name, t);
            goto out;
        }
    }
    if (no == 0) {
        st = mmp__error(MMP_ERR_INVALID_ARG, "%shas no outputs: add 'output NAME <- STAGE.PORT'", where(d, 0, w, sizeof w));
        goto out;
    }
    /* topological order (Kahn; ties broken by declaration order so runs are reproducible) */
    {
        bool *done = calloc((size_t)ns, sizeof *done);
        if (!done) { st = mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory"); goto out; }
        int n_done = 0;
        while (n_done < ns) {
            int pick = -1;
            for (int i = 0; i < ns && pick < 0; i++)
                if (!done[i] && indeg[i] == 0) pick = i;
            if (pick < 0) break;
            done[pick] = true;
            g->order[n_done++] = pick;
            for (int e = 0; e < ne; e++)
                if (d->edges[e].input < 0 && g->from_s[e] == pick) indeg[g->to_s[e]]--;
        }
        if (n_done < ns) {
            /* Every stage left has a predecessor also left: walk predecessors until one repeats. */
            int *seen = calloc((size_t)ns, sizeof(int)), cur = -1, steps = 0;
            if (!seen) { free(done); st = mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory"); goto out; }
            for (int i = 0; i < ns && cur < 0; i++) if (!done[i]) cur = i;
            int path_e[64], n_path = 0;   /* edges walked (a longer cycle is reported in part) */
            while (!seen[cur] && steps++ < ns) {
                seen[cur] = steps;
                for (int e = 0; e < ne; e++)
                    if (d->edges[e].input < 0 && g->to_s[e] == cur && !done[g->from_s[e]]) {
                        if (n_path < 64) path_e[n_path++] = e;
                        cur = g->from_s[e];
                        break;
                    }
            }
            /* the cycle is the part of the walk from the first visit of `cur` */
            char cyc[1024] = "";
            size_t len = 0;
            int start = seen[cur] - 1;
            for (int k = n_path - 1; k >= start && k >= 0 && len < sizeof cyc; k--) {
                char e1[400];
                edge_str(d, &d->edges[path_e[k]], e1, sizeof e1);
                len += (size_t)snprintf(cyc + len, sizeof cyc - len, "%s%s (line %d)", len ? ", " : "", e1, d->edges[path_e[k]].line);
            }
            st = mmp__error(MMP_ERR_INVALID_ARG, "%sthe stages form a cycle through stage '%s': %s",
                            where(d, d->stages[cur].line, w, sizeof w), d->stages[cur].name, cyc);
            free(seen);
            free(done);
            goto out;
        }
        free(done);
    }
    st = check_types(d, g, NULL);
out:
    free(src);
    free(indeg);
    if (st != MMP_OK) rgraph_free(g);
    return st;
}

enum mmp_status mmp_pipeline_desc_validate(const mmp_pipeline_desc *d, const mmp_registry *r) {
    rgraph g;
    enum mmp_status st = resolve(d, r, &g);
    if (st == MMP_OK) rgraph_free(&g);
    return st;
}

/* ---- printing ---- */

static void print_graph(const mmp_pipeline_desc *d, const rgraph *g, mmp_stage *const *stages, FILE *f) {
    char t[128], a[200];
    fprintf(f, "pipeline %s", mmp_pipeline_desc_name(d));
    if (d->source) fprintf(f, "  (%s)", d->source);
    fprintf(f, "\n");
    if (d->n_params) {
        fprintf(f, "\nparameters:\n");
        for (int i = 0; i < d->n_params; i++) {
            const p_param *p = &d->params[i];
            if (p->val) fprintf(f, "  %-12s = %s\n", p->name, *p->val ? p->val : "\"\"");
            else if (p->def) fprintf(f, "  %-12s = %s (default)\n", p->name, *p->def ? p->def : "\"\"");
            else fprintf(f, "  %-12s (required: --set %s=...)\n", p->name, p->name);
        }
    }
    fprintf(f, "\nstages (in run order):\n");
    for (int oi = 0; oi < g->ns; oi++) {
        int si = g->order[oi];
        const p_stage *s = &d->stages[si];
        fprintf(f, "  %s  %s", s->name, g->kind[si]->name);
        if (s->model) fprintf(f, "  model=%s", s->model);
        if (s->aux) fprintf(f, "  aux=%s", s->aux);
        if (s->options) fprintf(f, "  options=%s", s->options);
        fprintf(f, "\n");
        for (int side = 0; side < 2; side++) {
            int np = side ? g->kind[si]->n_outputs : g->kind[si]->n_inputs;
            for (int p = 0; p < np; p++) {
                const mmp_port *port = port_of(g, stages, si, side == 1, p);
                fprintf(f, "    %-3s %-14s %-28s", side ? "out" : "in", port->name, mmp_port_type_str(&port->type, t, sizeof t));
                int n_conn = 0;
                for (int e = 0; e < d->n_edges; e++) {
                    const p_edge *ed = &d->edges[e];
                    if (!side && g->to_s[e] == si && g->to_p[e] == p) {
                        if (ed->input >= 0) snprintf(a, sizeof a, "input %s", d->inputs[ed->input].name);
                        else pref_str(&ed->from, a, sizeof a);
                        fprintf(f, " <- %s", a);
                        n_conn++;
                    }
                    if (side && ed->input < 0 && g->from_s[e] == si && g->from_p[e] == p) {
                        pref_str(&ed->to, a, sizeof a);
                        fprintf(f, "%s%s%s", n_conn ? ", " : " -> ", a, ed->from.slice ? " (rows " : "");
                        if (ed->from.slice) { pref_str(&ed->from, a, sizeof a); fprintf(f, "%s)", strchr(a, '[')); }
                        n_conn++;
                    }
                }
                if (side)
                    for (int o = 0; o < d->n_outputs; o++)
                        if (g->out_s[o] == si && g->out_p[o] == p) {
                            fprintf(f, "%soutput %s", n_conn ? ", " : " -> ", d->outputs[o].name);
                            n_conn++;
                        }
                if (!n_conn) fprintf(f, side ? " (unused)" : (port->optional ? " (optional, open)" : ""));
                fprintf(f, "\n");
            }
        }
    }
    fprintf(f, "\ninputs:\n");
    if (!d->n_inputs) fprintf(f, "  (none)\n");
    for (int i = 0; i < d->n_inputs; i++) {
        fprintf(f, "  %-14s %-28s ->", d->inputs[i].name, mmp_port_type_str(&g->in_type[i], t, sizeof t));
        int n = 0;
        for (int e = 0; e < d->n_edges; e++)
            if (d->edges[e].input == i) { pref_str(&d->edges[e].to, a, sizeof a); fprintf(f, "%s %s", n++ ? "," : "", a); }
        fprintf(f, "%s\n", g->in_optional[i] ? "  (optional)" : "");
    }
    fprintf(f, "\noutputs:\n");
    for (int o = 0; o < d->n_outputs; o++) {
        pref_str(&d->outputs[o].from, a, sizeof a);
        fprintf(f, "  %-14s %-28s <- %s\n", d->outputs[o].name, mmp_port_type_str(&g->out_type[o], t, sizeof t), a);
    }
}

/* DOT: stages are record nodes with their input ports on top and output ports below. */
static void write_dot(const mmp_pipeline_desc *d, const rgraph *g, FILE *f) {
    char t[128], a[200];
    fprintf(f, "digraph \"%s\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
            mmp_pipeline_desc_name(d));
    for (int i = 0; i < d->n_inputs; i++)
        fprintf(f, "  \"in:%s\" [shape=ellipse, style=filled, fillcolor=\"#dde8ff\", label=\"%s\\n%s\"];\n", d->inputs[i].name,
                d->inputs[i].name, mmp_port_type_str(&g->in_type[i], t, sizeof t));
    for (int oi = 0; oi < g->ns; oi++) {
        int si = g->order[oi];
        const mmp_stage_kind *k = g->kind[si];
        fprintf(f, "  \"s:%s\" [shape=record, label=\"{{", d->stages[si].name);
        for (int p = 0; p < k->n_inputs; p++) fprintf(f, "%s<i_%s> %s", p ? "|" : "", k->inputs[p].name, k->inputs[p].name);
        fprintf(f, "}|%s\\n%s|{", d->stages[si].name, k->name);
        for (int p = 0; p < k->n_outputs; p++) fprintf(f, "%s<o_%s> %s", p ? "|" : "", k->outputs[p].name, k->outputs[p].name);
        fprintf(f, "}}\"];\n");
    }
    for (int o = 0; o < d->n_outputs; o++)
        fprintf(f, "  \"out:%s\" [shape=ellipse, style=filled, fillcolor=\"#ddffdd\", label=\"%s\\n%s\"];\n", d->outputs[o].name,
                d->outputs[o].name, mmp_port_type_str(&g->out_type[o], t, sizeof t));
    for (int e = 0; e < d->n_edges; e++) {
        const p_edge *ed = &d->edges[e];
        if (ed->input >= 0) {
            fprintf(f, "  \"in:%s\" -> \"s:%s\":\"i_%s\";\n", d->inputs[ed->input].name, ed->to.stage, ed->to.port);
            continue;
        }
        const mmp_port *from = &g->kind[g->from_s[e]]->outputs[g->from_p[e]];
        mmp_port_type ft = source_type(&from->type, &ed->from);
        pref_str(&ed->from, a, sizeof a);
        const char *sl = ed->from.slice ? strchr(a, '[') : "";
        fprintf(f, "  \"s:%s\":\"o_%s\" -> \"s:%s\":\"i_%s\" [label=\"%s%s%s\"];\n", ed->from.stage, ed->from.port, ed->to.stage,
                ed->to.port, sl, *sl ? " " : "", mmp_port_type_str(&ft, t, sizeof t));
    }
    for (int o = 0; o < d->n_outputs; o++) {
        pref_str(&d->outputs[o].from, a, sizeof a);
        const char *sl = d->outputs[o].from.slice ? strchr(a, '[') : "";
        fprintf(f, "  \"s:%s\":\"o_%s\" -> \"out:%s\"%s%s%s;\n", d->outputs[o].from.stage, d->outputs[o].from.port, d->outputs[o].name,
                *sl ? " [label=\"" : "", sl, *sl ? "\"]" : "");
    }
    fprintf(f, "}\n");
}

enum mmp_status mmp_pipeline_desc_print(const mmp_pipeline_desc *d, const mmp_registry *r, FILE *f) {
    if (!f) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_print: NULL file");
    rgraph g;
    enum mmp_status st = resolve(d, r, &g);
    if (st != MMP_OK) return st;
    print_graph(d, &g, NULL, f);
    rgraph_free(&g);
    return MMP_OK;
}

enum mmp_status mmp_pipeline_desc_write_dot(const mmp_pipeline_desc *d, const mmp_registry *r, FILE *f) {
    if (!f) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_write_dot: NULL file");
    rgraph g;
    enum mmp_status st = resolve(d, r, &g);
    if (st != MMP_OK) return st;
    write_dot(d, &g, f);
    rgraph_free(&g);
    return MMP_OK;
}

/* ---- created pipelines ---- */

struct mmp_pipeline {
    mmp_pipeline_desc *d;        /* a private copy of the description (names, edges, lines) */
    rgraph g;
    mmp_pipeline_params params;
    mmp_stage **stages;          /* [ns], by declaration index */
    char **strs;                 /* [ns * 3]: substituted model/aux/options the stages point to */
    mmp_store *own_store;        /* the pipeline's own store when the caller gave none */
};

mmp_pipeline_params mmp_pipeline_params_default(void) {
    mmp_pipeline_params p;
    memset(&p, 0, sizeof p);
    p.n_threads = 1;
    return p;
}

/* Deep copy through the builder calls, so the copy cannot drift from what they check. */
static mmp_pipeline_desc *desc_copy(const mmp_pipeline_desc *d) {
    mmp_pipeline_desc *c = mmp_pipeline_desc_new(d->name);
    char a[200];
    if (!c || mmp__pipeline_desc_set_source(c, d->source)) goto fail;
    for (int i = 0; i < d->n_params; i++) {
        c->cur_line = d->params[i].line;
        if (mmp_pipeline_desc_add_param(c, d->params[i].name, d->params[i].def)) goto fail;
        if (d->params[i].val && mmp_pipeline_desc_set_param(c, d->params[i].name, d->params[i].val)) goto fail;
    }
    for (int i = 0; i < d->n_stages; i++) {
        const p_stage *s = &d->stages[i];
        c->cur_line = s->line;
        if (mmp_pipeline_desc_add_stage(c, s->name, s->kind, s->model, s->aux, s->options)) goto fail;
    }
    for (int i = 0; i < d->n_inputs; i++) {     /* inputs first, in order, so indices match */
        if (!(c->inputs = realloc(c->inputs, (size_t)(i + 1) * sizeof *c->inputs))) goto fail;
        c->cap_inputs = c->n_inputs = i + 1;
        c->inputs[i].line = d->inputs[i].line;
        if (!(c->inputs[i].name = mmp__strdup(d->inputs[i].name))) { c->n_inputs = i; goto fail; }
    }
    for (int e = 0; e < d->n_edges; e++) {
        const p_edge *ed = &d->edges[e];
        char b[200];
        c->cur_line = ed->line;
        pref_str(&ed->to, b, sizeof b);
        if (ed->input >= 0) { if (mmp_pipeline_desc_add_input(c, d->inputs[ed->input].name, b)) goto fail; }
        else { pref_str(&ed->from, a, sizeof a); if (mmp_pipeline_desc_connect(c, a, b)) goto fail; }
    }
    for (int o = 0; o < d->n_outputs; o++) {
        c->cur_line = d->outputs[o].line;
        pref_str(&d->outputs[o].from, a, sizeof a);
        if (mmp_pipeline_desc_add_output(c, d->outputs[o].name, a)) goto fail;
    }
    c->cur_line = 0;
    return c;
fail:
    mmp_pipeline_desc_free(c);
    return NULL;
}

void mmp_pipeline_free(mmp_pipeline *p) {
    if (!p) return;
    if (p->stages)
        for (int i = 0; i < p->g.ns; i++) mmp_stage_free(p->stages[i]);
    if (p->strs)
        for (int i = 0; i < p->g.ns * 3; i++) free(p->strs[i]);
    free(p->stages);
    free(p->strs);
    mmp_store_free(p->own_store); /* after the stages: they hold its models */
    rgraph_free(&p->g);
    mmp_pipeline_desc_free(p->d);
    free(p);
}

mmp_pipeline *mmp_pipeline_new(const mmp_pipeline_desc *d, const mmp_registry *r, const mmp_pipeline_params *params) {
    char w[256];
    mmp_pipeline *p = mmp__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->params = params ? *params : mmp_pipeline_params_default();
    if (p->params.n_threads <= 0) p->params.n_threads = 1;
    if (resolve(d, r, &p->g) != MMP_OK) { free(p); return NULL; }
    if (!(p->d = desc_copy(d))) goto fail;
    if (!p->params.store) {
        if (!(p->own_store = mmp_store_new())) goto fail;
        p->params.store = p->own_store;
    }
    int ns = p->g.ns;
    p->stages = mmp__calloc((size_t)ns, sizeof *p->stages);
    p->strs = mmp__calloc((size_t)ns * 3, sizeof *p->strs);
    if (!p->stages || !p->strs) goto fail;
    /* substitute every parameter before loading anything: a missing value fails fast */
    for (int i = 0; i < ns; i++) {
        const p_stage *s = &d->stages[i];
        const char *vals[3] = { s->model, s->aux, s->options }, *names[3] = { "model", "aux", "options" };
        for (int k = 0; k < 3; k++)
            if (vals[k] && !(p->strs[i * 3 + k] = subst(d, s, names[k], vals[k], true))) goto fail;
    }
    for (int oi = 0; oi < ns; oi++) {
        int i = p->g.order[oi];
        mmp_stage_params sp = mmp_stage_params_default();
        sp.model_path = p->strs[i * 3];
        sp.aux_path = p->strs[i * 3 + 1];
        sp.options = p->strs[i * 3 + 2];
        sp.n_threads = p->params.n_threads;
        sp.progress = p->params.progress;
        sp.abort_cb = p->params.abort_cb;
        sp.cb_user = p->params.cb_user;
        sp.store = p->params.store;
        sp.scope = p;          /* stages of one pipeline run one at a time: they may share scratch models */
        sp.on_text = p->params.on_text;
        if (!(p->stages[i] = mmp_stage_new(p->g.kind[i], &sp))) {
            mmp__error_prefix("%sstage '%s': ", where(d, d->stages[i].line, w, sizeof w), d->stages[i].name);
            goto fail;
        }
    }
    /* the models have narrowed the port types: check every connection again */
    if (check_types(d, &p->g, p->stages) != MMP_OK) {
        mmp__error_prefix("after loading the models: ");
        goto fail;
    }
    return p;
fail:
    mmp_pipeline_free(p);
    return NULL;
}

int mmp_pipeline_n_inputs(const mmp_pipeline *p) { return p ? p->d->n_inputs : 0; }
int mmp_pipeline_n_outputs(const mmp_pipeline *p) { return p ? p->d->n_outputs : 0; }
const char *mmp_pipeline_input_name(const mmp_pipeline *p, int i) {
    return (p && i >= 0 && i < p->d->n_inputs) ? p->d->inputs[i].name : NULL;
}
const char *mmp_pipeline_output_name(const mmp_pipeline *p, int i) {
    return (p && i >= 0 && i < p->d->n_outputs) ? p->d->outputs[i].name : NULL;
}
const mmp_port_type *mmp_pipeline_input_type(const mmp_pipeline *p, int i) {
    return (p && i >= 0 && i < p->d->n_inputs) ? &p->g.in_type[i] : NULL;
}
const mmp_port_type *mmp_pipeline_output_type(const mmp_pipeline *p, int i) {
    return (p && i >= 0 && i < p->d->n_outputs) ? &p->g.out_type[i] : NULL;
}
bool mmp_pipeline_input_optional(const mmp_pipeline *p, int i) {
    return (p && i >= 0 && i < p->d->n_inputs) ? p->g.in_optional[i] : false;
}

static int find_name(const mmp_pipeline *p, bool output, const char *name) {
    int n = output ? p->d->n_outputs : p->d->n_inputs;
    for (int i = 0; i < n; i++)
        if (!strcmp(output ? p->d->outputs[i].name : p->d->inputs[i].name, name)) return i;
    char list[512] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", output ? p->d->outputs[i].name : p->d->inputs[i].name);
    mmp__error(MMP_ERR_NOT_FOUND, "pipeline '%s' has no %s '%s' (its %ss: %s)", mmp_pipeline_desc_name(p->d), output ? "output" : "input",
               name, output ? "output" : "input", n ? list : "none");
    return -1;
}

int mmp_pipeline_find_input(const mmp_pipeline *p, const char *name) { return (p && name) ? find_name(p, false, name) : -1; }
int mmp_pipeline_find_output(const mmp_pipeline *p, const char *name) { return (p && name) ? find_name(p, true, name) : -1; }

mmp_stage *mmp_pipeline_stage(const mmp_pipeline *p, const char *name) {
    int i;
    return (p && name && find_stage(p->d, name, &i)) ? p->stages[i] : NULL;
}

enum mmp_status mmp_pipeline_print(const mmp_pipeline *p, FILE *f) {
    if (!p || !f) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_print: NULL argument");
    print_graph(p->d, &p->g, p->stages, f);
    return MMP_OK;
}

/* Rows [lo, hi) of a (Python-style bounds) as a view (no copy), or NULL + message. */
static mmp_array *slice_view(const mmp_pipeline_desc *d, const pref *r, int line, const mmp_array *a) {
    char w[256], s[200];
    int64_t n = a->dims[0];
    int64_t lo = r->has_lo ? (r->lo < 0 ? n + r->lo : r->lo) : 0;
    int64_t hi = r->has_hi ? (r->hi < 0 ? n + r->hi : r->hi) : n;
    if (lo < 0 || hi > n || lo >= hi) {
        pref_str(r, s, sizeof s);
        return mmp__error_null(MMP_ERR_SHAPE, "%s%s: the array has %" PRId64 " rows, so the slice selects rows %" PRId64 "..%" PRId64 ", which is empty or out of range",
                               where(d, line, w, sizeof w), s, n, lo, hi);
    }
    int64_t dims[MMP_PORT_MAX_DIMS];
    memcpy(dims, a->dims, sizeof dims);
    dims[0] = hi - lo;
    size_t row = mmp_array_nbytes(a) / (size_t)n;
    return mmp_array_wrap(a->type, a->n_dims, dims, (char *)a->data + (size_t)lo * row);
}

static mmp_array *array_copy(const mmp_array *a) {
    mmp_array *c = mmp_array_new(a->type, a->n_dims, a->dims);
    if (c) memcpy(c->data, a->data, mmp_array_nbytes(a));
    return c;
}

enum mmp_status mmp_pipeline_run(mmp_pipeline *p, const mmp_array *const *inputs, mmp_array **outputs) {
    char w[256];
    if (!p || !outputs || (!inputs && p->d->n_inputs)) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_pipeline_run: NULL argument");
    const mmp_pipeline_desc *d = p->d;
    const rgraph *g = &p->g;
    int ns = g->ns, ne = d->n_edges, no = d->n_outputs;
    for (int o = 0; o < no; o++) outputs[o] = NULL;
    for (int i = 0; i < d->n_inputs; i++) {
        if (!inputs[i]) {
            if (g->in_optional[i]) continue;
            return mmp__error(MMP_ERR_INVALID_ARG, "pipeline '%s': input '%s' is required", mmp_pipeline_desc_name(d), d->inputs[i].name);
        }
        char what[160];
        snprintf(what, sizeof what, "pipeline input '%s'", d->inputs[i].name);
        enum mmp_status st = mmp_array_check(what, inputs[i], &g->in_type[i]);
        if (st != MMP_OK) return st;
    }
    /* vals[s * MAXP + port]: stage outputs; uses[...]: consumers left (edges + pipeline outputs) */
    mmp_array **vals = calloc((size_t)ns * MAXP, sizeof *vals);
    int *uses = calloc((size_t)ns * MAXP, sizeof *uses);
    enum mmp_status st = MMP_OK;
    if (!vals || !uses) { free(vals); free(uses); return mmp__error(MMP_ERR_NOMEM, "pipeline: out of memory"); }
    for (int e = 0; e < ne; e++) if (d->edges[e].input < 0) uses[g->from_s[e] * MAXP + g->from_p[e]]++;
    for (int o = 0; o < no; o++) uses[g->out_s[o] * MAXP + g->out_p[o]]++;

    for (int oi = 0; oi < ns; oi++) {
        int si = g->order[oi];
        const p_stage *s = &d->stages[si];
        if (p->params.abort_cb && p->params.abort_cb(p->params.cb_user)) {
            st = mmp__error(MMP_ERR_ABORTED, "pipeline '%s': aborted before stage '%s'", mmp_pipeline_desc_name(d), s->name);
            goto out;
        }
        if (p->params.progress) {
            char what[200];
            snprintf(what, sizeof what, "stage %s (%s)", s->name, g->kind[si]->name);
            p->params.progress(what, oi, ns, p->params.cb_user);
        }
        const mmp_array *in[MAXP] = { 0 };
        mmp_array *views[MAXP] = { 0 }, *outs[MAXP] = { 0 };
        bool skip = false;   /* a required input is absent: an upstream branch did not happen */
        for (int e = 0; e < ne; e++) {
            if (g->to_s[e] != si) continue;
            const p_edge *ed = &d->edges[e];
            const mmp_array *a = ed->input >= 0 ? inputs[ed->input] : vals[g->from_s[e] * MAXP + g->from_p[e]];
            if (!a && ed->input < 0 && !mmp_stage_input(p->stages[si], g->to_p[e])->optional) skip = true;
            if (a && ed->input < 0 && ed->from.slice) {
                if (!(views[g->to_p[e]] = slice_view(d, &ed->from, ed->line, a))) { st = MMP_ERR_SHAPE; break; }
                a = views[g->to_p[e]];
            }
            in[g->to_p[e]] = a;
        }
        if (st == MMP_OK && !skip) {
            st = mmp_stage_run(p->stages[si], in, outs);
            if (st != MMP_OK) mmp__error_prefix("%sstage '%s': ", where(d, s->line, w, sizeof w), s->name);
        }
        for (int k = 0; k < MAXP; k++) mmp_array_free(views[k]);
        if (st != MMP_OK) goto out;
        for (int k = 0; k < g->kind[si]->n_outputs; k++) {
            if (uses[si * MAXP + k]) vals[si * MAXP + k] = outs[k];
            else mmp_array_free(outs[k]);   /* nobody reads it */
        }
        /* free sources whose last consumer this stage was */
        for (int e = 0; e < ne; e++) {
            if (g->to_s[e] != si || d->edges[e].input >= 0) continue;
            int slot = g->from_s[e] * MAXP + g->from_p[e];
            if (--uses[slot] == 0) { mmp_array_free(vals[slot]); vals[slot] = NULL; }
        }
    }
    for (int o = 0; o < no; o++) {
        const p_output *op = &d->outputs[o];
        int slot = g->out_s[o] * MAXP + g->out_p[o];
        mmp_array *a = vals[slot];
        if (!a) {
            /* absent: the stage left it out, or was skipped (its branch did not happen) */
            if (--uses[slot] == 0) vals[slot] = NULL;
            continue;
        }
        if (op->from.slice) {
            mmp_array *v = slice_view(d, &op->from, op->line, a);
            if (!v) { st = MMP_ERR_SHAPE; goto out; }
            outputs[o] = array_copy(v);
            mmp_array_free(v);
        } else if (uses[slot] == 1) {
            outputs[o] = a;          /* the last reader takes the array itself */
            vals[slot] = NULL;
        } else outputs[o] = array_copy(a);
        if (!outputs[o]) { st = MMP_ERR_NOMEM; goto out; }
        if (--uses[slot] == 0) { mmp_array_free(vals[slot]); vals[slot] = NULL; }
    }
    if (p->params.progress) p->params.progress("pipeline done", ns, ns, p->params.cb_user);
out:
    for (int i = 0; i < ns * MAXP; i++) mmp_array_free(vals[i]);
    free(vals);
    free(uses);
    if (st != MMP_OK)
        for (int o = 0; o < no; o++) { mmp_array_free(outputs[o]); outputs[o] = NULL; }
    return st;
}
