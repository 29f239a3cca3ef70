/* Small file-system and text helpers shared by several modules. Pure or stateless; thread-safe. */
#ifndef AETHERIS_FSUTIL_H
#define AETHERIS_FSUTIL_H
#include "fmacros.h"
#include <stdbool.h>

/* mkdir -p (mode 0750): creates path and its missing parents. 0, ERR_INVAL for an empty or
 * over-long path (>= 1024 bytes), or ERR_IO (errno tells why). */
int fs_mkdirs(const char *path);
/* mkdir -p of the directory part of a file path ("a/b/c.db" -> "a/b"); 0 when there is none. */
int fs_mkdirs_parent(const char *file_path);
/* True when word is one of the '|'-separated entries of list ("APPROVE|REVIEW|BLOCK"). */
bool strlist_has(const char *list, const char *word);

#endif
