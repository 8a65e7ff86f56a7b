/* blas_info.c — see blas_info.h. */
#define _GNU_SOURCE /* dladdr */
#include "blas_info.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>

/* The file name of the shared object that provides cblas_sgemm ("the executable" when linked
 * statically). */
static const char *provider(void)
{
    Dl_info info;
    void *fn = (void *)(size_t)&cblas_sgemm;
    if (!dladdr(fn, &info) || !info.dli_fname)
        return "unknown library";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

char *blas_info_describe(char *buf, size_t size)
{
#ifdef ZERO_BLAS_OPENBLAS
    /* openblas_get_config: "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ... Cooperlake MAX_THREADS=64" */
    char version[32] = "OpenBLAS";
    const char *cfg = openblas_get_config();
    if (cfg && !strncmp(cfg, "OpenBLAS ", 9))
        snprintf(version, sizeof version, "OpenBLAS %.*s", (int)strcspn(cfg + 9, " "), cfg + 9);
    const int par = openblas_get_parallel(); /* 0 sequential, 1 pthreads, 2 OpenMP */
    const int nt = openblas_get_num_threads();
    snprintf(buf, size, "%s, %s build, core %s, %d thread%s (%s)", version,
             par == 2 ? "OpenMP" : par == 1 ? "pthreads" : "sequential",
             openblas_get_corename(), nt, nt == 1 ? "" : "s", provider());
#else
    snprintf(buf, size, "not OpenBLAS (built with ZERO_BLAS=any): cblas_sgemm from %s",
             provider());
#endif
    return buf;
}

void blas_info_single_threaded_calls(void)
{
#ifdef ZERO_BLAS_OPENBLAS
    if (openblas_get_parallel() == 1)
        openblas_set_num_threads(1);
#endif
}
