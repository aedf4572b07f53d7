/* Private: a small thread pool for the CPU backend.
 *
 * n_threads-1 workers plus the calling thread run one job at a time. A job is n_chunks
 * independent chunks, fn(arg, i, n_chunks) for i in 0..n_chunks-1, each run exactly once by
 * whichever thread claims it (an atomic counter). The caller claims chunks too and, once none
 * are left, waits only for chunks a worker has already claimed: a worker that is asleep,
 * preempted or slow to wake never holds the caller up, so a job on 2 threads is never much
 * slower than on 1 even when the machine is oversubscribed.
 *
 * Workers spin for a short, bounded time after a job (so a graph whose big nodes are a few
 * microseconds apart does not pay a wake-up per node), then sleep on a condition variable:
 * no sched_yield loops. mmp__pool_park() sends spinning workers to sleep at once, before a
 * long call into OpenBLAS whose own threads need the cores.
 *
 * A chunk index is not a thread id. Tasks that index per-thread scratch by it must run with
 * n_chunks <= the number of scratch slots (mmp__pool_run clamps to n_threads for them). */
#ifndef MMP_CORE_THREADPOOL_H
#define MMP_CORE_THREADPOOL_H

#include <stdbool.h>

typedef void (*mmp__task_fn)(void *arg, int ith, int nth);

struct mmp__pool;

/* NULL + message on failure. n_threads >= 1. */
struct mmp__pool *mmp__pool_new(int n_threads);
void mmp__pool_free(struct mmp__pool *p);
int mmp__pool_n_threads(const struct mmp__pool *p);
/* Run fn as nth chunks (clamped to 1..n_threads, so ith can index per-thread scratch) and
 * wait for all of them. nth <= 1 runs fn(arg, 0, 1) on the calling thread, touching no
 * shared state at all. */
void mmp__pool_run(struct mmp__pool *p, mmp__task_fn fn, void *arg, int nth);
/* Same, with any number of chunks (n_chunks >= 1; not clamped): for work split into many
 * cache-sized pieces that need no per-thread scratch (mat-vec rows). */
void mmp__pool_run_chunks(struct mmp__pool *p, mmp__task_fn fn, void *arg, int n_chunks);
/* Ask spinning workers to sleep now (cheap; a later job wakes them). */
void mmp__pool_park(struct mmp__pool *p);

#endif
