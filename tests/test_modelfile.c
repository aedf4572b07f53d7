/* mmp_modelfile: one view over a GGUF file, a safetensors file, an HF folder, a diffusers
 * component folder and a diffusers pipeline root (built in a temp dir from the test data). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void copy_file(const char *from, const char *to) {
    size_t len;
    void *b = mmpt_read_file(from, &len);
    assert_non_null(b);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
    free(b);
}

static void test_gguf_file(void **state) {
    (void)state;
    mmp_modelfile *m = mmp_modelfile_open(mmpt_data("gguf/tiny-mixtral-q4_0.gguf"));
    if (!m) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_modelfile_format(m), MMP_MODELFILE_GGUF);
    assert_string_equal(mmp_modelfile_format_name(MMP_MODELFILE_GGUF), "gguf");
    const mmp_gguf *g = mmp_modelfile_gguf(m);
    assert_non_null(g);
    assert_null(mmp_modelfile_safetensors(m));
    assert_null(mmp_modelfile_config(m));
    assert_int_equal(mmp_modelfile_n_tensors(m), mmp_gguf_n_tensors(g));
    for (int64_t i = 0; i < mmp_modelfile_n_tensors(m); i++) {
        const mmp_tensor_info *t = mmp_modelfile_tensor(m, i);
        assert_ptr_equal(mmp_modelfile_find(m, t->name), t);
    }
    assert_null(mmp_modelfile_find(m, "nope.weight"));
    assert_true(strstr(mmp_last_error(), "nope.weight") != NULL);
    assert_true(mmp_modelfile_has_file(m, "e2e.json")); /* sibling in tests/data/gguf */
    char *p = mmp_modelfile_file_path(m, "e2e.json");
    assert_non_null(p);
    assert_true(strstr(p, "gguf/e2e.json") != NULL);
    free(p);
    assert_null(mmp_modelfile_file_path(m, "nothing-here.json"));
    assert_false(mmp_modelfile_has_file(m, "nothing-here.json"));
    mmp_modelfile_free(m);
    mmp_modelfile_free(NULL);
}

static void test_hf_folder(void **state) {
    (void)state;
    mmp_modelfile *m = mmp_modelfile_open(mmpt_data("st/llama"));
    if (!m) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_modelfile_format(m), MMP_MODELFILE_HF);
    const mmp_json *cfg = mmp_modelfile_config(m);
    assert_non_null(cfg);
    assert_non_null(mmp_modelfile_generation_config(m));
    int64_t hidden, vocab;
    assert_int_equal(mmp_json_get_int(cfg, "hidden_size", &hidden), MMP_OK);
    assert_int_equal(mmp_json_get_int(cfg, "vocab_size", &vocab), MMP_OK);
    /* ne is ggml order: lm_head [vocab, hidden] in torch -> ne {hidden, vocab} */
    const mmp_tensor_info *t = mmp_modelfile_find(m, "lm_head.weight");
    assert_non_null(t);
    assert_true(t->ne[0] == hidden && t->ne[1] == vocab);
    assert_int_equal(mmp_modelfile_n_tensors(m), mmp_safetensors_n_tensors(mmp_modelfile_safetensors(m)));
    assert_int_equal(mmp_modelfile_n_components(m), 0);
    /* the same file opened directly reads the config next to it */
    mmp_modelfile *m2 = mmp_modelfile_open(mmpt_data("st/llama/model.safetensors"));
    assert_non_null(m2);
    assert_int_equal(mmp_modelfile_format(m2), MMP_MODELFILE_SAFETENSORS);
    assert_non_null(mmp_modelfile_config(m2));
    const mmp_tensor_info *t2 = mmp_modelfile_find(m2, "lm_head.weight");
    assert_memory_equal(t->data, t2->data, t->nbytes);
    mmp_modelfile_free(m2);
    mmp_modelfile_free(m);
}

static void test_diffusers_and_pipeline(void **state) {
    (void)state;
    mmp_modelfile *m = mmp_modelfile_open(mmpt_data("st/taesd_tiny"));
    if (!m) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_modelfile_format(m), MMP_MODELFILE_DIFFUSERS);
    const char *cls;
    assert_int_equal(mmp_json_get_string(mmp_modelfile_config(m), "_class_name", &cls), MMP_OK);
    assert_string_equal(cls, "AutoencoderTiny");
    int64_t n_taesd = mmp_modelfile_n_tensors(m);
    assert_true(n_taesd > 0);
    mmp_modelfile_free(m);

    /* a pipeline root: model_index.json + vae/ (weights) + text_encoder/ (weights) +
     * scheduler/ (config only) */
    char dir[] = "/tmp/mmpt_pipe_XXXXXX", p[512], q[512];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    copy_file(mmpt_data("cfg/model_index.json"), p);
    const char *subs[] = {"vae", "text_encoder", "scheduler"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, subs[k]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    snprintf(p, sizeof p, "%s/vae/config.json", dir);
    copy_file(mmpt_data("st/taesd_tiny/config.json"), p);
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    copy_file(mmpt_data("st/taesd_tiny/diffusion_pytorch_model.safetensors"), p);
    snprintf(p, sizeof p, "%s/text_encoder/config.json", dir);
    copy_file(mmpt_data("st/llama/config.json"), p);
    snprintf(p, sizeof p, "%s/text_encoder/model.safetensors", dir);
    copy_file(mmpt_data("st/llama/model.safetensors"), p);
    snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
    copy_file(mmpt_data("cfg/nested.json"), p);

    m = mmp_modelfile_open(dir);
    if (!m) fail_msg("%s", mmp_last_error());
    assert_int_equal(mmp_modelfile_format(m), MMP_MODELFILE_PIPELINE);
    assert_int_equal(mmp_modelfile_n_tensors(m), 0);
    assert_null(mmp_modelfile_find(m, "x"));
    /* components in file order: feature_extractor, scheduler, text_encoder, tokenizer, vae */
    assert_int_equal(mmp_modelfile_n_components(m), 5);
    assert_string_equal(mmp_modelfile_component_name(m, 0), "feature_extractor");
    assert_string_equal(mmp_modelfile_component_name(m, 4), "vae");
    assert_string_equal(mmp_modelfile_component_class(m, 4), "AutoencoderTiny");
    const mmp_modelfile *vae = mmp_modelfile_component(m, "vae");
    assert_non_null(vae);
    assert_int_equal(mmp_modelfile_format(vae), MMP_MODELFILE_DIFFUSERS);
    assert_int_equal(mmp_modelfile_n_tensors(vae), n_taesd);
    const mmp_modelfile *te = mmp_modelfile_component(m, "text_encoder");
    assert_non_null(te);
    assert_int_equal(mmp_modelfile_format(te), MMP_MODELFILE_HF);
    assert_null(mmp_modelfile_component(m, "scheduler"));
    assert_true(strstr(mmp_last_error(), "scheduler") != NULL);
    assert_null(mmp_modelfile_component(m, "unet"));
    assert_true(strstr(mmp_last_error(), "unet") != NULL);
    mmp_modelfile_free(m);

    const char *files[] = {"model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                           "text_encoder/model.safetensors", "scheduler/scheduler_config.json"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        snprintf(q, sizeof q, "%s/%s", dir, files[k]);
        unlink(q);
    }
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, subs[k]);
        rmdir(p);
    }
    rmdir(dir);
}

static void test_not_a_model(void **state) {
    (void)state;
    assert_null(mmp_modelfile_open(mmpt_data("vocab")));
    assert_true(strstr(mmp_last_error(), "no model weights") != NULL);
    assert_null(mmp_modelfile_open(mmpt_data("cfg/nested.json")));
    assert_true(strstr(mmp_last_error(), "not a model file") != NULL);
    assert_null(mmp_modelfile_open(mmpt_data("no/such/model.gguf")));
    assert_true(strstr(mmp_last_error(), "no/such/model.gguf") != NULL);
    assert_null(mmp_modelfile_open(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_file),
        cmocka_unit_test(test_hf_folder),
        cmocka_unit_test(test_diffusers_and_pipeline),
        cmocka_unit_test(test_not_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
