/* The Whisper encoder against transformers (golden whisper_encoder: WhisperEncoder saved
 * without a prefix; input_features [80, 100] -> last_hidden_state [50, 64]), the same weights
 * under the other name layouts, and bad inputs. */
#include "testutil.h"
#include "mmpipe/audio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void run_golden(const char *model_path, const char *label) {
    mmp_modelfile *io = mmp_modelfile_open(mmpt_data("audio/whisper_encoder/io.safetensors"));
    assert_non_null(io);
    int64_t nin = 0, nref = 0;
    float *mel = mmpt_mf_f32(io, "input_features", &nin);
    float *ref = mmpt_mf_f32(io, "last_hidden_state", &nref);
    assert_int_equal(nin, 80 * 100);
    assert_int_equal(nref, 50 * 64);
    mmp_whisper *w = mmp_whisper_load(model_path);
    if (!w) fail_msg("%s", mmp_last_error());
    const mmp_whisper_hparams *hp = mmp_whisper_get_hparams(w);
    assert_int_equal(hp->d_model, 64);
    assert_int_equal(hp->n_layers, 2);
    assert_int_equal(hp->n_heads, 4);
    assert_int_equal(hp->n_mels, 80);
    assert_int_equal(hp->n_positions, 50);
    assert_int_equal(hp->d_ffn, 160);
    assert_false(hp->avg_pool);
    assert_int_equal(mmp_whisper_n_out(w, 100), 50);
    float *out = malloc(sizeof(float) * 50 * 64);
    for (int th = 1; th <= 2; th++) {
        enum mmp_status st = mmp_whisper_encode(w, mel, 100, 0, out, th, NULL, NULL);
        if (st != MMP_OK) fail_msg("%s", mmp_last_error());
        double e = mmpt_rel_l2(out, ref, (size_t)nref);
        print_message("whisper_encoder (%s, %d threads): last_hidden_state [50, 64] rel L2 %.3g\n", label, th, e);
        assert_true(e <= 1e-4);
    }
    free(out);
    mmp_whisper_free(w);
    free(mel);
    free(ref);
    mmp_modelfile_free(io);
}

static void test_golden_encoder_only(void **state) {
    (void)state;
    run_golden(mmpt_data("audio/whisper_encoder"), "encoder-only names");
}

/* The same weights renamed to `model.encoder.*` (a full WhisperModel file) through the
 * project's safetensors writer. */
static void test_golden_prefixed(void **state) {
    (void)state;
    mmp_modelfile *mf = mmp_modelfile_open(mmpt_data("audio/whisper_encoder"));
    assert_non_null(mf);
    int64_t n = mmp_modelfile_n_tensors(mf);
    char dir[] = "/tmp/mmpt-whisperXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512], cfg[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    mmp_safetensors_writer *wr = mmp_safetensors_writer_new();
    assert_non_null(wr);
    char (*names)[160] = calloc((size_t)n, 160);
    for (int64_t i = 0; i < n; i++) {
        const mmp_tensor_info *t = mmp_modelfile_tensor(mf, i);
        snprintf(names[i], 160, "model.encoder.%s", t->name);
        assert_int_equal(mmp_safetensors_writer_add_ne(wr, names[i], t->type, t->n_dims, t->ne, t->data), MMP_OK);
    }
    assert_int_equal(mmp_safetensors_writer_write(wr, path), MMP_OK);
    mmp_safetensors_writer_free(wr);
    size_t clen = 0;
    void *c = mmpt_read_file(mmpt_data("audio/whisper_encoder/config.json"), &clen);
    FILE *f = fopen(cfg, "wb");
    fwrite(c, 1, clen, f);
    fclose(f);
    free(c);
    run_golden(dir, "model.encoder.* names");
    unlink(path);
    unlink(cfg);
    rmdir(dir);
    free(names);
    mmp_modelfile_free(mf);
}

static void test_errors(void **state) {
    (void)state;
    mmp_whisper *w = mmp_whisper_load(mmpt_data("audio/whisper_encoder"));
    assert_non_null(w);
    float *mel = calloc(80 * 200, sizeof(float));
    float *out = calloc(100 * 64, sizeof(float));
    /* 200 frames need 100 positions; the model has 50 */
    assert_int_not_equal(mmp_whisper_encode(w, mel, 200, 0, out, 1, NULL, NULL), MMP_OK);
    print_message("too long: %s\n", mmp_last_error());
    assert_non_null(strstr(mmp_last_error(), "50"));
    assert_int_not_equal(mmp_whisper_encode(w, mel, 0, 0, out, 1, NULL, NULL), MMP_OK);
    assert_int_not_equal(mmp_whisper_encode(w, NULL, 10, 0, out, 1, NULL, NULL), MMP_OK);
    /* shorter input than the model's window works (first positions) */
    assert_int_equal(mmp_whisper_encode(w, mel, 37, 0, out, 1, NULL, NULL), MMP_OK);
    assert_int_equal(mmp_whisper_n_out(w, 37), 19);
    mmp_whisper_free(w);
    free(mel);
    free(out);
    /* not a whisper model */
    assert_null(mmp_whisper_load(mmpt_data("audio/whisper_mel/io.safetensors")));
    print_message("not whisper: %s\n", mmp_last_error());
    assert_null(mmp_whisper_load("/nonexistent/model"));
    mmp_whisper_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_encoder_only),
        cmocka_unit_test(test_golden_prefixed),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
