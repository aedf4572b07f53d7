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
