#include "testutil.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

double mmpt_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    if (isnan(num)) return INFINITY;
    return sqrt(num / den);
}

double mmpt_max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

void mmpt_rand_fill(float *x, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = lo + (hi - lo) * (float)((s >> 11) * (1.0 / 9007199254740992.0));
    }
}

const char *mmpt_data(const char *rel) {
    static char buf[8][4096];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, 4096, "%s/%s", MMP_TEST_DATA, rel);
    return b;
}

void *mmpt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (len) *len = (size_t)n;
    return p;
}

char *mmpt_write_temp(const void *data, size_t len, const char *suffix) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/mmpt-XXXXXX%s", tmp, suffix ? suffix : "");
    int fd = mkstemps(path, suffix ? (int)strlen(suffix) : 0);
    if (fd < 0) { free(path); return NULL; }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    return path;
}

static float *f32_copy(const mmp_tensor_info *t, const char *name, int64_t *n_out) {
    if (!t) fail_msg("io tensor %s missing: %s", name, mmp_last_error());
    assert_int_equal(t->type, MMP_TYPE_F32);
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    float *x = malloc((size_t)n * sizeof *x);
    assert_non_null(x);
    memcpy(x, t->data, (size_t)n * sizeof *x);
    if (n_out) *n_out = n;
    return x;
}

float *mmpt_st_f32(const mmp_safetensors *st, const char *name, int64_t *n) {
    return f32_copy(mmp_safetensors_find(st, name), name, n);
}

float *mmpt_mf_f32(const mmp_modelfile *mf, const char *name, int64_t *n) {
    return f32_copy(mmp_modelfile_find(mf, name), name, n);
}

int32_t *mmpt_st_ids(const mmp_safetensors *st, const char *name, int64_t *n_out) {
    const mmp_tensor_info *t = mmp_safetensors_find(st, name);
    if (!t) fail_msg("io tensor %s missing: %s", name, mmp_last_error());
    assert_int_equal(t->type, MMP_TYPE_I64);
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    int32_t *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + i * 8, 8);  /* data may be unaligned */
        x[i] = (int32_t)v;
    }
    if (n_out) *n_out = n;
    return x;
}

int mmpt_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int mmpt_run_cli(const char *cwd, char **out, size_t *out_len, char *err, size_t err_cap,
                 const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *errf = NULL;
    if (err) {
        errf = mmpt_write_temp("", 0, ".err");
        assert_non_null(errf);
    }
    int k = 0;
    if (cwd) k = snprintf(cmd, sizeof cmd, "cd '%s' && ", cwd);
    if (errf)
        snprintf(cmd + k, sizeof cmd - (size_t)k, "'%s' %s 2>'%s' </dev/null", MMP_CLI_PATH, args, errf);
    else
        snprintf(cmd + k, sizeof cmd - (size_t)k, "'%s' %s 2>&1 </dev/null", MMP_CLI_PATH, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
    }
    buf[n] = '\0';
    int st = pclose(p);
    if (errf) {
        size_t el = 0;
        char *e = mmpt_read_file(errf, &el);
        snprintf(err, err_cap, "%.*s", (int)el, e ? e : "");
        free(e);
        unlink(errf);
        free(errf);
    }
    if (out) {
        *out = buf;
        if (out_len) *out_len = n;
    } else {
        free(buf);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

double mmpt_cli_stage_rel_l2(const char *args, const float *ref, size_t n) {
    const char *tmp = getenv("TMPDIR");
    char out[4096], cmd[8192];
    snprintf(out, sizeof out, "%s/mmpt-cli-%ld.safetensors", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    snprintf(cmd, sizeof cmd, "'%s' stage %s -o '%s' >/dev/null", MMP_CLI_PATH, args, out);
    int rc = system(cmd);
    if (rc != 0) fail_msg("command failed (%d): %s", rc, cmd);
    mmp_safetensors *st = mmp_safetensors_open(out);
    assert_non_null(st);
    assert_int_equal(mmp_safetensors_n_tensors(st), 1);
    const mmp_tensor_info *ti = mmp_safetensors_tensor(st, 0);
    assert_int_equal(ti->type, MMP_TYPE_F32);
    assert_int_equal((size_t)(ti->ne[0] * ti->ne[1]), n);
    float *d = malloc(n * sizeof(float));
    assert_non_null(d);
    memcpy(d, ti->data, n * sizeof(float));
    double e = mmpt_rel_l2(d, ref, n);
    free(d);
    mmp_safetensors_free(st);
    unlink(out);
    return e;
}

char *mmpt_make_temp_dir(const char *tag) {
    const char *tmp = getenv("TMPDIR");
    char *d = malloc(4096);
    assert_non_null(d);
    snprintf(d, 4096, "%s/mmpt-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    assert_non_null(mkdtemp(d));
    return d;
}

void mmpt_rm_model_dir(char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
    free(dir);
}

void mmpt_write_text(const char *dir, const char *name, const char *text) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

mmp_json *mmpt_sched_case_json(void) {
    size_t len;
    char *raw = mmpt_read_file(mmpt_data("gen/schedulers/case.json"), &len);
    assert_non_null(raw);
    char *text = malloc(len + 1);  /* NUL-terminated copy for strstr */
    assert_non_null(text);
    memcpy(text, raw, len);
    text[len] = 0;
    free(raw);
    for (char *q = text; (q = strstr(q, "-Infinity")) != NULL;) memcpy(q, "null     ", 9);
    mmp_json *cfg = mmp_json_parse(text, len, "schedulers/case.json");
    free(text);
    if (!cfg) fail_msg("%s", mmp_last_error());
    return cfg;
}

void mmpt_expect_error_mentions(const char *const *needles) {
    const char *msg = mmp_last_error();
    printf("  error: %s\n", msg);
    for (int i = 0; needles[i]; i++)
        if (!strstr(msg, needles[i])) fail_msg("message '%s' does not mention '%s'", msg, needles[i]);
}

mmp_array *mmpt_golden_array(const mmp_safetensors *st, const char *name, enum mmp_type want) {
    const mmp_tensor_info *t = mmp_safetensors_find(st, name);
    if (!t) fail_msg("golden tensor %s: %s", name, mmp_last_error());
    int64_t dims[MMP_PORT_MAX_DIMS];
    for (int k = 0; k < t->n_dims; k++) dims[k] = t->ne[t->n_dims - 1 - k];
    mmp_array *a = mmp_array_new(want, t->n_dims, dims);
    assert_non_null(a);
    int64_t n = mmp_array_nelements(a);
    for (int64_t i = 0; i < n; i++) {
        if (t->type == MMP_TYPE_F32 && want == MMP_TYPE_F32) memcpy((float *)a->data + i, (const float *)t->data + i, 4);
        else if (t->type == MMP_TYPE_I64 && want == MMP_TYPE_I32) {
            int64_t v;
            memcpy(&v, (const char *)t->data + 8 * i, 8);
            ((int32_t *)a->data)[i] = (int32_t)v;
        } else fail_msg("golden tensor %s: unexpected type", name);
    }
    return a;
}
