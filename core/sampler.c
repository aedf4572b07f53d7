/* Token sampling (greedy, temperature, top-k, top-p, min-p, repetition penalty) with a
 * per-sampler PRNG, and stop conditions (end ids, stop strings across tokens, max tokens).
 * See include/mmpipe/sampler.h for the order of the steps. */
#include "mmpipe/sampler.h"
#include "util.h"
#include "rng.h"

#include <math.h>
#include <string.h>

#define MMP__REPEAT_CAP 4096  /* capacity of the accepted-token ring (repeat_last_n = -1) */

typedef struct { int32_t id; float logit; } cand;

struct mmp_sampler {
    mmp_sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];          /* xoshiro256** state */
    int32_t *hist;            /* ring of accepted tokens [MMP__REPEAT_CAP] */
    int32_t hist_n, hist_pos;
    cand *c;                  /* candidates [n_vocab] */
    float *work;              /* penalised logits [n_vocab] */
    uint8_t *seen;            /* per-id flag for the penalty [n_vocab] */
};

/* ---- PRNG (core/rng.h): splitmix64 to seed xoshiro256**, a 53-bit uniform double ---- */

static double uniform01(uint64_t s[4]) { return (double)(mmp__xoshiro_next(s) >> 11) * 0x1.0p-53; }

void mmp_sampler_set_seed(mmp_sampler *s, uint64_t seed) {
    if (!s) return;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = mmp__splitmix64(&x);
}

mmp_sampler_params mmp_sampler_params_default(void) {
    mmp_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0x5eed;
    return p;
}

mmp_sampler_params mmp_sampler_params_greedy(void) {
    mmp_sampler_params p = mmp_sampler_params_default();
    p.temperature = 0.0f;
    return p;
}

mmp_sampler *mmp_sampler_new(int32_t n_vocab, const mmp_sampler_params *params) {
    mmp_sampler_params p = params ? *params : mmp_sampler_params_default();
    if (n_vocab < 1) return mmp__error_null(MMP_ERR_INVALID_ARG, "sampler: n_vocab %d must be >= 1", (int)n_vocab);
    if (isnan(p.temperature) || isnan(p.top_p) || isnan(p.min_p) || isnan(p.repeat_penalty))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "sampler: a parameter is NaN");
    if (!(p.repeat_penalty > 0.0f))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "sampler: repeat_penalty %g must be > 0", (double)p.repeat_penalty);
    if (!(p.top_p > 0.0f))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "sampler: top_p %g must be > 0 (use 1 to turn it off)", (double)p.top_p);
    if (p.repeat_last_n < -1)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "sampler: repeat_last_n %d must be >= -1", (int)p.repeat_last_n);
    mmp_sampler *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = p;
    s->n_vocab = n_vocab;
    s->hist = mmp__calloc(MMP__REPEAT_CAP, sizeof *s->hist);
    s->c = mmp__calloc((size_t)n_vocab, sizeof *s->c);
    s->work = mmp__calloc((size_t)n_vocab, sizeof *s->work);
    s->seen = mmp__calloc((size_t)n_vocab, 1);
    if (!s->hist || !s->c || !s->work || !s->seen) { mmp_sampler_free(s); return NULL; }
    mmp_sampler_set_seed(s, p.seed);
    return s;
}

void mmp_sampler_free(mmp_sampler *s) {
    if (!s) return;
    free(s->hist); free(s->c); free(s->work); free(s->seen);
    free(s);
}

const mmp_sampler_params *mmp_sampler_get_params(const mmp_sampler *s) { return s ? &s->p : NULL; }

void mmp_sampler_accept(mmp_sampler *s, int32_t token) {
    if (!s || token < 0 || token >= s->n_vocab) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % MMP__REPEAT_CAP;
    if (s->hist_n < MMP__REPEAT_CAP) s->hist_n++;
}

void mmp_sampler_reset(mmp_sampler *s) {
    if (!s) return;
    s->hist_n = s->hist_pos = 0;
    mmp_sampler_set_seed(s, s->p.seed);
}

/* Step 1: copy logits to work[] and apply the repetition penalty to each distinct id in the
 * window once. */
static void apply_penalty(mmp_sampler *s, const float *logits) {
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof(float));
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->p.repeat_last_n == 0 || s->hist_n == 0) return;
    int32_t w = s->p.repeat_last_n < 0 ? MMP__REPEAT_CAP : MMP_MIN(s->p.repeat_last_n, MMP__REPEAT_CAP);
    int32_t n = MMP_MIN(w, s->hist_n);
    for (int32_t i = 0; i < n; i++) {
        int32_t id = s->hist[(s->hist_pos - 1 - i + MMP__REPEAT_CAP) % MMP__REPEAT_CAP];
        if (s->seen[id]) continue;
        s->seen[id] = 1;
        float l = s->work[id];
        s->work[id] = l > 0.0f ? l / pen : l * pen;
    }
    for (int32_t i = 0; i < n; i++) s->seen[s->hist[(s->hist_pos - 1 - i + MMP__REPEAT_CAP) % MMP__REPEAT_CAP]] = 0;
}

/* Order: larger logit first, then lower id (deterministic ties). NaN never reaches here. */
static int cand_before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}
static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Move the k best candidates to c[0..k) (unordered): quickselect, expected O(n). */
static void select_top(cand *c, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    uint64_t x = 0x12345u; /* fixed pivot sequence: the result does not depend on it */
    while (lo < hi) {
        int32_t pi = lo + (int32_t)(mmp__splitmix64(&x) % (uint64_t)(hi - lo + 1));
        cand pv = c[pi];
        c[pi] = c[hi]; c[hi] = pv;
        int32_t st = lo;
        for (int32_t i = lo; i < hi; i++)
            if (cand_before(&c[i], &pv)) { cand t = c[i]; c[i] = c[st]; c[st] = t; st++; }
        cand t = c[st]; c[st] = c[hi]; c[hi] = t;
        if (st == k - 1 || st == k) return;
        if (st < k) lo = st + 1; else hi = st - 1;
    }
}

/* Steps 1-5: fills s->c[0..*n_out) with the surviving candidates, their `logit` field holding
 * the (unnormalised) probability weight exp(l - max); for T <= 0, *greedy gets the arg-max
 * (and *n_out = 0), else *greedy = -1. Returns a status. */
static enum mmp_status prepare(mmp_sampler *s, const float *logits, int32_t *n_out, double *sum_out, int32_t *greedy) {
    *n_out = 0;
    *greedy = -1;
    if (!logits) return mmp__error(MMP_ERR_INVALID_ARG, "sampler: logits is NULL");
    apply_penalty(s, logits);
    const float *w = s->work;
    /* arg-max over non-NaN logits, ties to the lowest id */
    int32_t best = -1;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (!isnan(w[i]) && w[i] != -INFINITY && (best < 0 || w[i] > w[best])) best = i;
    if (best < 0) return mmp__error(MMP_ERR_INVALID_ARG, "sampler: every logit is NaN or -inf");
    if (!(s->p.temperature > 0.0f)) { *greedy = best; return MMP_OK; }

    const float inv_t = 1.0f / s->p.temperature;
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (!isnan(w[i]) && w[i] != -INFINITY) { s->c[n].id = i; s->c[n].logit = w[i] * inv_t; n++; }
    cand *c = s->c;
    bool sorted = false;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        select_top(c, n, s->p.top_k);
        n = s->p.top_k;
    }
    if (s->p.top_p < 1.0f) {
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        sorted = true;
    }
    /* weights relative to the largest scaled logit (c's max is w[best] * inv_t) */
    const float mx = w[best] * inv_t;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) { c[i].logit = expf(c[i].logit - mx); sum += c[i].logit; }
    if (sorted) {
        /* smallest prefix whose mass reaches top_p */
        double acc = 0.0, lim = (double)s->p.top_p * sum;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            acc += c[i].logit;
            if (acc >= lim) { keep = i + 1; break; }
        }
        n = keep;
        sum = 0.0;
        for (int32_t i = 0; i < n; i++) sum += c[i].logit;
    }
    if (s->p.min_p > 0.0f) {
        /* the largest weight is exp(0) = 1 (the arg-max survives every step) */
        float lim = s->p.min_p;
        int32_t m = 0;
        sum = 0.0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].logit >= lim) { c[m++] = c[i]; sum += c[i].logit; }
        n = m;
    }
    *n_out = n;
    *sum_out = sum;
    return MMP_OK;
}

int32_t mmp_sampler_sample(mmp_sampler *s, const float *logits) {
    if (!s) return mmp__error(MMP_ERR_INVALID_ARG, "sampler: NULL sampler");
    int32_t n;
    double sum;
    int32_t g;
    enum mmp_status st = prepare(s, logits, &n, &sum, &g);
    if (st) return st;
    if (g >= 0) return g;
    if (n < 1) return mmp__error(MMP_ERR_INTERNAL, "sampler: no candidate left");
    /* inverse CDF over the candidates (in their current order: deterministic) */
    double u = uniform01(s->rng) * sum, acc = 0.0;
    for (int32_t i = 0; i < n; i++) {
        acc += s->c[i].logit;
        if (u < acc) return s->c[i].id;
    }
    return s->c[n - 1].id; /* u rounded to the very top */
}

enum mmp_status mmp_sampler_probs(mmp_sampler *s, const float *logits, float *probs) {
    if (!s || !probs) return mmp__error(MMP_ERR_INVALID_ARG, "sampler_probs: NULL argument");
    int32_t n;
    double sum;
    int32_t g;
    enum mmp_status st = prepare(s, logits, &n, &sum, &g);
    if (st) return st;
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    if (g >= 0) { probs[g] = 1.0f; return MMP_OK; }
    for (int32_t i = 0; i < n; i++) probs[s->c[i].id] = (float)(s->c[i].logit / sum);
    return MMP_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* stop conditions                                                                           */

struct mmp_stop {
    int32_t *eog;
    int n_eog;
    char **stop;
    size_t *stop_len;
    int n_stop;
    int32_t max_tokens, n_tokens;
    char *pend;              /* text not yet emitted */
    size_t pend_n, pend_cap;
    char *out;               /* what the last call emitted */
    size_t out_cap;
};

const char *mmp_stop_reason_name(enum mmp_stop_reason r) {
    switch (r) {
    case MMP_STOP_NONE: return "none";
    case MMP_STOP_EOG: return "eog";
    case MMP_STOP_STRING: return "stop string";
    case MMP_STOP_MAX_TOKENS: return "max tokens";
    default: return "unknown";
    }
}

mmp_stop *mmp_stop_new(const int32_t *eog, int n_eog, const char *const *stop, int n_stop, int32_t max_tokens) {
    if (n_eog < 0 || n_stop < 0 || (n_eog > 0 && !eog) || (n_stop > 0 && !stop))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "stop: bad arguments (n_eog %d, n_stop %d)", n_eog, n_stop);
    mmp_stop *st = mmp__calloc(1, sizeof *st);
    if (!st) return NULL;
    st->max_tokens = max_tokens;
    if (n_eog > 0) {
        st->eog = mmp__calloc((size_t)n_eog, sizeof *st->eog);
        if (!st->eog) goto fail;
        memcpy(st->eog, eog, (size_t)n_eog * sizeof *eog);
        st->n_eog = n_eog;
    }
    if (n_stop > 0) {
        st->stop = mmp__calloc((size_t)n_stop, sizeof *st->stop);
        st->stop_len = mmp__calloc((size_t)n_stop, sizeof *st->stop_len);
        if (!st->stop || !st->stop_len) goto fail;
        for (int i = 0; i < n_stop; i++) {
            if (!stop[i] || !stop[i][0]) continue;
            st->stop[st->n_stop] = mmp__strdup(stop[i]);
            if (!st->stop[st->n_stop]) goto fail;
            st->stop_len[st->n_stop] = strlen(stop[i]);
            st->n_stop++;
        }
    }
    return st;
fail:
    mmp_stop_free(st);
    return NULL;
}

void mmp_stop_free(mmp_stop *st) {
    if (!st) return;
    for (int i = 0; i < st->n_stop; i++) free(st->stop[i]);
    free(st->stop); free(st->stop_len); free(st->eog); free(st->pend); free(st->out);
    free(st);
}

void mmp_stop_reset(mmp_stop *st) {
    if (!st) return;
    st->n_tokens = 0;
    st->pend_n = 0;
}

int32_t mmp_stop_n_tokens(const mmp_stop *st) { return st ? st->n_tokens : 0; }

static bool grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return false;
    *p = q; *cap = c;
    return true;
}

/* Move the first n pending bytes to the out buffer and drop them from pending. */
static void emit_prefix(mmp_stop *st, size_t n, size_t drop, const char **emit, size_t *emit_len) {
    if (!grow(&st->out, &st->out_cap, n + 1)) n = 0; /* out of memory: emit nothing */
    if (n) memcpy(st->out, st->pend, n);
    if (st->out) st->out[n] = '\0';
    size_t rm = MMP_MIN(st->pend_n, n + drop);
    if (st->pend_n > rm) memmove(st->pend, st->pend + rm, st->pend_n - rm);
    st->pend_n -= rm;
    *emit = st->out ? st->out : "";
    *emit_len = n;
}

void mmp_stop_flush(mmp_stop *st, const char **emit, size_t *emit_len) {
    static const char empty[1] = "";
    if (!st) { *emit = empty; *emit_len = 0; return; }
    emit_prefix(st, st->pend_n, 0, emit, emit_len);
}

enum mmp_stop_reason mmp_stop_push(mmp_stop *st, int32_t token, const char *piece, size_t len,
                                   const char **emit, size_t *emit_len) {
    static const char empty[1] = "";
    *emit = empty;
    *emit_len = 0;
    if (!st) return MMP_STOP_NONE;
    st->n_tokens++;
    for (int i = 0; i < st->n_eog; i++)
        if (token == st->eog[i]) { mmp_stop_flush(st, emit, emit_len); return MMP_STOP_EOG; }
    if (len && piece) {
        if (!grow(&st->pend, &st->pend_cap, st->pend_n + len)) {
            /* cannot hold it back: say so by stopping with what we have */
            mmp_stop_flush(st, emit, emit_len);
            return MMP_STOP_MAX_TOKENS;
        }
        memcpy(st->pend + st->pend_n, piece, len);
        st->pend_n += len;
    }
    /* earliest complete stop string in the pending text (pending never holds a full stop
     * string from an earlier call, so a match always involves the new piece) */
    size_t best = SIZE_MAX, best_len = 0;
    for (int i = 0; i < st->n_stop; i++) {
        size_t L = st->stop_len[i];
        for (size_t p = 0; p + L <= st->pend_n && p < best; p++)
            if (!memcmp(st->pend + p, st->stop[i], L)) { best = p; best_len = L; break; }
    }
    if (best != SIZE_MAX) {
        emit_prefix(st, best, best_len, emit, emit_len);
        st->pend_n = 0;
        return MMP_STOP_STRING;
    }
    if (st->max_tokens > 0 && st->n_tokens >= st->max_tokens) {
        mmp_stop_flush(st, emit, emit_len);
        return MMP_STOP_MAX_TOKENS;
    }
    /* hold back the longest tail that is a proper prefix of some stop string */
    size_t hold = 0;
    for (int i = 0; i < st->n_stop; i++) {
        size_t L = st->stop_len[i];
        for (size_t h = MMP_MIN(L - 1, st->pend_n); h > hold; h--)
            if (!memcmp(st->pend + st->pend_n - h, st->stop[i], h)) { hold = h; break; }
    }
    emit_prefix(st, st->pend_n - hold, 0, emit, emit_len);
    return MMP_STOP_NONE;
}
