/* Private: a small thread pool for the CPU backend.
 *
 * n_threads-1 workers plus the calling thread run one task at a time: fn(arg, ith, nth) for
 * ith in 0..nth-1 (ith 0 on the caller). Workers spin briefly after a task (so a graph of
 * many small nodes does not pay a wake-up per node) and then sleep on a condition variable
 * (so they do not compete with OpenBLAS threads during a long sgemm). */
#ifndef MMP_CORE_THREADPOOL_H
#define MMP_CORE_THREADPOOL_H

#include <stdbool.h>

typedef void (*mmp__task_fn)(void *arg, int ith, int nth);

struct mmp__pool;

/* NULL + message on failure. n_threads >= 1. */
struct mmp__pool *mmp__pool_new(int n_threads);
void mmp__pool_free(struct mmp__pool *p);
int mmp__pool_n_threads(const struct mmp__pool *p);
/* Run fn on nth threads (1 <= nth <= n_threads; clamped) and wait for all of them. */
void mmp__pool_run(struct mmp__pool *p, mmp__task_fn fn, void *arg, int nth);

#endif
