/* cache_seal.h: the seal in the HDF5 user block of tinylm's caches (cache_seal.c). */
#ifndef TLM_CACHE_SEAL_H
#define TLM_CACHE_SEAL_H

#include "core/internal.h"

/* Bytes reserved at the start of a cache file (an HDF5 user block: a power
 * of two, at least 512). */
#define SEAL_BYTES 512

/* kind names the file in messages ("token cache"). Writes the seal into a complete cache file and fsyncs it. */
tlm_status tlm_cache_seal(const char *kind, const char *path);
/* TLM_OK when the file carries a seal matching its length and bytes;
 * TLM_EFORMAT naming what disagrees otherwise. */
tlm_status tlm_cache_check_seal(const char *kind, const char *path);

#endif
