/* `mmpipe info` and `mmpipe stage --list` through the built binary: every kind of model file
 * the repository ships in tests/data, compared with what the library reads from the same
 * files (never with hard-coded numbers), and bad paths. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run the CLI with args; returns its exit code and its stdout+stderr in *out (caller frees). */
#define run_cli(args, out) mmpt_run_cli(NULL, (out), NULL, NULL, 0, "%s", (args))

/* The "totals: N tensors" line must agree with the library's own count. */
static void check_totals(const char *out, int64_t n_tensors) {
    char want[64];
    snprintf(want, sizeof want, "totals: %lld tensors", (long long)n_tensors);
    if (!strstr(out, want)) fail_msg("expected '%s' in:\n%s", want, out);
}

static void info_on(const char *rel, const char *must_contain) {
    const char *path = mmpt_data(rel);
    mmp_modelfile *m = mmp_modelfile_open(path);
    assert_non_null(m);
    char args[4096], *out;
    snprintf(args, sizeof args, "info '%s'", path);
    int rc = run_cli(args, &out);
    if (rc != 0) fail_msg("mmpipe info %s exited %d:\n%s", rel, rc, out);
    check_totals(out, mmp_modelfile_n_tensors(m));
    /* every tensor name is listed */
    for (int64_t i = 0; i < mmp_modelfile_n_tensors(m); i++) {
        const char *name = mmp_modelfile_tensor(m, i)->name;
        if (strlen(name) <= 60 && !strstr(out, name)) fail_msg("tensor %s missing from info %s", name, rel);
    }
    if (must_contain && !strstr(out, must_contain)) fail_msg("expected '%s' in info %s:\n%s", must_contain, rel, out);
    free(out);
    mmp_modelfile_free(m);
}

static void test_info_gguf(void **state) {
    (void)state;
    info_on("gguf/tiny-mixtral-q4_0.gguf", "q4_0");
    info_on("gguf/quant_zoo.gguf", "q6_K");
}

static void test_info_hf(void **state) {
    (void)state;
    /* hyper-parameters come from config.json: check one against the JSON reader */
    const char *cfgp = mmpt_data("llm/llama/config.json");
    mmp_json *cfg = mmp_json_open(cfgp);
    assert_non_null(cfg);
    int64_t hidden;
    assert_int_equal(mmp_json_get_int(cfg, "hidden_size", &hidden), MMP_OK);
    char want[128];
    snprintf(want, sizeof want, "hidden_size                              %lld", (long long)hidden);
    info_on("llm/llama", want);
    mmp_json_free(cfg);
    info_on("llm/mixtral", "MixtralForCausalLM");
}

static void test_info_diffusers(void **state) {
    (void)state;
    info_on("gen/vae", "AutoencoderKL");
    info_on("gen/unet", "UNet2DConditionModel");
}

static void test_info_llama2c(void **state) {
    (void)state;
    char args[4096], *out;
    snprintf(args, sizeof args, "info '%s'", mmpt_data("convert/stories260K.bin"));
    assert_int_equal(run_cli(args, &out), 0);
    assert_non_null(strstr(out, "llama2.c checkpoint"));
    assert_non_null(strstr(out, "blk.4.ffn_down.weight"));
    free(out);
    snprintf(args, sizeof args, "info '%s'", mmpt_data("convert/tok512.bin"));
    assert_int_equal(run_cli(args, &out), 0);
    mmp_tokenizer *t = mmp_tokenizer_from_llama2c(mmpt_data("convert/tok512.bin"), 0);
    assert_non_null(t);
    char want[64];
    snprintf(want, sizeof want, "%d tokens", (int)mmp_tokenizer_n_vocab(t));
    assert_non_null(strstr(out, want));
    mmp_tokenizer_free(t);
    free(out);
}

static void test_info_bad(void **state) {
    (void)state;
    char *out;
    assert_int_equal(run_cli("info /nonexistent/model.gguf", &out), 1);
    assert_non_null(strstr(out, "/nonexistent/model.gguf"));
    free(out);
    assert_int_equal(run_cli("info", &out), 2);
    free(out);
    assert_int_equal(run_cli("info --bogus x", &out), 2);
    assert_non_null(strstr(out, "--bogus"));
    free(out);
    /* a truncated GGUF: the message names the file */
    size_t len;
    void *g = mmpt_read_file(mmpt_data("gguf/quant_zoo.gguf"), &len);
    assert_non_null(g);
    char *tmp = mmpt_write_temp(g, len / 3, ".gguf");
    char args[4096];
    snprintf(args, sizeof args, "info '%s'", tmp);
    assert_int_equal(run_cli(args, &out), 1);
    assert_non_null(strstr(out, tmp));
    free(out);
    unlink(tmp);
    free(tmp);
    free(g);
    assert_int_equal(run_cli("info --help", &out), 0);
    assert_non_null(strstr(out, "usage: mmpipe info"));
    free(out);
}

static void test_stage_list(void **state) {
    (void)state;
    char *out;
    assert_int_equal(run_cli("stage --list", &out), 0);
    mmp_registry *r = mmp_registry_new();
    assert_non_null(r);
    for (int i = 0; i < mmp_registry_count(r); i++)
        if (!strstr(out, mmp_registry_at(r, i)->name)) fail_msg("kind %s missing from stage --list", mmp_registry_at(r, i)->name);
    mmp_registry_free(r);
    free(out);
    assert_int_equal(run_cli("stage no.such.kind -o /tmp/x.safetensors", &out), 2);
    assert_non_null(strstr(out, "unknown stage kind 'no.such.kind'"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_gguf),
        cmocka_unit_test(test_info_hf),
        cmocka_unit_test(test_info_diffusers),
        cmocka_unit_test(test_info_llama2c),
        cmocka_unit_test(test_info_bad),
        cmocka_unit_test(test_stage_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
