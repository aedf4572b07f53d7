/* The stock pipelines compiled into the library (the table is generated from the .pipe files of pipelines/
 * at build time by cmake/embed_pipelines.cmake). */
#include "mmpipe/modelfile.h"
#include "mtmd-impl.h"
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

/* Does the file hold a vision tower (HF: vision_config / vision_tower.*; GGUF mmproj: v.*)? */
static bool has_vision(const mmp_modelfile *mf) {
    const mmp_json *c = mmp_modelfile_config(mf);
    if (c && mmp_json_has(c, "vision_config")) return true;
    for (int64_t i = 0; i < mmp_modelfile_n_tensors(mf); i++) {
        const char *n = mmp_modelfile_tensor(mf, i)->name;
        if (!strncmp(n, "vision_tower.", 13) || !strncmp(n, "v.", 2) || !strncmp(n, "vision_model.", 13)) return true;
    }
    return false;
}

const char *mmp_pipeline_stock_for_media(const char *model, const char *encoder, int kind) {
    const char *src = encoder ? encoder : model;
    if (!src) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_pipeline_stock_for_media: no model path");
    if (kind == 1) {
        const char *chat = mmp__audio_pipeline_for(model, encoder);
        if (!chat) return NULL;
        /* "audio-chat-<family>" -> the family's embedding pipeline */
        if (!strcmp(chat, "audio-chat-ultravox")) return "ultravox";
        if (!strcmp(chat, "audio-chat-voxtral")) return "voxtral";
        return "qwen2-audio";
    }
    if (kind != 0) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_pipeline_stock_for_media: kind %d (0 image, 1 audio)", kind);
    mmp_modelfile *mf = mmp_modelfile_open(src);
    if (!mf) return NULL;
    bool ok = has_vision(mf);
    mmp_modelfile_free(mf);
    if (!ok)
        return mmp__error_null(MMP_ERR_NOT_FOUND, "%s has no vision tower (looked for vision_config in config.json and vision_tower.* / "
                               "v.* tensors)%s", src, encoder ? "" : ": give the image encoder + projector with --mmproj FILE");
    return "image-embed";
}
