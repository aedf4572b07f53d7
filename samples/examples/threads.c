/* threads: one model, loaded once, answering in two threads at the same time.
 *
 *   threads MODEL IMAGE "QUESTION" [MAX_TOKENS]
 *
 * A pipeline is a context: it holds session state (the LLM's KV cache) and is run by one
 * thread at a time. For parallel requests make one pipeline per thread, all created with one
 * model store (store.h): the LLM's weights are then loaded once and shared (read-only) by
 * every pipeline, and each model file is mapped once. The pipeline description and the
 * registry are read-only and shared too. Both threads here ask the stock "image-chat" pipeline
 * the same question and get the same answer as one thread alone would (greedy decoding).
 * Public API only (mmpipe/pipeline.h, mmpipe/store.h). */
#include <mmpipe/mmpipe.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_THREADS 2

typedef struct job {
    const mmp_pipeline_desc *desc;  /* shared, read-only */
    const mmp_registry *reg;        /* shared, read-only */
    mmp_store *store;               /* shared, thread-safe */
    const char *image, *prompt;
    char *answer;                   /* out: malloc'ed, NULL on failure */
    char error[512];
} job;

/* One context: this thread's pipeline over the shared store, run once. */
static void *worker(void *arg) {
    job *j = arg;
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = 1;     /* threads per stage, inside this context */
    pp.store = j->store;  /* models come from (and stay in) the shared store */
    mmp_pipeline *p = mmp_pipeline_new(j->desc, j->reg, &pp);
    int n_in = p ? mmp_pipeline_n_inputs(p) : 0, n_out = p ? mmp_pipeline_n_outputs(p) : 0;
    mmp_array **in = calloc((size_t)n_in + 1, sizeof *in), **out = calloc((size_t)n_out + 1, sizeof *out);
    if (p && in && out) {
        int i_image = mmp_pipeline_find_input(p, "image"), i_text = mmp_pipeline_find_input(p, "text");
        int o_text = mmp_pipeline_find_output(p, "text");
        if (i_image >= 0 && i_text >= 0 && o_text >= 0 &&
            (in[i_image] = mmp_array_from_image_file(j->image)) &&
            (in[i_text] = mmp_array_from_text(j->prompt, strlen(j->prompt))) &&
            mmp_pipeline_run(p, (const mmp_array *const *)in, out) == MMP_OK)
            j->answer = mmp_array_to_text(out[o_text]);
    }
    if (!j->answer) snprintf(j->error, sizeof j->error, "%s", mmp_last_error());  /* per thread */
    for (int i = 0; in && i < n_in; i++) mmp_array_free(in[i]);
    for (int i = 0; out && i < n_out; i++) mmp_array_free(out[i]);
    free(in);
    free(out);
    mmp_pipeline_free(p);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: threads MODEL IMAGE \"QUESTION\" [MAX_TOKENS]\n");
        return 2;
    }
    int rc = 1;
    char prompt[4096];
    snprintf(prompt, sizeof prompt, "<image>\n%s", argv[3]);
    mmp_registry *reg = mmp_registry_new();
    mmp_store *store = mmp_store_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_stock("image-chat");
    if (!reg || !store || !d || mmp_pipeline_desc_set_param(d, "model", argv[1]) != MMP_OK ||
        mmp_pipeline_desc_set_param(d, "n", argc > 4 ? argv[4] : "64") != MMP_OK) {
        fprintf(stderr, "threads: %s\n", mmp_last_error());
        goto done;
    }

    job jobs[N_THREADS];
    pthread_t tid[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        jobs[t] = (job){ .desc = d, .reg = reg, .store = store, .image = argv[2], .prompt = prompt };
        if (pthread_create(&tid[t], NULL, worker, &jobs[t]) != 0) {
            fprintf(stderr, "threads: cannot start a thread\n");
            for (int k = 0; k < t; k++) { pthread_join(tid[k], NULL); free(jobs[k].answer); }
            rc = 2;
            goto done;
        }
    }
    bool ok = true;
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(tid[t], NULL);
        if (jobs[t].answer) printf("thread %d: %s\n", t, jobs[t].answer);
        else { fprintf(stderr, "threads: thread %d: %s\n", t, jobs[t].error); ok = false; }
    }
    if (ok) {
        bool same = strcmp(jobs[0].answer, jobs[1].answer) == 0;
        mmp_store_stats s = mmp_store_get_stats(store);
        printf("same answer: %s\n", same ? "yes" : "NO");
        printf("store: %lld file opens, %lld model loads, %lld served from the store\n", (long long)s.file_opens,
               (long long)s.model_loads, (long long)s.hits);
        rc = same ? 0 : 1;
    }
    for (int t = 0; t < N_THREADS; t++) free(jobs[t].answer);
done:
    mmp_pipeline_desc_free(d);
    mmp_store_free(store);  /* after every pipeline made with it */
    mmp_registry_free(reg);
    return rc;
}
