/* placement.c — hwloc placement of a rank's offloaded optimizer: NUMA node and cores per local
 * rank (zo_plan_rank), node-bound host buffers (zo_alloc) and thread binding (zo_bind_threads).
 * The rules are documented in placement.h; this file keeps them in one place each. */
#include "offload/placement.h"

#include <errno.h>
#include <hwloc.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct zo_topology {
    hwloc_topology_t topo;
    int this_system;     /* hwloc_topology_is_thissystem */
    int cpubind;         /* this thread can be bound (and this_system) */
    int membind;         /* memory can be allocated bound (and this_system) */
    hwloc_obj_type_t core_type; /* HWLOC_OBJ_CORE, or HWLOC_OBJ_PU when hwloc reports no cores */
    int num_numa;        /* NUMA nodes, >= 1 */
    int num_cpu_nodes;   /* entries of cpu_nodes */
    int *cpu_nodes;      /* [num_cpu_nodes] logical indexes of the NUMA nodes placement divides:
                            the first node of each distinct set of cores (a node with no cores,
                            or one whose cores an earlier node already has, such as HBM or CXL
                            memory beside DRAM, is left out) */
};

/* Records ZERO_ERR_INVALID (or the given status) and the message in e (may be NULL). */
#define zo_fail(e, ...) zr_error_set((e), ZERO_ERR_INVALID, __VA_ARGS__)

/* Appends to a fixed buffer, cutting what does not fit (the buffer stays NUL-terminated). */
static void zo_append(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void zo_append(char *buf, size_t len, const char *fmt, ...) {
    size_t used = strnlen(buf, len);
    if (used + 1 >= len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

static hwloc_obj_t zo_node(const zo_topology *t, int logical) {
    return hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, (unsigned)logical);
}

/* The OS number (P#) of a NUMA node given by logical index: what plans and messages show. */
static int zo_os(const zo_topology *t, int logical) {
    hwloc_obj_t n = zo_node(t, logical);
    return n ? (int)n->os_index : -1;
}

/* Cores (core_type objects) inside a cpuset. */
static int zo_cores_in(const zo_topology *t, hwloc_const_cpuset_t set) {
    if (!set) return 0;
    return hwloc_get_nbobjs_inside_cpuset_by_type(t->topo, set, t->core_type);
}

/* ---- topology ---------------------------------------------------------------------------- */

/* Finds the NUMA nodes placement divides (see cpu_nodes): nodes with cores, minus those local
 * to a strict superset of another such node's cores (memory attached to the whole machine or
 * package, whatever its index), minus later nodes that share cores with a kept one (HBM beside
 * DRAM). Returns 0, or -1 out of memory. */
static int zo_find_cpu_nodes(zo_topology *t) {
    t->cpu_nodes = calloc((size_t)t->num_numa, sizeof *t->cpu_nodes);
    hwloc_bitmap_t seen = hwloc_bitmap_alloc();
    if (!t->cpu_nodes || !seen) {
        hwloc_bitmap_free(seen);
        return -1;
    }
    for (int i = 0; i < t->num_numa; i++) {
        hwloc_obj_t n = zo_node(t, i);
        if (!n || zo_cores_in(t, n->cpuset) == 0) continue;
        int wider = 0;
        for (int k = 0; k < t->num_numa && !wider; k++) {
            hwloc_obj_t o = zo_node(t, k);
            wider = k != i && o && zo_cores_in(t, o->cpuset) > 0 &&
                    hwloc_bitmap_isincluded(o->cpuset, n->cpuset) &&
                    !hwloc_bitmap_isequal(o->cpuset, n->cpuset);
        }
        if (wider || hwloc_bitmap_intersects(seen, n->cpuset)) continue;
        hwloc_bitmap_or(seen, seen, n->cpuset);
        t->cpu_nodes[t->num_cpu_nodes++] = i;
    }
    hwloc_bitmap_free(seen);
    return 0;
}

zero_status zo_topology_load(zo_topology **out, const char *description, zr_error *e) {
    if (e) zr_error_clear(e);
    if (!out) {
        zo_fail(e, "zo_topology_load: out is NULL");
        return ZERO_ERR_INVALID;
    }
    *out = NULL;
    zo_topology *t = calloc(1, sizeof *t);
    if (!t)
        return zr_error_set(e, ZERO_ERR_SYSTEM, "zo_topology_load: out of memory");
    if (hwloc_topology_init(&t->topo) != 0) {
        zo_fail(e, "hwloc_topology_init failed: %s", strerror(errno));
        free(t);
        return ZERO_ERR_INVALID;
    }
    const char *what = "this machine";
    if (description && description[0] == '<') {
        what = "the XML topology";
        size_t n = strlen(description) + 1;
        if (n > (size_t)0x7fffffff ||
            hwloc_topology_set_xmlbuffer(t->topo, description, (int)n) != 0) {
            zo_fail(e, "hwloc cannot read the XML topology: %s", strerror(errno));
            goto fail;
        }
    } else if (description) {
        what = "the synthetic topology";
        if (hwloc_topology_set_synthetic(t->topo, description) != 0) {
            zo_fail(e,
                    "\"%.120s\" is not an hwloc synthetic topology (expected e.g. "
                    "\"package:2 numa:2 core:8 pu:1\")",
                    description);
            goto fail;
        }
    }
    /* PCI devices and their bridges give a GPU's locality; the rest of I/O is not needed. */
    hwloc_topology_set_io_types_filter(t->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(t->topo) != 0) {
        zo_fail(e, "hwloc cannot load %s: %s", what, strerror(errno));
        goto fail;
    }

    t->this_system = hwloc_topology_is_thissystem(t->topo);
    const struct hwloc_topology_support *s = hwloc_topology_get_support(t->topo);
    /* A described topology has hwloc's dummy hooks, which report success and bind nothing. */
    t->cpubind = t->this_system && s->cpubind && s->cpubind->set_thisthread_cpubind;
    t->membind = t->this_system && s->membind && s->membind->alloc_membind &&
                 s->membind->bind_membind;
    t->core_type = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                                          : HWLOC_OBJ_PU;
    t->num_numa = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_NUMANODE);
    if (t->num_numa < 1) {
        zo_fail(e, "hwloc found no NUMA node in %s", what);
        goto fail;
    }
    if (zo_find_cpu_nodes(t) != 0) {
        zr_error_set(e, ZERO_ERR_SYSTEM, "zo_topology_load: out of memory");
        goto fail;
    }

    zo_topology_info info;
    zo_topology_get_info(t, &info);
    ZR_INFO(ZR_SUB_OFFLOAD,
            "hwloc: %s: %d package(s), %d NUMA node(s) (%d with cores), %d cores, %d PUs; "
            "binding: threads %s, memory %s",
            what, info.packages, info.numa_nodes, info.cpu_nodes, info.cores, info.pus,
            info.cpubind ? "yes" : "no", info.membind ? "yes" : "no");
    *out = t;
    return ZERO_OK;

fail:
    hwloc_topology_destroy(t->topo);
    free(t->cpu_nodes);
    free(t);
    return e && e->status ? e->status : ZERO_ERR_INVALID;
}

void zo_topology_free(zo_topology *t) {
    if (!t) return;
    hwloc_topology_destroy(t->topo);
    free(t->cpu_nodes);
    free(t);
}

void zo_topology_get_info(const zo_topology *t, zo_topology_info *info) {
    memset(info, 0, sizeof *info);
    if (!t) return;
    info->packages = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PACKAGE);
    info->numa_nodes = t->num_numa;
    info->cpu_nodes = t->num_cpu_nodes;
    info->cores = hwloc_get_nbobjs_by_type(t->topo, t->core_type);
    info->pus = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PU);
    info->this_system = t->this_system;
    info->cpubind = t->cpubind;
    info->membind = t->membind;
}

size_t zo_topology_describe(const zo_topology *t, char *buf, size_t len) {
    char line[512], cpus[256];
    size_t want = 0;
    if (buf && len) buf[0] = '\0';
    if (!t) return 0;
    for (int i = 0; i < t->num_numa; i++) {
        hwloc_obj_t n = zo_node(t, i);
        if (!n) continue;
        int cores = zo_cores_in(t, n->cpuset);
        if (cores > 0)
            hwloc_bitmap_list_snprintf(cpus, sizeof cpus, n->cpuset);
        else
            snprintf(cpus, sizeof cpus, "none");
        int n_line = snprintf(line, sizeof line, "NUMA node %u: %.1f GiB, %d cores, cpus %s\n",
                              n->os_index,
                              (double)n->attr->numanode.local_memory / (double)(1ull << 30),
                              cores, cpus);
        want += (size_t)n_line;
        if (buf && len) zo_append(buf, len, "%s", line);
    }
    return want;
}

/* ---- planning ---------------------------------------------------------------------------- */

/* Fills p->cpus with the PUs of cores [first, first + count) of those inside `set`, one round
 * per hardware thread (every core's first PU, then every core's second PU, ...). Sets num_cores
 * to the cores that made it into cpus[]. */
static void zo_fill_cpus(const zo_topology *t, hwloc_const_cpuset_t set, int first, int count,
                         zo_plan *p) {
    p->num_cpus = 0;
    p->num_cores = 0;
    for (int round = 0;; round++) {
        int added = 0;
        for (int c = first; c < first + count && p->num_cpus < ZO_MAX_CPUS; c++) {
            hwloc_obj_t core =
                hwloc_get_obj_inside_cpuset_by_type(t->topo, set, t->core_type, (unsigned)c);
            if (!core) continue;
            hwloc_obj_t pu =
                t->core_type == HWLOC_OBJ_PU
                    ? (round == 0 ? core : NULL)
                    : hwloc_get_obj_inside_cpuset_by_type(t->topo, core->cpuset, HWLOC_OBJ_PU,
                                                          (unsigned)round);
            if (!pu) continue;
            p->cpus[p->num_cpus++] = (int)pu->os_index;
            if (round == 0) p->num_cores++;
            added++;
        }
        if (added == 0 || p->num_cpus >= ZO_MAX_CPUS) break;
    }
}

/* The j-th of m ranks on a domain of C cores: a contiguous block of its own, or (C < m) one
 * core shared round-robin. Fills cpus, num_cores, shared; appends to reason. */
static void zo_take_cores(const zo_topology *t, hwloc_const_cpuset_t set, int j, int m,
                          zo_plan *p) {
    int c = zo_cores_in(t, set);
    if (c == 0) {
        p->num_cpus = p->num_cores = 0;
        p->shared = 1;
        zo_append(p->reason, sizeof p->reason, "; no cores to bind to");
        return;
    }
    if (c >= m) {
        int first = (int)((long long)j * c / m);
        int last = (int)((long long)(j + 1) * c / m);
        zo_fill_cpus(t, set, first, last - first, p);
        p->shared = 1;
        if (last - first == 1)
            zo_append(p->reason, sizeof p->reason, "; core %d of its %d", first, c);
        else
            zo_append(p->reason, sizeof p->reason, "; cores %d-%d of its %d", first, last - 1, c);
        zo_append(p->reason, sizeof p->reason, " (rank %d of %d there)", j, m);
        if (p->num_cores < last - first)
            zo_append(p->reason, sizeof p->reason, ", first %d used (cpu list full)",
                      p->num_cores);
        return;
    }
    int core = j % c;
    zo_fill_cpus(t, set, core, 1, p);
    p->shared = (m - 1 - core) / c + 1; /* ranks j' < m with j' % c == core */
    zo_append(p->reason, sizeof p->reason,
              "; fewer cores (%d) than ranks (%d): core %d, shared round-robin", c, m, core);
    if (p->shared > 1)
        zo_append(p->reason, sizeof p->reason, " by %d ranks", p->shared);
    else
        zo_append(p->reason, sizeof p->reason, " (this one alone)");
}

/* The NUMA node local to the PCI bus (domain << 8 | bus): the first of the divided nodes whose
 * cores meet the cores near the device. Returns the node's logical index, -1 when the bus is
 * not in the topology, -2 when the device is local to the whole machine (no information). */
static int zo_gpu_node(const zo_topology *t, int pci) {
    unsigned domain = (unsigned)pci >> 8, bus = (unsigned)pci & 0xffu;
    hwloc_obj_t dev = NULL;
    for (hwloc_obj_t o = hwloc_get_next_pcidev(t->topo, NULL); o;
         o = hwloc_get_next_pcidev(t->topo, o)) {
        if (o->attr->pcidev.domain == domain && o->attr->pcidev.bus == bus) {
            dev = o;
            break;
        }
    }
    if (!dev) return -1;
    hwloc_obj_t near = hwloc_get_non_io_ancestor_obj(t->topo, dev);
    if (!near || !near->cpuset) return -1;
    hwloc_obj_t root = hwloc_get_root_obj(t->topo);
    if (t->num_cpu_nodes > 1 && hwloc_bitmap_isincluded(root->cpuset, near->cpuset)) return -2;
    for (int k = 0; k < t->num_cpu_nodes; k++) {
        hwloc_obj_t n = zo_node(t, t->cpu_nodes[k]);
        if (n && hwloc_bitmap_intersects(n->cpuset, near->cpuset)) return t->cpu_nodes[k];
    }
    return -2;
}

/* The host rule: node and (j, m) slot of local rank r of l. */
static void zo_host_rule(const zo_topology *t, int r, int l, int *node, int *j, int *m,
                         zo_plan *p) {
    int n = t->num_cpu_nodes;
    if (l >= n) {
        int k = (int)((long long)r * n / l);
        int first = -1, count = 0;
        for (int q = 0; q < l; q++) {
            if ((int)((long long)q * n / l) != k) continue;
            if (first < 0) first = q;
            count++;
        }
        *node = t->cpu_nodes[k];
        *j = r - first;
        *m = count;
        zo_append(p->reason, sizeof p->reason,
                  "auto: local rank %d of %d, %d NUMA node(s) with cores: node %d", r, l, n,
                  zo_os(t, *node));
    } else {
        int lo = (int)((long long)r * n / l), hi = (int)((long long)(r + 1) * n / l);
        *node = t->cpu_nodes[lo];
        *j = 0;
        *m = 1;
        zo_append(p->reason, sizeof p->reason,
                  "auto: local rank %d of %d, %d NUMA nodes with cores: node %d", r, l, n,
                  zo_os(t, *node));
        if (hi - lo > 1)
            zo_append(p->reason, sizeof p->reason, " (first of its share of %d nodes)", hi - lo);
    }
}

static zero_status plan_check_args(const zo_topology *t, int local_rank, int local_size, int numa,
                                   int cpu_threads, zo_plan *plan, zr_error *e)
{
    if (!t || !plan)
        return zo_fail(e, "zo_plan_rank: %s is NULL", t ? "plan" : "topology");
    if (local_size < 1 || local_rank < 0 || local_rank >= local_size)
        return zo_fail(e, "local rank %d of %d: expected 0 <= rank < size", local_rank,
                       local_size);
    if (cpu_threads < 0)
        return zo_fail(e, "cpu_threads %d: expected 0 (one per core) or more", cpu_threads);
    if (numa < 0 && numa != ZERO_NUMA_AUTO && numa != ZERO_NUMA_OFF)
        return zo_fail(e, "numa %d: expected a node index, auto (%d) or off (%d)", numa,
                       ZERO_NUMA_AUTO, ZERO_NUMA_OFF);
    return ZERO_OK;
}

/* ZERO_NUMA=off: no binding; threads = the cores shared among the local ranks (or as asked). */
static void plan_unbound(const zo_topology *t, int local_size, int cpu_threads, zo_plan *plan)
{
    hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(t->topo);
    int share = zo_cores_in(t, all) / local_size;
    if (share < 1) share = 1;
    plan->threads = cpu_threads > 0 ? cpu_threads : share;
    if (cpu_threads > 0)
        snprintf(plan->reason, sizeof plan->reason, "numa off: no binding; %d threads asked",
                 cpu_threads);
    else
        snprintf(plan->reason, sizeof plan->reason,
                 "numa off: no binding; %d threads = %d cores / %d local ranks", share,
                 zo_cores_in(t, all), local_size);
}

/* The node (logical index, -1 = none) of this rank and its place j among the m ranks sharing
 * it: as asked (numa >= 0), near its GPU, or by the host rule. */
static zero_status choose_node(const zo_topology *t, int local_rank, int local_size, int numa,
                               int gpu_pci_bus, int *node, int *j, int *m, zo_plan *plan,
                               zr_error *e)
{
    *j = local_rank;
    *m = local_size;
    if (numa >= 0) {
        hwloc_obj_t asked = hwloc_get_numanode_obj_by_os_index(t->topo, (unsigned)numa);
        if (!asked) {
            char nodes[128];
            hwloc_bitmap_list_snprintf(nodes, sizeof nodes,
                                       hwloc_topology_get_topology_nodeset(t->topo));
            return zo_fail(e, "NUMA node %d does not exist: the NUMA nodes here are %s", numa,
                           nodes);
        }
        *node = (int)asked->logical_index;
        snprintf(plan->reason, sizeof plan->reason, "node %d as asked, for all %d local ranks",
                 numa, local_size);
    } else if (t->num_cpu_nodes == 0) {
        /* No node has cores (not seen in practice): threads share the machine, memory unbound. */
        *node = -1;
        snprintf(plan->reason, sizeof plan->reason,
                 "auto: no NUMA node has cores; memory not bound, local rank %d of %d",
                 local_rank, local_size);
    } else if (gpu_pci_bus >= 0 && zo_gpu_node(t, gpu_pci_bus) >= 0) {
        int n = t->num_cpu_nodes;
        *node = zo_gpu_node(t, gpu_pci_bus);
        *m = (local_size + n - 1) / n;
        *j = local_rank % *m;
        snprintf(plan->reason, sizeof plan->reason,
                 "auto: GPU %04x:%02x is local to node %d; local rank %d of %d",
                 (unsigned)gpu_pci_bus >> 8, (unsigned)gpu_pci_bus & 0xffu, zo_os(t, *node),
                 local_rank, local_size);
    } else {
        if (gpu_pci_bus >= 0)
            snprintf(plan->reason, sizeof plan->reason, "GPU %04x:%02x %s; ",
                     (unsigned)gpu_pci_bus >> 8, (unsigned)gpu_pci_bus & 0xffu,
                     zo_gpu_node(t, gpu_pci_bus) == -1 ? "not in the topology"
                                                       : "local to the whole machine");
        zo_host_rule(t, local_rank, local_size, node, j, m, plan);
    }
    return ZERO_OK;
}

zero_status zo_plan_rank(const zo_topology *t, int local_rank, int local_size, int numa,
                         int cpu_threads, int gpu_pci_bus, zo_plan *plan, zr_error *e)
{
    if (e) zr_error_clear(e);
    zero_status s = plan_check_args(t, local_rank, local_size, numa, cpu_threads, plan, e);
    if (s) return s;
    memset(plan, 0, sizeof *plan);
    plan->numa_node = -1;
    plan->shared = 1;
    if (numa == ZERO_NUMA_OFF) {
        plan_unbound(t, local_size, cpu_threads, plan);
        return ZERO_OK;
    }
    int node = -1, j = 0, m = 1;
    if ((s = choose_node(t, local_rank, local_size, numa, gpu_pci_bus, &node, &j, &m, plan, e)))
        return s;
    hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(t->topo);
    plan->numa_node = node >= 0 ? zo_os(t, node) : -1;
    hwloc_obj_t n = node >= 0 ? zo_node(t, node) : NULL;
    hwloc_const_cpuset_t domain = n && zo_cores_in(t, n->cpuset) > 0 ? n->cpuset : all;
    if (n && domain == all) zo_append(plan->reason, sizeof plan->reason, "; node has no cores");
    zo_take_cores(t, domain, j, m, plan);

    if (cpu_threads > 0) {
        plan->threads = cpu_threads;
        if (plan->num_cpus > 0 && cpu_threads > plan->num_cpus) {
            plan->threads = plan->num_cpus;
            zo_append(plan->reason, sizeof plan->reason, "; cpu_threads %d capped at its %d PUs",
                      cpu_threads, plan->num_cpus);
        }
    } else {
        plan->threads = plan->num_cores > 0 ? plan->num_cores : 1;
    }
    return ZERO_OK;
}

/* A sorted cpu list as ranges, "0-7,16-23", through an hwloc bitmap. */
static void zo_cpu_list(const zo_plan *p, char *buf, size_t len) {
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) {
        snprintf(buf, len, "?");
        return;
    }
    for (int i = 0; i < p->num_cpus; i++) hwloc_bitmap_set(set, (unsigned)p->cpus[i]);
    hwloc_bitmap_list_snprintf(buf, len, set);
    hwloc_bitmap_free(set);
}

void zo_plan_describe(const zo_topology *t, const zo_plan *p, char *buf, size_t len) {
    if (!buf || len == 0) return;
    buf[0] = '\0';
    if (!p) return;
    if (p->numa_node >= 0) {
        zo_append(buf, len, "NUMA node %d", p->numa_node);
    } else {
        zo_append(buf, len, "memory not bound");
    }
    if (p->num_cpus > 0) {
        char cpus[256];
        zo_cpu_list(p, cpus, sizeof cpus);
        zo_append(buf, len, ", cpus %s (%d core%s)", cpus, p->num_cores,
                  p->num_cores == 1 ? "" : "s");
    } else {
        zo_append(buf, len, ", threads not bound");
    }
    zo_append(buf, len, ", %d thread%s; %s", p->threads, p->threads == 1 ? "" : "s", p->reason);
}

/* ---- memory and threads ------------------------------------------------------------------ */

void *zo_alloc(const zo_topology *t, const zo_plan *p, size_t bytes, int *bound) {
    if (bound) *bound = 0;
    if (!t || bytes == 0) return NULL;
    int want = p && p->numa_node >= 0;
    if (want) {
        hwloc_obj_t n = hwloc_get_numanode_obj_by_os_index(t->topo, (unsigned)p->numa_node);
        const char *why = NULL;
        int e = 0;
        if (!t->this_system)
            why = "the topology is a description, not this machine";
        else if (!t->membind)
            why = "hwloc cannot bind memory on this system";
        else if (!n)
            why = "no such NUMA node";
        if (!why) {
            /* STRICT: fail rather than quietly place the pages elsewhere, so *bound is true. */
            void *ptr = hwloc_alloc_membind(t->topo, bytes, n->nodeset, HWLOC_MEMBIND_BIND,
                                            HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT);
            if (ptr) {
                if (bound) *bound = 1;
                ZR_TRACE(ZR_SUB_OFFLOAD, "%zu bytes at %p bound to NUMA node %d", bytes, ptr,
                         p->numa_node);
                return ptr;
            }
            e = errno;
            why = "hwloc_alloc_membind failed";
        }
        ZR_WARN(ZR_SUB_OFFLOAD, "%zu bytes not bound to NUMA node %d: %s%s%s; unbound instead",
                bytes, p->numa_node, why, e ? ": " : "", e ? strerror(e) : "");
    }
    void *ptr = hwloc_alloc(t->topo, bytes);
    if (ptr) ZR_TRACE(ZR_SUB_OFFLOAD, "%zu bytes at %p, not bound", bytes, ptr);
    return ptr;
}

void zo_free(const zo_topology *t, void *ptr, size_t bytes) {
    if (!t || !ptr) return;
    hwloc_free(t->topo, ptr, bytes);
}

int zo_bind_threads(const zo_topology *t, const zo_plan *p) {
    if (!t || !p) return -1;
    if (p->num_cpus <= 0) return 0;
    if (!t->this_system || !t->cpubind) {
        ZR_WARN(ZR_SUB_OFFLOAD, "CPU optimizer threads not bound: %s",
                t->this_system ? "hwloc cannot bind threads on this system"
                               : "the topology is a description, not this machine");
        return -1;
    }
    int threads = p->threads > 0 ? p->threads : 1;
    int failed = 0, first_errno = 0, first_cpu = -1;
#pragma omp parallel num_threads(threads) reduction(+ : failed)
    {
        int i = omp_get_thread_num();
        int cpu = p->cpus[i % p->num_cpus];
        hwloc_bitmap_t set = hwloc_bitmap_alloc();
        int rc = -1, e = ENOMEM;
        if (set) {
            hwloc_bitmap_only(set, (unsigned)cpu);
            rc = hwloc_set_cpubind(t->topo, set, HWLOC_CPUBIND_THREAD);
            e = errno;
            hwloc_bitmap_free(set);
        }
        if (rc != 0) {
            failed++;
#pragma omp critical(zo_bind_error)
            if (first_cpu < 0) {
                first_cpu = cpu;
                first_errno = e;
            }
        } else {
            ZR_TRACE(ZR_SUB_OFFLOAD, "optimizer thread %d bound to cpu %d", i, cpu);
        }
    }
    if (failed) {
        ZR_WARN(ZR_SUB_OFFLOAD, "%d of %d CPU optimizer threads not bound (cpu %d: %s)", failed,
                threads, first_cpu, strerror(first_errno));
        return -1;
    }
    return 0;
}

int zo_bind_helper_thread(const zo_topology *t, const zo_plan *p, char *desc, size_t len) {
    snprintf(desc, len, "not bound");
    if (!t || !p) return -1;
    if (p->num_cpus <= 0) {
        snprintf(desc, len, "not bound: the plan has no cpus");
        return 0;
    }
    if (!t->this_system || !t->cpubind) {
        snprintf(desc, len, "not bound: %s",
                 t->this_system ? "hwloc cannot bind threads on this system"
                                : "the topology is a description, not this machine");
        return -1;
    }
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return -1;
    int cores = p->num_cores > 0 ? p->num_cores : 1;
    size_t at = (size_t)snprintf(desc, len, "cpus");
    for (int i = 0; i < p->num_cpus; i++) {
        /* cpus[] lists the first PU of every core, then the second...: entry i is on core
         * i % cores; core 0 is the step thread's unless it is the only one */
        if (cores > 1 && i % cores == 0) continue;
        hwloc_bitmap_set(set, (unsigned)p->cpus[i]);
        if (at < len) at += (size_t)snprintf(desc + at, len - at, "%s%d", at > 4 ? "," : " ",
                                             p->cpus[i]);
    }
    if (cores == 1 && at < len) snprintf(desc + at, len - at, " (shared with the step thread: "
                                         "the rank has one core)");
    int rc = hwloc_set_cpubind(t->topo, set, HWLOC_CPUBIND_THREAD);
    int e = errno;
    hwloc_bitmap_free(set);
    if (rc != 0) {
        snprintf(desc, len, "not bound: %s", strerror(e));
        return -1;
    }
    return 0;
}
