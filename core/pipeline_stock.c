/* The stock pipelines compiled into the library (the table is generated from the .pipe files of pipelines/
 * at build time by cmake/embed_pipelines.cmake). */
#include "pipeline-impl.h"
#include "util.h"

#include <string.h>
#include <sys/stat.h>

int mmp_pipeline_stock_count(void) {
    int n = 0;
    while (mmp__stock_pipes[n].name) n++;
    return n;
}

const char *mmp_pipeline_stock_name(int i) {
    return (i >= 0 && i < mmp_pipeline_stock_count()) ? mmp__stock_pipes[i].name : NULL;
}

const char *mmp_pipeline_stock_text(const char *name, size_t *len) {
    if (!name) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_pipeline_stock_text: NULL name");
    size_t nl = strlen(name);
    if (nl > 5 && !strcmp(name + nl - 5, ".pipe")) nl -= 5;   /* "chat.pipe" is "chat" too */
    for (int i = 0; mmp__stock_pipes[i].name; i++)
        if (strlen(mmp__stock_pipes[i].name) == nl && !strncmp(mmp__stock_pipes[i].name, name, nl)) {
            if (len) *len = mmp__stock_pipes[i].len;
            return mmp__stock_pipes[i].text;
        }
    char list[2048];
    size_t o = 0;
    list[0] = 0;
    for (int i = 0; mmp__stock_pipes[i].name && o + 2 < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", mmp__stock_pipes[i].name);
    return mmp__error_null(MMP_ERR_NOT_FOUND, "no stock pipeline named '%s' (stock pipelines: %s)", name, list);
}

mmp_pipeline_desc *mmp_pipeline_desc_stock(const char *name) {
    const char *text = mmp_pipeline_stock_text(name, NULL);
    if (!text) return NULL;
    char src[160];
    size_t nl = strcspn(name, ".");
    snprintf(src, sizeof src, "stock/%.*s.pipe", (int)(nl < 128 ? nl : 128), name);
    return mmp_pipeline_desc_parse(text, src);
}

mmp_pipeline_desc *mmp_pipeline_desc_open(const char *name_or_path) {
    if (!name_or_path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_open: NULL name");
    struct stat st;
    size_t n = strlen(name_or_path);
    bool looks_like_path = strchr(name_or_path, '/') || (n > 5 && !strcmp(name_or_path + n - 5, ".pipe"));
    if (stat(name_or_path, &st) == 0 || looks_like_path) {
        if (!looks_like_path || stat(name_or_path, &st) == 0 || !mmp_pipeline_stock_text(name_or_path, NULL)) {
            mmp_clear_error();
            return mmp_pipeline_desc_load(name_or_path);
        }
    }
    return mmp_pipeline_desc_stock(name_or_path);
}
