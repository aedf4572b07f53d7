/* Multimodal prompts (include/mmpipe/mtmd.h): text with media markers -> positions whose rows
 * are token embeddings or projected media rows -> mmp_llm_decode with embeddings; and the
 * media model that loads the encoder + projector feeding an LLM and turns images / audio into
 * those rows.
 *
 * A prompt is stored flat: ids [n] (text token ids; the placeholder id or MMP_TOKEN_NULL at
 * media positions), row [n] (-1 for text, else the index of the position's media row) and the
 * media rows themselves, copied, in position order: rows [n_media_pos, n_embd]. */
#include "mmpipe/mtmd.h"
#include "mmpipe/audio.h"
#include "mmpipe/json.h"
#include "mmpipe/modelfile.h"
#include "mmpipe/vision.h"
#include "core/util.h"
#include "encoders/audio-impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Sanity limits: a prompt longer than this is a caller bug or hostile input. */
#define MM_MAX_POS (1 << 24)

const char *mmp_media_kind_name(int kind) {
    switch (kind) {
    case MMP_MEDIA_IMAGE: return "image";
    case MMP_MEDIA_AUDIO: return "audio";
    default: return "unknown";
    }
}

mmp_mm_markers mmp_mm_markers_default(void) {
    mmp_mm_markers m;
    memset(&m, 0, sizeof m);
    m.image_token = MMP_TOKEN_NULL;
    m.audio_token = MMP_TOKEN_NULL;
    return m;
}

/* ------------------------------------------------------------------ prompt ---- */

struct mmp_mm_prompt {
    int32_t n;              /* positions */
    int32_t *ids;           /* [n] */
    int32_t *row;           /* [n]: -1 text, else index into rows */
    int32_t n_media_pos;
    int32_t n_embd;         /* media row width (0 without media) */
    float *rows;            /* [n_media_pos, n_embd] */
};

void mmp_mm_prompt_free(mmp_mm_prompt *p) {
    if (!p) return;
    free(p->ids);
    free(p->row);
    free(p->rows);
    free(p);
}

int32_t mmp_mm_prompt_n_pos(const mmp_mm_prompt *p) { return p ? p->n : 0; }
int32_t mmp_mm_prompt_n_media_pos(const mmp_mm_prompt *p) { return p ? p->n_media_pos : 0; }
int32_t mmp_mm_prompt_n_embd(const mmp_mm_prompt *p) { return p ? p->n_embd : 0; }
const int32_t *mmp_mm_prompt_ids(const mmp_mm_prompt *p) { return p ? p->ids : NULL; }
bool mmp_mm_prompt_is_media(const mmp_mm_prompt *p, int32_t i) {
    return p && i >= 0 && i < p->n && p->row[i] >= 0;
}

/* Check the media items: known kinds, rows present, one common width. *n_embd gets it (0 if
 * there are no items), tot[kind] the rows per kind. */
static enum mmp_status check_media(const mmp_media *media, int n_media, int32_t *n_embd, int64_t tot[MMP_MEDIA_KIND_COUNT]) {
    *n_embd = 0;
    for (int k = 0; k < MMP_MEDIA_KIND_COUNT; k++) tot[k] = 0;
    if (n_media < 0 || (n_media > 0 && !media))
        return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt: %d media items but no array", n_media);
    for (int i = 0; i < n_media; i++) {
        const mmp_media *m = &media[i];
        if ((int)m->kind < 0 || m->kind >= MMP_MEDIA_KIND_COUNT)
            return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt: media item %d has unknown kind %d", i, (int)m->kind);
        if (m->n_tokens <= 0 || m->n_embd <= 0 || !m->embd)
            return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt: %s item %d has no embeddings (%d rows of width %d)",
                              mmp_media_kind_name(m->kind), i, m->n_tokens, m->n_embd);
        if (*n_embd && m->n_embd != *n_embd)
            return mmp__error(MMP_ERR_SHAPE, "multimodal prompt: %s item %d has width %d but item 0 has width %d",
                              mmp_media_kind_name(m->kind), i, m->n_embd, *n_embd);
        *n_embd = m->n_embd;
        tot[m->kind] += m->n_tokens;
        if (tot[m->kind] > MM_MAX_POS)
            return mmp__error(MMP_ERR_LIMIT, "multimodal prompt: more than %d %s rows", MM_MAX_POS, mmp_media_kind_name(m->kind));
    }
    return MMP_OK;
}

static mmp_mm_prompt *prompt_alloc(int64_t n, int64_t n_media_pos, int32_t n_embd) {
    if (n <= 0 || n > MM_MAX_POS)
        return mmp__error_null(MMP_ERR_LIMIT, "multimodal prompt: %lld positions (must be 1..%d)", (long long)n, MM_MAX_POS);
    mmp_mm_prompt *p = mmp__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = (int32_t)n;
    p->n_embd = n_media_pos > 0 ? n_embd : 0;
    p->ids = mmp__calloc((size_t)n, sizeof *p->ids);
    p->row = mmp__calloc((size_t)n, sizeof *p->row);
    if (!p->ids || !p->row) { mmp_mm_prompt_free(p); return NULL; }
    if (n_media_pos > 0) {
        uint64_t cnt;
        if (!mmp__mul_ok((uint64_t)n_media_pos, (uint64_t)n_embd, &cnt) || !(p->rows = mmp__calloc(cnt, sizeof *p->rows))) {
            mmp_mm_prompt_free(p);
            return NULL;
        }
    }
    return p;
}

/* Cursor over the rows of the items of one kind, in the order given. */
typedef struct row_cursor { int item, row; } row_cursor;

static const float *next_row(const mmp_media *media, int n_media, enum mmp_media_kind kind, row_cursor *c) {
    while (c->item < n_media && (media[c->item].kind != kind || c->row >= media[c->item].n_tokens)) {
        c->item++;
        c->row = 0;
    }
    if (c->item >= n_media) return NULL;
    const mmp_media *m = &media[c->item];
    return m->embd + (size_t)c->row++ * (size_t)m->n_embd;
}

mmp_mm_prompt *mmp_mm_prompt_from_ids(const int32_t *ids, int32_t n, const mmp_mm_markers *markers,
                                      const mmp_media *media, int n_media) {
    if (!ids || n <= 0) return mmp__error_null(MMP_ERR_INVALID_ARG, "multimodal prompt: no token ids (n = %d)", n);
    mmp_mm_markers mk = markers ? *markers : mmp_mm_markers_default();
    if (mk.image_token >= 0 && mk.image_token == mk.audio_token)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "multimodal prompt: image and audio placeholders are the same id %d",
                               mk.image_token);
    int32_t n_embd;
    int64_t tot[MMP_MEDIA_KIND_COUNT];
    if (check_media(media, n_media, &n_embd, tot)) return NULL;
    const int32_t ph[MMP_MEDIA_KIND_COUNT] = { mk.image_token, mk.audio_token };
    int64_t cnt[MMP_MEDIA_KIND_COUNT] = { 0, 0 };
    for (int32_t i = 0; i < n; i++)
        for (int k = 0; k < MMP_MEDIA_KIND_COUNT; k++)
            if (ph[k] >= 0 && ids[i] == ph[k]) cnt[k]++;
    for (int k = 0; k < MMP_MEDIA_KIND_COUNT; k++) {
        if (tot[k] > 0 && ph[k] < 0)
            return mmp__error_null(MMP_ERR_INVALID_ARG, "multimodal prompt: %s items given but the model has no %s placeholder token",
                                   mmp_media_kind_name(k), mmp_media_kind_name(k));
        if (cnt[k] != tot[k])
            return mmp__error_null(MMP_ERR_SHAPE,
                                   "multimodal prompt: the prompt has %lld %s placeholder tokens (id %d) but the %s items give %lld embedding rows",
                                   (long long)cnt[k], mmp_media_kind_name(k), ph[k], mmp_media_kind_name(k), (long long)tot[k]);
    }
    mmp_mm_prompt *p = prompt_alloc(n, cnt[0] + cnt[1], n_embd);
    if (!p) return NULL;
    row_cursor cur[MMP_MEDIA_KIND_COUNT] = { { 0, 0 }, { 0, 0 } };
    for (int32_t i = 0; i < n; i++) {
        p->ids[i] = ids[i];
        p->row[i] = -1;
        for (int k = 0; k < MMP_MEDIA_KIND_COUNT; k++) {
            if (ph[k] < 0 || ids[i] != ph[k]) continue;
            const float *r = next_row(media, n_media, (enum mmp_media_kind)k, &cur[k]);
            MMP_ASSERT(r); /* counts checked above */
            memcpy(p->rows + (size_t)p->n_media_pos * (size_t)n_embd, r, (size_t)n_embd * sizeof *r);
            p->row[i] = p->n_media_pos++;
        }
    }
    return p;
}

/* A marker found in the text. */
typedef struct marker {
    size_t off, len;
    int kind;        /* MMP_MEDIA_* or -1 = any */
    bool own;        /* the model's own placeholder text (no begin/end wrapping) */
} marker;

typedef struct marker_pat {
    const char *text;
    size_t len;
    int kind;
    bool own;
} marker_pat;

/* The text of a placeholder id in the vocabulary, or NULL. */
static const char *placeholder_text(const mmp_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0) return NULL;
    const char *s = mmp_tokenizer_token_text(tok, id, len);
    return (s && *len > 0) ? s : NULL;
}

/* Growable byte buffer for the expanded text. */
typedef struct sbuf { char *p; size_t n, cap; bool oom; } sbuf;
static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom || !n) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Growable id list. */
typedef struct ibuf { int32_t *p; size_t n, cap; int32_t *row; } ibuf;
static bool ib_put(ibuf *b, int32_t id, int32_t row) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        int32_t *q = realloc(b->p, cap * sizeof *q);
        if (!q) return false;
        b->p = q;
        int32_t *r = realloc(b->row, cap * sizeof *r);
        if (!r) return false;
        b->row = r;
        b->cap = cap;
    }
    b->p[b->n] = id;
    b->row[b->n] = row;
    b->n++;
    return true;
}

mmp_mm_prompt *mmp_mm_prompt_from_text(const mmp_tokenizer *tok, const char *text, size_t len, bool add_special,
                                       const mmp_mm_markers *markers, const mmp_media *media, int n_media) {
    if (!tok || (!text && len)) return mmp__error_null(MMP_ERR_INVALID_ARG, "multimodal prompt: no tokenizer or no text");
    if (!text) text = "";
    mmp_mm_markers mk = markers ? *markers : mmp_mm_markers_default();
    int32_t n_embd;
    int64_t tot[MMP_MEDIA_KIND_COUNT];
    if (check_media(media, n_media, &n_embd, tot)) return NULL;

    /* marker patterns: the model's own placeholders first (they win ties, e.g. LLaVA "<image>") */
    marker_pat pats[5];
    int n_pats = 0;
    const int32_t ph[MMP_MEDIA_KIND_COUNT] = { mk.image_token, mk.audio_token };
    const char *ph_text[MMP_MEDIA_KIND_COUNT] = { NULL, NULL };
    size_t ph_len[MMP_MEDIA_KIND_COUNT] = { 0, 0 };
    for (int k = 0; k < MMP_MEDIA_KIND_COUNT; k++) {
        ph_text[k] = placeholder_text(tok, ph[k], &ph_len[k]);
        if (ph_text[k]) pats[n_pats++] = (marker_pat){ ph_text[k], ph_len[k], k, true };
    }
    pats[n_pats++] = (marker_pat){ "<__media__>", 11, -1, false };
    pats[n_pats++] = (marker_pat){ "<image>", 7, MMP_MEDIA_IMAGE, false };
    pats[n_pats++] = (marker_pat){ "<audio>", 7, MMP_MEDIA_AUDIO, false };

    /* find the markers (longest match at each offset) */
    marker *mks = NULL;
    size_t n_mk = 0, cap_mk = 0;
    for (size_t i = 0; i < len;) {
        int best = -1;
        for (int k = 0; k < n_pats; k++)
            if (pats[k].len <= len - i && !memcmp(text + i, pats[k].text, pats[k].len) && (best < 0 || pats[k].len > pats[best].len))
                best = k;
        if (best < 0) { i++; continue; }
        if (n_mk == cap_mk) {
            size_t cap = cap_mk ? cap_mk * 2 : 8;
            marker *q = realloc(mks, cap * sizeof *q);
            if (!q) { free(mks); return mmp__error_null(MMP_ERR_NOMEM, "multimodal prompt: out of memory"); }
            mks = q;
            cap_mk = cap;
        }
        mks[n_mk++] = (marker){ i, pats[best].len, pats[best].kind, pats[best].own };
        i += pats[best].len;
    }
    mmp_mm_prompt *res = NULL;
    sbuf sb = { 0 };
    ibuf ib = { 0 };
    int32_t *tids = NULL;
    size_t n_tids = 0;
    if (n_mk != (size_t)n_media) {
        mmp__error(MMP_ERR_SHAPE, "multimodal prompt: the text has %zu media markers but %d media items were given "
                   "(markers: <__media__>, <image>, <audio>%s%.*s%s%.*s)", n_mk, n_media,
                   ph_text[0] ? ", " : "", (int)ph_len[0], ph_text[0] ? ph_text[0] : "",
                   ph_text[1] ? ", " : "", (int)ph_len[1], ph_text[1] ? ph_text[1] : "");
        goto done;
    }
    bool expand = true;
    for (size_t i = 0; i < n_mk; i++) {
        const mmp_media *m = &media[i];
        if (mks[i].kind >= 0 && mks[i].kind != (int)m->kind) {
            mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt: marker %zu ('%.*s' at byte %zu) wants %s but media item %zu is %s",
                       i, (int)mks[i].len, text + mks[i].off, mks[i].off, mmp_media_kind_name(mks[i].kind), i,
                       mmp_media_kind_name(m->kind));
            goto done;
        }
        if (!ph_text[m->kind]) expand = false;
    }

    if (expand) {
        /* as the HF processors: expand each marker into N placeholder texts, tokenize once,
         * then let from_ids put the rows at the placeholder ids */
        size_t pos = 0;
        for (size_t i = 0; i < n_mk; i++) {
            const mmp_media *m = &media[i];
            sb_put(&sb, text + pos, mks[i].off - pos);
            const char *b = m->kind == MMP_MEDIA_IMAGE ? mk.image_begin : mk.audio_begin;
            const char *e = m->kind == MMP_MEDIA_IMAGE ? mk.image_end : mk.audio_end;
            if (!mks[i].own && b) sb_put(&sb, b, strlen(b));
            for (int32_t r = 0; r < m->n_tokens; r++) sb_put(&sb, ph_text[m->kind], ph_len[m->kind]);
            if (!mks[i].own && e) sb_put(&sb, e, strlen(e));
            pos = mks[i].off + mks[i].len;
        }
        sb_put(&sb, text + pos, len - pos);
        if (sb.oom) { mmp__error(MMP_ERR_NOMEM, "multimodal prompt: out of memory expanding the markers"); goto done; }
        if (mmp_tokenizer_encode(tok, sb.p ? sb.p : "", sb.n, add_special, true, &tids, &n_tids)) {
            mmp__error_prefix("multimodal prompt: ");
            goto done;
        }
        if (n_tids > MM_MAX_POS) { mmp__error(MMP_ERR_LIMIT, "multimodal prompt: %zu tokens", n_tids); goto done; }
        res = mmp_mm_prompt_from_ids(tids, (int32_t)n_tids, &mk, media, n_media);
        if (!res) mmp__error_prefix("(the placeholder text must tokenize to its own id) ");
        goto done;
    }

    /* split mode: tokenize the text between markers piece by piece */
    {
        size_t pos = 0;
        int64_t n_media_pos = 0;
        for (size_t i = 0; i <= n_mk; i++) {
            size_t end = i < n_mk ? mks[i].off : len;
            if (end > pos || (i == 0 && add_special)) {
                int32_t *t = NULL;
                size_t nt = 0;
                if (mmp_tokenizer_encode(tok, text + pos, end - pos, i == 0 && add_special, true, &t, &nt)) {
                    mmp__error_prefix("multimodal prompt: ");
                    goto done;
                }
                bool ok = true;
                for (size_t j = 0; j < nt && ok; j++) ok = ib_put(&ib, t[j], -1);
                free(t);
                if (!ok) { mmp__error(MMP_ERR_NOMEM, "multimodal prompt: out of memory"); goto done; }
            }
            if (i == n_mk) break;
            for (int32_t r = 0; r < media[i].n_tokens; r++)
                if (!ib_put(&ib, MMP_TOKEN_NULL, (int32_t)n_media_pos++)) { mmp__error(MMP_ERR_NOMEM, "multimodal prompt: out of memory"); goto done; }
            pos = mks[i].off + mks[i].len;
            if (ib.n > MM_MAX_POS) { mmp__error(MMP_ERR_LIMIT, "multimodal prompt: more than %d positions", MM_MAX_POS); goto done; }
        }
        if (!ib.n) { mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt: the text gives no tokens"); goto done; }
        res = prompt_alloc((int64_t)ib.n, n_media_pos, n_embd);
        if (!res) goto done;
        memcpy(res->ids, ib.p, ib.n * sizeof *ib.p);
        memcpy(res->row, ib.row, ib.n * sizeof *ib.row);
        res->n_media_pos = (int32_t)n_media_pos;
        /* media rows in position order = items in order */
        size_t off = 0;
        for (int i = 0; i < n_media; i++) {
            memcpy(res->rows + off, media[i].embd, (size_t)media[i].n_tokens * (size_t)n_embd * sizeof(float));
            off += (size_t)media[i].n_tokens * (size_t)n_embd;
        }
    }
done:
    free(mks);
    free(sb.p);
    free(ib.p);
    free(ib.row);
    free(tids);
    return res;
}

enum mmp_status mmp_mm_prompt_embed(const mmp_mm_prompt *p, const mmp_llm *m, int32_t from, int32_t n, float *out) {
    if (!p || !m || !out) return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt embed: NULL argument");
    if (from < 0 || n < 0 || from > p->n || n > p->n - from)
        return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt embed: positions [%d, %d) outside the prompt's %d", from,
                          from + n, p->n);
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(m);
    const int32_t d = hp->n_embd;
    if (p->n_media_pos > 0 && p->n_embd != d)
        return mmp__error(MMP_ERR_SHAPE, "multimodal prompt: the media embeddings are %d wide but the LLM's hidden size is %d",
                          p->n_embd, d);
    for (int32_t i = from; i < from + n;) {
        float *o = out + (size_t)(i - from) * (size_t)d;
        if (p->row[i] >= 0) {
            memcpy(o, p->rows + (size_t)p->row[i] * (size_t)d, (size_t)d * sizeof *o);
            i++;
            continue;
        }
        int32_t j = i;
        while (j < from + n && p->row[j] < 0) j++;
        enum mmp_status st = mmp_llm_embed_tokens(m, p->ids + i, j - i, o);
        if (st) { mmp__error_prefix("multimodal prompt: positions %d..%d: ", i, j - 1); return st; }
        i = j;
    }
    return MMP_OK;
}

enum mmp_status mmp_mm_prompt_decode(mmp_llm_ctx *c, const mmp_llm *m, const mmp_mm_prompt *p, int32_t from,
                                     int32_t n_batch, float *logits, bool logits_all) {
    if (!c || !m || !p) return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt decode: NULL argument");
    if (from < 0 || from >= p->n)
        return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt decode: start %d outside the prompt's %d positions", from, p->n);
    if (mmp_llm_ctx_n_past(c) != from)
        return mmp__error(MMP_ERR_INVALID_ARG, "multimodal prompt decode: the context holds %d positions but decoding starts at %d",
                          mmp_llm_ctx_n_past(c), from);
    if (n_batch <= 0) n_batch = 512;
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(m);
    int32_t nb = MMP_MIN(n_batch, p->n - from);
    float *embd = mmp__malloc((size_t)nb * (size_t)hp->n_embd * sizeof *embd);
    if (!embd) return MMP_ERR_NOMEM;
    enum mmp_status st = MMP_OK;
    for (int32_t i = from; i < p->n && !st; i += nb) {
        int32_t k = MMP_MIN(nb, p->n - i);
        if ((st = mmp_mm_prompt_embed(p, m, i, k, embd))) break;
        bool last = i + k == p->n;
        mmp_llm_batch b = { .n = k, .embd = embd };
        if (logits && logits_all) {
            b.logits = logits + (size_t)(i - from) * (size_t)hp->n_vocab;
            b.logits_all = true;
        } else if (logits && last) {
            b.logits = logits;
        }
        st = mmp_llm_decode(c, &b);
    }
    free(embd);
    return st;
}

/* ------------------------------------------------------------------ media model ---- */

struct mmp_mm {
    mmp_mm_params params;
    int32_t n_embd;
    mmp_mm_markers markers;
    /* vision */
    mmp_vit *vit;
    mmp_projector *proj;
    mmp_vit_params vp;
    /* audio */
    mmp_whisper *whisper;
    mmp_audio_proj *aproj;
    mmp_mel *mel;
    int64_t win_samples;    /* samples per encoder window (30 s, less for encoders with fewer positions) */
    mmp_mm_timings t;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

mmp_mm_timings mmp_mm_get_timings(const mmp_mm *mm) {
    mmp_mm_timings z = { 0, 0, 0, 0 };
    return mm ? mm->t : z;
}

mmp_mm_params mmp_mm_params_default(void) {
    mmp_mm_params p;
    memset(&p, 0, sizeof p);
    p.n_threads = 1;
    return p;
}

void mmp_mm_free(mmp_mm *mm) {
    if (!mm) return;
    mmp_vit_free(mm->vit);
    mmp_projector_free(mm->proj);
    mmp_whisper_free(mm->whisper);
    mmp_audio_proj_free(mm->aproj);
    mmp_mel_free(mm->mel);
    free(mm);
}

bool mmp_mm_has(const mmp_mm *mm, enum mmp_media_kind kind) {
    if (!mm) return false;
    if (kind == MMP_MEDIA_IMAGE) return mm->vit != NULL;
    if (kind == MMP_MEDIA_AUDIO) return mm->whisper != NULL;
    return false;
}
int32_t mmp_mm_n_embd(const mmp_mm *mm) { return mm ? mm->n_embd : 0; }
const mmp_mm_markers *mmp_mm_get_markers(const mmp_mm *mm) { return mm ? &mm->markers : NULL; }

static bool has_prefix_tensor(const mmp_modelfile *mf, const char *const *prefixes) {
    int64_t n = mmp_modelfile_n_tensors(mf);
    for (int64_t i = 0; i < n; i++) {
        const mmp_tensor_info *t = mmp_modelfile_tensor(mf, i);
        for (int k = 0; prefixes[k]; k++)
            if (t && !strncmp(t->name, prefixes[k], strlen(prefixes[k]))) return true;
    }
    return false;
}

/* An int config value under any of two keys; MMP_ERR_NOT_FOUND if neither is there. */
static enum mmp_status cfg_int(const mmp_json *c, const char *k1, const char *k2, int64_t *out) {
    if (!c) return MMP_ERR_NOT_FOUND;
    if (mmp_json_has(c, k1)) return mmp_json_get_int(c, k1, out);
    if (k2 && mmp_json_has(c, k2)) return mmp_json_get_int(c, k2, out);
    return MMP_ERR_NOT_FOUND;
}

/* Placeholder ids and wrapping from an HF config.json (LLaVA image_token_index / newer
 * image_token_id, Qwen2-Audio audio_token_index / audio_token_id). */
static enum mmp_status read_markers(const mmp_json *c, const char *path, const mmp_tokenizer *tok, mmp_mm_markers *mk) {
    int64_t v;
    enum mmp_status st;
    if ((st = cfg_int(c, "image_token_index", "image_token_id", &v)) == MMP_OK) {
        if (v < 0 || v > INT32_MAX)
            return mmp__error(MMP_ERR_FORMAT, "%s: config.json image_token_index %lld is not a token id", path, (long long)v);
        mk->image_token = (int32_t)v;
    } else if (st != MMP_ERR_NOT_FOUND) {
        mmp__error_prefix("%s: ", path);
        return st;
    }
    if ((st = cfg_int(c, "audio_token_index", "audio_token_id", &v)) == MMP_OK) {
        if (v < 0 || v > INT32_MAX)
            return mmp__error(MMP_ERR_FORMAT, "%s: config.json audio_token_index %lld is not a token id", path, (long long)v);
        mk->audio_token = (int32_t)v;
    } else if (st != MMP_ERR_NOT_FOUND) {
        mmp__error_prefix("%s: ", path);
        return st;
    }
    mmp_clear_error();
    /* (Placeholders past the vocabulary are never produced by the tokenizer; they still work
     * through mmp_mm_prompt_from_ids: placeholders are never embedded.) */
    const char *mt = NULL;
    if (c && tok && !mmp_json_get_string(c, "model_type", &mt) && !strcmp(mt, "qwen2_audio") &&
        mmp_tokenizer_find(tok, "<|audio_bos|>", 13) >= 0 && mmp_tokenizer_find(tok, "<|audio_eos|>", 13) >= 0) {
        /* Qwen2AudioProcessor's chat template writes <|audio_bos|><|AUDIO|><|audio_eos|>; only
         * when the vocabulary has these tokens (else they would become plain text) */
        mk->audio_begin = "<|audio_bos|>";
        mk->audio_end = "<|audio_eos|>";
    }
    mmp_clear_error();
    return MMP_OK;
}

static enum mmp_status load_vision(mmp_mm *mm, const char *src, const mmp_modelfile *mf) {
    const mmp_json *c = mmp_modelfile_config(mf);
    mm->vp = mmp_vit_params_default();
    mm->vp.n_threads = mm->params.n_threads;
    mm->vp.abort_cb = mm->params.abort_cb;
    mm->vp.abort_user = mm->params.abort_user;
    if (mmp_modelfile_gguf(mf)) {
        /* llama.cpp's LLaVA converter stores the tower only up to the feature layer (block_count
         * = layers - 1) and its clip.cpp drops the class token for the MLP projector */
        mm->vp.layer = -1;
        mm->vp.drop_cls = true;
    } else {
        int64_t layer = -2;  /* LlavaConfig default */
        if (c && mmp_json_has(c, "vision_feature_layer")) {
            if (mmp_json_kind_of(c, "vision_feature_layer") != MMP_JSON_NUMBER)
                return mmp__error(MMP_ERR_UNSUPPORTED, "%s: config.json vision_feature_layer: only a single layer is supported", src);
            if (mmp_json_get_int(c, "vision_feature_layer", &layer) || layer < -1000 || layer > 1000)
                return mmp__error(MMP_ERR_FORMAT, "%s: config.json vision_feature_layer is not a layer index", src);
        }
        mm->vp.layer = (int32_t)layer;
        const char *strat = "default";
        if (c && mmp_json_has(c, "vision_feature_select_strategy") && mmp_json_get_string(c, "vision_feature_select_strategy", &strat))
            return mmp__error(MMP_ERR_FORMAT, "%s: config.json vision_feature_select_strategy is not a string", src);
        if (!strcmp(strat, "default")) mm->vp.drop_cls = true;
        else if (!strcmp(strat, "full")) mm->vp.drop_cls = false;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: config.json vision_feature_select_strategy '%s' (known: default, full)", src, strat);
    }
    if (!(mm->vit = mmp_vit_load(src))) { mmp__error_prefix("vision tower: "); return MMP_ERR_FORMAT; }
    if (!(mm->proj = mmp_projector_load(src))) { mmp__error_prefix("image projector: "); return MMP_ERR_FORMAT; }
    const mmp_vit_hparams *vh = mmp_vit_get_hparams(mm->vit);
    if (mmp_projector_n_in(mm->proj) != vh->n_embd)
        return mmp__error(MMP_ERR_SHAPE, "%s: the image projector takes %d-wide features but the vision tower gives %d",
                          src, mmp_projector_n_in(mm->proj), vh->n_embd);
    if (mmp_projector_n_out(mm->proj) != mm->n_embd)
        return mmp__error(MMP_ERR_SHAPE, "%s: the image projector gives %d-wide embeddings but the LLM's hidden size is %d",
                          src, mmp_projector_n_out(mm->proj), mm->n_embd);
    return MMP_OK;
}

static enum mmp_status load_audio(mmp_mm *mm, const char *src, const mmp_modelfile *mf) {
    const mmp_json *c = mmp_modelfile_config(mf);
    enum mmp_audio_proj_type type = MMP_AUDIO_PROJ_QWEN2_AUDIO;
    const char *mt = NULL;
    if (c && !mmp_json_get_string(c, "model_type", &mt)) {
        if (!strcmp(mt, "ultravox")) type = MMP_AUDIO_PROJ_ULTRAVOX;
        else if (!strcmp(mt, "voxtral")) type = MMP_AUDIO_PROJ_VOXTRAL;
    }
    mmp_clear_error();
    if (!(mm->whisper = mmp_whisper_load(src))) { mmp__error_prefix("audio encoder: "); return MMP_ERR_FORMAT; }
    if (!(mm->aproj = mmp_audio_proj_load(src, type))) { mmp__error_prefix("audio projector: "); return MMP_ERR_FORMAT; }
    const mmp_whisper_hparams *wh = mmp_whisper_get_hparams(mm->whisper);
    if (mmp_audio_proj_n_in(mm->aproj) != wh->d_model)
        return mmp__error(MMP_ERR_SHAPE, "%s: the audio projector takes %d-wide features but the audio encoder gives %d",
                          src, mmp_audio_proj_n_in(mm->aproj), wh->d_model);
    if (mmp_audio_proj_n_embd(mm->aproj) != mm->n_embd)
        return mmp__error(MMP_ERR_SHAPE, "%s: the audio projector gives %d-wide embeddings but the LLM's hidden size is %d",
                          src, mmp_audio_proj_n_embd(mm->aproj), mm->n_embd);
    mmp_mel_params mp = mmp_mel_params_default();
    mp.n_mels = wh->n_mels;
    /* A window is 30 s (3000 frames -> 1500 positions after the stride-2 conv) for every real
     * Whisper-family encoder; one with fewer positions gets windows of 2 * n_positions frames */
    if (wh->n_positions <= 0)
        return mmp__error(MMP_ERR_FORMAT, "%s: the audio encoder has %d positions", src, wh->n_positions);
    mp.n_samples = (int)mmp__audio_window_samples(wh->n_positions, mp.hop, mp.n_samples);
    mm->win_samples = mp.n_samples;
    if (!(mm->mel = mmp_mel_new(mp))) { mmp__error_prefix("%s: log-mel front end: ", src); return MMP_ERR_INVALID_ARG; }
    return MMP_OK;
}

mmp_mm *mmp_mm_load(const char *model_path, const char *mmproj, const mmp_llm *llm, const mmp_mm_params *params) {
    if (!llm || (!model_path && !mmproj))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "multimodal model: no LLM or no model path");
    mmp_mm *mm = mmp__calloc(1, sizeof *mm);
    if (!mm) return NULL;
    mm->params = params ? *params : mmp_mm_params_default();
    if (mm->params.n_threads <= 0) mm->params.n_threads = 1;
    mm->n_embd = mmp_llm_get_hparams(llm)->n_embd;
    mm->markers = mmp_mm_markers_default();
    const char *src = mmproj ? mmproj : model_path;
    mmp_modelfile *mf = mmp_modelfile_open(src);
    mmp_modelfile *mf_model = NULL;
    if (!mf) goto fail;
    static const char *const vis_prefixes[] = { "vision_tower.", "v.", "vision_model.", "model.vision_tower.", NULL };
    static const char *const aud_prefixes[] = { "audio_tower.", "a.", NULL };
    const mmp_json *c = mmp_modelfile_config(mf);
    bool vision = (c && mmp_json_has(c, "vision_config")) || has_prefix_tensor(mf, vis_prefixes);
    bool audio = (c && mmp_json_has(c, "audio_config")) || has_prefix_tensor(mf, aud_prefixes);
    if (!vision && !audio) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s has no vision or audio encoder (looked for vision_config / audio_config in "
                   "config.json and vision_tower.* / v.* / audio_tower.* / a.* tensors)%s", src,
                   mmproj ? "" : ": give the encoder + projector with --mmproj FILE");
        goto fail;
    }
    /* placeholders: from the model's config (the mmproj's own config when it has them) */
    const mmp_json *mc = c;
    if (mmproj && model_path) {
        mf_model = mmp_modelfile_open(model_path);
        if (!mf_model) goto fail;
        mc = mmp_modelfile_config(mf_model);
    }
    if (read_markers(mc, mmproj && model_path ? model_path : src, mmp_llm_get_tokenizer(llm), &mm->markers)) goto fail;
    if (vision && load_vision(mm, src, mf)) goto fail;
    if (audio && load_audio(mm, src, mf)) goto fail;
    mmp_modelfile_free(mf);
    mmp_modelfile_free(mf_model);
    return mm;
fail:
    mmp_modelfile_free(mf);
    mmp_modelfile_free(mf_model);
    mmp_mm_free(mm);
    return NULL;
}

enum mmp_status mmp_mm_encode_pixels(mmp_mm *mm, const float *pixels, int32_t height, int32_t width, float **out,
                                     int32_t *n_tok) {
    if (out) *out = NULL;
    if (n_tok) *n_tok = 0;
    if (!mm || !pixels || !out || !n_tok) return mmp__error(MMP_ERR_INVALID_ARG, "encode image: NULL argument");
    if (!mm->vit) return mmp__error(MMP_ERR_UNSUPPORTED, "encode image: this model has no vision encoder");
    const mmp_vit_hparams *vh = mmp_vit_get_hparams(mm->vit);
    int32_t n = mmp_vit_n_tokens(mm->vit, &mm->vp);
    if (n <= 0) return mmp__error(MMP_ERR_INTERNAL, "encode image: the vision tower gives %d tokens", n);
    float *hidden = mmp__malloc((size_t)n * (size_t)vh->n_embd * sizeof *hidden);
    float *y = mmp__malloc((size_t)n * (size_t)mm->n_embd * sizeof *y);
    enum mmp_status st = (!hidden || !y) ? MMP_ERR_NOMEM : MMP_OK;
    double t0 = now_ms();
    if (!st && (st = mmp_vit_encode(mm->vit, pixels, height, width, &mm->vp, hidden, NULL))) mmp__error_prefix("encode image: ");
    double t1 = now_ms();
    if (!st && (st = mmp_projector_run(mm->proj, hidden, n, y, mm->params.n_threads))) mmp__error_prefix("image projector: ");
    mm->t = (mmp_mm_timings){ 0.0, 0.0, t1 - t0, now_ms() - t1 };
    free(hidden);
    if (st) { free(y); return st; }
    *out = y;
    *n_tok = n;
    return MMP_OK;
}

enum mmp_status mmp_mm_encode_image(mmp_mm *mm, const mmp_image *img, float **out, int32_t *n_tok) {
    if (out) *out = NULL;
    if (n_tok) *n_tok = 0;
    if (!mm || !img || !out || !n_tok) return mmp__error(MMP_ERR_INVALID_ARG, "encode image: NULL argument");
    if (!mm->vit) return mmp__error(MMP_ERR_UNSUPPORTED, "encode image: this model has no vision encoder");
    int32_t h = 0, w = 0;
    double t0 = now_ms();
    float *px = mmp_preprocess(img, mmp_vit_get_preproc(mm->vit), &h, &w);
    if (!px) { mmp__error_prefix("image preprocessing: "); return MMP_ERR_INVALID_ARG; }
    double t_pre = now_ms() - t0;
    enum mmp_status st = mmp_mm_encode_pixels(mm, px, h, w, out, n_tok);
    mm->t.preprocess_ms = t_pre;
    free(px);
    return st;
}

/* encode_mel adding its times to mm->t (encode_audio calls it once per window) */
static enum mmp_status encode_mel(mmp_mm *mm, const float *mel, int64_t n_frames, int64_t n_valid, float **out,
                                  int32_t *n_tok) {
    if (out) *out = NULL;
    if (n_tok) *n_tok = 0;
    if (!mm || !mel || !out || !n_tok) return mmp__error(MMP_ERR_INVALID_ARG, "encode audio: NULL argument");
    if (!mm->whisper) return mmp__error(MMP_ERR_UNSUPPORTED, "encode audio: this model has no audio encoder");
    if (n_frames <= 0 || n_valid < 0 || n_valid > n_frames)
        return mmp__error(MMP_ERR_INVALID_ARG, "encode audio: %lld valid frames of %lld", (long long)n_valid, (long long)n_frames);
    const mmp_whisper_hparams *wh = mmp_whisper_get_hparams(mm->whisper);
    /* the window as the stages encode it (encoders/audio-impl.h): Qwen2-Audio masks its
     * padding, plain Whisper towers (Ultravox, Voxtral) attend to it; the rows past the audio
     * are dropped */
    int64_t n_out = mmp_whisper_n_out(mm->whisper, n_frames);
    int64_t keep = mmp__whisper_window_keep(mm->whisper, n_frames, n_valid);
    if (keep <= 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "encode audio: %lld mel frames give no encoder rows", (long long)n_frames);
    float *hidden = mmp__malloc((size_t)n_out * (size_t)wh->d_model * sizeof *hidden);
    int64_t n_tok64 = mmp_audio_proj_n_out(mm->aproj, keep);
    float *y = n_tok64 > 0 ? mmp__malloc((size_t)n_tok64 * (size_t)mm->n_embd * sizeof *y) : NULL;
    enum mmp_status st = (!hidden || !y) ? MMP_ERR_NOMEM : MMP_OK;
    double t0 = now_ms();
    if (!st && (st = mmp__whisper_encode_window(mm->whisper, mel, n_frames, n_valid, hidden, mm->params.n_threads,
                                                mm->params.abort_cb, mm->params.abort_user)))
        mmp__error_prefix("encode audio: ");
    double t1 = now_ms();
    if (!st && (st = mmp_audio_proj_run(mm->aproj, hidden, keep, y, mm->params.n_threads))) mmp__error_prefix("audio projector: ");
    mm->t.encode_ms += t1 - t0;
    mm->t.project_ms += now_ms() - t1;
    free(hidden);
    if (st) { free(y); return st; }
    *out = y;
    *n_tok = (int32_t)n_tok64;
    return MMP_OK;
}

enum mmp_status mmp_mm_encode_mel(mmp_mm *mm, const float *mel, int64_t n_frames, int64_t n_valid, float **out,
                                  int32_t *n_tok) {
    if (mm) mm->t = (mmp_mm_timings){ 0, 0, 0, 0 };
    return encode_mel(mm, mel, n_frames, n_valid, out, n_tok);
}

enum mmp_status mmp_mm_encode_audio(mmp_mm *mm, const float *samples, int64_t n, float **out, int32_t *n_tok) {
    if (out) *out = NULL;
    if (n_tok) *n_tok = 0;
    if (!mm || (!samples && n) || !out || !n_tok) return mmp__error(MMP_ERR_INVALID_ARG, "encode audio: NULL argument");
    if (!mm->whisper) return mmp__error(MMP_ERR_UNSUPPORTED, "encode audio: this model has no audio encoder");
    if (n <= 0) return mmp__error(MMP_ERR_INVALID_ARG, "encode audio: no samples");
    const int64_t n_frames = mmp_mel_n_frames(mm->mel, mm->win_samples), n_win = mmp__mel_n_windows(mm->mel, n);
    const int n_mels = mmp_whisper_get_hparams(mm->whisper)->n_mels;
    float *mel = mmp__malloc((size_t)n_mels * (size_t)n_frames * sizeof *mel);
    if (!mel) return MMP_ERR_NOMEM;
    float *all = NULL;
    int64_t n_all = 0;
    enum mmp_status st = MMP_OK;
    mmp_mm_timings t = { 0, 0, 0, 0 };
    for (int64_t i = 0; i < n_win && !st; i++) {
        /* window i padded to win_samples; ceil(len / hop) frames hold audio */
        int64_t valid = 0;
        double t0 = now_ms();
        if ((st = mmp__mel_window(mm->mel, samples, n, i, mel, &valid))) { mmp__error_prefix("log-mel: "); break; }
        t.mel_ms += now_ms() - t0;
        float *e = NULL;
        int32_t ne = 0;
        mm->t = t;
        st = encode_mel(mm, mel, n_frames, valid, &e, &ne);
        t = mm->t;
        if (st) break;
        float *q = realloc(all, (size_t)(n_all + ne) * (size_t)mm->n_embd * sizeof *q);
        if (!q) { free(e); st = mmp__error(MMP_ERR_NOMEM, "encode audio: out of memory"); break; }
        all = q;
        memcpy(all + (size_t)n_all * (size_t)mm->n_embd, e, (size_t)ne * (size_t)mm->n_embd * sizeof *e);
        n_all += ne;
        free(e);
        if (n_all > MM_MAX_POS) st = mmp__error(MMP_ERR_LIMIT, "encode audio: more than %d audio tokens", MM_MAX_POS);
    }
    free(mel);
    mm->t = t;
    if (st) { free(all); return st; }
    *out = all;
    *n_tok = (int32_t)n_all;
    return MMP_OK;
}

/* ------------------------------------------------------------------ the CLI's pipeline choice ---- */

#include "mtmd-impl.h"

/* encoders/whisper.c: the projector a llama.cpp audio mmproj names */
enum mmp_status mmp__audio_gguf_proj_type(const mmp_modelfile *mf, enum mmp_audio_proj_type *type);

const char *mmp__audio_pipeline_for(const char *model, const char *mmproj) {
    static const char *const names[MMP_AUDIO_PROJ_COUNT] = { "audio-chat-qwen2", "audio-chat-ultravox", "audio-chat-voxtral" };
    const char *src = mmproj ? mmproj : model;
    if (!src) return mmp__error_null(MMP_ERR_INVALID_ARG, "audio pipeline: no model path");
    mmp_modelfile *mf = mmp_modelfile_open(src);
    if (!mf) return NULL;
    static const char *const aud_prefixes[] = { "audio_tower.", "a.", NULL };
    const mmp_json *c = mmp_modelfile_config(mf);
    if (!(c && mmp_json_has(c, "audio_config")) && !has_prefix_tensor(mf, aud_prefixes)) {
        mmp__error(MMP_ERR_NOT_FOUND, "%s has no audio encoder (looked for audio_config in config.json and audio_tower.* / "
                   "a.* tensors)%s", src, mmproj ? "" : ": give the encoder + projector with --mmproj FILE");
        mmp_modelfile_free(mf);
        return NULL;
    }
    /* as load_audio + mmp_audio_proj_load: a GGUF names its projector, an HF folder its model_type */
    enum mmp_audio_proj_type type = MMP_AUDIO_PROJ_QWEN2_AUDIO;
    const char *mt = NULL;
    if (mmp_modelfile_gguf(mf)) {
        if (mmp__audio_gguf_proj_type(mf, &type) != MMP_OK) { mmp_modelfile_free(mf); return NULL; }
    } else if (c && !mmp_json_get_string(c, "model_type", &mt)) {
        if (!strcmp(mt, "ultravox")) type = MMP_AUDIO_PROJ_ULTRAVOX;
        else if (!strcmp(mt, "voxtral")) type = MMP_AUDIO_PROJ_VOXTRAL;
    }
    mmp_clear_error();
    mmp_modelfile_free(mf);
    return names[type];
}
