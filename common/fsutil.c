/* Shared helpers (fsutil.h). */
#include "fsutil.h"
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "err.h"

#define FS_PATH_MAX 1024

int fs_mkdirs(const char *path)
{
    char tmp[FS_PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp)
        return ERR_INVAL;
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
            return ERR_IO;
        tmp[i] = saved;
    }
    return 0;
}

int fs_mkdirs_parent(const char *file_path)
{
    char dir[FS_PATH_MAX];
    const char *slash = strrchr(file_path, '/');
    if (slash == NULL || slash == file_path)
        return 0;
    size_t len = (size_t)(slash - file_path);
    if (len >= sizeof dir)
        return ERR_INVAL;
    memcpy(dir, file_path, len);
    dir[len] = '\0';
    return fs_mkdirs(dir);
}

bool strlist_has(const char *list, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, "|");
        if (n == len && strncmp(p, word, n) == 0)
            return true;
        p += n + (p[n] == '|');
    }
    return false;
}
