/* atomic_file.h: a file written under a temporary name next to its
 * destination and renamed over it only when complete, so a reader sees the
 * old file or the whole new one, never a half-written one. The writers of
 * the formats tinylm produces (safetensors, GGUF) stream into one of these. */
#ifndef TLM_ATOMIC_FILE_H
#define TLM_ATOMIC_FILE_H

#include "tlm.h"

#include <stdint.h>

typedef struct {
    char *path;  /* the destination */
    char *tmp;   /* the temporary file being written */
    int fd;      /* open on tmp; -1 once closed */
} tlm_atomic_file;

/* Creates a fresh temporary file next to path. */
tlm_status tlm_atomic_create(tlm_atomic_file *f, const char *path);
/* Appends n bytes; on failure the message names path and tmp. */
tlm_status tlm_atomic_write(tlm_atomic_file *f, const void *buf, uint64_t n);
/* fsync, close, tlm_test_point(rename_point), rename over path, sync the
 * folder; frees f. On failure the temporary file is removed. */
tlm_status tlm_atomic_commit(tlm_atomic_file *f, const char *rename_point);
/* Removes the temporary file and frees f (after a failure). */
void tlm_atomic_abandon(tlm_atomic_file *f);

/* strerror_r into buf: the text of errno value err. */
const char *tlm_errno_text(int err, char *buf, size_t cap);

#endif
