/* threads.c: one thread count for OpenMP loops and OpenBLAS GEMMs.
 * Debian's libopenblas-openmp uses the OpenMP runtime, so both share a pool. */
#include "tlm.h"

#include <cblas.h>
#include <omp.h>

void tlm_set_num_threads(int n) {
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int tlm_get_num_threads(void) { return omp_get_max_threads(); }
