/* mapped_file.c: open, check, mmap read-only (mapped_file.h). */
#include "io/mapped_file.h"

#include "core/internal.h"
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

tlm_status tlm_map_file(const char *path, size_t min_size, const char *needs, unsigned char **map, size_t *size) {
    char err[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tlm_fail(TLM_EIO, "%s: cannot open: %s", path, tlm_errno_text(errno, err, sizeof err));
    struct stat sb;
    tlm_status st = TLM_OK;
    if (fstat(fd, &sb) != 0)
        st = tlm_fail(TLM_EIO, "%s: cannot stat: %s", path, tlm_errno_text(errno, err, sizeof err));
    else if (!S_ISREG(sb.st_mode))
        st = tlm_fail(TLM_EIO, "%s: not a regular file", path);
    else if ((uint64_t)sb.st_size < min_size)
        st = tlm_fail(TLM_EFORMAT, "%s: file is %lld bytes, too short %s", path, (long long)sb.st_size, needs);
    if (st == TLM_OK) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            st = tlm_fail(TLM_EIO, "%s: cannot map: %s", path, tlm_errno_text(errno, err, sizeof err));
        else {
            *map = p;
            *size = (size_t)sb.st_size;
        }
    }
    close(fd); /* the mapping keeps the file alive */
    return st;
}
