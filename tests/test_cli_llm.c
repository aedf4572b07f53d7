/* The LLM commands of the CLI, run as a user runs them (the built binary through popen):
 * `run` on the shipped models against llama2.c's own output, logits of converted files against
 * the HF goldens, stop strings, seeds, tokenize round trips, chat, and bad arguments. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_err[4096]; /* stderr of the last command */

/* Run `mmpipe ARGS` (a shell fragment); returns the exit status, *out the stdout (malloc'ed). */
#define mmpipe(out, out_len, ...) mmpt_run_cli(MMP_SOURCE_DIR, (out), (out_len), g_err, sizeof g_err, __VA_ARGS__)

static char *expected_text(size_t *len) {
    char *e = mmpt_read_file(mmpt_data("cli/expected_stdout.txt"), len);
    assert_non_null(e);
    return e;
}

/* llama2.c's run.c -t 0 -n 200 from BOS, byte for byte; the MoE upcycle must print the same. */
static void test_run_matches_llama2c(void **state) {
    (void)state;
    size_t elen;
    char *want = expected_text(&elen);
    const char *models[2] = { "models/stories260K.gguf", "models/stories260K-moe.gguf" };
    for (int i = 0; i < 2; i++) {
        char *out;
        size_t n;
        int rc = mmpipe(&out, &n, "run -m %s -n 200 --temp 0 --threads 1", models[i]);
        if (rc) fail_msg("%s: exit %d: %s", models[i], rc, g_err);
        if (n != elen || memcmp(out, want, n)) fail_msg("%s printed:\n[%s]\nwant:\n[%s]", models[i], out, want);
        assert_non_null(strstr(g_err, "tokens/s"));
        free(out);
    }
    free(want);
}

/* A stop string ends the text right before its first occurrence (reference: the greedy text). */
static void test_stop_and_seed(void **state) {
    (void)state;
    size_t elen;
    char *want = expected_text(&elen);
    char *out;
    assert_int_equal(mmpipe(&out, NULL, "run -m models/stories260K.gguf -n 200 --temp 0 --stop 'red ball'"), 0);
    const char *at = strstr(want, "red ball");
    assert_non_null(at);
    assert_int_equal(strlen(out), (size_t)(at - want));
    assert_memory_equal(out, want, (size_t)(at - want));
    assert_non_null(strstr(g_err, "stop string"));
    free(out);
    /* a seed repeats a sampled text */
    char *a, *b;
    assert_int_equal(mmpipe(&a, NULL, "run -m models/stories260K.gguf -n 60 --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed 7"), 0);
    assert_int_equal(mmpipe(&b, NULL, "run -m models/stories260K.gguf -n 60 --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed 7"), 0);
    assert_string_equal(a, b);
    assert_true(strlen(a) > 20);
    free(a); free(b);
    /* a prompt is echoed and continued */
    assert_int_equal(mmpipe(&a, NULL, "run -m models/stories260K.gguf -p 'Once upon a time' -n 10 --temp 0"), 0);
    assert_true(!strncmp(a, "Once upon a time", 16) && strlen(a) > 16);
    free(a);
    free(want);
}

/* ---- logits of converted HF goldens (mmpipe convert, then run --dump-logits) ---- */

static const mmp_tensor_info *st_find(mmp_safetensors *st, const char *name) {
    const mmp_tensor_info *t = mmp_safetensors_find(st, name);
    if (!t) fail_msg("missing %s", name);
    return t;
}

/* relative L2 of the logits of `model` for the golden's input_ids vs its logits */
static double logits_err(const char *model, const char *golden_dir) {
    char io_path[512];
    snprintf(io_path, sizeof io_path, "%s/io.safetensors", mmpt_data(golden_dir));
    mmp_safetensors *io = mmp_safetensors_open(io_path);
    assert_non_null(io);
    const mmp_tensor_info *ids = st_find(io, "input_ids"), *ref = st_find(io, "logits");
    assert_int_equal(ids->type, MMP_TYPE_I64);
    char list[4096];
    size_t o = 0;
    for (int64_t i = 0; i < ids->ne[0]; i++) {
        int64_t v;
        memcpy(&v, (const char *)ids->data + 8 * i, 8);
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%lld", i ? "," : "", (long long)v);
    }
    char *lg = mmpt_write_temp("", 0, ".safetensors");
    int rc = mmpipe(NULL, NULL, "run -m '%s' --token-ids %s --dump-logits '%s'", model, list, lg);
    if (rc) fail_msg("%s: exit %d: %s", model, rc, g_err);
    mmp_safetensors *got = mmp_safetensors_open(lg);
    assert_non_null(got);
    const mmp_tensor_info *gl = st_find(got, "logits");
    assert_int_equal(gl->nbytes, ref->nbytes);
    size_t n = ref->nbytes / 4;
    float *a = malloc(ref->nbytes), *b = malloc(ref->nbytes);
    memcpy(a, gl->data, ref->nbytes);
    memcpy(b, ref->data, ref->nbytes);
    double e = mmpt_rel_l2(a, b, n);
    free(a); free(b);
    mmp_safetensors_free(got);
    mmp_safetensors_free(io);
    unlink(lg);
    free(lg);
    return e;
}

static char *convert_to(const char *golden_dir, const char *type) {
    char *out = mmpt_write_temp("", 0, ".gguf");
    int rc = mmpipe(NULL, NULL, "convert '%s' '%s' --type %s -q", mmpt_data(golden_dir), out, type);
    if (rc) fail_msg("convert %s: exit %d: %s", golden_dir, rc, g_err);
    return out;
}

/* Weight error of a converted file: ‖dequant(W_q) − W‖ / ‖W‖ over all its 2-D+ tensors,
 * against the f32 conversion of the same folder. */
static double weight_err(const char *q_path, const char *f32_path) {
    mmp_gguf *q = mmp_gguf_open(q_path), *f = mmp_gguf_open(f32_path);
    assert_non_null(q);
    assert_non_null(f);
    double num = 0, den = 0;
    for (int64_t i = 0; i < mmp_gguf_n_tensors(f); i++) {
        const mmp_tensor_info *tf = mmp_gguf_tensor(f, i), *tq = mmp_gguf_find_tensor(q, tf->name);
        assert_non_null(tq);
        int64_t rows = tf->ne[1] * tf->ne[2] * tf->ne[3];
        float *row = malloc((size_t)tf->ne[0] * sizeof *row);
        size_t rs = mmp_row_size(tq->type, tf->ne[0]);
        for (int64_t r = 0; r < rows; r++) {
            assert_int_equal(mmp_dequantize_row(tq->type, (const char *)tq->data + r * rs, row, tf->ne[0]), MMP_OK);
            const float *w = (const float *)tf->data + r * tf->ne[0];
            for (int64_t k = 0; k < tf->ne[0]; k++) { num += (row[k] - w[k]) * (double)(row[k] - w[k]); den += (double)w[k] * w[k]; }
        }
        free(row);
    }
    mmp_gguf_free(q);
    mmp_gguf_free(f);
    return sqrt(num / den);
}

static void test_converted_logits(void **state) {
    (void)state;
    /* F32: the converted file must reproduce the HF model (≤ 1e-4, DESIGN.md), which also
     * checks the q/k permutation against the adjacent-pair RoPE of the GGUF path. */
    const char *goldens[4] = { "llm/llama", "llm/mixtral", "llm/qwen2_moe", "llm/stories260K_hf" };
    for (int g = 0; g < 4; g++) {
        char *f32 = convert_to(goldens[g], "f32");
        double e = logits_err(f32, goldens[g]);
        print_message("%-20s f32  logits rel err %.3g\n", goldens[g], e);
        if (!(e <= 1e-4)) fail_msg("%s f32: logits rel err %.3g > 1e-4", goldens[g], e);
        /* F16 / Q8_0 / Q4_0: the logits may move only as far as the rounding of the weights explains.
         * The bound is 20 x the measured relative weight error: each weight error enters the
         * output linearly (first order), and through a few layers of RMSNorm-ed residual stream
         * it is amplified by less than the number of matmuls on the path (<= 8 for 2 layers);
         * a wrong layout or a wrong permutation gives errors of order 1. (For Q4_0, whose weight
         * error is ~0.1, the bound is loose; it still catches a wrong layout.) */
        const char *types[3] = { "f16", "q8_0", "q4_0" };
        for (int t = 0; t < 3; t++) {
            char *q = convert_to(goldens[g], types[t]);
            double we = weight_err(q, f32), le = logits_err(q, goldens[g]);
            print_message("%-20s %-4s weight rel err %.3g, logits rel err %.3g\n", goldens[g], types[t], we, le);
            if (!(le <= 20 * we)) fail_msg("%s %s: logits rel err %.3g > 20 x weight err %.3g", goldens[g], types[t], le, we);
            unlink(q);
            free(q);
        }
        unlink(f32);
        free(f32);
    }
}

static void test_tokenize(void **state) {
    (void)state;
    char *ids, *text;
    assert_int_equal(mmpipe(&ids, NULL, "tokenize -m models/stories260K.gguf -p 'Once upon a time, Lily saw a cat.'"), 0);
    size_t l = strlen(ids);
    while (l && ids[l - 1] == '\n') ids[--l] = '\0';
    assert_true(!strncmp(ids, "1,", 2)); /* BOS first */
    assert_int_equal(mmpipe(&text, NULL, "tokenize -m models/stories260K.gguf --ids %s", ids), 0);
    assert_string_equal(text, "Once upon a time, Lily saw a cat.\n");
    free(ids);
    free(text);
    assert_int_equal(mmpipe(&text, NULL, "tokenize -m models/stories260K.gguf --ids 1,99999"), 2);
    assert_non_null(strstr(g_err, "99999"));
    free(text);
}

static void test_chat(void **state) {
    (void)state;
    char *out;
    /* stories260K has no chat template: a clear message naming the option */
    assert_int_equal(mmpipe(&out, NULL, "chat -m models/stories260K.gguf -p Hello -n 5"), 1);
    assert_non_null(strstr(g_err, "--chat-template"));
    free(out);
    assert_int_equal(mmpipe(&out, NULL, "chat -m models/stories260K.gguf --chat-template vicuna -p Hello"), 2);
    assert_non_null(strstr(g_err, "chatml, llama2"));
    free(out);
    /* a toy model does not chat well, but the loop must run: one answer of at most 12 tokens */
    assert_int_equal(mmpipe(&out, NULL, "chat -m models/stories260K.gguf --chat-template llama2 --system 'Be kind.' -p 'Tell a story' -n 12 --temp 0"), 0);
    assert_true(strlen(out) > 1);
    free(out);
    /* interactive: two messages and a reset from stdin */
    assert_int_equal(mmpipe(&out, NULL, "chat -m models/stories260K.gguf --chat-template zephyr -n 8 --temp 0 <<'EOF'\nHi\n/reset\nHi\n/exit\nEOF"), 0);
    /* after /reset the same message gives the same greedy answer */
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    size_t first = (size_t)(nl - out) + 1;
    assert_int_equal(strlen(out), 2 * first);
    assert_memory_equal(out, out + first, first);
    free(out);
}

/* A model whose file carries a chat template: `chat` picks it up without --chat-template. */
static void test_chat_model_template(void **state) {
    (void)state;
    char tmpl[] = "/tmp/mmpt_chatXXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char p[600], src[600];
    const char *files[2] = { "model.safetensors", "config.json" };
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", d, files[i]);
        snprintf(src, sizeof src, "%s/%s", mmpt_data("llm/stories260K_hf"), files[i]);
        assert_int_equal(symlink(src, p), 0);
    }
    snprintf(p, sizeof p, "%s/tokenizer_config.json", d);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"chat_template\": \"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}\"}", f);
    fclose(f);
    char *out = mmpt_write_temp("", 0, ".gguf");
    assert_int_equal(mmpipe(NULL, NULL, "convert '%s' '%s' --tokenizer tests/data/convert/tok512.bin -q", d, out), 0);
    char *txt;
    int rc = mmpipe(&txt, NULL, "chat -m '%s' -p Hello -n 6 --temp 0", out);
    if (rc) fail_msg("chat: exit %d: %s", rc, g_err);
    assert_non_null(strstr(g_err, "template chatml"));
    free(txt);
    unlink(out);
    free(out);
    for (int i = 0; i < 2; i++) { snprintf(p, sizeof p, "%s/%s", d, files[i]); unlink(p); }
    snprintf(p, sizeof p, "%s/tokenizer_config.json", d);
    unlink(p);
    rmdir(d);
}

static void test_bad_args(void **state) {
    (void)state;
    static const struct { const char *args; int rc; const char *msg; } cases[] = {
        { "run -m /nonexistent/model.gguf -n 5", 1, "/nonexistent/model.gguf" },
        { "run -n 5", 2, "-m MODEL" },
        { "run -m models/stories260K.gguf --temp abc", 2, "--temp" },
        { "run -m models/stories260K.gguf --top-p 2", 2, "--top-p" },
        { "run -m models/stories260K.gguf --token-ids 1,x,3", 2, "--token-ids" },
        { "run -m models/stories260K.gguf --token-ids 1,600", 2, "600" },
        { "run -m models/stories260K.gguf --bogus", 2, "--bogus" },
        { "run -m models/stories260K.gguf -n", 2, "-n" },
        { "run -m models/stories260K.gguf --ctx 4 -p 'Once upon a time there was a big dog'", 1, "context" },
        { "run -m tests/data/llm/llama -n 3", 1, "no tokenizer" },
        { "tokenize -m models/stories260K.gguf", 2, "-p TEXT" },
        { "convert /nonexistent/folder /tmp/x.gguf", 1, "/nonexistent/folder" },
        { "convert a", 2, "usage" },
        { "convert tests/data/llm/llama /tmp/x.gguf --type q9_9", 2, "q9_9" },
        { "chat -m /nonexistent.gguf --chat-template chatml -p hi", 1, "/nonexistent.gguf" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        int rc = mmpipe(&out, NULL, "%s", cases[i].args);
        if (rc != cases[i].rc) fail_msg("'%s': exit %d, want %d (%s)", cases[i].args, rc, cases[i].rc, g_err);
        if (!strstr(g_err, cases[i].msg)) fail_msg("'%s': message '%s' lacks '%s'", cases[i].args, g_err, cases[i].msg);
        free(out);
    }
    /* every command has a help */
    const char *cmds[4] = { "run", "chat", "tokenize", "convert" };
    for (int i = 0; i < 4; i++) {
        char *out;
        assert_int_equal(mmpipe(&out, NULL, "%s --help", cmds[i]), 0);
        assert_non_null(strstr(out, "usage: mmpipe"));
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_matches_llama2c),
        cmocka_unit_test(test_stop_and_seed),
        cmocka_unit_test(test_converted_logits),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_chat_model_template),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
