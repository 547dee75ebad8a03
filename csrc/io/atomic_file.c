/* atomic_file.c: write to a temporary name, fsync, rename (atomic_file.h). */
#include "io/atomic_file.h"

#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *tlm_errno_text(int err, char *buf, size_t cap) {
    if (strerror_r(err, buf, cap) != 0) snprintf(buf, cap, "errno %d", err);
    return buf;
}

static void release(tlm_atomic_file *f) {
    free(f->path);
    free(f->tmp);
    f->path = f->tmp = NULL;
    f->fd = -1;
}

tlm_status tlm_atomic_create(tlm_atomic_file *f, const char *path) {
    static atomic_uint counter;
    char err[128];
    size_t cap = strlen(path) + 48;
    f->fd = -1;
    f->path = strdup(path);
    f->tmp = malloc(cap);
    if (!f->path || !f->tmp) {
        release(f);
        return tlm_fail(TLM_ENOMEM, "%s: no memory", path);
    }
    for (int attempt = 0; attempt < 64 && f->fd < 0; attempt++) {
        snprintf(f->tmp, cap, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd < 0 && errno != EEXIST) break;
    }
    if (f->fd < 0) {
        tlm_status st = tlm_fail(TLM_EIO, "%s: cannot create a temporary file next to it: %s", path,
                                 tlm_errno_text(errno, err, sizeof err));
        release(f);
        return st;
    }
    return TLM_OK;
}

tlm_status tlm_atomic_write(tlm_atomic_file *f, const void *buf, uint64_t n) {
    char err[128];
    const char *p = buf;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return tlm_fail(TLM_EIO, "%s: cannot write %s: %s", f->path, f->tmp,
                            tlm_errno_text(w < 0 ? errno : ENOSPC, err, sizeof err));
        p += w;
        n -= (uint64_t)w;
    }
    return TLM_OK;
}

/* Makes a rename durable. Best effort: the new file is already in place, and
 * some filesystems refuse to sync a directory. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

tlm_status tlm_atomic_commit(tlm_atomic_file *f, const char *rename_point) {
    char err[128];
    tlm_status st = TLM_OK;
    if (fsync(f->fd) != 0)
        st = tlm_fail(TLM_EIO, "%s: cannot write %s: %s", f->path, f->tmp, tlm_errno_text(errno, err, sizeof err));
    if (close(f->fd) != 0 && st == TLM_OK)
        st = tlm_fail(TLM_EIO, "%s: cannot write %s: %s", f->path, f->tmp, tlm_errno_text(errno, err, sizeof err));
    f->fd = -1;
    if (st == TLM_OK) tlm_test_point(rename_point);
    if (st == TLM_OK && rename(f->tmp, f->path) != 0)
        st = tlm_fail(TLM_EIO, "%s: cannot rename %s over it: %s", f->path, f->tmp,
                      tlm_errno_text(errno, err, sizeof err));
    if (st == TLM_OK) {
        sync_parent_dir(f->path);
        release(f);
    } else {
        tlm_atomic_abandon(f);
    }
    return st;
}

void tlm_atomic_abandon(tlm_atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    release(f);
}
