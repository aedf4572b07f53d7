/* Thread pool: see threadpool.h. One task at a time, generation counter + spin-then-sleep. */
#include "threadpool.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin iterations before a worker sleeps (~tens of microseconds). */
#define SPIN_ITERS 20000

struct worker {
    struct mmp__pool *pool;
    int id;                       /* 1..n_threads-1 */
    pthread_t thread;
};

struct mmp__pool {
    int n_threads;
    struct worker *workers;       /* [n_threads-1] */
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;              /* bumped for each task */
    atomic_int done;              /* workers finished with the current task */
    atomic_bool stop;
    /* current task (written by the caller before bumping gen) */
    mmp__task_fn fn;
    void *arg;
    int nth;
};

static void *worker_main(void *p_) {
    struct worker *w = p_;
    struct mmp__pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) { CPU_RELAX(); continue; }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = g;
        if (w->id < p->nth) p->fn(p->arg, w->id, p->nth);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel);
    }
    return NULL;
}

struct mmp__pool *mmp__pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > 1024)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "thread pool: n_threads=%d (must be 1..1024)", n_threads);
    struct mmp__pool *p = mmp__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, false);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->workers = mmp__calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) { mmp__pool_free(p); return NULL; }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].id = i + 1;
            if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
                mmp__pool_free(p);
                return mmp__error_null(MMP_ERR_NOMEM, "thread pool: cannot start thread %d of %d", i + 1, n_threads);
            }
            p->n_started++;
        }
    }
    return p;
}

void mmp__pool_free(struct mmp__pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->workers);
    free(p);
}

int mmp__pool_n_threads(const struct mmp__pool *p) { return p ? p->n_threads : 1; }

void mmp__pool_run(struct mmp__pool *p, mmp__task_fn fn, void *arg, int nth) {
    if (nth > p->n_threads) nth = p->n_threads;
    if (nth <= 1 || p->n_threads == 1) { fn(arg, 0, 1); return; }
    p->fn = fn;
    p->arg = arg;
    p->nth = nth;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    /* The mutex makes the bump and a sleeping worker's check atomic: no lost wake-up. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, nth);
    /* Wait for every worker (also those with id >= nth) so the task fields can be reused. */
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < p->n_threads - 1) {
        if (++spins < SPIN_ITERS) CPU_RELAX();
        else sched_yield();
    }
}
