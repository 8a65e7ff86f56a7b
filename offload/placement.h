/* placement.h — where a rank's offloaded optimizer lives on the host: which NUMA node its buffers
 * are bound to and which cores its CPU Adam threads run on, decided from the hwloc topology of
 * the machine (or a synthetic one, for tests and for zero-info --synthetic). Knows nothing of
 * MPI or the engine: the caller passes its local rank and the number of ranks on the node.
 *
 * zo_topology_load and zo_plan_rank return a zero_status and leave the message in a zr_error
 * (util/error.h; may be NULL; not logged); the others return 0 or -1 as documented.
 * Logging (subsystem OFFLOAD): zo_topology_load says what it found (INFO), zo_alloc and
 * zo_bind_threads say why they could not bind (WARN) before falling back; zo_plan_rank logs
 * nothing, so tools can plan for other ranks: the caller logs zo_plan_describe of its own plan
 * (INFO, and WARN when plan.shared > 1). */
#ifndef ZERO_PLACEMENT_H
#define ZERO_PLACEMENT_H

#include <stddef.h>

#include "util/error.h"
#include "zero.h" /* ZERO_NUMA_AUTO, ZERO_NUMA_OFF */

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded hwloc topology with the facts placement needs. Read-only after zo_topology_load, so
 * one topology may be shared by threads. Load it once per process: loading walks sysfs. */
typedef struct zo_topology zo_topology;

/* Loads the topology of this machine (description NULL; PCI devices included, for GPU
 * locality), or a described one: an hwloc synthetic description such as
 * "package:2 numa:2 core:8 pu:1", or, when the text starts with '<', an hwloc XML topology.
 * A described topology is not this machine: plans can be made for it, but zo_alloc does not
 * bind memory and zo_bind_threads returns -1 for it. Returns ZERO_OK, or ZERO_ERR_INVALID (bad
 * description, hwloc failure) / ZERO_ERR_SYSTEM (no memory) with the message in e; *t is then
 * NULL. */
zero_status zo_topology_load(zo_topology **t, const char *description, zr_error *e);

/* Frees a topology; NULL is a no-op. Memory from zo_alloc must be freed before. */
void zo_topology_free(zo_topology *t);

/* What a topology holds, for tools and logs. */
typedef struct zo_topology_info {
    int packages;     /* 0 when hwloc reports none (some virtual machines) */
    int numa_nodes;   /* >= 1 */
    int cpu_nodes;    /* NUMA nodes with at least one core (placement uses only these) */
    int cores;        /* cores; PUs stand in for cores when hwloc reports no cores */
    int pus;          /* processing units (hardware threads) */
    int this_system;  /* 1: the machine we run on; 0: a synthetic or XML description */
    int cpubind;      /* 1: threads can be bound to cpus here */
    int membind;      /* 1: memory can be allocated bound to a NUMA node here */
} zo_topology_info;

void zo_topology_get_info(const zo_topology *t, zo_topology_info *info);

/* One line per NUMA node into buf (NUL-terminated, cut to len), in hwloc's order:
 *   "NUMA node 0: 64.0 GiB, 8 cores, cpus 0-7\n" ... Returns the length it wanted. */
size_t zo_topology_describe(const zo_topology *t, char *buf, size_t len);

#define ZO_MAX_CPUS 256

/* Where one local rank's offload memory and CPU optimizer threads go. Nodes and cpus carry the
 * operating system's numbers (hwloc's P#), as numactl, lscpu, taskset and /sys show them, not
 * hwloc's logical indexes: that is what a user compares them with and what ZERO_NUMA takes. */
typedef struct zo_plan {
    int numa_node;          /* OS number of the NUMA node memory is bound to; -1 = none */
    int num_cores;          /* cores this rank's threads may use (0 = not bound) */
    int num_cpus;           /* entries of cpus[] */
    int cpus[ZO_MAX_CPUS];  /* PU OS indexes (P#, what the kernel and taskset call cpus) of
                               those cores: the first PU of every core, then the second PU of
                               every core, ...; thread i binds to cpus[i % num_cpus], so the
                               first num_cores threads each get a core of their own */
    int threads;            /* CPU optimizer threads for this rank, >= 1 */
    int shared;             /* local ranks (this one included) bound to this rank's cores:
                               1 = its own; > 1 = the node has fewer cores than ranks (warn) */
    char reason[256];       /* why, e.g. "auto: local rank 1 of 4, 4 NUMA node(s) with cores:
                               node 1; cores 0-7 of its 8 (rank 0 of 1 there)" */
} zo_plan;

/* Plans local rank `local_rank` of `local_size` ranks on this node.
 *
 * numa:
 * - ZERO_NUMA_OFF: no binding: numa_node -1, no cpus; threads = cpu_threads, or the machine's
 *   cores / local_size (at least 1).
 * - a node number N >= 0 (the OS's, as numactl and zo_topology_describe number them): every
 *   local rank binds its memory to node N and the ranks divide N's cores (all cores if N has
 *   none). -1 with a message when node N does not exist.
 * - ZERO_NUMA_AUTO, host backend (gpu_pci_bus < 0): the NUMA nodes that have cores of their own
 *   (in hwloc's order; memory local to the whole machine or shared with another node's cores,
 *   such as HBM or CXL, is left out) are divided among the local ranks in contiguous blocks.
 *   With at least as many ranks as nodes, rank r gets node r * nodes / local_size (ranks 0-1 on
 *   node 0, 2-3 on node 1, ...); with fewer ranks than nodes, rank r's share is nodes
 *   [r * nodes / local_size, (r+1) * nodes / local_size) and it uses the first of them, for
 *   memory and cores (a CPU Adam thread is memory-bound: one running on another node than its
 *   memory only adds cross-node traffic).
 * - ZERO_NUMA_AUTO with a GPU (gpu_pci_bus = PCI domain << 8 | bus, as cudaDeviceProp's
 *   pciDomainID and pciBusID): the first node with cores local to the GPU's PCI locality; the
 *   rank takes slot local_rank % ceil(local_size / nodes) of that node's cores (GPUs numbered
 *   in node order, evenly spread). When the GPU is not in the topology, or it is local to the
 *   whole machine, the host rule applies (reason says so).
 * Cores: the ranks on a node divide its cores in contiguous blocks, no core shared: the j-th
 * of m ranks gets cores [j * C / m, (j+1) * C / m) of the node's C cores. With fewer cores than
 * ranks (C < m), each rank gets one core, core j % C, shared round-robin: plan->shared > 1 and
 * reason says so.
 * Threads: cpu_threads > 0 asks for that many, capped at the rank's PUs (num_cpus) so no two of
 * its threads share a PU; 0 = one thread per core of the rank.
 * Pure: logs nothing, binds nothing. Returns ZERO_OK, or ZERO_ERR_INVALID for a bad argument or
 * node with the message in e. */
zero_status zo_plan_rank(const zo_topology *t, int local_rank, int local_size, int numa,
                         int cpu_threads, int gpu_pci_bus, zo_plan *plan, zr_error *e);

/* One line describing a plan: "NUMA node 1, cpus 8-15 (8 cores), 8 threads; <reason>". */
void zo_plan_describe(const zo_topology *t, const zo_plan *p, char *buf, size_t len);

/* Allocates `bytes` of host memory for offloaded state, page-aligned, bound to the plan's NUMA
 * node when it has one and this machine supports it (hwloc_alloc_membind, strict bind): then
 * *bound = 1. Otherwise (plan without a node, a described topology, binding refused) an unbound
 * allocation, *bound = 0, with a WARN naming the cause when a node was asked for. The memory is
 * NOT zero-filled: the caller initialises it, best from threads bound by zo_bind_threads.
 * Pinning for CUDA (cudaHostRegister) is the device backend's job, after this call. bound may
 * be NULL. Returns NULL when bytes is 0 or the system is out of memory. Thread-safe. */
void *zo_alloc(const zo_topology *t, const zo_plan *p, size_t bytes, int *bound);

/* Frees memory from zo_alloc on the same topology; bytes as allocated. NULL is a no-op. */
void zo_free(const zo_topology *t, void *ptr, size_t bytes);

/* Binds the OpenMP threads that will run the CPU optimizer: in a parallel region of p->threads
 * threads, thread i binds itself to cpus[i % num_cpus]. The calling thread (thread 0) is among
 * them. OpenMP runtimes keep their pool threads between regions, so later regions of at most
 * p->threads threads run on the plan's cpus. Returns 0 (bound, or a plan without cpus: nothing
 * to do), or -1 when this topology or machine cannot bind threads, with a WARN naming the cause;
 * the caller goes on unbound. Never fails otherwise. Must not be called inside a parallel region.
 */
int zo_bind_threads(const zo_topology *t, const zo_plan *p);

/* Binds the calling thread — a helper such as a data loader's, which must not take the core of
 * the thread that drives the step (thread 0, on cpus[0]) — to the plan's PUs of every core but
 * cpus[0]'s; with one core, to that core (shared, there is no other). Writes what it did into
 * desc ("cpus 1,2,3" or why nothing was bound). Returns 0 (bound, or a plan without cpus:
 * nothing to do) or -1 when this topology or machine cannot bind; never fails otherwise. */
int zo_bind_helper_thread(const zo_topology *t, const zo_plan *p, char *desc, size_t len);

#ifdef __cplusplus
}
#endif
#endif
