/* mmpipe run: generate text from a prompt with an LLM (GGUF file or HF folder), streaming the
 * tokens to stdout; or dump the logits of every prompt position (--dump-logits).
 * Also the helpers the chat and tokenize commands share (declared in cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* shared LLM CLI helpers                                                                      */

void mmp_cli_llm_opts_init(mmp_cli_llm_opts *o) {
    memset(o, 0, sizeof *o);
    o->sp = mmp_sampler_params_default();
    o->seed_set = false;
    o->n_predict = -1;
    o->n_ctx = 0;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    o->n_threads = nc > 0 ? (int)MMP_CLI_MIN(nc, 16) : 1;
}

int mmp_cli_llm_opt(const char *cmd, int argc, char **argv, int *i, mmp_cli_llm_opts *o) {
    const char *a = argv[*i];
    static const char *const valued[] = { "-m", "--model", "-n", "--n-predict", "--temp", "--top-k", "--top-p", "--min-p",
                                          "--repeat-penalty", "--repeat-last-n", "--seed", "--threads", "-t", "--ctx",
                                          "-c", "--stop", NULL };
    int is_valued = 0;
    for (int k = 0; valued[k]; k++) if (!strcmp(a, valued[k])) is_valued = 1;
    if (!is_valued) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "mmpipe %s: %s needs a value (see 'mmpipe %s --help')\n", cmd, a, cmd);
        return -1;
    }
    const char *v = argv[++*i];
    long l = 0;
    float f = 0.0f;
    bool ok = true;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { ok = mmp_cli_parse_long(v, 0, 1 << 30, &l); o->n_predict = (int)l; }
    else if (!strcmp(a, "--temp")) { ok = mmp_cli_parse_float(v, 0.0f, 1e6f, &f); o->sp.temperature = f; }
    else if (!strcmp(a, "--top-k")) { ok = mmp_cli_parse_long(v, 0, 1 << 30, &l); o->sp.top_k = (int32_t)l; }
    else if (!strcmp(a, "--top-p")) { ok = mmp_cli_parse_float(v, 1e-9f, 1.0f, &f); o->sp.top_p = f; }
    else if (!strcmp(a, "--min-p")) { ok = mmp_cli_parse_float(v, 0.0f, 1.0f, &f); o->sp.min_p = f; }
    else if (!strcmp(a, "--repeat-penalty")) { ok = mmp_cli_parse_float(v, 1e-6f, 1e6f, &f); o->sp.repeat_penalty = f; }
    else if (!strcmp(a, "--repeat-last-n")) { ok = mmp_cli_parse_long(v, -1, 4096, &l); o->sp.repeat_last_n = (int32_t)l; }
    else if (!strcmp(a, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        ok = !errno && end != v && !*end && v[0] != '-';
        o->sp.seed = s;
        o->seed_set = true;
    }
    else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) { ok = mmp_cli_parse_long(v, 1, 1024, &l); o->n_threads = (int)l; }
    else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) { ok = mmp_cli_parse_long(v, 0, 1 << 24, &l); o->n_ctx = (int)l; }
    else if (!strcmp(a, "--stop")) {
        if (o->n_stop >= MMP_CLI_MAX_STOP) { fprintf(stderr, "mmpipe %s: at most %d --stop strings\n", cmd, MMP_CLI_MAX_STOP); return -1; }
        if (!*v) { fprintf(stderr, "mmpipe %s: --stop needs a non-empty string\n", cmd); return -1; }
        o->stop[o->n_stop++] = v;
    }
    if (!ok) {
        fprintf(stderr, "mmpipe %s: bad value '%s' for %s (see 'mmpipe %s --help')\n", cmd, v, a, cmd);
        return -1;
    }
    return 1;
}

const char *mmp_cli_llm_opts_help(void) {
    return
        "  -m, --model PATH       the model: a GGUF file or a Hugging Face folder (required)\n"
        "  -n, --n-predict N      tokens to generate (run: default 256; chat: per answer, default 512)\n"
        "  --temp T               temperature; 0 = greedy, always the most likely token (default 0.8)\n"
        "  --top-k K              sample among the K most likely tokens; 0 = off (default 40)\n"
        "  --top-p P              ... among the most likely tokens that make up probability P; 1 = off (default 0.95)\n"
        "  --min-p P              drop tokens less likely than P x the most likely one; 0 = off (default 0.05)\n"
        "  --repeat-penalty R     make recently seen tokens less likely; 1 = off (default 1)\n"
        "  --repeat-last-n N      how many recent tokens the penalty looks at (default 64)\n"
        "  --seed S               random seed; the same seed gives the same text (default: random, printed)\n"
        "  --stop STR             stop when the text contains STR (repeatable)\n"
        "  -t, --threads N        CPU threads (default: all cores, at most 16)\n"
        "  -c, --ctx N            context length in tokens (default: the model's, at most 4096)\n";
}

bool mmp_cli_parse_ids(const char *s, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return false;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) { free(v); return false; }
        v[(*n)++] = (int32_t)x;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) { free(v); return false; } /* trailing comma */
    }
    if (*n == 0) { free(v); return false; }
    *ids = v;
    return true;
}

mmp_llm *mmp_cli_llm_load(const char *cmd, const char *path, bool vocab_only) {
    if (!path) { fprintf(stderr, "mmpipe %s: no model given: use -m MODEL (see 'mmpipe %s --help')\n", cmd, cmd); return NULL; }
    mmp_llm_load_params lp = mmp_llm_load_params_default();
    lp.vocab_only = vocab_only;
    mmp_llm *m = mmp_llm_load(path, &lp);
    if (!m) mmp_cli_fail(cmd, "cannot load the model");
    return m;
}

/* Print a piece, dropping the SentencePiece leading space of the first token after BOS (as
 * llama2.c's run.c and llama.cpp's detokenizer do). */
int64_t mmp_cli_piece(const mmp_tokenizer *tok, int32_t prev, int32_t id, char *buf, size_t size) {
    int64_t n = mmp_tokenizer_token_to_piece(tok, id, false, buf, size);
    if (n < 0) return n;
    if ((size_t)n > size) n = (int64_t)size; /* pieces longer than the buffer are cut */
    if (prev >= 0 && prev == mmp_tokenizer_bos(tok) && n > 0 && buf[0] == ' ') {
        memmove(buf, buf + 1, (size_t)n - 1);
        n--;
    }
    return n;
}

double mmp_cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t mmp_cli_random_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* ------------------------------------------------------------------------------------------ */
/* run                                                                                         */

static void run_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe run -m MODEL [-p PROMPT] [options]\n"
        "\n"
        "Generate text with a language model and print it as it is produced. The prompt is printed\n"
        "first, then the model's continuation; timings go to stderr. Without -p the model starts\n"
        "from the beginning-of-text token alone and writes whatever it likes (as llama2.c's run.c).\n"
        "\n"
        "options:\n"
        "  -p, --prompt TEXT      the text to continue\n"
        "%s"
        "  --token-ids 1,2,3      use these token ids as the prompt instead of text\n"
        "  --dump-logits FILE     write the logits of every prompt position to FILE.safetensors\n"
        "                         (tensor \"logits\" [n_prompt, n_vocab] f32, \"input_ids\" [n_prompt] i32);\n"
        "                         nothing is generated unless -n is given\n"
        "  --no-echo              do not print the prompt\n"
        "  -h, --help             this help\n"
        "\n"
        "examples:\n"
        "  mmpipe run -m models/stories260K.gguf -n 200 --temp 0\n"
        "  mmpipe run -m models/stories260K.gguf -p \"Once upon a time\" --seed 42\n"
        "  mmpipe run -m model.gguf --token-ids 1,450,4996 --dump-logits logits.safetensors\n",
        mmp_cli_llm_opts_help());
}

static int dump_logits(mmp_llm_ctx *ctx, const mmp_llm_hparams *hp, const int32_t *ids, size_t n, const char *path) {
    float *lg = malloc(n * (size_t)hp->n_vocab * sizeof *lg);
    if (!lg) { fprintf(stderr, "mmpipe run: out of memory for %zu x %d logits\n", n, hp->n_vocab); return 1; }
    mmp_llm_batch b = { .n = (int32_t)n, .tokens = ids, .logits = lg, .logits_all = true };
    if (mmp_llm_decode(ctx, &b)) { free(lg); return mmp_cli_fail("run", "decode failed"); }
    mmp_safetensors_writer *w = mmp_safetensors_writer_new();
    int64_t shape[2] = { (int64_t)n, hp->n_vocab }, shape_ids[1] = { (int64_t)n };
    enum mmp_status st = w ? MMP_OK : MMP_ERR_NOMEM;
    if (!st) st = mmp_safetensors_writer_add(w, "logits", MMP_TYPE_F32, 2, shape, lg);
    if (!st) st = mmp_safetensors_writer_add(w, "input_ids", MMP_TYPE_I32, 1, shape_ids, ids);
    if (!st) st = mmp_safetensors_writer_write(w, path);
    mmp_safetensors_writer_free(w);
    free(lg);
    if (st) return mmp_cli_fail("run", "cannot write the logits");
    fprintf(stderr, "mmpipe run: wrote logits [%zu, %d] to %s\n", n, hp->n_vocab, path);
    return 0;
}

int mmp_cli_run(int argc, char **argv) {
    mmp_cli_llm_opts o;
    mmp_cli_llm_opts_init(&o);
    const char *prompt = NULL, *ids_arg = NULL, *dump = NULL;
    bool echo = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_is_help(a)) { run_usage(stdout); return 0; }
        int r = mmp_cli_llm_opt("run", argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt") || !strcmp(a, "--token-ids") || !strcmp(a, "--dump-logits")) {
            if (i + 1 >= argc) { fprintf(stderr, "mmpipe run: %s needs a value (see 'mmpipe run --help')\n", a); return 2; }
            const char *v = argv[++i];
            if (a[1] == 'p' || !strcmp(a, "--prompt")) prompt = v;
            else if (!strcmp(a, "--token-ids")) ids_arg = v;
            else dump = v;
        } else if (!strcmp(a, "--no-echo")) echo = false;
        else { fprintf(stderr, "mmpipe run: unknown argument '%s' (see 'mmpipe run --help')\n", a); return 2; }
    }
    if (prompt && ids_arg) { fprintf(stderr, "mmpipe run: give -p or --token-ids, not both\n"); return 2; }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (ids_arg && !mmp_cli_parse_ids(ids_arg, &ids, &n_ids)) {
        fprintf(stderr, "mmpipe run: --token-ids '%s': expected comma-separated non-negative integers like 1,2,3\n", ids_arg);
        return 2;
    }
    if (!o.model) { free(ids); fprintf(stderr, "mmpipe run: no model given: use -m MODEL (see 'mmpipe run --help')\n"); return 2; }
    if (o.n_predict < 0) o.n_predict = dump ? 0 : 256;
    if (!o.seed_set) o.sp.seed = mmp_cli_random_seed();

    int rc = 1;
    mmp_llm_ctx *ctx = NULL;
    mmp_sampler *smp = NULL;
    mmp_stop *stop = NULL;
    float *logits = NULL;
    mmp_llm *m = mmp_cli_llm_load("run", o.model, false);
    if (!m) { free(ids); return 1; }
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(m);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(m);
    if (!ids) {
        if (!tok) { fprintf(stderr, "mmpipe run: %s has no tokenizer: give the prompt as --token-ids\n", o.model); goto done; }
        if (!prompt || !*prompt) {
            /* no prompt: start from BOS alone */
            int32_t bos = mmp_tokenizer_bos(tok);
            if (bos < 0) { fprintf(stderr, "mmpipe run: the vocabulary has no BOS token: give a prompt with -p\n"); goto done; }
            ids = malloc(sizeof *ids);
            if (!ids) goto done;
            ids[0] = bos;
            n_ids = 1;
        } else if (mmp_tokenizer_encode(tok, prompt, strlen(prompt), true, true, &ids, &n_ids)) {
            mmp_cli_fail("run", "cannot tokenize the prompt");
            goto done;
        }
        if (n_ids == 0) { fprintf(stderr, "mmpipe run: the prompt gives no tokens\n"); goto done; }
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] >= hp->n_vocab) {
            fprintf(stderr, "mmpipe run: token id %d is out of range (the vocabulary has %d tokens)\n", ids[i], hp->n_vocab);
            rc = 2;
            goto done;
        }
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = o.n_ctx;
    cp.n_threads = o.n_threads;
    if (!(ctx = mmp_llm_ctx_new(m, &cp))) { mmp_cli_fail("run", "cannot create the context"); goto done; }
    if ((size_t)mmp_llm_ctx_n_ctx(ctx) < n_ids) {
        fprintf(stderr, "mmpipe run: the prompt has %zu tokens but the context holds %d (use --ctx N)\n", n_ids, mmp_llm_ctx_n_ctx(ctx));
        goto done;
    }
    if (dump) {
        rc = dump_logits(ctx, hp, ids, n_ids, dump);
        if (rc || o.n_predict == 0) goto done;
        mmp_llm_ctx_truncate(ctx, 0);
        rc = 1;
    }
    if (!tok) { fprintf(stderr, "mmpipe run: %s has no tokenizer: cannot print generated text\n", o.model); goto done; }
    if (!(smp = mmp_sampler_new(hp->n_vocab, &o.sp))) { mmp_cli_fail("run", "bad sampling options"); goto done; }
    {
        int32_t eog[2];
        int n_eog = 0;
        if (mmp_tokenizer_eos(tok) >= 0) eog[n_eog++] = mmp_tokenizer_eos(tok);
        if (mmp_tokenizer_eot(tok) >= 0 && mmp_tokenizer_eot(tok) != mmp_tokenizer_eos(tok)) eog[n_eog++] = mmp_tokenizer_eot(tok);
        if (!(stop = mmp_stop_new(eog, n_eog, o.stop, o.n_stop, o.n_predict))) { mmp_cli_fail("run", NULL); goto done; }
    }
    if (!(logits = malloc((size_t)hp->n_vocab * sizeof *logits))) { fprintf(stderr, "mmpipe run: out of memory\n"); goto done; }
    if (echo && prompt) { fputs(prompt, stdout); fflush(stdout); }
    for (size_t i = 0; i < n_ids; i++) mmp_sampler_accept(smp, ids[i]);

    double t0 = mmp_cli_now();
    mmp_llm_batch b = { .n = (int32_t)n_ids, .tokens = ids, .logits = logits };
    if (mmp_llm_decode(ctx, &b)) { mmp_cli_fail("run", "decode failed"); goto done; }
    double t1 = mmp_cli_now(), t_gen = 0.0;
    int n_gen = 0;
    int32_t prev = ids[n_ids - 1];
    enum mmp_stop_reason why = o.n_predict == 0 ? MMP_STOP_MAX_TOKENS : MMP_STOP_NONE;
    char piece[512];
    while (why == MMP_STOP_NONE) {
        int32_t id = mmp_sampler_sample(smp, logits);
        if (id < 0) { mmp_cli_fail("run", "sampling failed"); goto done; }
        mmp_sampler_accept(smp, id);
        n_gen++;
        int64_t pn = mmp_tokenizer_is_eog(tok, id) ? 0 : mmp_cli_piece(tok, prev, id, piece, sizeof piece);
        if (pn < 0) { mmp_cli_fail("run", "cannot decode a token"); goto done; }
        const char *emit;
        size_t emit_n;
        why = mmp_stop_push(stop, mmp_tokenizer_is_eog(tok, id) ? mmp_tokenizer_eos(tok) : id, piece, (size_t)pn, &emit, &emit_n);
        if (why == MMP_STOP_NONE && mmp_tokenizer_is_eog(tok, id)) why = MMP_STOP_EOG;
        if (emit_n) { fwrite(emit, 1, emit_n, stdout); fflush(stdout); }
        if (why != MMP_STOP_NONE) break;
        if (mmp_llm_ctx_n_past(ctx) >= mmp_llm_ctx_n_ctx(ctx)) {
            mmp_stop_flush(stop, &emit, &emit_n);
            fwrite(emit, 1, emit_n, stdout);
            fprintf(stderr, "\nmmpipe run: the context is full (%d tokens; use --ctx N for more)", mmp_llm_ctx_n_ctx(ctx));
            break;
        }
        double ts = mmp_cli_now();
        mmp_llm_batch bb = { .n = 1, .tokens = &id, .logits = logits };
        if (mmp_llm_decode(ctx, &bb)) { mmp_cli_fail("run", "decode failed"); goto done; }
        t_gen += mmp_cli_now() - ts;
        prev = id;
    }
    fflush(stdout);
    /* tokens/s of the decode calls: the prompt in one batch, then one call per generated token
     * (the last sampled token is not decoded) */
    int n_dec = n_gen > 0 ? n_gen - (why != MMP_STOP_NONE ? 1 : 0) : 0;
    fprintf(stderr, "\n\nprompt: %zu tokens in %.1f ms (%.1f tokens/s) | generation: %d tokens, %d decoded in %.1f ms (%.1f tokens/s) | "
            "stop: %s | seed %llu\n", n_ids, (t1 - t0) * 1e3, (double)n_ids / MMP_CLI_MAXD(t1 - t0, 1e-9), n_gen, n_dec,
            t_gen * 1e3, n_dec > 0 ? (double)n_dec / MMP_CLI_MAXD(t_gen, 1e-9) : 0.0, mmp_stop_reason_name(why),
            (unsigned long long)o.sp.seed);
    rc = 0;
done:
    free(logits);
    free(ids);
    mmp_stop_free(stop);
    mmp_sampler_free(smp);
    mmp_llm_ctx_free(ctx);
    mmp_llm_free(m);
    return rc;
}
