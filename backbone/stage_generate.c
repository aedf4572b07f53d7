/* The `backbone.generate` stage kind: autoregressive generation inside one stage.
 *
 *   embeddings [n, n_embd] (e.g. from prompt.text)  or  tokens [n]
 *     │ decode the prompt rows (reusing the KV cache for the longest common prefix with what
 *     │ the previous run left there, keep=1), then sample / decode one token at a time until
 *     │ an end-of-generation id, a stop string, n tokens or a full context
 *     ▼
 *   text [bytes] (stop strings removed)      tokens [m] (generated ids, end-of-generation excluded)
 *
 * The loop is that of `mmpipe run` / `mmpipe chat` (samples/cli_run.c, cli_chat.c): the
 * SentencePiece leading space of the first token after BOS is dropped, the stopper holds back
 * text that may become a stop string, the template's end-of-turn text is a stop string.
 * Streaming: p->on_text gets every piece of `text` as it is produced; false from it ends the
 * generation (not an error). Progress: ("prompt reused", kept, n) when the KV cache kept a
 * prefix, ("prompt", n, n) after the prompt is decoded, ("tokens", i, n_max) after each token.
 * A full context ends the answer (not an error); a prompt that does not fit is an error.
 *
 * Empty answers: an answer without text has a `text` array whose outermost dim is 0; likewise
 * `tokens`.
 *
 * Any-to-any (NExT-GPT / GILL, as mmp_a2a_turn in core/anytoany.c): with signal=auto (the
 * "[IMG0]".."[IMGk]" of the vocabulary, signal_n of them or all there are) or signal=ID ID ...,
 * the signal tokens are spotted in the answer; once [IMG0] appears the rest of the group is
 * forced after it (complete_signal=1, the default); the last-layer hidden states after the
 * final norm at the positions where the signal tokens are fed in form `signal_hidden`
 * [n_signal, n_embd], for the output projector. `signal_hidden` is absent when the answer
 * holds no complete group (the image branch of the pipeline is then skipped). Signal tokens
 * are left out of `text`; forced=ID ID ... is a response prefix decided in advance (teacher
 * forcing, tests); stop_after_image=1 ends the answer when the group is complete. */
#include "llm-impl.h"
#include "../core/stage-impl.h"
#include "../core/stage-text.h"
#include "../core/store-impl.h"
#include "../core/util.h"

#include "mmpipe/chat.h"
#include "mmpipe/sampler.h"
#include "mmpipe/tokenizer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KIND "backbone.generate"
#define MAX_STOP 16
#define MAX_SIGNAL 64
#define MAX_FORCED 256

typedef struct gen_state {
    mmp__model_ref llm;
    const mmp_llm *m;
    const mmp_tokenizer *tok;      /* NULL: ids only, `text` stays empty */
    mmp_llm_ctx *ctx;
    mmp_sampler *smp;
    mmp_stop *stop;
    int32_t n_max;
    bool keep;
    int32_t n_embd, n_vocab, bos;
    float *logits;                 /* [n_vocab] */
    float *row;                    /* [n_embd] scratch: a generated token's embedding */
    float *bos_row;                /* [n_embd] BOS embedding (to spot a prompt ending in BOS); NULL */
    /* what the KV cache holds: a hash per row (prompt rows, then decoded generated tokens) */
    uint64_t *hist;
    int64_t n_hist, cap_hist;
    int hist_mode;                 /* 1 tokens, 2 embeddings, 0 nothing cached */
    /* any-to-any */
    int32_t signal[MAX_SIGNAL], n_signal;   /* 0: no signal tokens */
    bool complete_signal, stop_after_image;
    int32_t forced[MAX_FORCED], n_forced;
    float *hid;                    /* [n_embd] hidden state of a fed token */
} gen_state;

static void gen_destroy(void *state) {
    gen_state *s = state;
    if (!s) return;
    mmp_stop_free(s->stop);
    mmp_sampler_free(s->smp);
    mmp_llm_ctx_free(s->ctx);
    free(s->logits);
    free(s->row);
    free(s->bos_row);
    free(s->hid);
    free(s->hist);
    mmp__model_put(&s->llm);
    free(s);
}

/* 64-bit hash of a row's bytes (8-byte words mixed with a multiply-xorshift, murmur-style
 * finaliser); `mode` seeds it so that token rows never equal embedding rows. */
static uint64_t row_hash(const void *data, size_t n, int mode) {
    const unsigned char *b = data;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)mode << 56) ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    for (; i < n; i++) { h ^= b[i]; h *= 0xc4ceb9fe1a85ec53ull; h ^= h >> 29; }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static bool hist_reserve(gen_state *s, int64_t n) {
    if (n <= s->cap_hist) return true;
    int64_t cap = MMP_MAX(n, s->cap_hist * 2);
    cap = MMP_MAX(cap, 256);
    uint64_t *h = realloc(s->hist, (size_t)cap * sizeof *h);
    if (!h) return false;
    s->hist = h;
    s->cap_hist = cap;
    return true;
}

/* (create-time messages: mmp_stage_new prefixes the kind's name) */
static enum mmp_status parse_num(const char *k, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        return mmp__error(MMP_ERR_INVALID_ARG, "option %s='%s': expected a number in [%g, %g]", k, v, lo, hi);
    *out = d;
    return MMP_OK;
}

static enum mmp_status parse_int(const char *k, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long d = strtoll(v, &end, 10);
    if (errno || end == v || *end || d < lo || d > hi)
        return mmp__error(MMP_ERR_INVALID_ARG, "option %s='%s': expected an integer in [%lld, %lld]", k, v, lo, hi);
    *out = d;
    return MMP_OK;
}

/* "12 13 14" (spaces) -> ids; MMP_OK or a message naming the option. */
static enum mmp_status parse_ids(const char *k, const char *v, int32_t *ids, int32_t max, int32_t *n) {
    *n = 0;
    const char *c = v;
    while (*c) {
        while (*c == ' ') c++;
        if (!*c) break;
        char *end;
        errno = 0;
        long long x = strtoll(c, &end, 10);
        if (errno || end == c || (*end && *end != ' ') || x < 0 || x > INT32_MAX)
            return mmp__error(MMP_ERR_INVALID_ARG, "option %s='%s': expected token ids separated by spaces", k, v);
        if (*n == max) return mmp__error(MMP_ERR_LIMIT, "option %s: at most %d ids", k, (int)max);
        ids[(*n)++] = (int32_t)x;
        c = end;
    }
    return MMP_OK;
}

static int signal_index(const gen_state *s, int32_t id) {
    for (int32_t k = 0; k < s->n_signal; k++)
        if (s->signal[k] == id) return (int)k;
    return -1;
}

static void *gen_create(const mmp_stage_params *p, mmp_port_type *in, mmp_port_type *out) {
    if (!p || !p->model_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "needs model= the LLM");
    gen_state *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_max = 256;
    s->keep = true;
    s->bos = -1;
    mmp_sampler_params sp = mmp_sampler_params_default();
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    char *stops[MAX_STOP] = { 0 };
    int n_stop = 0;
    char *tmpl_opt = NULL;
    mmp__text_model_info info = { 0 };
    s->complete_signal = true;
    int signal_mode = 0;           /* 0 none, 1 auto (vocabulary), 2 ids */
    long long signal_n = 0;
    mmp__opt opts[MMP__TEXT_MAX_OPTS];
    char *ostore = NULL;
    int n_opts = mmp__opts_parse(KIND, p->options, opts, MMP__TEXT_MAX_OPTS, &ostore);
    enum mmp_status st = n_opts < 0 ? MMP_ERR_INVALID_ARG : MMP_OK;
    for (int i = 0; st == MMP_OK && i < n_opts; i++) {
        const char *k = opts[i].key, *v = opts[i].val;
        double d = 0;
        long long l = 0;
        /* an empty value keeps the default (a pipeline parameter left "") */
        if (!*v && strcmp(k, "template") != 0) continue;
        if (!strcmp(k, "n")) { if (!(st = parse_int(k, v, 0, 1 << 24, &l))) s->n_max = (int32_t)l; }
        else if (!strcmp(k, "temp")) { if (!(st = parse_num(k, v, 0, 1e6, &d))) sp.temperature = (float)d; }
        else if (!strcmp(k, "top_k")) { if (!(st = parse_int(k, v, 0, 1 << 30, &l))) sp.top_k = (int32_t)l; }
        else if (!strcmp(k, "top_p")) { if (!(st = parse_num(k, v, 1e-9, 1, &d))) sp.top_p = (float)d; }
        else if (!strcmp(k, "min_p")) { if (!(st = parse_num(k, v, 0, 1, &d))) sp.min_p = (float)d; }
        else if (!strcmp(k, "repeat_penalty")) { if (!(st = parse_num(k, v, 1e-6, 1e6, &d))) sp.repeat_penalty = (float)d; }
        else if (!strcmp(k, "repeat_last_n")) { if (!(st = parse_int(k, v, -1, 4096, &l))) sp.repeat_last_n = (int32_t)l; }
        else if (!strcmp(k, "seed")) {
            char *end;
            errno = 0;
            unsigned long long u = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                st = mmp__error(MMP_ERR_INVALID_ARG, "option seed='%s': expected a non-negative integer", v);
            sp.seed = u;
        }
        else if (!strcmp(k, "ctx")) { if (!(st = parse_int(k, v, 0, 1 << 24, &l))) cp.n_ctx = (int32_t)l; }
        else if (!strcmp(k, "kv")) {
            if (!strcmp(v, "f32")) cp.kv_type = MMP_KV_F32;
            else if (!strcmp(v, "f16")) cp.kv_type = MMP_KV_F16;
            else st = mmp__error(MMP_ERR_INVALID_ARG, "option kv='%s': expected f32 or f16", v);
        }
        else if (!strcmp(k, "keep")) {
            if (!strcmp(v, "0") || !strcmp(v, "1")) s->keep = v[0] == '1';
            else st = mmp__error(MMP_ERR_INVALID_ARG, "option keep='%s': expected 0 or 1", v);
        }
        else if (!strcmp(k, "stop")) {
            if (n_stop == MAX_STOP - 1) st = mmp__error(MMP_ERR_LIMIT, "at most %d stop= options", MAX_STOP - 1);
            else if (!(stops[n_stop++] = mmp__strdup(v))) st = MMP_ERR_NOMEM;
        }
        else if (!strcmp(k, "template")) { free(tmpl_opt); if (!(tmpl_opt = mmp__strdup(v))) st = MMP_ERR_NOMEM; }
        else if (!strcmp(k, "signal")) {
            if (!strcmp(v, "none")) signal_mode = 0;
            else if (!strcmp(v, "auto")) signal_mode = 1;
            else if (!(st = parse_ids(k, v, s->signal, MAX_SIGNAL, &s->n_signal))) signal_mode = 2;
        }
        else if (!strcmp(k, "signal_n")) st = parse_int(k, v, 0, MAX_SIGNAL, &signal_n);
        else if (!strcmp(k, "complete_signal") || !strcmp(k, "stop_after_image")) {
            if (strcmp(v, "0") && strcmp(v, "1")) st = mmp__error(MMP_ERR_INVALID_ARG, "option %s='%s': expected 0 or 1", k, v);
            else if (k[0] == 'c') s->complete_signal = v[0] == '1';
            else s->stop_after_image = v[0] == '1';
        }
        else if (!strcmp(k, "forced")) st = parse_ids(k, v, s->forced, MAX_FORCED, &s->n_forced);
        else
            st = mmp__error(MMP_ERR_INVALID_ARG, "unknown option '%s' (known: n, temp, top_k, top_p, min_p, repeat_penalty, "
                            "repeat_last_n, seed, stop, ctx, kv=f32|f16, keep=1|0, template=auto|none|NAME, signal=auto|none|IDS, "
                            "signal_n, complete_signal, stop_after_image, forced=IDS)", k);
    }
    free(ostore);
    if (st == MMP_OK) st = mmp__llm_ref(p, p->model_path, &s->llm);
    if (st == MMP_OK) {
        s->m = s->llm.model;
        s->tok = mmp_llm_get_tokenizer(s->m);
        const mmp_llm_hparams *h = mmp_llm_get_hparams(s->m);
        s->n_embd = h->n_embd;
        s->n_vocab = h->n_vocab;
        if (!s->tok && n_stop > 0)
            st = mmp__error(MMP_ERR_INVALID_ARG, "%s has no tokenizer: stop strings cannot be matched", p->model_path);
    }
    if (st == MMP_OK && signal_mode == 1) {
        /* "[IMG0]".."[IMGk]" in the vocabulary, as mmp_a2a_load does */
        if (!s->tok) st = mmp__error(MMP_ERR_NOT_FOUND, "signal=auto: %s has no tokenizer to look up [IMG0].. in: give signal=IDS", p->model_path);
        int32_t want = signal_n > 0 ? (int32_t)signal_n : MAX_SIGNAL;
        for (int32_t k = 0; st == MMP_OK && k < want; k++) {
            char name[32];
            int len = snprintf(name, sizeof name, "[IMG%d]", (int)k);
            mmp_token id = mmp_tokenizer_find(s->tok, name, (size_t)len);
            if (id == MMP_TOKEN_NULL || id < 0 || id >= s->n_vocab) {
                if (signal_n > 0 || k == 0)
                    st = mmp__error(MMP_ERR_NOT_FOUND, "signal=auto: no signal token '%s' in the vocabulary of %s", name, p->model_path);
                break;
            }
            s->signal[s->n_signal++] = id;
        }
    }
    if (st == MMP_OK) {
        for (int32_t k = 0; k < s->n_signal && st == MMP_OK; k++) {
            if (s->signal[k] >= s->n_vocab)
                st = mmp__error(MMP_ERR_INVALID_ARG, "signal token %d is id %d, outside the vocabulary (%d)", (int)k, (int)s->signal[k], (int)s->n_vocab);
            for (int32_t j = 0; j < k && st == MMP_OK; j++)
                if (s->signal[j] == s->signal[k])
                    st = mmp__error(MMP_ERR_INVALID_ARG, "signal tokens %d and %d are both id %d", (int)j, (int)k, (int)s->signal[k]);
        }
        for (int32_t k = 0; k < s->n_forced && st == MMP_OK; k++)
            if (s->forced[k] >= s->n_vocab)
                st = mmp__error(MMP_ERR_INVALID_ARG, "forced token %d is id %d, outside the vocabulary (%d)", (int)k, (int)s->forced[k], (int)s->n_vocab);
        if (st == MMP_OK && (s->n_signal > 0) && !(s->hid = mmp__malloc((size_t)s->n_embd * sizeof *s->hid))) st = MMP_ERR_NOMEM;
    }
    /* the template's end-of-turn text is a stop string (for vocabularies where it is not a
     * single end-of-generation id); a model template mmpipe does not know adds none */
    int tmpl = -1;
    if (st == MMP_OK && s->tok) st = mmp__text_model_info_read(p, p->model_path, s->tok, &info);
    if (st == MMP_OK && s->tok) st = mmp__text_template_option(tmpl_opt ? tmpl_opt : "auto", info.chat_template, true, &tmpl);
    if (st == MMP_OK) {
        const char *sv[MAX_STOP];
        int ns = 0;
        int32_t eog[2];
        int n_eog = 0;
        if (s->tok) {
            int32_t eos = mmp_tokenizer_eos(s->tok), eot = mmp_tokenizer_eot(s->tok);
            const char *eos_text = eos >= 0 ? mmp_tokenizer_token_text(s->tok, eos, NULL) : "";
            const char *eot_s = tmpl >= 0 ? mmp_chat_template_end_of_turn((enum mmp_chat_template)tmpl, eos_text) : NULL;
            if (eot_s && *eot_s) sv[ns++] = eot_s;
            if (eos >= 0) eog[n_eog++] = eos;
            if (eot >= 0 && eot != eos) eog[n_eog++] = eot;
            s->bos = mmp_tokenizer_bos(s->tok);
        }
        for (int i = 0; i < n_stop; i++) sv[ns++] = stops[i];
        cp.n_threads = p->n_threads > 0 ? p->n_threads : 1;
        cp.abort_cb = p->abort_cb;
        cp.abort_user = p->cb_user;
        if (!(s->stop = mmp_stop_new(eog, n_eog, sv, ns, s->n_max)) || !(s->smp = mmp_sampler_new(s->n_vocab, &sp)) ||
            !(s->ctx = mmp_llm_ctx_new(s->m, &cp)) || !(s->logits = mmp__malloc((size_t)s->n_vocab * sizeof *s->logits)) ||
            !(s->row = mmp__malloc((size_t)s->n_embd * sizeof *s->row)))
            st = MMP_ERR_INVALID_ARG;   /* the message is set */
    }
    if (st == MMP_OK && s->bos >= 0 && s->bos < s->n_vocab) {
        if (!(s->bos_row = mmp__malloc((size_t)s->n_embd * sizeof *s->bos_row))) st = MMP_ERR_NOMEM;
        else if (mmp_llm_embed_tokens(s->m, &s->bos, 1, s->bos_row) != MMP_OK) { free(s->bos_row); s->bos_row = NULL; mmp_clear_error(); }
    }
    mmp__text_model_info_free(&info);
    free(tmpl_opt);
    for (int i = 0; i < n_stop; i++) free(stops[i]);
    if (st != MMP_OK) { gen_destroy(s); return NULL; }
    in[0].dims[1] = s->n_embd;   /* embeddings [*, n_embd] */
    out[2].dims[0] = s->n_signal > 0 ? s->n_signal : MMP_DIM_ANY;
    out[2].dims[1] = s->n_embd;
    return s;
}

/* Output text buffer. */
typedef struct tbuf { char *p; size_t n, cap; } tbuf;
static bool tb_put(tbuf *b, const char *s, size_t n) {
    if (!n) return true;
    if (b->n + n > b->cap) {
        size_t cap = MMP_MAX(b->cap * 2, b->n + n + 256);
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}

/* Emit text: into the answer and to the streaming callback. False: the callback asked to stop
 * (*oom set on allocation failure). */
static bool emit(tbuf *ans, const mmp_stage_params *p, const char *t, size_t n, bool *oom) {
    if (!n) return true;
    if (!tb_put(ans, t, n)) { *oom = true; return false; }
    return !p->on_text || p->on_text(t, n, p->cb_user);
}

static enum mmp_status gen_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs, mmp_array **outputs) {
    gen_state *s = state;
    const mmp_array *ein = inputs[0], *tin = inputs[1];
    if (!tin && !ein)
        return mmp__error(MMP_ERR_INVALID_ARG, KIND ": give the prompt as 'embeddings' or 'tokens' (neither input was given)");
    /* both given: the embeddings are the prompt (they may carry media rows), tokens are ignored */
    int mode = ein ? 2 : 1;
    int64_t n = ein ? ein->dims[0] : tin->dims[0];
    const int32_t *pids = ein ? NULL : tin->data;
    if (pids)
        for (int64_t i = 0; i < n; i++)
            if (pids[i] < 0 || pids[i] >= s->n_vocab)
                return mmp__error(MMP_ERR_INVALID_ARG, KIND ": prompt token %lld is id %d, outside the vocabulary [0, %d)",
                                  (long long)i, pids[i], s->n_vocab);
    int32_t n_ctx = mmp_llm_ctx_n_ctx(s->ctx);
    if (n < 1 || n >= n_ctx)
        return mmp__error(MMP_ERR_LIMIT, KIND ": the prompt has %lld rows but the context holds %d (option ctx=N)", (long long)n, n_ctx);
    size_t row_bytes = ein ? (size_t)s->n_embd * sizeof(float) : sizeof(int32_t);
    const unsigned char *rows = ein ? ein->data : tin->data;

    /* the common prefix with what the KV cache holds (compared by row hashes) */
    uint64_t *h = mmp__malloc((size_t)n * sizeof *h);
    if (!h) return MMP_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) h[i] = row_hash(rows + (size_t)i * row_bytes, row_bytes, mode);
    int64_t keep = 0;
    if (s->keep && s->hist_mode == mode && mmp_llm_ctx_n_past(s->ctx) == s->n_hist)
        while (keep < s->n_hist && keep < n && s->hist[keep] == h[keep]) keep++;
    if (keep == n) keep--;   /* decode at least one row to get logits */
    enum mmp_status st = mmp_llm_ctx_truncate(s->ctx, (int32_t)keep);
    if (st == MMP_OK && !hist_reserve(s, n + s->n_max + 1)) st = mmp__error(MMP_ERR_NOMEM, KIND ": out of memory");
    if (st != MMP_OK) { free(h); s->n_hist = 0; s->hist_mode = 0; return st; }
    memcpy(s->hist, h, (size_t)n * sizeof *h);
    free(h);
    s->n_hist = keep;        /* the cache holds these rows until the decode succeeds */
    s->hist_mode = mode;
    if (keep > 0 && p->progress) p->progress("prompt reused", keep, n, p->cb_user);
    mmp_llm_batch b = { .n = (int32_t)(n - keep), .logits = s->logits };
    if (ein) b.embd = (const float *)ein->data + (size_t)keep * (size_t)s->n_embd;
    else b.tokens = pids + keep;
    if ((st = mmp_llm_decode(s->ctx, &b)) != MMP_OK) {
        mmp_llm_ctx_truncate(s->ctx, 0);
        s->n_hist = 0;
        mmp__error_prefix(KIND ": prompt: ");
        return st;
    }
    s->n_hist = n;
    if (p->progress) p->progress("prompt", n, n, p->cb_user);

    mmp_sampler_reset(s->smp);
    mmp_stop_reset(s->stop);
    /* with token ids the penalty window sees the prompt too (as `mmpipe run`); with
     * embeddings only the answer (as `mmpipe chat`) */
    if (pids)
        for (int64_t i = 0; i < n; i++) mmp_sampler_accept(s->smp, pids[i]);
    /* the previous token decides whether the first piece loses its leading space: known for
     * ids; for embeddings, a last row equal to BOS's embedding is BOS */
    int32_t prev = pids ? pids[n - 1] : -1;
    if (!pids && s->bos_row && !memcmp((const float *)ein->data + (size_t)(n - 1) * (size_t)s->n_embd, s->bos_row, row_bytes))
        prev = s->bos;

    tbuf ans = { 0 };
    int32_t *gen = mmp__malloc(((size_t)s->n_max + 1) * sizeof *gen);
    /* any-to-any: tokens decided in advance (forced=, then the rest of a started group) and the
     * hidden states of the signal tokens fed so far */
    int32_t queue[MAX_FORCED + MAX_SIGNAL];
    int32_t q_head = 0, q_len = s->n_forced;
    memcpy(queue, s->forced, (size_t)s->n_forced * sizeof *queue);
    float *sig = s->n_signal > 0 ? mmp__calloc((size_t)s->n_signal * (size_t)s->n_embd, sizeof *sig) : NULL;
    bool seen[MAX_SIGNAL] = { 0 };
    int32_t n_seen = 0;
    if (!gen || (s->n_signal > 0 && !sig)) { free(gen); free(sig); return MMP_ERR_NOMEM; }
    int64_t n_gen = 0;
    bool oom = false, go = s->n_max > 0;
    char piece[512];
    while (go) {
        if (p->abort_cb && p->abort_cb(p->cb_user)) { st = mmp__error(MMP_ERR_ABORTED, KIND ": aborted after %lld tokens", (long long)n_gen); break; }
        int32_t id;
        if (q_head < q_len) id = queue[q_head++];
        else if ((id = mmp_sampler_sample(s->smp, s->logits)) < 0) { st = (enum mmp_status)id; mmp__error_prefix(KIND ": sampling: "); break; }
        mmp_sampler_accept(s->smp, id);
        int si = signal_index(s, id);
        if (si == 0 && s->complete_signal && n_seen == 0) {
            /* GILL / NExT-GPT: [IMG0] is followed by the rest of the group, forced, ahead of
             * whatever else was queued (unless the queue already goes on with it) */
            bool queued = q_len - q_head >= s->n_signal - 1;
            for (int32_t k = 1; queued && k < s->n_signal; k++) queued = queue[q_head + k - 1] == s->signal[k];
            if (!queued) {
                int32_t nq = q_len - q_head, add = s->n_signal - 1;
                memmove(queue + add, queue + q_head, (size_t)nq * sizeof *queue);
                for (int32_t k = 0; k < add; k++) queue[k] = s->signal[k + 1];
                q_head = 0;
                q_len = nq + add;
            }
        }
        bool eog = s->tok && mmp_tokenizer_is_eog(s->tok, id);
        int64_t pn = 0;
        if (s->tok && !eog && si < 0) {
            pn = mmp_tokenizer_token_to_piece(s->tok, id, false, piece, sizeof piece);
            if (pn < 0) { st = (enum mmp_status)pn; mmp__error_prefix(KIND ": token %d: ", id); break; }
            if ((size_t)pn > sizeof piece) pn = (int64_t)sizeof piece;   /* longer pieces are cut */
            /* SentencePiece: no leading space right after BOS (llama2.c run.c, llama.cpp) */
            if (prev >= 0 && prev == s->bos && pn > 0 && piece[0] == ' ') { memmove(piece, piece + 1, (size_t)pn - 1); pn--; }
        }
        if (!eog) gen[n_gen++] = id;
        const char *em = "";
        size_t en = 0;
        enum mmp_stop_reason why;
        if (s->tok) {
            why = mmp_stop_push(s->stop, id, piece, (size_t)pn, &em, &en);
            go = emit(&ans, p, em, en, &oom);
        } else {
            /* no text to match: only the token budget ends it (the stopper is not fed empty
             * pieces: its memmove of a NULL buffer is undefined behaviour) */
            why = n_gen >= s->n_max ? MMP_STOP_MAX_TOKENS : MMP_STOP_NONE;
        }
        if (eog && why == MMP_STOP_NONE) {
            /* an end-of-generation id the stopper does not list: end with the held-back text */
            mmp_stop_flush(s->stop, &em, &en);
            if (go) go = emit(&ans, p, em, en, &oom);
            why = MMP_STOP_EOG;
        }
        if (p->progress) p->progress("tokens", n_gen, s->n_max, p->cb_user);
        if (oom) { st = mmp__error(MMP_ERR_NOMEM, KIND ": out of memory for the answer"); break; }
        bool fed = false;
        if (si >= 0 && !seen[si] && mmp_llm_ctx_n_past(s->ctx) < n_ctx) {
            /* feed the signal token now (even if the answer ends here): its hidden state */
            mmp_llm_batch bs = { .n = 1, .tokens = &id, .logits = s->logits, .hidden = s->hid };
            if ((st = mmp_llm_decode(s->ctx, &bs)) != MMP_OK) { mmp__error_prefix(KIND ": token %lld: ", (long long)n_gen); break; }
            memcpy(sig + (size_t)si * (size_t)s->n_embd, s->hid, (size_t)s->n_embd * sizeof *sig);
            seen[si] = true;
            if (++n_seen == s->n_signal && s->stop_after_image) go = false;
            fed = true;
        }
        if (fed) {
            if (mode == 2) {
                if (mmp_llm_embed_tokens(s->m, &id, 1, s->row) == MMP_OK) s->hist[s->n_hist++] = row_hash(s->row, row_bytes, mode);
                else { mmp_clear_error(); s->hist_mode = 0; }
            } else s->hist[s->n_hist++] = row_hash(&id, sizeof id, mode);
            prev = id;
        }
        if (why != MMP_STOP_NONE || !go) break;
        if (fed) continue;
        if (mmp_llm_ctx_n_past(s->ctx) >= n_ctx) {
            /* the context is full: the answer ends here, with the held-back text */
            if (s->tok) {
                mmp_stop_flush(s->stop, &em, &en);
                emit(&ans, p, em, en, &oom);
            }
            if (oom) st = mmp__error(MMP_ERR_NOMEM, KIND ": out of memory for the answer");
            break;
        }
        mmp_llm_batch bb = { .n = 1, .tokens = &id, .logits = s->logits };
        if ((st = mmp_llm_decode(s->ctx, &bb)) != MMP_OK) { mmp__error_prefix(KIND ": token %lld: ", (long long)n_gen); break; }
        /* the cache now holds this token: remember its row as a prompt would give it */
        if (mode == 2) {
            if (mmp_llm_embed_tokens(s->m, &id, 1, s->row) == MMP_OK) s->hist[s->n_hist++] = row_hash(s->row, row_bytes, mode);
            else { mmp_clear_error(); s->hist_mode = 0; }   /* no reuse next time */
        } else {
            s->hist[s->n_hist++] = row_hash(&id, sizeof id, mode);
        }
        prev = id;
    }
    if (st != MMP_OK) {
        /* the cache may hold part of this run: forget it */
        mmp_llm_ctx_truncate(s->ctx, 0);
        s->n_hist = 0;
        s->hist_mode = 0;
        free(ans.p);
        free(gen);
        free(sig);
        return st;
    }
    mmp_array *t = mmp__rows_array(MMP_TYPE_U8, 1, (int64_t)ans.n, 1, ans.p);
    mmp_array *g = t ? mmp__rows_array(MMP_TYPE_I32, 1, n_gen, 1, gen) : NULL;
    /* a complete signal group: its hidden states; otherwise absent */
    mmp_array *sh = NULL;
    if (g && s->n_signal > 0 && n_seen == s->n_signal)
        sh = mmp__rows_array(MMP_TYPE_F32, 2, s->n_signal, s->n_embd, sig);
    free(ans.p);
    free(gen);
    free(sig);
    if (!g || (s->n_signal > 0 && n_seen == s->n_signal && !sh)) { mmp_array_free(t); mmp_array_free(g); return MMP_ERR_NOMEM; }
    outputs[0] = t;
    outputs[1] = g;
    outputs[2] = sh;
    return MMP_OK;
}

const mmp_stage_kind mmp__stage_backbone_generate = {
    .name = KIND,
    .summary = "autoregressive generation: prompt rows -> generated text and ids (options n=256, temp, top_k, top_p, min_p, "
               "repeat_penalty, repeat_last_n, seed, stop=TEXT (repeatable), ctx=N, kv=f32|f16, keep=1|0, "
               "template=auto|none|NAME, signal=auto|none|IDS, signal_n=N, complete_signal=1|0, stop_after_image=0|1, forced=IDS; "
               "'\\,' is a comma in a value)",
    .n_inputs = 2,
    .n_outputs = 3,
    .inputs = {
        { "embeddings", { MMP_ROLE_EMBEDDINGS, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, true,
          "prompt rows [n, n_embd] (or give tokens; used when both are given)" },
        { "tokens", { MMP_ROLE_TOKENS, MMP_TYPE_I32, 1, { MMP_DIM_ANY } }, true,
          "prompt token ids [n] (or give embeddings)" },
    },
    .outputs = {
        { "text", { MMP_ROLE_TEXT, MMP_TYPE_U8, 1, { MMP_DIM_ANY } }, false,
          "the generated text, stop strings removed (0 bytes: an empty answer)" },
        { "tokens", { MMP_ROLE_TOKENS, MMP_TYPE_I32, 1, { MMP_DIM_ANY } }, false,
          "the generated ids [m], end-of-generation excluded (m may be 0)" },
        { "signal_hidden", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, true,
          "hidden states after the final norm at the signal tokens [n_signal, n_embd] (with signal=...; absent when "
          "the answer holds no complete group)" },
    },
    .create = gen_create,
    .run = gen_run,
    .destroy = gen_destroy,
};
