/* Byte-level BPE as llama.cpp runs it (llm_tokenizer_bpe_session): pre-tokenize into words,
 * write each word's bytes as GPT-2's printable stand-in characters, then per word repeatedly
 * merge the adjacent pair with the lowest merge rank (ties: leftmost) using a binary heap with
 * lazy deletion, so a long word costs O(n log n), not O(n^2). Symbols that are not tokens fall
 * back to single-byte tokens. SPM-style BPE (gemma-4) skips the byte mapping and falls back to
 * <0xXX> tokens. */
#include "tok_impl.h"

#include <string.h>

typedef struct { int prev, next; uint32_t start, n; } bpe_sym;
typedef struct { int left, right; int32_t rank; uint32_t ln, rn; } bpe_bigram;

static inline bool bpe_before(const bpe_bigram *a, const bpe_bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef struct { bpe_bigram *p; size_t n, cap; } bpe_heap;

static bool heap_push(bpe_heap *h, bpe_bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        bpe_bigram *p = realloc(h->p, cap * sizeof *p);
        if (!p) { mmp__error(MMP_ERR_NOMEM, "tokenizer: out of memory"); return false; }
        h->p = p; h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_before(&b, &h->p[parent])) break;
        h->p[i] = h->p[parent];
        i = parent;
    }
    h->p[i] = b;
    return true;
}

static bpe_bigram heap_pop(bpe_heap *h) {
    bpe_bigram top = h->p[0];
    bpe_bigram last = h->p[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const bpe_bigram *bp = &last;
        if (l < h->n && bpe_before(&h->p[l], bp)) { best = l; bp = &h->p[l]; }
        if (r < h->n && bpe_before(&h->p[r], bp)) { best = r; }
        if (best == i) break;
        h->p[i] = h->p[best];
        i = best;
    }
    if (h->n) h->p[i] = last;
    return top;
}

typedef struct {
    mmp__buf word;       /* the encoded word */
    bpe_sym *sym; size_t sym_cap;
    bpe_heap heap;
} bpe_work;

static bool add_bigram(const mmp_tokenizer *t, bpe_work *w, int left, int right) {
    if (left < 0 || right < 0) return true;
    const bpe_sym *l = &w->sym[left], *r = &w->sym[right];
    int32_t rank = mmp__tok_merge_rank(t, w->word.p + l->start, l->n, w->word.p + r->start, r->n);
    if (rank < 0) return true;
    bpe_bigram b = { left, right, rank, l->n, r->n };
    return heap_push(&w->heap, b);
}

static enum mmp_status emit_symbol(const mmp_tokenizer *t, const char *p, size_t n, mmp__ids *out) {
    mmp_token id = mmp__tok_find(t, p, n);
    if (id != MMP_TOKEN_NULL) return mmp__ids_push(out, id) ? MMP_OK : MMP_ERR_NOMEM;
    for (size_t j = 0; j < n; j++) {
        uint8_t c = (uint8_t)p[j];
        mmp_token b = t->byte_encode ? t->raw_byte[c] : t->spm_byte[c];
        if (b != MMP_TOKEN_NULL && !mmp__ids_push(out, b)) return MMP_ERR_NOMEM;
    }
    return MMP_OK;
}

static enum mmp_status bpe_word(const mmp_tokenizer *t, bpe_work *w, mmp__ids *out) {
    const char *p = w->word.p;
    size_t len = w->word.n;
    if (len == 0) return MMP_OK;
    if (len > INT32_MAX / 2) return mmp__error(MMP_ERR_LIMIT, "tokenizer: word of %zu bytes is too long", len);
    if (t->ignore_merges || t->gemma4_newlines) {
        bool whole = t->ignore_merges;
        if (!whole) { /* gemma-4: a run of newlines that is a token stays whole */
            whole = true;
            for (size_t i = 0; i < len; i++) if (p[i] != '\n') { whole = false; break; }
        }
        if (whole) {
            mmp_token id = mmp__tok_find(t, p, len);
            if (id != MMP_TOKEN_NULL) return mmp__ids_push(out, id) ? MMP_OK : MMP_ERR_NOMEM;
        }
    }
    if (len > w->sym_cap) {
        bpe_sym *s = realloc(w->sym, len * sizeof *s);
        if (!s) return mmp__error(MMP_ERR_NOMEM, "tokenizer: out of memory");
        w->sym = s; w->sym_cap = len;
    }
    bpe_sym *s = w->sym;
    int n = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = mmp__utf8_len((uint8_t)p[off]);
        if (cl > len - off) cl = len - off;
        s[n].start = (uint32_t)off; s[n].n = (uint32_t)cl; s[n].prev = n - 1;
        off += cl;
        s[n].next = off == len ? -1 : n + 1;
        n++;
    }
    w->heap.n = 0;
    for (int i = 1; i < n; i++)
        if (!add_bigram(t, w, i - 1, i)) return MMP_ERR_NOMEM;
    while (w->heap.n) {
        bpe_bigram b = heap_pop(&w->heap);
        bpe_sym *l = &s[b.left], *r = &s[b.right];
        /* stale when either side changed since the pair was queued (same test as llama.cpp's
         * text comparison: symbols only grow, and a grown left side swallowed `right`) */
        if (l->n == 0 || r->n == 0 || l->n != b.ln || r->n != b.rn) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        if (!add_bigram(t, w, l->prev, b.left) || !add_bigram(t, w, b.left, l->next)) return MMP_ERR_NOMEM;
    }
    for (int i = 0; i != -1; i = s[i].next) {
        if (s[i].n == 0) continue;
        enum mmp_status st = emit_symbol(t, p + s[i].start, s[i].n, out);
        if (st != MMP_OK) return st;
    }
    return MMP_OK;
}

enum mmp_status mmp__bpe_encode(const mmp_tokenizer *t, const char *text, size_t len, mmp__ids *out) {
    if (len == 0) return MMP_OK;
    enum mmp_status st = MMP_OK;
    uint32_t *cpts = mmp__malloc(len * sizeof *cpts);
    size_t *lens = NULL, n_words = 0;
    bpe_work w = {0};
    if (!cpts) return MMP_ERR_NOMEM;
    size_t n = mmp__utf8_decode(text, len, cpts, NULL);
    st = mmp__pretok_split(&t->pretok, cpts, n, &lens, &n_words);
    if (st != MMP_OK) goto done;
    size_t c0 = 0;
    for (size_t k = 0; k < n_words; k++) {
        w.word.n = 0;
        for (size_t i = c0; i < c0 + lens[k]; i++) {
            char u[4];
            int nb = mmp__utf8_encode(cpts[i], u);
            if (t->byte_encode) {
                for (int j = 0; j < nb; j++) {
                    char e[4];
                    int ne = mmp__utf8_encode(mmp__byte_to_cpt((uint8_t)u[j]), e);
                    if (!mmp__buf_put(&w.word, e, (size_t)ne)) { st = MMP_ERR_NOMEM; goto done; }
                }
            } else if (!mmp__buf_put(&w.word, u, (size_t)nb)) { st = MMP_ERR_NOMEM; goto done; }
        }
        c0 += lens[k];
        st = bpe_word(t, &w, out);
        if (st != MMP_OK) goto done;
    }
done:
    free(cpts);
    free(lens);
    free(w.word.p);
    free(w.sym);
    free(w.heap.p);
    return st;
}
