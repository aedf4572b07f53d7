/* Typed reader for JSON config files over cJSON. See include/mmpipe/json.h. */
#include "mmpipe/json.h"
#include "mapfile.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

struct mmp_json {
    char *name;
    cJSON *root;
};

bool mmp__json_too_deep(const char *text, size_t len, int max_depth) {
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth) return true;
        } else if (c == ']' || c == '}') depth--;
    }
    return false;
}

void mmp_json_free(mmp_json *j) {
    if (!j) return;
    cJSON_Delete(j->root);
    free(j->name);
    free(j);
}

const char *mmp_json_name(const mmp_json *j) { return j ? j->name : NULL; }

mmp_json *mmp_json_parse(const char *text, size_t len, const char *name) {
    if (!name) name = "<json>";
    if (!text && len) return mmp__error_null(MMP_ERR_INVALID_ARG, "%s: NULL text", name);
    if (len > MMP_JSON_MAX_SIZE)
        return mmp__error_null(MMP_ERR_LIMIT, "%s: %zu bytes exceeds the JSON size limit of %u", name, len, MMP_JSON_MAX_SIZE);
    if (len == 0) return mmp__error_null(MMP_ERR_FORMAT, "%s: empty JSON text", name);
    if (!mmp__utf8_valid(text, len)) return mmp__error_null(MMP_ERR_FORMAT, "%s: not valid UTF-8", name);
    if (mmp__json_too_deep(text, len, MMP_JSON_MAX_DEPTH))
        return mmp__error_null(MMP_ERR_LIMIT, "%s: JSON nests deeper than %d levels", name, MMP_JSON_MAX_DEPTH);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    const char *bad = NULL;
    if (!root) bad = end && end >= text && end <= text + len ? end : text;
    else
        for (const char *p = end; p && p < text + len; p++)
            if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
                bad = p;
                break;
            }
    if (bad) {
        int line = 1, col = 1;
        for (const char *p = text; p < bad; p++) {
            if (*p == '\n') { line++; col = 1; }
            else col++;
        }
        cJSON_Delete(root);
        return mmp__error_null(MMP_ERR_FORMAT, "%s: %s at line %d column %d", name, root ? "trailing characters after the JSON value" : "malformed JSON",
                               line, col);
    }
    mmp_json *j = mmp__calloc(1, sizeof *j);
    if (!j || !(j->name = mmp__strdup(name))) {
        free(j);
        cJSON_Delete(root);
        return NULL;
    }
    j->root = root;
    return j;
}

mmp_json *mmp_json_open(const char *path) {
    mmp__mapfile mf;
    if (mmp__mapfile_open(&mf, path)) return NULL;
    mmp_json *j = mmp_json_parse((const char *)mf.data, mf.size, path);
    mmp__mapfile_close(&mf);
    return j;
}

/* ---------------------------------------------------------------- paths */

/* Resolve "a.b[2].c" from the root; NULL if any step is missing or the path is malformed. */
static const cJSON *resolve(const mmp_json *j, const char *path) {
    if (!j || !path) return NULL;
    const cJSON *cur = j->root;
    const char *p = path;
    char key[256];
    while (*p) {
        if (*p == '[') {
            char *endp;
            long idx = strtol(p + 1, &endp, 10);
            if (endp == p + 1 || *endp != ']' || idx < 0 || !cJSON_IsArray(cur)) return NULL;
            cur = cJSON_GetArrayItem(cur, (int)MMP_MIN(idx, (long)INT32_MAX));
            if (!cur) return NULL;
            p = endp + 1;
            if (*p == '.') p++;
            continue;
        }
        /* one key: up to an unescaped '.' or '['; "\\." is a literal dot */
        size_t n = 0;
        while (*p && *p != '.' && *p != '[') {
            if (*p == '\\' && p[1]) p++;
            if (n + 1 >= sizeof key) return NULL;
            key[n++] = *p++;
        }
        if (n == 0 || !cJSON_IsObject(cur)) return NULL;
        key[n] = 0;
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        if (!cur) return NULL;
        if (*p == '.') {
            p++;
            if (!*p) return NULL;
        }
    }
    return cur;
}

static enum mmp_json_kind kind(const cJSON *x) {
    if (!x) return MMP_JSON_MISSING;
    if (cJSON_IsNull(x)) return MMP_JSON_NULL;
    if (cJSON_IsBool(x)) return MMP_JSON_BOOL;
    if (cJSON_IsNumber(x)) return MMP_JSON_NUMBER;
    if (cJSON_IsString(x)) return MMP_JSON_STRING;
    if (cJSON_IsArray(x)) return MMP_JSON_ARRAY;
    if (cJSON_IsObject(x)) return MMP_JSON_OBJECT;
    return MMP_JSON_MISSING;
}

enum mmp_json_kind mmp_json_kind_of(const mmp_json *j, const char *path) { return kind(resolve(j, path)); }
bool mmp_json_has(const mmp_json *j, const char *path) {
    enum mmp_json_kind k = kind(resolve(j, path));
    return k != MMP_JSON_MISSING && k != MMP_JSON_NULL;
}

/* "a string (\"64\")", "a number (1.5)", "an object", ... for messages. */
static void describe(const cJSON *x, char *buf, size_t n) {
    switch (kind(x)) {
    case MMP_JSON_NULL: snprintf(buf, n, "null"); break;
    case MMP_JSON_BOOL: snprintf(buf, n, "a bool (%s)", cJSON_IsTrue(x) ? "true" : "false"); break;
    case MMP_JSON_NUMBER: snprintf(buf, n, "a number (%.17g)", x->valuedouble); break;
    case MMP_JSON_STRING: snprintf(buf, n, "a string (\"%.40s%s\")", x->valuestring, strlen(x->valuestring) > 40 ? "..." : ""); break;
    case MMP_JSON_ARRAY: snprintf(buf, n, "an array of %d", cJSON_GetArraySize(x)); break;
    case MMP_JSON_OBJECT: snprintf(buf, n, "an object"); break;
    default: snprintf(buf, n, "missing"); break;
    }
}

static enum mmp_status mismatch(const mmp_json *j, const char *path, const cJSON *x, const char *expected) {
    char d[96];
    describe(x, d, sizeof d);
    return mmp__error(MMP_ERR_FORMAT, "%s: '%s' is %s, expected %s", j->name, path, d, expected);
}

static enum mmp_status lookup(const mmp_json *j, const char *path, const cJSON **out) {
    if (!j || !path) return mmp__error(MMP_ERR_INVALID_ARG, "json: NULL argument");
    const cJSON *x = resolve(j, path);
    if (!x || cJSON_IsNull(x)) return mmp__error(MMP_ERR_NOT_FOUND, "%s: '%s' %s", j->name, path, x ? "is null" : "not found");
    *out = x;
    return MMP_OK;
}

static enum mmp_status as_int(const mmp_json *j, const char *path, const cJSON *x, int64_t *out) {
    if (!cJSON_IsNumber(x)) return mismatch(j, path, x, "an integer");
    double d = x->valuedouble;
    if (d != floor(d) || !(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return mismatch(j, path, x, "an integer");
    *out = (int64_t)d;
    return MMP_OK;
}

static enum mmp_status as_float(const mmp_json *j, const char *path, const cJSON *x, double *out) {
    if (!cJSON_IsNumber(x)) return mismatch(j, path, x, "a number");
    *out = x->valuedouble;
    return MMP_OK;
}

static enum mmp_status as_bool(const mmp_json *j, const char *path, const cJSON *x, bool *out) {
    if (!cJSON_IsBool(x)) return mismatch(j, path, x, "true or false");
    *out = cJSON_IsTrue(x);
    return MMP_OK;
}

static enum mmp_status as_string(const mmp_json *j, const char *path, const cJSON *x, const char **out) {
    if (!cJSON_IsString(x)) return mismatch(j, path, x, "a string");
    *out = x->valuestring;
    return MMP_OK;
}

#define GETTER(fn, T, conv)                                                 \
    enum mmp_status fn(const mmp_json *j, const char *path, T *out) {      \
        const cJSON *x = NULL;                                                     \
        enum mmp_status s = lookup(j, path, &x);                            \
        return s ? s : conv(j, path, x, out);                               \
    }
GETTER(mmp_json_get_int, int64_t, as_int)
GETTER(mmp_json_get_float, double, as_float)
GETTER(mmp_json_get_bool, bool, as_bool)
GETTER(mmp_json_get_string, const char *, as_string)

/* First existing path of a NULL-terminated va_list, or NOT_FOUND naming them all. */
static enum mmp_status first_of(const mmp_json *j, va_list ap, const cJSON **x, const char **which) {
    if (!j) return mmp__error(MMP_ERR_INVALID_ARG, "json: NULL reader");
    char tried[512] = "";
    const char *p;
    while ((p = va_arg(ap, const char *)) != NULL) {
        const cJSON *v = resolve(j, p);
        if (v && !cJSON_IsNull(v)) {
            *x = v;
            *which = p;
            return MMP_OK;
        }
        size_t n = strlen(tried);
        snprintf(tried + n, sizeof tried - n, "%s'%s'", n ? ", " : "", p);
    }
    return mmp__error(MMP_ERR_NOT_FOUND, "%s: none of %s found", j->name, tried[0] ? tried : "(no paths)");
}

#define GETTER_ALT(fn, T, conv)                                 \
    enum mmp_status fn(const mmp_json *j, T *out, ...) {       \
        va_list ap;                                             \
        va_start(ap, out);                                      \
        const cJSON *x = NULL;                                  \
        const char *which = NULL;                               \
        enum mmp_status s = first_of(j, ap, &x, &which);        \
        va_end(ap);                                             \
        return s ? s : conv(j, which, x, out);                  \
    }
GETTER_ALT(mmp_json_get_int_alt, int64_t, as_int)
GETTER_ALT(mmp_json_get_float_alt, double, as_float)
GETTER_ALT(mmp_json_get_bool_alt, bool, as_bool)
GETTER_ALT(mmp_json_get_string_alt, const char *, as_string)

enum mmp_status mmp_json_array_len(const mmp_json *j, const char *path, int64_t *n) {
    const cJSON *x = NULL;
    enum mmp_status s = lookup(j, path, &x);
    if (s) return s;
    if (!cJSON_IsArray(x)) return mismatch(j, path, x, "an array");
    *n = cJSON_GetArraySize(x);
    return MMP_OK;
}

static enum mmp_status element(const mmp_json *j, const char *path, int64_t i, const cJSON **out) {
    const cJSON *x = NULL;
    enum mmp_status s = lookup(j, path, &x);
    if (s) return s;
    if (!cJSON_IsArray(x)) return mismatch(j, path, x, "an array");
    int n = cJSON_GetArraySize(x);
    if (i < 0 || i >= n) return mmp__error(MMP_ERR_INVALID_ARG, "%s: '%s': index %lld out of range (array of %d)", j->name, path, (long long)i, n);
    *out = cJSON_GetArrayItem(x, (int)i);
    return MMP_OK;
}

#define ELEMENT(fn, T, conv)                                                        \
    enum mmp_status fn(const mmp_json *j, const char *path, int64_t i, T *out) {    \
        const cJSON *x = NULL;                                                             \
        enum mmp_status s = element(j, path, i, &x);                                \
        if (s) return s;                                                            \
        char p[300];                                                                \
        snprintf(p, sizeof p, "%s[%lld]", path, (long long)i);                      \
        return conv(j, p, x, out);                                                  \
    }
ELEMENT(mmp_json_array_int, int64_t, as_int)
ELEMENT(mmp_json_array_float, double, as_float)
ELEMENT(mmp_json_array_string, const char *, as_string)

enum mmp_status mmp_json_object_len(const mmp_json *j, const char *path, int64_t *n) {
    const cJSON *x = NULL;
    enum mmp_status s = lookup(j, path, &x);
    if (s) return s;
    if (!cJSON_IsObject(x)) return mismatch(j, path, x, "an object");
    *n = cJSON_GetArraySize(x);
    return MMP_OK;
}

enum mmp_status mmp_json_object_key(const mmp_json *j, const char *path, int64_t i, const char **out) {
    const cJSON *x = NULL;
    enum mmp_status s = lookup(j, path, &x);
    if (s) return s;
    if (!cJSON_IsObject(x)) return mismatch(j, path, x, "an object");
    int n = cJSON_GetArraySize(x);
    if (i < 0 || i >= n) return mmp__error(MMP_ERR_INVALID_ARG, "%s: '%s': member %lld out of range (object of %d)", j->name, path, (long long)i, n);
    *out = cJSON_GetArrayItem(x, (int)i)->string;
    return MMP_OK;
}
