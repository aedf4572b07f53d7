/* SentencePiece BPE as llama.cpp runs it (llm_tokenizer_spm_session): start from UTF-8
 * characters, repeatedly merge the adjacent pair whose concatenation is the vocab token with
 * the highest score (ties: leftmost), then emit each symbol's token, or its bytes as <0xXX>
 * tokens when the symbol is not in the vocab. The caller has already replaced ' ' with "▁"
 * and added the leading space. */
#include "tok_impl.h"

#include <string.h>

typedef struct { int prev, next; uint32_t start, n; } spm_sym;
typedef struct { int left, right; float score; uint32_t size; } spm_bigram;

/* max-heap order: higher score first, then lower left index */
static inline bool spm_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct { spm_bigram *p; size_t n, cap; } spm_heap;

static bool heap_push(spm_heap *h, spm_bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        spm_bigram *p = realloc(h->p, cap * sizeof *p);
        if (!p) { mmp__error(MMP_ERR_NOMEM, "tokenizer: out of memory"); return false; }
        h->p = p; h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!spm_before(&b, &h->p[parent])) break;
        h->p[i] = h->p[parent];
        i = parent;
    }
    h->p[i] = b;
    return true;
}

static spm_bigram heap_pop(spm_heap *h) {
    spm_bigram top = h->p[0];
    spm_bigram last = h->p[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const spm_bigram *bp = &last;
        if (l < h->n && spm_before(&h->p[l], bp)) { best = l; bp = &h->p[l]; }
        if (r < h->n && spm_before(&h->p[r], bp)) { best = r; }
        if (best == i) break;
        h->p[i] = h->p[best];
        i = best;
    }
    if (h->n) h->p[i] = last;
    return top;
}

static bool try_add(const mmp_tokenizer *t, const char *text, const spm_sym *s, int left, int right, spm_heap *h) {
    if (left < 0 || right < 0) return true;
    uint32_t size = s[left].n + s[right].n;
    mmp_token id = mmp__tok_find(t, text + s[left].start, size);
    if (id == MMP_TOKEN_NULL) return true;
    spm_bigram b = { left, right, t->score[id], size };
    return heap_push(h, b);
}

enum mmp_status mmp__spm_encode(const mmp_tokenizer *t, const char *text, size_t len, mmp__ids *out) {
    if (len == 0) return MMP_OK;
    if (len > INT32_MAX / 2) return mmp__error(MMP_ERR_LIMIT, "tokenizer: text fragment of %zu bytes is too long", len);
    spm_sym *s = mmp__malloc(len * sizeof *s);
    if (!s) return MMP_ERR_NOMEM;
    spm_heap h = {0};
    enum mmp_status st = MMP_OK;
    int n = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = mmp__utf8_len((uint8_t)text[off]);
        if (cl > len - off) cl = len - off;
        s[n].start = (uint32_t)off;
        s[n].n = (uint32_t)cl;
        s[n].prev = n - 1;
        off += cl;
        s[n].next = off == len ? -1 : n + 1;
        n++;
    }
    for (int i = 1; i < n; i++)
        if (!try_add(t, text, s, i - 1, i, &h)) { st = MMP_ERR_NOMEM; goto done; }
    while (h.n) {
        spm_bigram b = heap_pop(&h);
        spm_sym *l = &s[b.left], *r = &s[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        if (!try_add(t, text, s, l->prev, b.left, &h) || !try_add(t, text, s, b.left, l->next, &h)) {
            st = MMP_ERR_NOMEM; goto done;
        }
    }
    for (int i = 0; i != -1; i = s[i].next) {
        mmp_token id = mmp__tok_find(t, text + s[i].start, s[i].n);
        if (id != MMP_TOKEN_NULL) {
            if (!mmp__ids_push(out, id)) { st = MMP_ERR_NOMEM; goto done; }
            continue;
        }
        /* not a token (only single characters can be): byte fallback */
        for (uint32_t j = 0; j < s[i].n; j++) {
            mmp_token bid = t->spm_byte[(uint8_t)text[s[i].start + j]];
            if (bid == MMP_TOKEN_NULL) bid = t->unk; /* llama.cpp would throw here */
            if (bid != MMP_TOKEN_NULL && !mmp__ids_push(out, bid)) { st = MMP_ERR_NOMEM; goto done; }
        }
    }
done:
    free(h.p);
    free(s);
    return st;
}
