/* Helpers shared by several CLI commands (declared in cli.h). */
#include "cli.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

char *mmp_cli_model_template(const char *path) {
    char *res = NULL;
    mmp_modelfile *mf = mmp_modelfile_open(path);
    if (!mf) { mmp_clear_error(); return NULL; }
    const char *s = NULL;
    const mmp_gguf *g = mmp_modelfile_gguf(mf);
    if (g) {
        if (!mmp_gguf_get_str(g, "tokenizer.chat_template", &s)) res = strdup(s);
    } else if (mmp_modelfile_has_file(mf, "tokenizer_config.json")) {
        char *p = mmp_modelfile_file_path(mf, "tokenizer_config.json");
        mmp_json *j = p ? mmp_json_open(p) : NULL;
        if (j && !mmp_json_get_string(j, "chat_template", &s)) res = strdup(s);
        mmp_json_free(j);
        free(p);
    }
    mmp_clear_error();
    mmp_modelfile_free(mf);
    return res;
}

bool mmp_cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool mmp_cli_parse_float(const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

void mmp_cli_bar_init(mmp_cli_bar *b, bool quiet) {
    memset(b, 0, sizeof *b);
    b->quiet = quiet;
    b->t0 = mmp_cli_now();
}

void mmp_cli_bar_update(mmp_cli_bar *b, const char *what, int64_t done, int64_t total) {
    if (b->quiet || total <= 0) return;
    double now = mmp_cli_now();
    b->last_done = done;
    double per = done > 0 ? (now - b->t0) / (double)done : 0;
    const int width = 30;
    int filled = (int)(width * (done < total ? done : total) / total);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r  [%s] %lld/%lld %s, %.2f s/step, %.1f s left ", bar, (long long)done, (long long)total, what, per,
            per * (double)(total - done));
    b->drawn = true;
    if (done >= total) {
        fputc('\n', stderr);
        b->drawn = false;
        b->last_done = 0;
        b->t0 = now;   /* a next run of steps is timed from here */
    }
    fflush(stderr);
}

void mmp_cli_bar_done(mmp_cli_bar *b) {
    if (b->drawn) fputc('\n', stderr);
    b->drawn = false;
}
