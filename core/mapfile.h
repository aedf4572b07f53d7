/* Private: a read-only view of a whole file's bytes, memory-mapped or borrowed from memory.
 *
 * Every model-file reader (gguf.c, safetensors.c, json.c) reads through this, so that a file
 * opened from a path and the same bytes handed over from memory (tests, fuzzers) take the same
 * code path. The bytes are never written. */
#ifndef MMP_CORE_MAPFILE_H
#define MMP_CORE_MAPFILE_H

#include "mmpipe/base.h"

typedef struct mmp__mapfile {
    const uint8_t *data;  /* the file's bytes; NULL only for a closed/zeroed map */
    size_t size;          /* > 0 for a file opened from a path */
    char *path;           /* owned copy of the path or the memory name (for messages) */
    bool mapped;          /* true: data is our mmap and munmap'ed by close */
} mmp__mapfile;

/* Map `path` read-only. Errors (status + last error naming the path and strerror):
 * MMP_ERR_IO for a missing file, a directory, permission denied or an mmap failure;
 * MMP_ERR_FORMAT for an empty file. On error *mf is left zeroed (close is still safe). */
enum mmp_status mmp__mapfile_open(mmp__mapfile *mf, const char *path);

/* Borrow `size` bytes at `data` (not copied, not freed: they must outlive the map). `name`
 * (may be NULL: "<memory>") is copied and used in messages. size 0 is allowed here; the
 * format readers report it. Fails only on allocation failure. */
enum mmp_status mmp__mapfile_from_memory(mmp__mapfile *mf, const void *data, size_t size, const char *name);

/* Unmap (if mapped), free the path and zero *mf. Safe on a zeroed or already closed map. */
void mmp__mapfile_close(mmp__mapfile *mf);

/* Whether `path` names an existing regular file / directory (no error is set). */
bool mmp__is_file(const char *path);
bool mmp__is_dir(const char *path);

/* "dir/name" in a new malloc'ed string (caller frees); NULL + error on allocation failure. */
char *mmp__path_join(const char *dir, const char *name);

/* True if `s[0..n)` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool mmp__utf8_valid(const char *s, size_t n);

/* JSON nesting guard (implemented in json.c): true if the text nests objects/arrays deeper
 * than max_depth (strings are skipped). Run before cJSON so that hostile input cannot
 * recurse deeply. */
bool mmp__json_too_deep(const char *text, size_t len, int max_depth);

#endif
