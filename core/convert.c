/* Model conversion to GGUF: Hugging Face folders and llama2.c checkpoints (see
 * include/mmpipe/convert.h for what is written and why q/k are permuted).
 *
 * Memory: the GGUF writer borrows tensor data until it writes the file, so every converted
 * tensor stays in memory until then (F32 tensors that need no change are borrowed straight
 * from the mmapped input instead of copied). */
#include "mmpipe/convert.h"
#include "mmpipe/gguf.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/vision.h"
#include "mapfile.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* llama.cpp's llama_ftype values for general.file_type. */
static uint32_t file_type_of(enum mmp_type t) {
    switch (t) {
    case MMP_TYPE_F32: return 0;
    case MMP_TYPE_F16: return 1;
    case MMP_TYPE_Q4_0: return 2;
    case MMP_TYPE_Q4_1: return 3;
    case MMP_TYPE_Q8_0: return 7;
    case MMP_TYPE_Q5_0: return 8;
    case MMP_TYPE_Q5_1: return 9;
    case MMP_TYPE_BF16: return 32;
    default: return 0;
    }
}

bool mmp_convert_type_ok(enum mmp_type t) {
    switch (t) {
    case MMP_TYPE_F32: case MMP_TYPE_F16: case MMP_TYPE_BF16: case MMP_TYPE_Q8_0:
    case MMP_TYPE_Q4_0: case MMP_TYPE_Q4_1: case MMP_TYPE_Q5_0: case MMP_TYPE_Q5_1:
        return true;
    default:
        return false;
    }
}

mmp_convert_params mmp_convert_params_default(void) {
    mmp_convert_params p;
    memset(&p, 0, sizeof p);
    p.out_type = MMP_TYPE_F32;
    return p;
}

enum mmp_status mmp_convert_permute_qk(float *dst, const float *src, int64_t n_rows, int64_t row_len, int32_t n_head) {
    if (!dst || !src || n_rows <= 0 || row_len <= 0 || n_head <= 0 || n_rows % n_head)
        return mmp__error(MMP_ERR_INVALID_ARG, "permute_qk: %lld rows do not split into %d heads",
                          (long long)n_rows, (int)n_head);
    int64_t d = n_rows / n_head;
    if (d % 2) return mmp__error(MMP_ERR_INVALID_ARG, "permute_qk: head dim %lld is odd", (long long)d);
    /* HF reshape(n_head, 2, D/2, ...).swapaxes(1, 2): new (h, i, j) <- old (h, j, i) */
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < d / 2; i++)
            for (int64_t j = 0; j < 2; j++)
                memcpy(dst + (h * d + 2 * i + j) * row_len, src + (h * d + j * (d / 2) + i) * row_len,
                       (size_t)row_len * sizeof(float));
    return MMP_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* the conversion state: a writer plus the buffers it borrows                                */

typedef struct conv {
    mmp_gguf_writer *w;
    void **bufs;
    size_t n_bufs, cap_bufs;
    const mmp_convert_params *p;
    const char *src;            /* input path (messages) */
    /* HF multimodal folders keep the LLM under a prefix: "model." and "lm_head." in the
     * names below are replaced by these (plain LLM folders: themselves) */
    char mpfx[64], hpfx[64];
} conv;

static void conv_log(const conv *c, enum mmp_log_level lv, const char *fmt, ...) MMP_PRINTF(3, 4);
static void conv_log(const conv *c, enum mmp_log_level lv, const char *fmt, ...) {
    if (!c->p->log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->p->log(lv, msg, c->p->log_user);
}

/* Allocate a buffer that lives until the file is written. */
static void *conv_alloc(conv *c, size_t n) {
    if (c->n_bufs == c->cap_bufs) {
        size_t cap = c->cap_bufs ? c->cap_bufs * 2 : 64;
        void **b = realloc(c->bufs, cap * sizeof *b);
        if (!b) return mmp__error_null(MMP_ERR_NOMEM, "convert: out of memory");
        c->bufs = b;
        c->cap_bufs = cap;
    }
    void *p = mmp__malloc(n ? n : 1);
    if (p) c->bufs[c->n_bufs++] = p;
    return p;
}

static void conv_free(conv *c) {
    for (size_t i = 0; i < c->n_bufs; i++) free(c->bufs[i]);
    free(c->bufs);
    mmp_gguf_writer_free(c->w);
}

/* Which type a tensor gets (llama.cpp's rules): 1-D tensors, norms and routers stay F32;
 * rows that do not fit the block size fall back to F16. */
static enum mmp_type pick_type(const conv *c, const char *name, int n_dims, int64_t ne0) {
    enum mmp_type t = c->p->out_type;
    size_t ln = strlen(name);
    if (n_dims <= 1 || t == MMP_TYPE_F32) return MMP_TYPE_F32;
    if ((ln >= 12 && !strcmp(name + ln - 12, "_norm.weight")) || strstr(name, "ffn_gate_inp"))
        return MMP_TYPE_F32;
    const mmp_type_traits *tr = mmp_type_get_traits(t);
    if (tr && ne0 % tr->blck_size) {
        conv_log(c, MMP_LOG_WARN, "%s: row length %lld is not a multiple of %s's block size %lld: falling back to f16",
                 name, (long long)ne0, tr->name, (long long)tr->blck_size);
        return MMP_TYPE_F16;
    }
    return t;
}

/* Add a tensor given as f32 [ne[3]][ne[2]][ne[1]][ne[0]]; `data` must live until the write
 * (borrowed input or a conv_alloc buffer). */
static enum mmp_status add_f32(conv *c, const char *name, int n_dims, const int64_t *ne4, const float *data) {
    int64_t ne[4] = { 1, 1, 1, 1 };
    for (int d = 0; d < n_dims; d++) ne[d] = ne4[d];
    enum mmp_type t = pick_type(c, name, n_dims, ne[0]);
    const void *out = data;
    if (t != MMP_TYPE_F32) {
        int64_t rows = ne[1] * ne[2] * ne[3];
        size_t rs = mmp_row_size(t, ne[0]);
        uint64_t bytes;
        if (!rs || !mmp__mul_ok(rs, (uint64_t)rows, &bytes))
            return mmp__error(MMP_ERR_NOMEM, "convert: tensor %s is too large", name);
        uint8_t *q = conv_alloc(c, (size_t)bytes);
        if (!q) return MMP_ERR_NOMEM;
        for (int64_t r = 0; r < rows; r++) {
            enum mmp_status st = mmp_quantize_row(t, data + r * ne[0], q + (size_t)r * rs, ne[0]);
            if (st) { mmp__error_prefix("convert: tensor %s: ", name); return st; }
        }
        out = q;
    }
    enum mmp_status st = mmp_gguf_writer_add_tensor(c->w, name, t, n_dims, ne, out);
    if (st) mmp__error_prefix("convert: %s: ", c->src);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* llama2.c tokenizer.bin -> tokenizer.ggml.* (as llama.cpp's convert-llama2c-to-ggml)      */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Reads tokenizer.bin (i32 max_token_length, then per token f32 score, i32 len, bytes) and
 * writes model "llama", tokens (spaces as U+2581), scores, token_type, bos 1, eos 2, unk 0.
 * n_vocab: the model's vocabulary size (the file must hold at least that many tokens). */
static enum mmp_status write_llama2c_tokenizer(conv *c, const char *path, int32_t n_vocab) {
    mmp__mapfile mf;
    enum mmp_status st = mmp__mapfile_open(&mf, path);
    if (st) return st;
    char **toks = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    int32_t n = 0;
    const uint8_t *p = mf.data, *end = mf.data + mf.size;
    if (mf.size < 4) { st = mmp__error(MMP_ERR_FORMAT, "%s: too short for a llama2.c tokenizer (%zu bytes)", path, mf.size); goto done; }
    int32_t maxlen;
    memcpy(&maxlen, p, 4);
    p += 4;
    if (maxlen <= 0 || maxlen > (1 << 20)) {
        st = mmp__error(MMP_ERR_FORMAT, "%s: max_token_length %d is not in 1..1048576", path, (int)maxlen);
        goto done;
    }
    toks = mmp__calloc((size_t)n_vocab, sizeof *toks);
    scores = mmp__calloc((size_t)n_vocab, sizeof *scores);
    types = mmp__calloc((size_t)n_vocab, sizeof *types);
    if (!toks || !scores || !types) { st = MMP_ERR_NOMEM; goto done; }
    for (n = 0; n < n_vocab; n++) {
        if (end - p < 8) {
            st = mmp__error(MMP_ERR_FORMAT, "%s: holds %d tokens but the model's vocab_size is %d", path, (int)n, (int)n_vocab);
            goto done;
        }
        int32_t len;
        memcpy(&scores[n], p, 4);
        memcpy(&len, p + 4, 4);
        p += 8;
        if (len < 0 || len > end - p) {
            st = mmp__error(MMP_ERR_FORMAT, "%s: token %d: length %d is negative or past the end of the file", path, (int)n, (int)len);
            goto done;
        }
        if (memchr(p, 0, (size_t)len)) {
            st = mmp__error(MMP_ERR_FORMAT, "%s: token %d contains a NUL byte", path, (int)n);
            goto done;
        }
        if (!isfinite(scores[n])) {
            st = mmp__error(MMP_ERR_FORMAT, "%s: token %d: score %g is not finite", path, (int)n, (double)scores[n]);
            goto done;
        }
        const char *text = (const char *)p;
        size_t tl = (size_t)len;
        p += len;
        int32_t type = 1; /* normal */
        unsigned hx;
        char tail;
        if (n == 0) { text = "<unk>"; tl = 5; type = 2; }
        else if (n == 1) { text = "<s>"; tl = 3; type = 3; }
        else if (n == 2) { text = "</s>"; tl = 4; type = 3; }
        else if (tl == 0) type = 3;
        else if (tl == 6 && !memcmp(text, "<0x", 3) && text[5] == '>') {
            char tmp[7];
            memcpy(tmp, text, 6);
            tmp[6] = '\0';
            if (sscanf(tmp, "<0x%2X%c", &hx, &tail) == 2 && tail == '>') type = 6; /* byte */
        }
        /* spaces -> U+2581 (3 bytes each) */
        size_t sp = 0;
        for (size_t i = 0; i < tl; i++) sp += text[i] == ' ';
        char *s = mmp__malloc(tl + 2 * sp + 1);
        if (!s) { st = MMP_ERR_NOMEM; goto done; }
        size_t o = 0;
        for (size_t i = 0; i < tl; i++) {
            if (text[i] == ' ') { s[o++] = (char)0xE2; s[o++] = (char)0x96; s[o++] = (char)0x81; }
            else s[o++] = text[i];
        }
        s[o] = '\0';
        toks[n] = s;
        types[n] = type;
    }
    if ((st = mmp_gguf_writer_add_str(c->w, "tokenizer.ggml.model", "llama")) ||
        (st = mmp_gguf_writer_add_arr_str(c->w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n_vocab)) ||
        (st = mmp_gguf_writer_add_arr(c->w, "tokenizer.ggml.scores", MMP_GGUF_F32, scores, (uint64_t)n_vocab)) ||
        (st = mmp_gguf_writer_add_arr(c->w, "tokenizer.ggml.token_type", MMP_GGUF_I32, types, (uint64_t)n_vocab)) ||
        (st = mmp_gguf_writer_add_u32(c->w, "tokenizer.ggml.bos_token_id", 1)) ||
        (st = mmp_gguf_writer_add_u32(c->w, "tokenizer.ggml.eos_token_id", 2)) ||
        (st = mmp_gguf_writer_add_u32(c->w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (st = mmp_gguf_writer_add_bool(c->w, "tokenizer.ggml.add_bos_token", true)) ||
        (st = mmp_gguf_writer_add_bool(c->w, "tokenizer.ggml.add_eos_token", false)))
        goto done;
done:
    if (toks) for (int32_t i = 0; i < n_vocab; i++) free(toks[i]);
    free(toks); free(scores); free(types);
    mmp__mapfile_close(&mf);
    return st;
}

/* Copy every tokenizer.* key of a GGUF file. Returns its vocabulary size in *n_tokens. */
static enum mmp_status copy_gguf_tokenizer(conv *c, const char *path, int64_t *n_tokens, int64_t *bos, int64_t *eos) {
    mmp_gguf *g = mmp_gguf_open(path);
    if (!g) return mmp__error(MMP_ERR_IO, "convert: vocab file: %s", mmp_last_error());
    enum mmp_status st = MMP_OK;
    *n_tokens = -1;
    *bos = *eos = -1;
    const char **strs = NULL;
    for (int64_t i = 0; i < mmp_gguf_n_kv(g) && !st; i++) {
        const char *key = mmp_gguf_kv_key(g, i);
        if (strncmp(key, "tokenizer.", 10)) continue;
        const mmp_gguf_value *v = mmp_gguf_kv_value(g, i);
        enum mmp_gguf_type t = mmp_gguf_value_type(v);
        int64_t iv;
        if (t == MMP_GGUF_STRING) {
            const char *s;
            if (!(st = mmp_gguf_value_str(v, &s, NULL))) st = mmp_gguf_writer_add_str(c->w, key, s);
        } else if (t == MMP_GGUF_ARRAY) {
            uint64_t n = mmp_gguf_arr_n(v);
            enum mmp_gguf_type et = mmp_gguf_arr_type(v);
            if (!strcmp(key, "tokenizer.ggml.tokens")) *n_tokens = (int64_t)n;
            if (et == MMP_GGUF_STRING) {
                /* NUL-terminated copies for the writer */
                strs = mmp__calloc(n ? n : 1, sizeof *strs);
                if (!strs) { st = MMP_ERR_NOMEM; break; }
                for (uint64_t k = 0; k < n && !st; k++) {
                    const char *s;
                    size_t len;
                    if ((st = mmp_gguf_arr_str(v, k, &s, &len))) break;
                    char *cp = conv_alloc(c, len + 1);
                    if (!cp) { st = MMP_ERR_NOMEM; break; }
                    memcpy(cp, s, len);
                    cp[len] = '\0';
                    strs[k] = cp;
                }
                if (!st) st = mmp_gguf_writer_add_arr_str(c->w, key, strs, n);
                free(strs);
                strs = NULL;
            } else if (mmp_gguf_arr_data(v)) {
                st = mmp_gguf_writer_add_arr(c->w, key, et, mmp_gguf_arr_data(v), n);
            } else {
                conv_log(c, MMP_LOG_WARN, "%s: key %s (nested array) not copied", path, key);
            }
        } else if (t == MMP_GGUF_BOOL) {
            bool b;
            if (!(st = mmp_gguf_value_bool(v, &b))) st = mmp_gguf_writer_add_bool(c->w, key, b);
        } else if (t == MMP_GGUF_F32 || t == MMP_GGUF_F64) {
            double d;
            if (!(st = mmp_gguf_value_f64(v, &d))) st = mmp_gguf_writer_add_f32(c->w, key, (float)d);
        } else if (!(st = mmp_gguf_value_i64(v, &iv))) {
            if (!strcmp(key, "tokenizer.ggml.bos_token_id")) *bos = iv;
            if (!strcmp(key, "tokenizer.ggml.eos_token_id")) *eos = iv;
            st = (iv >= 0 && iv <= UINT32_MAX) ? mmp_gguf_writer_add_u32(c->w, key, (uint32_t)iv)
                                                 : mmp_gguf_writer_add_i64(c->w, key, iv);
        }
    }
    if (!st && *n_tokens < 0) st = mmp__error(MMP_ERR_NOT_FOUND, "convert: %s has no tokenizer.ggml.tokens", path);
    mmp_gguf_free(g);
    return st;
}

static bool vocab_has_template(const char *path) {
    mmp_gguf *g = mmp_gguf_open(path);
    bool has = g && mmp_gguf_has(g, "tokenizer.chat_template");
    mmp_gguf_free(g);
    mmp_clear_error();
    return has;
}

/* ---------------------------------------------------------------------------------------- */
/* llama2.c checkpoints                                                                      */

enum mmp_status mmp_convert_llama2c_to_gguf(const char *model_bin, const char *tokenizer_bin, const char *out_path,
                                            const mmp_convert_params *params) {
    mmp_convert_params p = params ? *params : mmp_convert_params_default();
    if (!model_bin || !out_path) return mmp__error(MMP_ERR_INVALID_ARG, "convert: NULL path");
    if (!mmp_convert_type_ok(p.out_type))
        return mmp__error(MMP_ERR_UNSUPPORTED, "convert: output type %s is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)",
                          mmp_type_name(p.out_type));
    conv c = { .p = &p, .src = model_bin };
    mmp__mapfile mf;
    enum mmp_status st = mmp__mapfile_open(&mf, model_bin);
    if (st) return st;
    c.w = mmp_gguf_writer_new();
    if (!c.w) { st = MMP_ERR_NOMEM; goto done; }
    if (mf.size < 28) { st = mmp__error(MMP_ERR_FORMAT, "%s: %zu bytes is too short for a llama2.c header (28)", model_bin, mf.size); goto done; }
    int32_t h[7];
    memcpy(h, mf.data, sizeof h);
    static const char *const fields[7] = { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len" };
    bool shared = h[5] > 0;
    if (h[5] == INT32_MIN) h[5] = 0;
    h[5] = h[5] < 0 ? -h[5] : h[5];
    for (int i = 0; i < 7; i++)
        if (h[i] <= 0 || h[i] > (1 << 24)) {
            st = mmp__error(MMP_ERR_FORMAT, "%s: header field %s = %d is not in 1..16777216", model_bin, fields[i], (int)h[i]);
            goto done;
        }
    const int64_t dim = h[0], hid = h[1], nl = h[2], nh = h[3], nkv = h[4], nv = h[5], sl = h[6];
    if (dim % nh || nh % nkv || (dim / nh) % 2) {
        st = mmp__error(MMP_ERR_FORMAT, "%s: dim %lld, n_heads %lld, n_kv_heads %lld do not fit (dim %% n_heads, n_heads %% n_kv_heads, even head size)",
                        model_bin, (long long)dim, (long long)nh, (long long)nkv);
        goto done;
    }
    const int64_t hs = dim / nh, kvd = nkv * hs;
    /* floats in run.c's order; freq_cis_real/imag (seq_len * head_size / 2 each) are skipped.
     * Sizes in checked u64 arithmetic: a hostile header must not overflow. */
    const uint64_t U_dim = (uint64_t)dim, U_hid = (uint64_t)hid, U_nl = (uint64_t)nl, U_nv = (uint64_t)nv,
                   U_kvd = (uint64_t)kvd, U_sl = (uint64_t)sl, U_hs = (uint64_t)hs;
    const uint64_t terms[][3] = { { U_nv, U_dim, 1 }, { U_nl, U_dim, 1 }, { U_nl, U_dim, U_dim }, { U_nl, U_dim, U_kvd },
                                  { U_nl, U_dim, U_kvd }, { U_nl, U_dim, U_dim }, { U_nl, U_dim, 1 }, { U_nl, U_hid, U_dim },
                                  { U_nl, U_dim, U_hid }, { U_nl, U_hid, U_dim }, { U_dim, 1, 1 }, { U_sl, U_hs, 1 },
                                  { shared ? 0 : U_nv, U_dim, 1 } };
    uint64_t nf = 0;
    bool ok = true;
    for (size_t i = 0; i < sizeof terms / sizeof terms[0] && ok; i++) {
        uint64_t t;
        ok = mmp__mul_ok(terms[i][0], terms[i][1], &t) && mmp__mul_ok(t, terms[i][2], &t) && mmp__add_ok(nf, t, &nf);
    }
    uint64_t want = 0;
    if (!ok || !mmp__mul_ok(nf, 4, &want) || !mmp__add_ok(want, 28, &want)) want = UINT64_MAX;
    if (mf.size != want) {
        st = mmp__error(MMP_ERR_FORMAT, "%s: file is %zu bytes but its header (dim %lld, hidden_dim %lld, n_layers %lld, n_heads %lld, "
                        "n_kv_heads %lld, vocab_size %lld%s, seq_len %lld) needs %llu", model_bin, mf.size, (long long)dim,
                        (long long)hid, (long long)nl, (long long)nh, (long long)nkv, (long long)nv,
                        shared ? "" : " unshared", (long long)sl, (unsigned long long)want);
        goto done;
    }
    const float *f = (const float *)(mf.data + 28); /* mmap is page aligned, 28 % 4 == 0 */
    const float *emb = f, *rms_att = emb + nv * dim, *wq = rms_att + nl * dim, *wk = wq + nl * dim * dim,
                *wv = wk + nl * dim * kvd, *wo = wv + nl * dim * kvd, *rms_ffn = wo + nl * dim * dim,
                *w1 = rms_ffn + nl * dim, *w2 = w1 + nl * hid * dim, *w3 = w2 + nl * dim * hid,
                *rms_final = w3 + nl * hid * dim, *wcls = shared ? emb : rms_final + dim + sl * hs;

    /* general.name: the file's base name without its extension */
    char name[128];
    snprintf(name, sizeof name, "%s", p.name ? p.name : base_name(model_bin));
    if (!p.name) { char *dot = strrchr(name, '.'); if (dot && dot != name) *dot = '\0'; }
    if ((st = mmp_gguf_writer_add_str(c.w, "general.architecture", "llama")) ||
        (st = mmp_gguf_writer_add_str(c.w, "general.name", name)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "general.file_type", file_type_of(p.out_type))) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.context_length", (uint32_t)sl)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.embedding_length", (uint32_t)dim)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.block_count", (uint32_t)nl)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.feed_forward_length", (uint32_t)hid)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.attention.head_count", (uint32_t)nh)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.attention.head_count_kv", (uint32_t)nkv)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.rope.dimension_count", (uint32_t)hs)) ||
        (st = mmp_gguf_writer_add_f32(c.w, "llama.rope.freq_base", 10000.0f)) ||
        (st = mmp_gguf_writer_add_f32(c.w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (st = mmp_gguf_writer_add_u32(c.w, "llama.vocab_size", (uint32_t)nv)))
        goto done;
    if (tokenizer_bin && (st = write_llama2c_tokenizer(&c, tokenizer_bin, (int32_t)nv))) goto done;
    if (!tokenizer_bin) conv_log(&c, MMP_LOG_WARN, "no tokenizer given: the GGUF file will have no tokenizer.* keys");

    {
        const int64_t ne_emb[2] = { dim, nv };
        if ((st = add_f32(&c, "token_embd.weight", 2, ne_emb, emb))) goto done;
    }
    for (int64_t l = 0; l < nl; l++) {
        char nm[96];
        struct { const char *n; const float *d; int64_t ne0, ne1; int nd; } t[] = {
            { "attn_norm", rms_att + l * dim, dim, 1, 1 },
            { "attn_q", wq + l * dim * dim, dim, dim, 2 },
            { "attn_k", wk + l * dim * kvd, dim, kvd, 2 },
            { "attn_v", wv + l * dim * kvd, dim, kvd, 2 },
            { "attn_output", wo + l * dim * dim, dim, dim, 2 },
            { "ffn_norm", rms_ffn + l * dim, dim, 1, 1 },
            { "ffn_gate", w1 + l * hid * dim, dim, hid, 2 },
            { "ffn_down", w2 + l * dim * hid, hid, dim, 2 },
            { "ffn_up", w3 + l * hid * dim, dim, hid, 2 },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, t[i].n);
            int64_t ne[2] = { t[i].ne0, t[i].ne1 };
            if ((st = add_f32(&c, nm, t[i].nd, ne, t[i].d))) goto done;
        }
    }
    {
        const int64_t ne_n[1] = { dim }, ne_o[2] = { dim, nv };
        if ((st = add_f32(&c, "output_norm.weight", 1, ne_n, rms_final))) goto done;
        /* a shared classifier is the embedding table: llama.cpp ties `output` to token_embd
         * when the tensor is absent, so it is not written twice */
        if (!shared && (st = add_f32(&c, "output.weight", 2, ne_o, wcls))) goto done;
    }
    st = mmp_gguf_writer_write(c.w, out_path);
done:
    conv_free(&c);
    mmp__mapfile_close(&mf);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Hugging Face folders                                                                      */

typedef struct hf_arch {
    const char *model_type;   /* config.json model_type */
    const char *gguf_arch;    /* general.architecture */
    bool permute_qk;          /* llama family: rotate-half -> adjacent pairs */
    bool qkv_bias;            /* always has q/k/v biases */
    int moe;                  /* 0 dense, 1 mixtral style, 2 qwen2_moe style (shared expert) */
} hf_arch;

static const hf_arch k_archs[] = {
    { "llama",     "llama",    true,  false, 0 },
    { "mistral",   "llama",    true,  false, 0 },
    { "mixtral",   "llama",    true,  false, 1 },
    { "qwen2",     "qwen2",    false, true,  0 },
    { "qwen2_moe", "qwen2moe", false, true,  2 },
};

typedef struct hf_hp {
    int64_t n_embd, n_layer, n_head, n_kv, head_dim, n_ff, n_vocab, n_ctx;
    int64_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
    double eps, theta;
    bool tied, attn_bias;
} hf_hp;

/* "model.X" / "lm_head.X" -> the folder's own prefix (LLaVA: "language_model.model.X", ...). */
static const char *hf_map(const conv *c, const char *name, char *buf, size_t size) {
    if (!strncmp(name, "model.", 6) && c->mpfx[0]) snprintf(buf, size, "%s%s", c->mpfx, name + 6);
    else if (!strncmp(name, "lm_head.", 8) && c->hpfx[0]) snprintf(buf, size, "%s%s", c->hpfx, name + 8);
    else snprintf(buf, size, "%s", name);
    return buf;
}

/* Look up a tensor and check its GGML-order shape (ne1 = 0: 1-D). */
static const mmp_tensor_info *hf_tensor(const mmp_modelfile *mf, const char *name, int64_t ne0, int64_t ne1, bool required,
                                        enum mmp_status *st) {
    const mmp_tensor_info *t = mmp_modelfile_find(mf, name);
    if (!t) {
        if (required) *st = mmp__error(MMP_ERR_NOT_FOUND, "convert: %s: tensor %s is missing", mmp_modelfile_path(mf), name);
        else mmp_clear_error();
        return NULL;
    }
    int nd = ne1 ? 2 : 1;
    if (t->n_dims != nd || t->ne[0] != ne0 || (nd == 2 && t->ne[1] != ne1)) {
        char got[64];
        if (t->n_dims == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)t->ne[1], (long long)t->ne[0]);
        else if (t->n_dims == 1) snprintf(got, sizeof got, "[%lld]", (long long)t->ne[0]);
        else snprintf(got, sizeof got, "a %d-D tensor", t->n_dims);
        if (nd == 2)
            *st = mmp__error(MMP_ERR_SHAPE, "convert: %s: tensor %s has shape %s but config.json implies [%lld, %lld]",
                             mmp_modelfile_path(mf), name, got, (long long)ne1, (long long)ne0);
        else
            *st = mmp__error(MMP_ERR_SHAPE, "convert: %s: tensor %s has shape %s but config.json implies [%lld]",
                             mmp_modelfile_path(mf), name, got, (long long)ne0);
        return NULL;
    }
    if (t->type != MMP_TYPE_F32 && t->type != MMP_TYPE_F16 && t->type != MMP_TYPE_BF16) {
        *st = mmp__error(MMP_ERR_UNSUPPORTED, "convert: %s: tensor %s has dtype %s (only F32, F16, BF16 are converted)",
                         mmp_modelfile_path(mf), name, mmp_type_name(t->type));
        return NULL;
    }
    return t;
}

/* Element count of a tensor. */
static int64_t n_elem(const mmp_tensor_info *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return n;
}

/* Convert tensor data to f32 into dst [n_elem] (source may be unaligned). */
static void to_f32(const mmp_tensor_info *t, float *dst) {
    int64_t n = n_elem(t);
    const uint8_t *s = t->data;
    if (t->type == MMP_TYPE_F32) { memcpy(dst, s, (size_t)n * 4); return; }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = t->type == MMP_TYPE_F16 ? mmp_fp16_to_fp32(h) : mmp_bf16_to_fp32(h);
    }
}

/* f32 data of a tensor that lives until the write: borrowed when the file holds aligned F32
 * and no change is needed, else a converted (and optionally q/k-permuted) copy. */
static const float *hf_data(conv *c, const mmp_tensor_info *t, int32_t permute_heads, enum mmp_status *st) {
    int64_t n = n_elem(t);
    if (t->type == MMP_TYPE_F32 && !permute_heads && ((uintptr_t)t->data % sizeof(float)) == 0) return t->data;
    float *buf = conv_alloc(c, (size_t)n * sizeof(float));
    if (!buf) { *st = MMP_ERR_NOMEM; return NULL; }
    to_f32(t, buf);
    if (!permute_heads) return buf;
    float *pb = conv_alloc(c, (size_t)n * sizeof(float));
    if (!pb) { *st = MMP_ERR_NOMEM; return NULL; }
    int64_t row = t->n_dims > 1 ? t->ne[0] : 1, rows = t->n_dims > 1 ? t->ne[1] : t->ne[0];
    if ((*st = mmp_convert_permute_qk(pb, buf, rows, row, permute_heads))) {
        mmp__error_prefix("convert: tensor %s: ", t->name);
        return NULL;
    }
    return pb;
}

/* One HF tensor -> one GGUF tensor (shape checked; ne1 = 0 for 1-D). */
static enum mmp_status hf_copy(conv *c, const mmp_modelfile *mf, const char *hf_name, const char *gg_name, int64_t ne0,
                               int64_t ne1, int32_t permute_heads, bool required) {
    enum mmp_status st = MMP_OK;
    char mapped[256];
    const mmp_tensor_info *t = hf_tensor(mf, hf_map(c, hf_name, mapped, sizeof mapped), ne0, ne1, required, &st);
    if (!t) return st;
    const float *d = hf_data(c, t, permute_heads, &st);
    if (!d) return st;
    int64_t ne[2] = { ne0, ne1 };
    return add_f32(c, gg_name, ne1 ? 2 : 1, ne, d);
}

/* Stack experts E of `fmt` (with %lld for the layer and %d for the expert) into one 3-D
 * tensor ne {ne0, ne1, n_expert}. */
static enum mmp_status hf_stack(conv *c, const mmp_modelfile *mf, const char *fmt, long long layer, int64_t n_exp,
                                const char *gg_name, int64_t ne0, int64_t ne1) {
    enum mmp_status st = MMP_OK;
    uint64_t bytes;
    if (!mmp__mul_ok((uint64_t)ne0, (uint64_t)ne1, &bytes) || !mmp__mul_ok(bytes, (uint64_t)n_exp, &bytes) ||
        !mmp__mul_ok(bytes, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return mmp__error(MMP_ERR_NOMEM, "convert: %s: %lld x %lld x %lld experts is too large", gg_name, (long long)ne0,
                          (long long)ne1, (long long)n_exp);
    /* the first expert must exist with the right shape before anything is allocated */
    {
        char nm[192], mapped[256];
        snprintf(nm, sizeof nm, fmt, layer, 0);
        if (!hf_tensor(mf, hf_map(c, nm, mapped, sizeof mapped), ne0, ne1, true, &st)) return st;
    }
    float *buf = conv_alloc(c, (size_t)bytes);
    if (!buf) return MMP_ERR_NOMEM;
    for (int64_t e = 0; e < n_exp; e++) {
        char nm[192], mapped[256];
        snprintf(nm, sizeof nm, fmt, layer, (int)e);
        const mmp_tensor_info *t = hf_tensor(mf, hf_map(c, nm, mapped, sizeof mapped), ne0, ne1, true, &st);
        if (!t) return st;
        to_f32(t, buf + e * ne0 * ne1);
    }
    int64_t ne[3] = { ne0, ne1, n_exp };
    return add_f32(c, gg_name, 3, ne, buf);
}

/* The config section the LLM's keys live in: "" for LLM folders, "text_config." for
 * multimodal ones (LLaVA, Qwen2-Audio). Keys are built as sec + key into a per-call buffer. */
typedef struct cfg_sec { const mmp_json *j; const char *sec; char buf[160]; } cfg_sec;
static const char *SK(cfg_sec *s, const char *key) {
    snprintf(s->buf, sizeof s->buf, "%s%s", s->sec, key);
    return s->buf;
}

static enum mmp_status cfg_int(const mmp_json *cfg, const char *key, int64_t *out, int64_t def, bool required) {
    enum mmp_status st = mmp_json_get_int(cfg, key, out);
    if (st == MMP_ERR_NOT_FOUND && !required) { mmp_clear_error(); *out = def; return MMP_OK; }
    if (!st && (*out < 0 || *out > (1ll << 31)))
        return mmp__error(MMP_ERR_FORMAT, "%s: '%s' = %lld is out of range", mmp_json_name(cfg), key, (long long)*out);
    return st;
}

static enum mmp_status hf_read_hparams(cfg_sec *cs, const hf_arch *a, hf_hp *hp) {
    const mmp_json *cfg = cs->j;
    enum mmp_status st;
    memset(hp, 0, sizeof *hp);
    if ((st = cfg_int(cfg, SK(cs, "hidden_size"), &hp->n_embd, 0, true)) ||
        (st = cfg_int(cfg, SK(cs, "num_hidden_layers"), &hp->n_layer, 0, true)) ||
        (st = cfg_int(cfg, SK(cs, "num_attention_heads"), &hp->n_head, 0, true)) ||
        (st = cfg_int(cfg, SK(cs, "num_key_value_heads"), &hp->n_kv, hp->n_head, false)) ||
        (st = cfg_int(cfg, SK(cs, "intermediate_size"), &hp->n_ff, 0, true)) ||
        (st = cfg_int(cfg, SK(cs, "vocab_size"), &hp->n_vocab, 0, true)) ||
        (st = cfg_int(cfg, SK(cs, "max_position_embeddings"), &hp->n_ctx, 2048, false)))
        return st;
    if (hp->n_embd < 1 || hp->n_layer < 1 || hp->n_head < 1 || hp->n_kv < 1 || hp->n_vocab < 1 || hp->n_head % hp->n_kv)
        return mmp__error(MMP_ERR_FORMAT, "%s: hidden_size %lld, num_hidden_layers %lld, num_attention_heads %lld, num_key_value_heads %lld, vocab_size %lld do not fit",
                          mmp_json_name(cfg), (long long)hp->n_embd, (long long)hp->n_layer, (long long)hp->n_head,
                          (long long)hp->n_kv, (long long)hp->n_vocab);
    if ((st = cfg_int(cfg, SK(cs, "head_dim"), &hp->head_dim, hp->n_embd / hp->n_head, false))) return st;
    if (hp->head_dim < 2 || hp->head_dim % 2)
        return mmp__error(MMP_ERR_FORMAT, "%s: head_dim %lld must be even and >= 2", mmp_json_name(cfg), (long long)hp->head_dim);
    if (mmp_json_get_float(cfg, SK(cs, "rms_norm_eps"), &hp->eps)) { mmp_clear_error(); hp->eps = 1e-6; }
    {
        char k2[160];
        snprintf(k2, sizeof k2, "%srope_parameters.rope_theta", cs->sec);
        if (mmp_json_get_float_alt(cfg, &hp->theta, SK(cs, "rope_theta"), k2, NULL)) { mmp_clear_error(); hp->theta = 10000.0; }
    }
    if (mmp_json_get_bool(cfg, SK(cs, "tie_word_embeddings"), &hp->tied)) { mmp_clear_error(); hp->tied = false; }
    if (mmp_json_get_bool(cfg, SK(cs, "attention_bias"), &hp->attn_bias)) { mmp_clear_error(); hp->attn_bias = false; }
    if (a->qkv_bias) hp->attn_bias = true;
    if (a->moe == 1) {
        if ((st = cfg_int(cfg, SK(cs, "num_local_experts"), &hp->n_expert, 0, true)) ||
            (st = cfg_int(cfg, SK(cs, "num_experts_per_tok"), &hp->n_expert_used, 2, false)))
            return st;
        hp->n_ff_exp = hp->n_ff;
    } else if (a->moe == 2) {
        if ((st = cfg_int(cfg, SK(cs, "num_experts"), &hp->n_expert, 0, true)) ||
            (st = cfg_int(cfg, SK(cs, "num_experts_per_tok"), &hp->n_expert_used, 2, false)) ||
            (st = cfg_int(cfg, SK(cs, "moe_intermediate_size"), &hp->n_ff_exp, 0, true)) ||
            (st = cfg_int(cfg, SK(cs, "shared_expert_intermediate_size"), &hp->n_ff_shexp, 0, false)))
            return st;
        int64_t step = 1;
        if ((st = cfg_int(cfg, SK(cs, "decoder_sparse_step"), &step, 1, false))) return st;
        int64_t n_mlp_only = 0;
        if (mmp_json_has(cfg, SK(cs, "mlp_only_layers")) && !mmp_json_array_len(cfg, cs->buf, &n_mlp_only) && n_mlp_only > 0)
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: mlp_only_layers is not empty: mixed dense/MoE qwen2_moe models are not supported", mmp_json_name(cfg));
        if (step != 1)
            return mmp__error(MMP_ERR_UNSUPPORTED, "%s: decoder_sparse_step %lld: only 1 (every layer MoE) is supported", mmp_json_name(cfg), (long long)step);
    }
    if (a->moe && (hp->n_expert < 1 || hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert || hp->n_ff_exp < 1))
        return mmp__error(MMP_ERR_FORMAT, "%s: %lld experts, %lld used per token, expert width %lld do not fit", mmp_json_name(cfg),
                          (long long)hp->n_expert, (long long)hp->n_expert_used, (long long)hp->n_ff_exp);
    return MMP_OK;
}

static enum mmp_status hf_metadata(conv *c, const hf_arch *a, const hf_hp *hp, const char *name) {
    enum mmp_status st;
    char k[96];
#define KEY(s) (snprintf(k, sizeof k, "%s." s, a->gguf_arch), k)
    if ((st = mmp_gguf_writer_add_str(c->w, "general.architecture", a->gguf_arch)) ||
        (st = mmp_gguf_writer_add_str(c->w, "general.name", name)) ||
        (st = mmp_gguf_writer_add_u32(c->w, "general.file_type", file_type_of(c->p->out_type))) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("context_length"), (uint32_t)hp->n_ctx)) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("embedding_length"), (uint32_t)hp->n_embd)) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("block_count"), (uint32_t)hp->n_layer)) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("feed_forward_length"), (uint32_t)hp->n_ff)) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("attention.head_count"), (uint32_t)hp->n_head)) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("attention.head_count_kv"), (uint32_t)hp->n_kv)) ||
        (st = mmp_gguf_writer_add_f32(c->w, KEY("rope.freq_base"), (float)hp->theta)) ||
        (st = mmp_gguf_writer_add_f32(c->w, KEY("attention.layer_norm_rms_epsilon"), (float)hp->eps)) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("rope.dimension_count"), (uint32_t)hp->head_dim)) ||
        (st = mmp_gguf_writer_add_u32(c->w, KEY("vocab_size"), (uint32_t)hp->n_vocab)))
        return st;
    if (hp->head_dim != hp->n_embd / hp->n_head &&
        ((st = mmp_gguf_writer_add_u32(c->w, KEY("attention.key_length"), (uint32_t)hp->head_dim)) ||
         (st = mmp_gguf_writer_add_u32(c->w, KEY("attention.value_length"), (uint32_t)hp->head_dim))))
        return st;
    if (a->moe &&
        ((st = mmp_gguf_writer_add_u32(c->w, KEY("expert_count"), (uint32_t)hp->n_expert)) ||
         (st = mmp_gguf_writer_add_u32(c->w, KEY("expert_used_count"), (uint32_t)hp->n_expert_used))))
        return st;
    if (a->moe == 2 &&
        ((st = mmp_gguf_writer_add_u32(c->w, KEY("expert_feed_forward_length"), (uint32_t)hp->n_ff_exp)) ||
         (st = mmp_gguf_writer_add_u32(c->w, KEY("expert_shared_feed_forward_length"), (uint32_t)hp->n_ff_shexp))))
        return st;
#undef KEY
    return MMP_OK;
}

static enum mmp_status hf_layer(conv *c, const mmp_modelfile *mf, const hf_arch *a, const hf_hp *hp, long long l) {
    enum mmp_status st;
    char hn[192], gn[96];
    const int64_t E = hp->n_embd, qd = hp->n_head * hp->head_dim, kd = hp->n_kv * hp->head_dim;
    const int32_t pq = a->permute_qk ? (int32_t)hp->n_head : 0, pk = a->permute_qk ? (int32_t)hp->n_kv : 0;
#define HN(s) (snprintf(hn, sizeof hn, "model.layers.%lld." s, l), hn)
#define GN(s) (snprintf(gn, sizeof gn, "blk.%lld." s, l), gn)
    if ((st = hf_copy(c, mf, HN("input_layernorm.weight"), GN("attn_norm.weight"), E, 0, 0, true)) ||
        (st = hf_copy(c, mf, HN("self_attn.q_proj.weight"), GN("attn_q.weight"), E, qd, pq, true)) ||
        (st = hf_copy(c, mf, HN("self_attn.k_proj.weight"), GN("attn_k.weight"), E, kd, pk, true)) ||
        (st = hf_copy(c, mf, HN("self_attn.v_proj.weight"), GN("attn_v.weight"), E, kd, 0, true)) ||
        (st = hf_copy(c, mf, HN("self_attn.o_proj.weight"), GN("attn_output.weight"), qd, E, 0, true)) ||
        (st = hf_copy(c, mf, HN("post_attention_layernorm.weight"), GN("ffn_norm.weight"), E, 0, 0, true)))
        return st;
    if (hp->attn_bias &&
        ((st = hf_copy(c, mf, HN("self_attn.q_proj.bias"), GN("attn_q.bias"), qd, 0, pq, a->qkv_bias)) ||
         (st = hf_copy(c, mf, HN("self_attn.k_proj.bias"), GN("attn_k.bias"), kd, 0, pk, a->qkv_bias)) ||
         (st = hf_copy(c, mf, HN("self_attn.v_proj.bias"), GN("attn_v.bias"), kd, 0, 0, a->qkv_bias)) ||
         (st = hf_copy(c, mf, HN("self_attn.o_proj.bias"), GN("attn_output.bias"), E, 0, 0, false))))
        return st;
    if (a->moe == 0) {
        return (st = hf_copy(c, mf, HN("mlp.gate_proj.weight"), GN("ffn_gate.weight"), E, hp->n_ff, 0, true)) ||
               (st = hf_copy(c, mf, HN("mlp.up_proj.weight"), GN("ffn_up.weight"), E, hp->n_ff, 0, true)) ||
               (st = hf_copy(c, mf, HN("mlp.down_proj.weight"), GN("ffn_down.weight"), hp->n_ff, E, 0, true)) ? st : MMP_OK;
    }
    const int64_t F = hp->n_ff_exp, X = hp->n_expert;
    if (a->moe == 1) {
        /* Mixtral: block_sparse_moe.gate (router), experts.E.w1 (gate) / w3 (up) / w2 (down) */
        return (st = hf_copy(c, mf, HN("block_sparse_moe.gate.weight"), GN("ffn_gate_inp.weight"), E, X, 0, true)) ||
               (st = hf_stack(c, mf, "model.layers.%lld.block_sparse_moe.experts.%d.w1.weight", l, X, GN("ffn_gate_exps.weight"), E, F)) ||
               (st = hf_stack(c, mf, "model.layers.%lld.block_sparse_moe.experts.%d.w3.weight", l, X, GN("ffn_up_exps.weight"), E, F)) ||
               (st = hf_stack(c, mf, "model.layers.%lld.block_sparse_moe.experts.%d.w2.weight", l, X, GN("ffn_down_exps.weight"), F, E)) ? st : MMP_OK;
    }
    /* qwen2_moe: mlp.gate (router), mlp.experts.E.{gate,up,down}_proj, shared expert + gate */
    if ((st = hf_copy(c, mf, HN("mlp.gate.weight"), GN("ffn_gate_inp.weight"), E, X, 0, true)) ||
        (st = hf_stack(c, mf, "model.layers.%lld.mlp.experts.%d.gate_proj.weight", l, X, GN("ffn_gate_exps.weight"), E, F)) ||
        (st = hf_stack(c, mf, "model.layers.%lld.mlp.experts.%d.up_proj.weight", l, X, GN("ffn_up_exps.weight"), E, F)) ||
        (st = hf_stack(c, mf, "model.layers.%lld.mlp.experts.%d.down_proj.weight", l, X, GN("ffn_down_exps.weight"), F, E)))
        return st;
    if (hp->n_ff_shexp > 0 &&
        ((st = hf_copy(c, mf, HN("mlp.shared_expert.gate_proj.weight"), GN("ffn_gate_shexp.weight"), E, hp->n_ff_shexp, 0, true)) ||
         (st = hf_copy(c, mf, HN("mlp.shared_expert.up_proj.weight"), GN("ffn_up_shexp.weight"), E, hp->n_ff_shexp, 0, true)) ||
         (st = hf_copy(c, mf, HN("mlp.shared_expert.down_proj.weight"), GN("ffn_down_shexp.weight"), hp->n_ff_shexp, E, 0, true)) ||
         (st = hf_copy(c, mf, HN("mlp.shared_expert_gate.weight"), GN("ffn_gate_inp_shexp.weight"), E, 1, 0, true))))
        return st;
#undef HN
#undef GN
    return MMP_OK;
}

enum mmp_status mmp_convert_hf_to_gguf(const char *hf_dir, const char *out_path, const mmp_convert_params *params) {
    mmp_convert_params p = params ? *params : mmp_convert_params_default();
    if (!hf_dir || !out_path) return mmp__error(MMP_ERR_INVALID_ARG, "convert: NULL path");
    if (!mmp_convert_type_ok(p.out_type))
        return mmp__error(MMP_ERR_UNSUPPORTED, "convert: output type %s is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)",
                          mmp_type_name(p.out_type));
    if (p.tokenizer_llama2c && p.vocab_gguf)
        return mmp__error(MMP_ERR_INVALID_ARG, "convert: give a llama2.c tokenizer or a vocab GGUF file, not both");
    mmp_modelfile *mf = mmp_modelfile_open(hf_dir);
    if (!mf) return MMP_ERR_IO; /* the message names the folder */
    conv c = { .p = &p, .src = hf_dir };
    enum mmp_status st = MMP_OK;
    const mmp_json *cfg = mmp_modelfile_config(mf);
    if (!cfg) { st = mmp__error(MMP_ERR_NOT_FOUND, "convert: %s has no config.json", hf_dir); goto done; }
    const char *mt;
    if ((st = mmp_json_get_string(cfg, "model_type", &mt))) goto done;
    /* multimodal folders (LLaVA, Qwen2-Audio): the LLM part, from text_config and the
     * language model's tensors (the encoder goes to an mmproj file: mmp_convert_llava_mmproj) */
    cfg_sec cs = { .j = cfg, .sec = "" };
    snprintf(c.mpfx, sizeof c.mpfx, "model.");
    snprintf(c.hpfx, sizeof c.hpfx, "lm_head.");
    if (mmp_json_kind_of(cfg, "text_config") == MMP_JSON_OBJECT) {
        const char *outer = mt;
        if ((st = mmp_json_get_string(cfg, "text_config.model_type", &mt))) {
            mmp__error_prefix("convert: %s (model_type '%s'): ", mmp_json_name(cfg), outer);
            goto done;
        }
        cs.sec = "text_config.";
        /* Hub names, newer transformers names, Qwen2-Audio's nesting */
        static const char *const mp[][2] = {
            { "language_model.model.", "language_model.lm_head." },
            { "model.language_model.", "lm_head." },
            { "language_model.model.model.", "language_model.lm_head." },
            { "language_model.", "lm_head." },
        };
        size_t i = 0;
        for (; i < sizeof mp / sizeof mp[0]; i++) {
            char nm[160];
            snprintf(nm, sizeof nm, "%sembed_tokens.weight", mp[i][0]);
            if (mmp_modelfile_find(mf, nm)) break;
        }
        mmp_clear_error();
        if (i == sizeof mp / sizeof mp[0]) {
            st = mmp__error(MMP_ERR_NOT_FOUND, "convert: %s: model_type '%s' but no language model tensors (looked for "
                            "[language_model.model.|model.language_model.|language_model.]embed_tokens.weight)", hf_dir, outer);
            goto done;
        }
        snprintf(c.mpfx, sizeof c.mpfx, "%s", mp[i][0]);
        snprintf(c.hpfx, sizeof c.hpfx, "%s", mp[i][1]);
        conv_log(&c, MMP_LOG_INFO, "%s: model_type '%s': converting its language model (%s, tensors '%s*'); "
                 "the encoder and projector go to an mmproj file (--mmproj)", hf_dir, outer, mt, c.mpfx);
    }
    const hf_arch *a = NULL;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (!strcmp(mt, k_archs[i].model_type)) a = &k_archs[i];
    if (!a) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "convert: %s: %smodel_type '%s' is not supported (llama, mistral, mixtral, qwen2, qwen2_moe)",
                        mmp_json_name(cfg), cs.sec, mt);
        goto done;
    }
    hf_hp hp;
    if ((st = hf_read_hparams(&cs, a, &hp))) goto done;
    if (!(c.w = mmp_gguf_writer_new())) { st = MMP_ERR_NOMEM; goto done; }
    {
        /* general.name: the folder's base name without trailing slashes */
        char nm[256];
        snprintf(nm, sizeof nm, "%s", hf_dir);
        size_t n = strlen(nm);
        while (n > 1 && nm[n - 1] == '/') nm[--n] = '\0';
        if ((st = hf_metadata(&c, a, &hp, p.name ? p.name : base_name(nm)))) goto done;
    }
    /* tokenizer, with BOS/EOS checked against config.json */
    {
        int64_t cbos = -1, ceos = -1, tbos = -1, teos = -1, ntok = -1;
        if (mmp_json_get_int(cfg, SK(&cs, "bos_token_id"), &cbos)) { mmp_clear_error(); cbos = -1; }
        if (mmp_json_get_int(cfg, SK(&cs, "eos_token_id"), &ceos)) { mmp_clear_error(); ceos = -1; }
        if (p.tokenizer_llama2c) {
            if ((st = write_llama2c_tokenizer(&c, p.tokenizer_llama2c, (int32_t)hp.n_vocab))) goto done;
            tbos = 1; teos = 2; ntok = hp.n_vocab;
        } else if (p.vocab_gguf) {
            if ((st = copy_gguf_tokenizer(&c, p.vocab_gguf, &ntok, &tbos, &teos))) goto done;
            if (ntok != hp.n_vocab) {
                st = mmp__error(MMP_ERR_SHAPE, "convert: %s has %lld tokens but %s says vocab_size %lld", p.vocab_gguf,
                                (long long)ntok, mmp_json_name(cfg), (long long)hp.n_vocab);
                goto done;
            }
        } else {
            conv_log(&c, MMP_LOG_WARN, "no tokenizer given (--tokenizer / --vocab): the GGUF file will have no tokenizer.* keys");
        }
        if (ntok >= 0 && ((cbos >= 0 && tbos >= 0 && cbos != tbos) || (ceos >= 0 && teos >= 0 && ceos != teos))) {
            st = mmp__error(MMP_ERR_FORMAT, "convert: the tokenizer's bos/eos ids (%lld/%lld) disagree with %s (bos_token_id %lld, eos_token_id %lld)",
                            (long long)tbos, (long long)teos, mmp_json_name(cfg), (long long)cbos, (long long)ceos);
            goto done;
        }
    }
    /* the chat template of tokenizer_config.json, unless a copied vocab already brought one */
    if (mmp_modelfile_has_file(mf, "tokenizer_config.json") && !(p.vocab_gguf && vocab_has_template(p.vocab_gguf))) {
        char *tp = mmp_modelfile_file_path(mf, "tokenizer_config.json");
        mmp_json *tj = tp ? mmp_json_open(tp) : NULL;
        const char *tmpl;
        if (tj && mmp_json_kind_of(tj, "chat_template") == MMP_JSON_STRING && !mmp_json_get_string(tj, "chat_template", &tmpl))
            st = mmp_gguf_writer_add_str(c.w, "tokenizer.chat_template", tmpl);
        else if (tj && mmp_json_has(tj, "chat_template"))
            conv_log(&c, MMP_LOG_WARN, "%s: chat_template is not a single string: not copied", tp);
        mmp_json_free(tj);
        free(tp);
        mmp_clear_error();
        if (st) goto done;
    }
    if ((st = hf_copy(&c, mf, "model.embed_tokens.weight", "token_embd.weight", hp.n_embd, hp.n_vocab, 0, true))) goto done;
    for (long long l = 0; l < hp.n_layer; l++)
        if ((st = hf_layer(&c, mf, a, &hp, l))) goto done;
    if ((st = hf_copy(&c, mf, "model.norm.weight", "output_norm.weight", hp.n_embd, 0, 0, true))) goto done;
    if (!hp.tied && (st = hf_copy(&c, mf, "lm_head.weight", "output.weight", hp.n_embd, hp.n_vocab, 0, true))) goto done;
    st = mmp_gguf_writer_write(c.w, out_path);
done:
    conv_free(&c);
    mmp_modelfile_free(mf);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* LLaVA vision tower + projector -> llama.cpp mmproj GGUF                                   */

/* One tensor of the tower/projector -> GGUF, shape checked (ggml order, nd entries).
 * force: the type to write (-1: the converter's rules, pick_type). */
static enum mmp_status mm_copy(conv *c, const mmp_modelfile *mf, const char *pfx, const char *hf, const char *gg, int nd,
                               const int64_t *ne, int force, bool required) {
    char nm[256];
    snprintf(nm, sizeof nm, "%s%s", pfx, hf);
    const mmp_tensor_info *t = mmp_modelfile_find(mf, nm);
    if (!t) {
        if (!required) { mmp_clear_error(); return MMP_OK; }
        return mmp__error(MMP_ERR_NOT_FOUND, "convert --mmproj: %s: tensor %s is missing", mmp_modelfile_path(mf), nm);
    }
    bool ok = t->n_dims == nd;
    for (int d = 0; d < nd && ok; d++) ok = t->ne[d] == ne[d];
    if (!ok) {
        char got[96] = "", want[96] = "";
        for (int d = 0; d < t->n_dims && d < 4; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        for (int d = 0; d < nd; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)ne[d]);
        return mmp__error(MMP_ERR_SHAPE, "convert --mmproj: %s: tensor %s has shape {%s} (ggml order) but config.json implies {%s}",
                          mmp_modelfile_path(mf), nm, got, want);
    }
    if (t->type != MMP_TYPE_F32 && t->type != MMP_TYPE_F16 && t->type != MMP_TYPE_BF16)
        return mmp__error(MMP_ERR_UNSUPPORTED, "convert --mmproj: %s: tensor %s has dtype %s (only F32, F16, BF16 are converted)",
                          mmp_modelfile_path(mf), nm, mmp_type_name(t->type));
    enum mmp_status st = MMP_OK;
    const float *d = hf_data(c, t, 0, &st);
    if (!d) return st;
    if (force < 0) return add_f32(c, gg, nd, ne, d);
    if (force == (int)MMP_TYPE_F32 || c->p->out_type == MMP_TYPE_F32) {
        st = mmp_gguf_writer_add_tensor(c->w, gg, MMP_TYPE_F32, nd, ne, d);
        if (st) mmp__error_prefix("convert --mmproj: %s: ", c->src);
        return st;
    }
    /* forced F16 (the patch embedding: ggml's conv2d reads F16/F32 kernels only) */
    int64_t n = 1;
    for (int k = 0; k < nd; k++) n *= ne[k];
    uint16_t *h = conv_alloc(c, (size_t)n * sizeof *h);
    if (!h) return MMP_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) h[i] = mmp_fp32_to_fp16(d[i]);
    st = mmp_gguf_writer_add_tensor(c->w, gg, MMP_TYPE_F16, nd, ne, h);
    if (st) mmp__error_prefix("convert --mmproj: %s: ", c->src);
    return st;
}

enum mmp_status mmp_convert_llava_mmproj(const char *hf_dir, const char *out_path, const mmp_convert_params *params) {
    mmp_convert_params p = params ? *params : mmp_convert_params_default();
    if (!hf_dir || !out_path) return mmp__error(MMP_ERR_INVALID_ARG, "convert --mmproj: NULL path");
    if (!mmp_convert_type_ok(p.out_type))
        return mmp__error(MMP_ERR_UNSUPPORTED, "convert --mmproj: output type %s is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)",
                          mmp_type_name(p.out_type));
    mmp_modelfile *mf = mmp_modelfile_open(hf_dir);
    if (!mf) return MMP_ERR_IO;
    conv c = { .p = &p, .src = hf_dir };
    mmp_vit *vit = NULL;
    enum mmp_status st = MMP_OK;
    const mmp_json *cfg = mmp_modelfile_config(mf);
    const char *mt = NULL;
    if (!cfg) { st = mmp__error(MMP_ERR_NOT_FOUND, "convert --mmproj: %s has no config.json", hf_dir); goto done; }
    if (mmp_json_get_string(cfg, "model_type", &mt) || strcmp(mt, "llava")) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "convert --mmproj: %s: model_type '%s' is not a LLaVA model (want \"llava\": "
                        "LlavaForConditionalGeneration with a CLIP/SigLIP vision_config and a multi_modal_projector)",
                        mmp_json_name(cfg), mt ? mt : "(none)");
        goto done;
    }
    /* The tower: hyper-parameters and image processor through the encoder's own loader (it
     * checks every tensor's shape), then copied tensor by tensor under mmproj names. */
    if (!(vit = mmp_vit_load(hf_dir))) { st = MMP_ERR_FORMAT; mmp__error_prefix("convert --mmproj: "); goto done; }
    const mmp_vit_hparams *vh = mmp_vit_get_hparams(vit);
    const mmp_preproc *pre = mmp_vit_get_preproc(vit);
    /* feature layer: HF hidden_states index; llama.cpp's LLaVA files hold the layers up to it
     * (block_count) and always drop the class token (strategy "default") */
    int64_t fl = -2;
    if (mmp_json_has(cfg, "vision_feature_layer") &&
        (mmp_json_kind_of(cfg, "vision_feature_layer") != MMP_JSON_NUMBER || mmp_json_get_int(cfg, "vision_feature_layer", &fl))) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "convert --mmproj: %s: vision_feature_layer must be a single layer index", mmp_json_name(cfg));
        goto done;
    }
    int64_t n_keep = fl < 0 ? vh->n_layer + 1 + fl : fl;
    if (n_keep < 1 || n_keep > vh->n_layer) {
        st = mmp__error(MMP_ERR_FORMAT, "convert --mmproj: %s: vision_feature_layer %lld does not pick one of the %d layers' outputs",
                        mmp_json_name(cfg), (long long)fl, (int)vh->n_layer);
        goto done;
    }
    const char *strat = "default";
    if (mmp_json_has(cfg, "vision_feature_select_strategy") && mmp_json_get_string(cfg, "vision_feature_select_strategy", &strat)) {
        st = MMP_ERR_FORMAT;
        goto done;
    }
    if (strcmp(strat, "default") || vh->arch != MMP_VIT_CLIP) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "convert --mmproj: %s: vision_feature_select_strategy '%s' with a %s tower: llama.cpp's "
                        "\"mlp\" projector type always drops the class token of a CLIP tower", mmp_json_name(cfg), strat,
                        vh->arch == MMP_VIT_CLIP ? "CLIP" : "SigLIP");
        goto done;
    }
    const char *act = "gelu";
    if (mmp_json_has(cfg, "projector_hidden_act") && mmp_json_get_string(cfg, "projector_hidden_act", &act)) { st = MMP_ERR_FORMAT; goto done; }
    if (strcmp(act, "gelu")) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "convert --mmproj: %s: projector_hidden_act '%s': the mmproj \"mlp\" projector is GELU",
                        mmp_json_name(cfg), act);
        goto done;
    }
    const char *vact = "quick_gelu";
    if (mmp_json_has(cfg, "vision_config.hidden_act") && mmp_json_get_string(cfg, "vision_config.hidden_act", &vact)) { st = MMP_ERR_FORMAT; goto done; }
    if (strcmp(vact, "quick_gelu") && strcmp(vact, "gelu")) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "convert --mmproj: %s: vision_config.hidden_act '%s' (an mmproj CLIP tower is quick_gelu or gelu)",
                        mmp_json_name(cfg), vact);
        goto done;
    }
    /* tensor prefixes: Hub names and newer transformers names */
    static const char *const vpfx[] = { "vision_tower.vision_model.", "model.vision_tower.vision_model.", "vision_tower.", "model.vision_tower.", NULL };
    static const char *const ppfx[] = { "multi_modal_projector.", "model.multi_modal_projector.", NULL };
    const char *vp = NULL, *pp = NULL;
    for (int i = 0; vpfx[i] && !vp; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "%sembeddings.patch_embedding.weight", vpfx[i]);
        if (mmp_modelfile_find(mf, nm)) vp = vpfx[i];
    }
    for (int i = 0; ppfx[i] && !pp; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, "%slinear_1.weight", ppfx[i]);
        if (mmp_modelfile_find(mf, nm)) pp = ppfx[i];
    }
    mmp_clear_error();
    if (!vp || !pp) {
        st = mmp__error(MMP_ERR_NOT_FOUND, "convert --mmproj: %s: no %s (looked for '%s')", hf_dir, vp ? "projector" : "vision tower",
                        vp ? "[model.]multi_modal_projector.linear_1.weight" : "[model.]vision_tower.[vision_model.]embeddings.patch_embedding.weight");
        goto done;
    }
    int64_t n_text = 0;
    {
        char nm[160];
        snprintf(nm, sizeof nm, "%slinear_2.weight", pp);
        const mmp_tensor_info *t2 = mmp_modelfile_find(mf, nm);
        if (!t2 || t2->n_dims != 2) {
            st = mmp__error(MMP_ERR_NOT_FOUND, "convert --mmproj: %s: tensor %s is missing or not 2-D (the LLaVA MLP has two layers)", hf_dir, nm);
            goto done;
        }
        n_text = t2->ne[1];
    }
    if (!(c.w = mmp_gguf_writer_new())) { st = MMP_ERR_NOMEM; goto done; }
    {
        char nm[256];
        snprintf(nm, sizeof nm, "%s", hf_dir);
        size_t n = strlen(nm);
        while (n > 1 && nm[n - 1] == '/') nm[--n] = '\0';
        float mean[3], sd[3];
        for (int k = 0; k < 3; k++) { mean[k] = pre->mean[k]; sd[k] = pre->std[k]; }
        const int64_t d = vh->n_embd;
        if ((st = mmp_gguf_writer_add_str(c.w, "general.architecture", "clip")) ||
            (st = mmp_gguf_writer_add_str(c.w, "general.name", p.name ? p.name : base_name(nm))) ||
            (st = mmp_gguf_writer_add_str(c.w, "general.description", "image encoder for LLaVA")) ||
            (st = mmp_gguf_writer_add_u32(c.w, "general.file_type", file_type_of(p.out_type))) ||
            (st = mmp_gguf_writer_add_bool(c.w, "clip.has_text_encoder", false)) ||
            (st = mmp_gguf_writer_add_bool(c.w, "clip.has_vision_encoder", true)) ||
            (st = mmp_gguf_writer_add_bool(c.w, "clip.has_llava_projector", true)) ||
            (st = mmp_gguf_writer_add_str(c.w, "clip.projector_type", "mlp")) ||
            (st = mmp_gguf_writer_add_bool(c.w, "clip.use_gelu", !strcmp(vact, "gelu"))) ||
            (st = mmp_gguf_writer_add_u32(c.w, "clip.vision.image_size", (uint32_t)vh->image_size)) ||
            (st = mmp_gguf_writer_add_u32(c.w, "clip.vision.patch_size", (uint32_t)vh->patch_size)) ||
            (st = mmp_gguf_writer_add_u32(c.w, "clip.vision.embedding_length", (uint32_t)d)) ||
            (st = mmp_gguf_writer_add_u32(c.w, "clip.vision.feed_forward_length", (uint32_t)vh->n_ff)) ||
            (st = mmp_gguf_writer_add_u32(c.w, "clip.vision.projection_dim", (uint32_t)n_text)) ||
            (st = mmp_gguf_writer_add_u32(c.w, "clip.vision.attention.head_count", (uint32_t)vh->n_head)) ||
            (st = mmp_gguf_writer_add_f32(c.w, "clip.vision.attention.layer_norm_epsilon", vh->eps)) ||
            (st = mmp_gguf_writer_add_u32(c.w, "clip.vision.block_count", (uint32_t)n_keep)) ||
            (st = mmp_gguf_writer_add_arr(c.w, "clip.vision.image_mean", MMP_GGUF_F32, mean, 3)) ||
            (st = mmp_gguf_writer_add_arr(c.w, "clip.vision.image_std", MMP_GGUF_F32, sd, 3)))
            goto done;
        /* embeddings: the patch kernel F16 at most (ggml's conv2d), the rest F32 */
        const int64_t pw[4] = { vh->patch_size, vh->patch_size, 3, d }, vd[1] = { d }, pos[2] = { d, vh->n_pos };
        int pk = p.out_type == MMP_TYPE_F32 ? (int)MMP_TYPE_F32 : (int)MMP_TYPE_F16;
        if ((st = mm_copy(&c, mf, vp, "embeddings.patch_embedding.weight", "v.patch_embd.weight", 4, pw, pk, true)) ||
            (st = mm_copy(&c, mf, vp, "embeddings.class_embedding", "v.class_embd", 1, vd, MMP_TYPE_F32, true)) ||
            (st = mm_copy(&c, mf, vp, "embeddings.position_embedding.weight", "v.position_embd.weight", 2, pos, MMP_TYPE_F32, true)) ||
            (st = mm_copy(&c, mf, vp, "pre_layrnorm.weight", "v.pre_ln.weight", 1, vd, -1, false)) ||
            (st = mm_copy(&c, mf, vp, "pre_layrnorm.bias", "v.pre_ln.bias", 1, vd, -1, false)))
            goto done;
        /* layers up to the feature layer; post_layernorm is not applied to hidden_states[i] */
        const int64_t F = vh->n_ff, mdd[2] = { d, d }, mdf[2] = { d, F }, mfd[2] = { F, d }, vf[1] = { F };
        static const struct { const char *hf, *gg; int shape; } L[] = {
            { "layer_norm1.weight", "ln1.weight", 0 }, { "layer_norm1.bias", "ln1.bias", 0 },
            { "self_attn.q_proj.weight", "attn_q.weight", 1 }, { "self_attn.q_proj.bias", "attn_q.bias", 0 },
            { "self_attn.k_proj.weight", "attn_k.weight", 1 }, { "self_attn.k_proj.bias", "attn_k.bias", 0 },
            { "self_attn.v_proj.weight", "attn_v.weight", 1 }, { "self_attn.v_proj.bias", "attn_v.bias", 0 },
            { "self_attn.out_proj.weight", "attn_out.weight", 1 }, { "self_attn.out_proj.bias", "attn_out.bias", 0 },
            { "layer_norm2.weight", "ln2.weight", 0 }, { "layer_norm2.bias", "ln2.bias", 0 },
            /* fc1 [F, d] is ffn_up, fc2 [d, F] ffn_down (convert_hf_to_gguf.py's names; the legacy
             * converter swapped them and clip.cpp tells the two apart by shape) */
            { "mlp.fc1.weight", "ffn_up.weight", 2 }, { "mlp.fc1.bias", "ffn_up.bias", 3 },
            { "mlp.fc2.weight", "ffn_down.weight", 4 }, { "mlp.fc2.bias", "ffn_down.bias", 0 },
        };
        const int64_t *shapes[5] = { vd, mdd, mdf, vf, mfd };
        const int dims[5] = { 1, 2, 2, 1, 2 };
        for (int64_t l = 0; l < n_keep; l++)
            for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
                char hn[128], gn[96];
                snprintf(hn, sizeof hn, "encoder.layers.%lld.%s", (long long)l, L[i].hf);
                snprintf(gn, sizeof gn, "v.blk.%lld.%s", (long long)l, L[i].gg);
                if ((st = mm_copy(&c, mf, vp, hn, gn, dims[L[i].shape], shapes[L[i].shape], -1, true))) goto done;
            }
        if (n_keep < vh->n_layer)
            conv_log(&c, MMP_LOG_INFO, "vision tower: %lld of %d layers written (vision_feature_layer %lld), post_layernorm dropped",
                     (long long)n_keep, (int)vh->n_layer, (long long)fl);
        /* projector: linear_1 -> mm.0, GELU, linear_2 -> mm.2 */
        const int64_t w1[2] = { d, n_text }, w2[2] = { n_text, n_text }, bt[1] = { n_text };
        if ((st = mm_copy(&c, mf, pp, "linear_1.weight", "mm.0.weight", 2, w1, -1, true)) ||
            (st = mm_copy(&c, mf, pp, "linear_1.bias", "mm.0.bias", 1, bt, -1, false)) ||
            (st = mm_copy(&c, mf, pp, "linear_2.weight", "mm.2.weight", 2, w2, -1, true)) ||
            (st = mm_copy(&c, mf, pp, "linear_2.bias", "mm.2.bias", 1, bt, -1, false)))
            goto done;
    }
    st = mmp_gguf_writer_write(c.w, out_path);
done:
    mmp_vit_free(vit);
    conv_free(&c);
    mmp_modelfile_free(mf);
    return st;
}
