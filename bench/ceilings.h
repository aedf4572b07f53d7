/* Machine ceilings measured in the same run as a benchmark (header-only: every bench/bench_*.c
 * is its own program): streaming memory-read bandwidth and OpenBLAS sgemm GFLOP/s, plus a
 * tiny fixed-size thread team for splitting work across threads without per-call
 * pthread_create cost.
 *
 * Bandwidth: each thread sums its contiguous share of a buffer far larger than the caches
 * (the sum is kept so the loads cannot be removed); best of several passes. */
#ifndef MMP_BENCH_CEILINGS_H
#define MMP_BENCH_CEILINGS_H

#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

static inline double mmpb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- thread team: run fn(arg, ith, nth) on nth threads (the caller is thread 0) ---- */

typedef void (*mmpb_task_fn)(void *arg, int ith, int nth);

#define MMPB_MAX_THREADS 64
struct mmpb_team;
typedef struct { struct mmpb_team *team; int ith; } mmpb_worker_arg;
typedef struct mmpb_team {
    int nth;
    pthread_t th[MMPB_MAX_THREADS];
    pthread_barrier_t start, done;
    mmpb_task_fn fn;
    void *arg;
    int quit;
    mmpb_worker_arg w[MMPB_MAX_THREADS];
} mmpb_team;

static void *mmpb__worker(void *p) {
    mmpb_worker_arg *w = (mmpb_worker_arg *)p;
    mmpb_team *t = w->team;
    for (;;) {
        pthread_barrier_wait(&t->start);
        if (t->quit) break;
        t->fn(t->arg, w->ith, t->nth);
        pthread_barrier_wait(&t->done);
    }
    return NULL;
}

static inline int mmpb_team_init(mmpb_team *t, int nth) {
    memset(t, 0, sizeof *t);
    if (nth < 1) nth = 1;
    if (nth > MMPB_MAX_THREADS) nth = MMPB_MAX_THREADS;
    t->nth = nth;
    pthread_barrier_init(&t->start, NULL, (unsigned)nth);
    pthread_barrier_init(&t->done, NULL, (unsigned)nth);
    for (int i = 1; i < nth; i++) {
        t->w[i].team = t;
        t->w[i].ith = i;
        if (pthread_create(&t->th[i], NULL, mmpb__worker, &t->w[i]) != 0) {
            fprintf(stderr, "bench: pthread_create failed\n");
            exit(1);
        }
    }
    return 0;
}

static inline void mmpb_team_run(mmpb_team *t, mmpb_task_fn fn, void *arg) {
    t->fn = fn;
    t->arg = arg;
    if (t->nth > 1) pthread_barrier_wait(&t->start);
    fn(arg, 0, t->nth);
    if (t->nth > 1) pthread_barrier_wait(&t->done);
}

static inline void mmpb_team_free(mmpb_team *t) {
    if (t->nth > 1) {
        t->quit = 1;
        pthread_barrier_wait(&t->start);
        for (int i = 1; i < t->nth; i++) pthread_join(t->th[i], NULL);
    }
    pthread_barrier_destroy(&t->start);
    pthread_barrier_destroy(&t->done);
}

/* ---- memory read bandwidth ---- */

typedef struct {
    const float *buf;
    size_t n;             /* floats, a multiple of 64 * nth */
    float sink[MMPB_MAX_THREADS];
} mmpb_bw_job;

static void mmpb__bw_task(void *p, int ith, int nth) {
    mmpb_bw_job *j = (mmpb_bw_job *)p;
    const size_t per = j->n / (size_t)nth;
    const float *a = j->buf + per * (size_t)ith;
#if defined(__AVX2__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= per; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    float s = 0;
    for (int k = 0; k < 8; k++) s += tmp[k];
#else
    float s = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= per; i += 4) { s += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; }
    s += s1 + s2 + s3;
#endif
    j->sink[ith] = s;
}

/* Best-of-`reps` streaming read bandwidth in GB/s (1e9 bytes/s) over `bytes` bytes. */
static inline double mmpb_read_bandwidth(size_t bytes, int nth, int reps) {
    size_t n = bytes / sizeof(float);
    n -= n % (size_t)(64 * nth);
    float *buf = aligned_alloc(64, n * sizeof(float));
    if (!buf) { fprintf(stderr, "bench: cannot allocate %zu bytes\n", bytes); exit(1); }
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7); /* fault every page in */
    mmpb_team team;
    mmpb_team_init(&team, nth);
    mmpb_bw_job job = { .buf = buf, .n = n };
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = mmpb_now();
        mmpb_team_run(&team, mmpb__bw_task, &job);
        double dt = mmpb_now() - t0;
        if (dt < best) best = dt;
    }
    mmpb_team_free(&team);
    float sink = 0;
    for (int i = 0; i < nth; i++) sink += job.sink[i];
    if (sink == -1.0f) printf("(impossible)\n");
    free(buf);
    return (double)n * sizeof(float) / best / 1e9;
}

/* ---- OpenBLAS sgemm ---- */

/* C[M,N] = A[M,K] . B[N,K]^T, the prefill shape: A = activations (M tokens of K), B = weights
 * (N rows of K, row-major). Best of `reps`, GFLOP/s = 2*M*N*K / t. */
static inline double mmpb_sgemm_gflops(int M, int N, int K, int nth, int reps) {
    float *A = aligned_alloc(64, (size_t)M * K * sizeof(float));
    float *B = aligned_alloc(64, (size_t)N * K * sizeof(float));
    float *C = aligned_alloc(64, (size_t)M * N * sizeof(float));
    if (!A || !B || !C) { fprintf(stderr, "bench: cannot allocate sgemm buffers\n"); exit(1); }
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7) % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)((i * 5) % 11) * 0.01f;
    openblas_set_num_threads(nth);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = mmpb_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        double dt = mmpb_now() - t0;
        if (dt < best) best = dt;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * M * (double)N * K / best / 1e9;
}

#endif
