/* Thread pool: see threadpool.h.
 *
 * One job at a time, described by a 64-bit state word:
 *   bits 63..32  job generation (bumped when a job opens)
 *   bit  31      OPEN: workers may join the job
 *   bits 30..0   workers currently inside the job
 * A worker joins with a CAS that increments the count only while the job is OPEN, so the
 * caller can close a job (CAS from "OPEN, 0 inside" to "closed, 0 inside") and know that no
 * worker is reading the job fields any more; then it may rewrite them for the next job.
 * Inside a job, chunks are claimed from an atomic counter: the caller does chunks too, so
 * work never waits for a worker to wake up, only for chunks already claimed.
 *
 * Sleeping: workers spin at most SPIN_NS after their last job, then wait on cv_work; the
 * caller signals it only when some worker sleeps (n_sleeping, checked after publishing the
 * job: both sides use sequentially consistent operations, so either the caller sees the
 * sleeper or the sleeper sees the new job). The caller likewise spins briefly for workers
 * still inside a job and then waits on cv_done. One caller at a time per pool. */
#include "threadpool.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long a worker spins for the next job before sleeping (ns). Decode graphs put a few
 * microseconds of small single-threaded nodes between two big ones; longer gaps (the end of
 * a graph, sampling, an sgemm) are worth a wake-up. */
#define SPIN_NS 50000
/* How long the caller spins for workers still finishing a claimed chunk before sleeping. */
#define WAIT_SPIN_NS 50000

/* Jobs run serially after splitting was found to lose (adapt()). */
#define MIN_BACKOFF 16
#define MAX_BACKOFF 1024

#define ST_OPEN ((uint64_t)1 << 31)
#define ST_ACTIVE ((uint64_t)0x7fffffff)
#define ST_GEN(s) ((uint32_t)((s) >> 32))

struct worker {
    struct mmp__pool *pool;
    pthread_t thread;
};

struct mmp__pool {
    int n_threads;
    struct worker *workers;       /* [n_threads-1] */
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;       /* workers sleep here between jobs */
    pthread_cond_t cv_done;       /* the caller sleeps here for workers inside a job */
    _Alignas(64) _Atomic uint64_t state;
    _Alignas(64) atomic_int next; /* next chunk to claim */
    _Alignas(64) atomic_int n_sleeping;
    atomic_bool caller_waiting;
    atomic_bool park;
    atomic_bool stop;
    /* The job: written by the caller while it is closed, read by workers that joined it. */
    mmp__task_fn fn;
    void *arg;
    int n_chunks;
    /* Caller-only: is splitting paying off? (see adapt()) */
    double gain;                  /* moving average of (estimated 1-thread time - real) / estimated */
    int serial_left;              /* jobs still to run on the caller alone before trying again */
    int backoff;                  /* length of the next serial stretch */
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_chunks(struct mmp__pool *p) {
    const mmp__task_fn fn = p->fn;
    void *arg = p->arg;
    const int n = p->n_chunks;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n) break;
        fn(arg, i, n);
    }
}

static void *worker_main(void *p_) {
    struct worker *w = p_;
    struct mmp__pool *p = w->pool;
    uint32_t seen = ST_GEN(atomic_load_explicit(&p->state, memory_order_acquire));
    int64_t spin_from = now_ns();
    unsigned spins = 0;
    for (;;) {
        uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
        if (atomic_load_explicit(&p->stop, memory_order_relaxed)) break;
        if (ST_GEN(s) != seen) {
            if (!(s & ST_OPEN)) {            /* that job is over already */
                seen = ST_GEN(s);
                continue;
            }
            if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acquire, memory_order_relaxed)) {
                seen = ST_GEN(s);
                run_chunks(p);
                uint64_t prev = atomic_fetch_sub(&p->state, 1);   /* seq_cst: pairs with caller_waiting */
                if ((prev & ST_ACTIVE) == 1 && atomic_load(&p->caller_waiting)) {
                    pthread_mutex_lock(&p->mu);
                    pthread_cond_signal(&p->cv_done);
                    pthread_mutex_unlock(&p->mu);
                }
                spin_from = now_ns();
                spins = 0;
            }
            continue;
        }
        CPU_RELAX();
        if ((++spins & 63) != 0) continue;
        if (!atomic_load_explicit(&p->park, memory_order_relaxed) && now_ns() - spin_from < SPIN_NS) continue;
        /* Sleep until a new job (or stop). */
        pthread_mutex_lock(&p->mu);
        atomic_fetch_add(&p->n_sleeping, 1);
        while (ST_GEN(atomic_load(&p->state)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv_work, &p->mu);
        atomic_fetch_sub(&p->n_sleeping, 1);
        pthread_mutex_unlock(&p->mu);
        spin_from = now_ns();
        spins = 0;
    }
    return NULL;
}

struct mmp__pool *mmp__pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > 1024)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "thread pool: n_threads=%d (must be 1..1024)", n_threads);
    struct mmp__pool *p = mmp__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    p->backoff = MIN_BACKOFF;
    atomic_init(&p->state, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->caller_waiting, false);
    atomic_init(&p->park, false);
    atomic_init(&p->stop, false);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (n_threads > 1) {
        p->workers = mmp__calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) { mmp__pool_free(p); return NULL; }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
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
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->workers);
    free(p);
}

int mmp__pool_n_threads(const struct mmp__pool *p) { return p ? p->n_threads : 1; }

void mmp__pool_park(struct mmp__pool *p) {
    if (p && p->n_threads > 1) atomic_store_explicit(&p->park, true, memory_order_relaxed);
}

/* Adaptive fallback. On an oversubscribed machine a worker can be preempted while it holds a
 * chunk, and the caller then waits a scheduler time slice (milliseconds) for it; if that
 * happens often, splitting costs more than it saves. After each job the caller compares its
 * time with an estimate of the 1-thread time (its own time per chunk x chunks); when the
 * moving average says splitting loses, the next `backoff` jobs run on the caller alone
 * (workers sleep), then splitting is tried again; the stretch doubles while it keeps losing
 * (up to MAX_BACKOFF jobs) and resets once it wins. The pool then never costs much more
 * than 1 thread would, and still uses all threads whenever they are actually there. */

static void adapt(struct mmp__pool *p, int64_t t_job, int64_t t_own, int own, int n) {
    if (t_job <= 0) return;
    const double est = own > 0 ? (double)t_own * n / own : 2.0 * (double)t_job;
    const double rel = (est - (double)t_job) / (est > 1.0 ? est : 1.0);
    /* One straggler (a job twice as long as on 1 thread, rel -1) must not switch splitting off
     * where it usually wins: averaging over ~8 jobs, a job counts at most -1. */
    p->gain = 0.875 * p->gain + 0.125 * (rel < -1.0 ? -1.0 : rel);
    if (p->gain < -0.1) {
        p->serial_left = p->backoff;
        p->backoff = p->backoff * 2 > MAX_BACKOFF ? MAX_BACKOFF : p->backoff * 2;
        p->gain = 0.0;
    } else if (p->gain > 0.1) {
        p->backoff = MIN_BACKOFF;
    }
}

void mmp__pool_run_chunks(struct mmp__pool *p, mmp__task_fn fn, void *arg, int n_chunks) {
    if (n_chunks < 1) n_chunks = 1;
    if (n_chunks == 1 || p->n_threads == 1 || p->serial_left > 0) {
        if (n_chunks > 1 && p->serial_left > 0) p->serial_left--;
        for (int i = 0; i < n_chunks; i++) fn(arg, i, n_chunks);
        return;
    }
    const int64_t t_open = now_ns();
    /* The previous job is closed with nobody inside: the fields are ours. */
    p->fn = fn;
    p->arg = arg;
    p->n_chunks = n_chunks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->park, false, memory_order_relaxed);
    const uint32_t gen = ST_GEN(atomic_load_explicit(&p->state, memory_order_relaxed)) + 1;
    const uint64_t open = ((uint64_t)gen << 32) | ST_OPEN, closed = (uint64_t)gen << 32;
    atomic_store(&p->state, open);   /* seq_cst: publishes the job, pairs with n_sleeping */
    const int sleeping = atomic_load(&p->n_sleeping);
    if (sleeping > 0) {
        /* Wake only as many workers as there are chunks for besides ours. */
        pthread_mutex_lock(&p->mu);
        if (n_chunks - 1 >= sleeping) pthread_cond_broadcast(&p->cv_work);
        else for (int i = 0; i < n_chunks - 1; i++) pthread_cond_signal(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }
    int own = 0;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n_chunks) break;
        fn(arg, i, n_chunks);
        own++;
    }
    const int64_t t_own = now_ns() - t_open;
    /* All chunks are claimed; close the job once the workers inside have left. */
    int64_t t0 = 0;
    unsigned spins = 0;
    for (;;) {
        uint64_t expect = open;
        if (atomic_compare_exchange_weak_explicit(&p->state, &expect, closed, memory_order_acquire, memory_order_relaxed))
            break;
        CPU_RELAX();
        if ((++spins & 63) != 0) continue;
        if (t0 == 0) { t0 = now_ns(); continue; }
        if (now_ns() - t0 < WAIT_SPIN_NS) continue;
        /* A worker inside is slow (preempted, most likely): sleep until it leaves. */
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waiting, true);
        while ((atomic_load(&p->state) & ST_ACTIVE) != 0) pthread_cond_wait(&p->cv_done, &p->mu);
        atomic_store(&p->caller_waiting, false);
        pthread_mutex_unlock(&p->mu);
        t0 = 0;
    }
    adapt(p, now_ns() - t_open, t_own, own, n_chunks);
}

void mmp__pool_run(struct mmp__pool *p, mmp__task_fn fn, void *arg, int nth) {
    if (nth > p->n_threads) nth = p->n_threads;
    mmp__pool_run_chunks(p, fn, arg, nth);
}
