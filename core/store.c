/* The model store: a cache of opened model files and loaded models, shared between stages and
 * pipelines (include/mmpipe/store.h). One recursive mutex guards it: loaders run under it and
 * may open files through the same store; loads are rare and slow enough that serialising them
 * costs nothing worth a finer lock. */
#include "store-impl.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct store_entry {
    struct store_entry *next;
    bool is_file;
    char *tag, *path, *key;     /* path canonical; tag "" for files */
    const void *scope;          /* scratch models: the scope sharing them */
    void *obj;                  /* mmp_modelfile * for files */
    mmp__model_free_fn free_fn;
    const mmp_modelfile *mf;    /* models: the file reference they hold */
    int64_t refs;
} store_entry;

struct mmp_store {
    pthread_mutex_t mu;
    store_entry *head;
    mmp_store_stats stats;
};

mmp_store *mmp_store_new(void) {
    mmp_store *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init(&s->mu, &a);
    pthread_mutexattr_destroy(&a);
    if (rc) {
        free(s);
        return mmp__error_null(MMP_ERR_INTERNAL, "mmp_store_new: cannot create a mutex (%d)", rc);
    }
    return s;
}

static void entry_free(store_entry *e) {
    free(e->tag);
    free(e->path);
    free(e->key);
    free(e);
}

void mmp_store_free(mmp_store *s) {
    if (!s) return;
    /* Entries still referenced are a caller bug (a stage outlived its store); free what is
     * left so nothing leaks, models before the files they borrow. */
    for (int pass = 0; pass < 2; pass++) {
        store_entry **pp = &s->head;
        while (*pp) {
            store_entry *e = *pp;
            if (e->is_file == (pass == 1)) {
                *pp = e->next;
                if (e->is_file) mmp_modelfile_free(e->obj);
                else if (e->free_fn) e->free_fn(e->obj);
                entry_free(e);
            } else pp = &e->next;
        }
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

mmp_store_stats mmp_store_get_stats(const mmp_store *s) {
    mmp_store_stats st;
    memset(&st, 0, sizeof st);
    if (!s) return st;
    pthread_mutex_lock((pthread_mutex_t *)&s->mu);
    st = s->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
    return st;
}

/* The canonical form of a path (symlinks, "..", "./" resolved) so that two spellings of one
 * file share an entry; the path as given when it does not exist (the open then fails with
 * the loader's own message). */
static char *canonical(const char *path) {
    char *r = realpath(path, NULL);
    if (r) return r;
    return mmp__strdup(path);
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

const mmp_modelfile *mmp_store_open(mmp_store *s, const char *path) {
    if (!s || !path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_store_open: NULL %s", s ? "path" : "store");
    char *cp = canonical(path);
    if (!cp) return NULL;
    const mmp_modelfile *out = NULL;
    pthread_mutex_lock(&s->mu);
    for (store_entry *e = s->head; e; e = e->next)
        if (e->is_file && !strcmp(e->path, cp)) {
            e->refs++;
            s->stats.hits++;
            out = e->obj;
            break;
        }
    if (!out) {
        store_entry *e = mmp__calloc(1, sizeof *e);
        mmp_modelfile *mf = e ? mmp_modelfile_open(path) : NULL;
        if (mf) {
            e->is_file = true;
            e->path = cp;
            cp = NULL;
            e->obj = mf;
            e->refs = 1;
            e->next = s->head;
            s->head = e;
            s->stats.files_open++;
            s->stats.file_opens++;
            out = mf;
        } else free(e);
    }
    pthread_mutex_unlock(&s->mu);
    free(cp);
    return out;
}

/* Unlink and free the entry of `obj` when its count drops to zero. Called locked. */
static void release_locked(mmp_store *s, const void *obj, bool is_file) {
    for (store_entry **pp = &s->head; *pp; pp = &(*pp)->next) {
        store_entry *e = *pp;
        if (e->is_file != is_file || e->obj != obj) continue;
        if (--e->refs > 0) return;
        *pp = e->next;
        if (is_file) {
            mmp_modelfile_free(e->obj);
            s->stats.files_open--;
        } else {
            if (e->free_fn) e->free_fn(e->obj);
            s->stats.models_loaded--;
            if (e->mf) release_locked(s, e->mf, true);
        }
        entry_free(e);
        return;
    }
}

void mmp_store_close(mmp_store *s, const mmp_modelfile *mf) {
    if (!s || !mf) return;
    pthread_mutex_lock(&s->mu);
    release_locked(s, mf, true);
    pthread_mutex_unlock(&s->mu);
}

enum mmp_status mmp__model_get(const mmp_stage_params *p, const char *tag, const char *path, const char *key, int flags,
                               mmp__model_load_fn load, mmp__model_free_fn free_fn, void *ctx, mmp__model_ref *out) {
    memset(out, 0, sizeof *out);
    if (!tag || !load || !free_fn) return mmp__error(MMP_ERR_INVALID_ARG, "mmp__model_get: NULL tag or loader");
    if (!path) return mmp__error(MMP_ERR_INVALID_ARG, "%s: no model path given (set model=PATH)", tag);
    const bool use_file = !(flags & MMP__MODEL_NO_FILE);
    mmp_store *s = p ? p->store : NULL;
    out->free_fn = free_fn;
    if (!s) {
        if (use_file && !(out->own_mf = mmp_modelfile_open(path))) return MMP_ERR_IO;
        if (!(out->model = load(out->own_mf, path, ctx))) {
            mmp_modelfile_free(out->own_mf);
            memset(out, 0, sizeof *out);
            return MMP_ERR_FORMAT;
        }
        return MMP_OK;
    }
    const void *scope = (flags & MMP__MODEL_SCRATCH) ? p->scope : NULL;
    const bool cacheable = !(flags & MMP__MODEL_SCRATCH) || scope != NULL;
    char *cp = canonical(path);
    if (!cp) return MMP_ERR_NOMEM;
    enum mmp_status st = MMP_OK;
    out->store = s;
    pthread_mutex_lock(&s->mu);
    store_entry *hit = NULL;
    if (cacheable)
        for (store_entry *e = s->head; e; e = e->next)
            if (!e->is_file && e->scope == scope && !strcmp(e->tag, tag) && !strcmp(e->path, cp) && str_eq(e->key, key)) {
                hit = e;
                break;
            }
    if (hit) {
        hit->refs++;
        s->stats.hits++;
        out->model = hit->obj;
        out->entry = hit;
        goto done;
    }
    const mmp_modelfile *mf = NULL;
    if (use_file && !(mf = mmp_store_open(s, path))) { st = MMP_ERR_IO; goto fail; }
    void *obj = load(mf, path, ctx);
    if (!obj) {
        if (mf) release_locked(s, mf, true);
        st = MMP_ERR_FORMAT;
        goto fail;
    }
    s->stats.model_loads++;
    if (!cacheable) {
        /* not shared: the ref keeps the file reference itself */
        out->model = obj;
        out->store_mf = mf;
        goto done;
    }
    store_entry *e = mmp__calloc(1, sizeof *e);
    if (!e || !(e->tag = mmp__strdup(tag)) || (key && !(e->key = mmp__strdup(key)))) {
        if (e) entry_free(e);
        free_fn(obj);
        if (mf) release_locked(s, mf, true);
        st = MMP_ERR_NOMEM;
        goto fail;
    }
    e->path = cp;
    cp = NULL;
    e->scope = scope;
    e->obj = obj;
    e->free_fn = free_fn;
    e->mf = mf;
    e->refs = 1;
    e->next = s->head;
    s->head = e;
    s->stats.models_loaded++;
    out->model = obj;
    out->entry = e;
done:
    pthread_mutex_unlock(&s->mu);
    free(cp);
    return MMP_OK;
fail:
    pthread_mutex_unlock(&s->mu);
    free(cp);
    memset(out, 0, sizeof *out);
    return st;
}

void mmp__model_put(mmp__model_ref *ref) {
    if (!ref || !ref->model) {
        if (ref) memset(ref, 0, sizeof *ref);
        return;
    }
    if (!ref->store) {
        ref->free_fn(ref->model);
        mmp_modelfile_free(ref->own_mf);
    } else {
        pthread_mutex_lock(&ref->store->mu);
        if (ref->entry) release_locked(ref->store, ref->model, false);
        else {
            ref->free_fn(ref->model);
            if (ref->store_mf) release_locked(ref->store, ref->store_mf, true);
        }
        pthread_mutex_unlock(&ref->store->mu);
    }
    memset(ref, 0, sizeof *ref);
}
