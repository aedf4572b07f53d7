/* The pipeline file parser (format: docs/pipeline-format.md). One statement per line:
 *
 *   pipeline NAME
 *   param NAME [= VALUE]
 *   stage NAME KIND [model=PATH] [aux=PATH] [options=K=V,K=V]
 *   input NAME -> STAGE.PORT [STAGE.PORT ...]
 *   STAGE.PORT[a:b] -> STAGE.PORT
 *   output NAME <- STAGE.PORT[a:b]
 *
 * '#' starting a word begins a comment; values with spaces are double-quoted ("\"" and "\\"
 * escape inside quotes). Everything the parser builds goes through the public builder calls,
 * so a file and code build exactly the same graphs and get the same checks. */
#include "mmpipe/pipeline.h"
#include "pipeline-impl.h"
#include "util.h"

#include <string.h>

#define MAX_FILE  (1 << 20)   /* a pipeline file is a few hundred bytes; refuse megabytes */
#define MAX_LINE  8192
#define MAX_WORDS 64

typedef struct words {
    char buf[MAX_LINE + 1];
    char *w[MAX_WORDS];
    int n;
} words;

static const char *src_name(const char *source) { return source ? source : "<pipeline>"; }

/* Split one line into words (quotes removed, escapes applied) in place. */
static enum mmp_status split(const char *line, size_t len, const char *source, int lineno, words *ws) {
    if (len > MAX_LINE) return mmp__error(MMP_ERR_FORMAT, "%s:%d: line is %zu bytes long (at most %d)", src_name(source), lineno, len, MAX_LINE);
    ws->n = 0;
    size_t i = 0, o = 0;
    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
        if (i >= len || line[i] == '#') break;
        if (ws->n == MAX_WORDS) return mmp__error(MMP_ERR_FORMAT, "%s:%d: more than %d words on one line", src_name(source), lineno, MAX_WORDS);
        ws->w[ws->n++] = &ws->buf[o];
        bool quoted = false;
        while (i < len && (quoted || (line[i] != ' ' && line[i] != '\t' && line[i] != '\r'))) {
            char c = line[i++];
            if (c == '"') { quoted = !quoted; continue; }
            if (quoted && c == '\\' && i < len && (line[i] == '"' || line[i] == '\\')) c = line[i++];
            if (c == 0) return mmp__error(MMP_ERR_FORMAT, "%s:%d: NUL byte in the line", src_name(source), lineno);
            ws->buf[o++] = c;
        }
        if (quoted) return mmp__error(MMP_ERR_FORMAT, "%s:%d: unterminated '\"'", src_name(source), lineno);
        ws->buf[o++] = 0;
    }
    return MMP_OK;
}

/* "key=value" with key one of the stage keys; false if the word has no '='. */
static bool key_value(char *word, char **key, char **value) {
    char *eq = strchr(word, '=');
    if (!eq || eq == word) return false;
    *eq = 0;
    *key = word;
    *value = eq + 1;
    return true;
}

static enum mmp_status parse_line(mmp_pipeline_desc *d, words *ws, const char *source, int ln) {
    const char *S = src_name(source);
    char **w = ws->w;
    int n = ws->n;
    const char *kw = w[0];
    if (!strcmp(kw, "pipeline")) {
        if (n != 2) return mmp__error(MMP_ERR_FORMAT, "%s:%d: expected 'pipeline NAME'", S, ln);
        return mmp__pipeline_desc_set_name(d, w[1]);
    }
    if (!strcmp(kw, "param")) {
        /* param NAME | param NAME = VALUE | param NAME=VALUE */
        char *k, *v;
        if (n == 2 && key_value(w[1], &k, &v)) return mmp_pipeline_desc_add_param(d, k, v);
        if (n == 2) return mmp_pipeline_desc_add_param(d, w[1], NULL);
        if (n == 4 && !strcmp(w[2], "=")) return mmp_pipeline_desc_add_param(d, w[1], w[3]);
        return mmp__error(MMP_ERR_FORMAT, "%s:%d: expected 'param NAME' or 'param NAME = VALUE'", S, ln);
    }
    if (!strcmp(kw, "stage")) {
        if (n < 3) return mmp__error(MMP_ERR_FORMAT, "%s:%d: expected 'stage NAME KIND [model=PATH] [aux=PATH] [options=K=V,...]'", S, ln);
        const char *model = NULL, *aux = NULL, *options = NULL;
        for (int i = 3; i < n; i++) {
            char *k, *v;
            if (!key_value(w[i], &k, &v))
                return mmp__error(MMP_ERR_FORMAT, "%s:%d: stage '%s': '%s' is not KEY=VALUE (keys: model, aux, options)", S, ln, w[1], w[i]);
            const char **slot = !strcmp(k, "model") ? &model : !strcmp(k, "aux") ? &aux : !strcmp(k, "options") ? &options : NULL;
            if (!slot) return mmp__error(MMP_ERR_FORMAT, "%s:%d: stage '%s': unknown key '%s' (keys: model, aux, options)", S, ln, w[1], k);
            if (*slot) return mmp__error(MMP_ERR_FORMAT, "%s:%d: stage '%s': '%s' given twice", S, ln, w[1], k);
            *slot = v;
        }
        return mmp_pipeline_desc_add_stage(d, w[1], w[2], model, aux, options);
    }
    if (!strcmp(kw, "input")) {
        if (n < 4 || strcmp(w[2], "->"))
            return mmp__error(MMP_ERR_FORMAT, "%s:%d: expected 'input NAME -> STAGE.PORT [STAGE.PORT ...]'", S, ln);
        for (int i = 3; i < n; i++) {
            size_t l = strlen(w[i]);
            if (l && w[i][l - 1] == ',') w[i][l - 1] = 0;   /* "a.x, b.y" reads naturally */
            if (!*w[i]) continue;
            enum mmp_status st = mmp_pipeline_desc_add_input(d, w[1], w[i]);
            if (st != MMP_OK) return st;
        }
        return MMP_OK;
    }
    if (!strcmp(kw, "output")) {
        if (n != 4 || strcmp(w[2], "<-")) return mmp__error(MMP_ERR_FORMAT, "%s:%d: expected 'output NAME <- STAGE.PORT'", S, ln);
        return mmp_pipeline_desc_add_output(d, w[1], w[3]);
    }
    if (n == 3 && !strcmp(w[1], "->")) return mmp_pipeline_desc_connect(d, w[0], w[2]);
    if (strchr(kw, '.'))
        return mmp__error(MMP_ERR_FORMAT, "%s:%d: expected an edge 'STAGE.PORT -> STAGE.PORT'", S, ln);
    return mmp__error(MMP_ERR_FORMAT, "%s:%d: unknown statement '%s' (expected pipeline, param, stage, input, output, or an edge STAGE.PORT -> STAGE.PORT)",
                      S, ln, kw);
}

mmp_pipeline_desc *mmp_pipeline_desc_parse(const char *text, const char *source) {
    if (!text) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_parse: NULL text");
    size_t total = strlen(text);
    if (total > MAX_FILE) return mmp__error_null(MMP_ERR_LIMIT, "%s: %zu bytes is too large for a pipeline file (at most %d)", src_name(source), total, MAX_FILE);
    mmp_pipeline_desc *d = mmp_pipeline_desc_new(NULL);
    words *ws = mmp__malloc(sizeof *ws);
    if (!d || !ws || (source && mmp__pipeline_desc_set_source(d, source) != MMP_OK)) goto fail;
    int ln = 0;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        ln++;
        if (split(p, len, source, ln, ws) != MMP_OK) goto fail;
        if (ws->n) {
            mmp__pipeline_desc_set_line(d, ln);
            if (parse_line(d, ws, source, ln) != MMP_OK) goto fail;
        }
        p += len + (e ? 1 : 0);
    }
    mmp__pipeline_desc_set_line(d, 0);
    if (!mmp_pipeline_desc_name(d) || !strcmp(mmp_pipeline_desc_name(d), "pipeline")) {
        /* unnamed: name it after the file ("pipelines/llava.pipe" -> "llava") */
        if (source) {
            const char *b = strrchr(source, '/');
            b = b ? b + 1 : source;
            char nm[128];
            size_t l = strcspn(b, ".");
            if (l >= sizeof nm) l = sizeof nm - 1;
            memcpy(nm, b, l);
            nm[l] = 0;
            for (char *c = nm; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-')) *c = '_';
            if (*nm && mmp__pipeline_desc_set_name(d, nm) != MMP_OK) goto fail;
        }
    }
    free(ws);
    return d;
fail:
    free(ws);
    mmp_pipeline_desc_free(d);
    return NULL;
}

mmp_pipeline_desc *mmp_pipeline_desc_load(const char *path) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_pipeline_desc_load: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return mmp__error_null(MMP_ERR_IO, "%s: cannot open the pipeline file", path);
    char *buf = mmp__malloc(MAX_FILE + 2);
    if (!buf) { fclose(f); return NULL; }
    size_t n = fread(buf, 1, MAX_FILE + 1, f);
    bool err = ferror(f);
    fclose(f);
    if (err) { free(buf); return mmp__error_null(MMP_ERR_IO, "%s: read error (is it a directory?)", path); }
    if (n > MAX_FILE) { free(buf); return mmp__error_null(MMP_ERR_LIMIT, "%s: larger than %d bytes: not a pipeline file", path, MAX_FILE); }
    buf[n] = 0;
    if (strlen(buf) != n) { free(buf); return mmp__error_null(MMP_ERR_FORMAT, "%s: contains NUL bytes: not a pipeline file", path); }
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(buf, path);
    free(buf);
    return d;
}
