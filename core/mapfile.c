/* Read-only whole-file maps, and small path / UTF-8 helpers for the model-file readers. */
#include "mapfile.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum mmp_status mmp__mapfile_open(mmp__mapfile *mf, const char *path) {
    memset(mf, 0, sizeof *mf);
    if (!path || !path[0]) return mmp__error(MMP_ERR_INVALID_ARG, "open: empty path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return mmp__error(MMP_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mmp__error(MMP_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return mmp__error(MMP_ERR_IO, "%s: is a directory, expected a file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mmp__error(MMP_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return mmp__error(MMP_ERR_FORMAT, "%s: file is empty", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return mmp__error(MMP_ERR_NOMEM, "%s: file of %lld bytes does not fit in memory", path, (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED) return mmp__error(MMP_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size, strerror(e));
    char *pc = mmp__strdup(path);
    if (!pc) {
        munmap(p, size);
        return MMP_ERR_NOMEM;
    }
    mf->data = p;
    mf->size = size;
    mf->path = pc;
    mf->mapped = true;
    return MMP_OK;
}

enum mmp_status mmp__mapfile_from_memory(mmp__mapfile *mf, const void *data, size_t size, const char *name) {
    memset(mf, 0, sizeof *mf);
    if (!data && size) return mmp__error(MMP_ERR_INVALID_ARG, "%s: NULL data with size %zu", name ? name : "<memory>", size);
    char *pc = mmp__strdup(name ? name : "<memory>");
    if (!pc) return MMP_ERR_NOMEM;
    mf->data = data ? data : (const uint8_t *)"";
    mf->size = size;
    mf->path = pc;
    mf->mapped = false;
    return MMP_OK;
}

void mmp__mapfile_close(mmp__mapfile *mf) {
    if (!mf) return;
    if (mf->mapped && mf->data) munmap((void *)mf->data, mf->size);
    free(mf->path);
    memset(mf, 0, sizeof *mf);
}

bool mmp__is_file(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool mmp__is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *mmp__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a > 0 && dir[a - 1] != '/';
    char *p = mmp__malloc(a + slash + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

bool mmp__utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}
