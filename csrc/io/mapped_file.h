/* mapped_file.h: a file of untrusted bytes mapped read-only, as the readers
 * (safetensors, GGUF) take it before validating a byte. */
#ifndef TLM_MAPPED_FILE_H
#define TLM_MAPPED_FILE_H

#include "tlm.h"

#include <stddef.h>

/* Maps path (a regular file of at least min_size bytes; `needs` ends the
 * message otherwise, e.g. "to hold the 8-byte header length"). Unmap with
 * munmap(*map, *size). */
tlm_status tlm_map_file(const char *path, size_t min_size, const char *needs, unsigned char **map, size_t *size);

#endif
