/* zero-info — what libzero detects where it runs: the hwloc topology, the MPI library, the
 * device backends, the resolved ZERO_* configuration and the offload placement plan of every
 * local rank. Usage: zero-info [--local-size L] [--synthetic DESC]; see --help. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <hwloc.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef ZERO_INFO_BLAS
#include "blas_info.h"
#endif
#include "offload/placement.h"
#include "runtime/config.h"
#include "util/log.h"
#ifdef ZERO_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "runtime/device_cuda.h"
#endif
#ifdef ZERO_HAVE_NCCL
#include "runtime/comm_nccl.h"
#endif

extern char **environ;

static const char *const usage_text =
    "usage: zero-info [--local-size L] [--synthetic DESC]\n"
    "\n"
    "Prints what libzero detects: the hwloc topology (packages, NUMA nodes, cores, PUs), the MPI\n"
    "library, the device backends, the ZERO_* configuration resolved from the environment (as\n"
    "JSON), and where the CPU offload of each local rank 0..L-1 would place its memory and\n"
    "threads (ZERO_NUMA, ZERO_CPU_THREADS).\n"
    "\n"
    "  --local-size L    ranks on this machine (default: OMPI_COMM_WORLD_LOCAL_SIZE, else 1)\n"
    "  --synthetic DESC  plan for an hwloc synthetic topology instead of this machine, e.g.\n"
    "                    \"package:2 numa:2 core:8 pu:1\"\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0; 1 when the configuration, the topology or a plan is not valid; 2 for a\n"
    "bad argument.\n";

/* A positive int from text, or -1. */
static int parse_count(const char *text) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < 1 || v > INT_MAX) return -1;
    return (int)v;
}

/* Prints text with every line after the first indented by `indent` spaces. */
static void print_indented(const char *text, int indent) {
    for (const char *c = text; *c; c++) {
        fputc(*c, stdout);
        if (*c == '\n' && c[1]) printf("%*s", indent, "");
    }
}

/* The GPUs this process sees and what ZERO_DEVICE=auto would choose for local_size ranks per
 * node (the engine's rule: a usable GPU for every rank, and NCCL built). Returns the number of
 * GPUs (0 when none is usable or CUDA is not built); the PCI bus of GPU i in buses[i]. */
static int print_cuda(int local_size, int *buses, int max_buses) {
#ifdef ZERO_HAVE_CUDA
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    (void)cudaGetLastError();
    char why[256] = "";
    int usable = zr_cuda_usable(why, sizeof why);
    int count = usable ? zr_cuda_device_count() : 0;
    printf("CUDA       runtime %d.%d, driver %s", runtime / 1000, runtime % 1000 / 10,
           driver ? "" : "none");
    if (driver) printf("%d.%d", driver / 1000, driver % 1000 / 10);
    printf("; %d GPU%s%s%s\n", count, count == 1 ? "" : "s", usable ? "" : ": ", usable ? "" : why);
    for (int i = 0; i < count; i++) {
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
            (void)cudaGetLastError();
            continue;
        }
        printf("           GPU %d: %s, compute capability %d.%d, %.1f GiB, PCI %04x:%02x\n", i,
               prop.name, prop.major, prop.minor,
               (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), prop.pciDomainID,
               prop.pciBusID);
        if (i < max_buses) buses[i] = prop.pciDomainID << 8 | (prop.pciBusID & 0xff);
    }
#ifdef ZERO_HAVE_NCCL
    int v = zr_nccl_version();
    printf("NCCL       %d.%d.%d\n", v / 10000, v / 100 % 100, v % 100);
    int nccl = 1;
#else
    printf("NCCL       not built (the cuda backend needs it: configure with NCCL_ROOT)\n");
    int nccl = 0;
#endif
    if (!nccl)
        printf("auto       host backend (no NCCL)\n");
    else if (count == 0)
        printf("auto       host backend (%s)\n", why);
    else if (count < local_size)
        printf("auto       host backend: %d local ranks but %d GPU%s (one GPU per rank)\n",
               local_size, count, count == 1 ? "" : "s");
    else
        printf("auto       cuda backend, local rank r on GPU r %% %d\n", count);
    return nccl && count >= local_size ? count : 0;
#else
    (void)local_size;
    (void)buses;
    (void)max_buses;
    printf("CUDA       not built (configure with -DZERO_CUDA=ON where nvcc is installed)\n");
    printf("auto       host backend\n");
    return 0;
#endif
}

static void print_mpi(void) {
    /* Allowed before MPI_Init (MPI-3), so no MPI start-up is needed. */
    char version[MPI_MAX_LIBRARY_VERSION_STRING + 1];
    int len = 0;
    if (MPI_Get_library_version(version, &len) != MPI_SUCCESS) {
        printf("MPI        (MPI_Get_library_version failed)\n");
        return;
    }
    version[len < 0 ? 0 : len > MPI_MAX_LIBRARY_VERSION_STRING ? MPI_MAX_LIBRARY_VERSION_STRING
                                                                : len] = '\0';
    size_t n = strlen(version);
    while (n > 0 && (version[n - 1] == '\n' || version[n - 1] == ' ')) version[--n] = '\0';
    int major = 0, minor = 0;
    MPI_Get_version(&major, &minor);
    printf("MPI        standard %d.%d; ", major, minor);
    print_indented(version, 11);
    fputc('\n', stdout);
}

static void print_topology(const zo_topology *t, const char *synthetic) {
    zo_topology_info info;
    zo_topology_get_info(t, &info);
    printf("hwloc      %s; %s: %d package%s, %d NUMA node%s, %d cores, %d PUs\n", HWLOC_VERSION,
           synthetic ? "synthetic topology" : "this machine",
           info.packages, info.packages == 1 ? "" : "s", info.numa_nodes,
           info.numa_nodes == 1 ? "" : "s", info.cores, info.pus);
    if (synthetic)
        printf("           \"%s\" (a description: nothing is bound)\n", synthetic);
    else
        printf("           binding: threads %s, memory %s%s\n", info.cpubind ? "yes" : "no",
               info.membind ? "yes" : "no",
               info.cpubind && info.membind ? "" : " (offload runs unbound, with a warning)");
    size_t want = zo_topology_describe(t, NULL, 0);
    char *nodes = malloc(want + 1);
    if (!nodes) return;
    zo_topology_describe(t, nodes, want + 1);
    printf("           ");
    print_indented(nodes, 11);
    free(nodes);
}

static void print_numa_setting(int numa) {
    if (numa == ZERO_NUMA_AUTO)
        printf("auto");
    else if (numa == ZERO_NUMA_OFF)
        printf("off");
    else
        printf("%d", numa);
}

/* The BLAS the examples' matrix products use (zero-gpt2 links the same one), and its threads
 * (OpenMP build: OMP_NUM_THREADS; pthreads build: OPENBLAS_NUM_THREADS). */
static void print_blas(void)
{
#ifdef ZERO_INFO_BLAS
    char buf[256];
    printf("BLAS       %s\n", blas_info_describe(buf, sizeof buf));
#else
    printf("BLAS       none (configured with ZERO_BLAS=off, or no CBLAS: zero-gpt2 not built)\n");
#endif
}

int main(int argc, char **argv) {
    int local_size = 0;
    const char *synthetic = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(a, "--local-size") == 0 && i + 1 < argc) {
            local_size = parse_count(argv[++i]);
            if (local_size < 1) {
                fprintf(stderr, "zero-info: --local-size %s: expected an integer >= 1\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--synthetic") == 0 && i + 1 < argc) {
            synthetic = argv[++i];
        } else {
            fprintf(stderr, "zero-info: unknown or incomplete argument '%s'\n%s", a, usage_text);
            return 2;
        }
    }
    int status = 0;

    /* The environment as zero_init would resolve it (over ZERO_CONFIG_INIT); logging too, so
     * ZERO_DEBUG=INFO shows what the placement layer logs. */
    zr_settings set;
    zr_resolve_result res;
    zr_error cerr = {0};
    zero_status st = zr_config_resolve(&set, NULL, NULL, environ, &res, &cerr);
    if (st != ZERO_OK) {
        status = 1;
        zero_config defaults = ZERO_CONFIG_INIT;
        zr_config_resolve(&set, &defaults, NULL, NULL, NULL, NULL); /* defaults only */
        memset(&res, 0, sizeof res);
    }
    zr_log_setup(set.log_level, set.log_mask, set.log_file, -1);

    const char *local_env = "--local-size";
    if (local_size == 0) {
        const char *ompi = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        local_size = ompi ? parse_count(ompi) : -1;
        local_env = "OMPI_COMM_WORLD_LOCAL_SIZE";
        if (local_size < 1) {
            local_size = 1;
            local_env = "default";
        }
    }
    int my_local_rank = -1;
    const char *ompi_rank = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (ompi_rank && !synthetic) {
        char *end;
        long r = strtol(ompi_rank, &end, 10);
        if (end != ompi_rank && *end == '\0' && r >= 0 && r < local_size) my_local_rank = (int)r;
    }

    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    printf("zero-info: what libzero detects on %s\n\n", host);
    printf("libzero    %d.%d.%d\n", ZERO_VERSION_MAJOR, ZERO_VERSION_MINOR, ZERO_VERSION_PATCH);
    print_mpi();
    print_blas();
    int buses[64];
    for (int i = 0; i < 64; i++) buses[i] = -1;
    int gpus = synthetic ? 0 : print_cuda(local_size, buses, 64);

    zo_topology *t = NULL;
    zr_error terr = {0};
    if (zo_topology_load(&t, synthetic, &terr) != ZERO_OK) {
        printf("hwloc      %s\n", terr.msg);
        status = 1;
    } else {
        print_topology(t, synthetic);
    }

    printf("\nconfiguration (ZERO_* from the environment over ZERO_CONFIG_INIT):\n");
    if (st != ZERO_OK) printf("  INVALID: %s (defaults shown)\n", cerr.msg);
    for (int i = 0; i < res.num_applied; i++)
        printf("  %s=%s\n", res.applied[i].name, res.applied[i].value);
    for (int i = 0; i < res.num_warnings; i++) printf("  warning: %s\n", res.warnings[i]);
    zr_config_write_json(&set, stdout);
    fputc('\n', stdout);

    if (t) {
        const zero_config *c = &set.cfg;
        printf("\nplacement of the CPU offload, %d local rank%s (%s; ZERO_NUMA=", local_size,
               local_size == 1 ? "" : "s", local_env);
        print_numa_setting(c->numa);
        /* the engine plans near the GPU only on the cuda backend */
        if (c->device == ZERO_DEVICE_HOST) gpus = 0;
        printf(", ZERO_CPU_THREADS=%d, %s backend):\n", c->cpu_threads, gpus ? "cuda" : "host");
        for (int r = 0; r < local_size; r++) {
            zo_plan p;
            char line[1024];
            int bus = gpus && r % gpus < 64 ? buses[r % gpus] : -1; /* near its GPU */
            zr_error perr = {0};
            if (zo_plan_rank(t, r, local_size, c->numa, c->cpu_threads, bus, &p, &perr) !=
                ZERO_OK) {
                printf("  local rank %d: cannot plan: %s\n", r, perr.msg);
                status = 1;
                continue;
            }
            zo_plan_describe(t, &p, line, sizeof line);
            printf("  local rank %d%s: %s\n", r, r == my_local_rank ? " (this process)" : "",
                   line);
            if (p.shared > 1)
                printf("    warning: %d local ranks share this core: the machine has fewer cores "
                       "than local ranks\n",
                       p.shared);
        }
        zo_topology_free(t);
    }
    if (fflush(stdout) != 0) return 1;
    return status;
}
