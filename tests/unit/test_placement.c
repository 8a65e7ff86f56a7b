/* test_placement — offload/placement.c on synthetic and XML topologies (exact node and core
 * assignments per local rank), then on this machine: allocation works and thread binding either
 * binds every thread where the plan says or reports -1, whether or not hwloc can bind here. */
#define _POSIX_C_SOURCE 200809L

#include <hwloc.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/placement.h"
#include "util/log.h"

/* Failures print "file:line: FAILED: cond: message", every one of them. */
#define CHECK_STYLE CHECK_STYLE_FAILED
#include "tests/common/check.h"

/* zo_topology_load and zo_plan_rank with their message copied into err (as the checks below
 * read it): 0, or -1 on failure. */
static int topology_load(zo_topology **t, const char *description, char *err, size_t errlen)
{
    zr_error e = {0};
    zero_status s = zo_topology_load(t, description, &e);
    if (err && errlen > 0)
        snprintf(err, errlen, "%s", e.msg);
    return s == ZERO_OK ? 0 : -1;
}

static int plan_rank(const zo_topology *t, int local_rank, int local_size, int numa,
                     int cpu_threads, int gpu_pci_bus, zo_plan *plan, char *err, size_t errlen)
{
    zr_error e = {0};
    zero_status s = zo_plan_rank(t, local_rank, local_size, numa, cpu_threads, gpu_pci_bus, plan,
                                 &e);
    if (err && errlen > 0)
        snprintf(err, errlen, "%s", e.msg);
    return s == ZERO_OK ? 0 : -1;
}

static zo_topology *load(const char *description) {
    zo_topology *t = NULL;
    char err[256];
    int rc = topology_load(&t, description, err, sizeof err);
    CHECK(rc == 0 && t != NULL, "loading %.60s: %s", description ? description : "this machine",
          err);
    return t;
}

/* Plans local rank r of l and checks success. */
static zo_plan plan_of(const zo_topology *t, int r, int l, int numa, int threads, int gpu) {
    zo_plan p;
    char err[256];
    int rc = plan_rank(t, r, l, numa, threads, gpu, &p, err, sizeof err);
    CHECK(rc == 0, "plan rank %d of %d (numa %d, threads %d, gpu %d): %s", r, l, numa, threads,
          gpu, err);
    if (rc != 0) memset(&p, 0, sizeof p);
    return p;
}

/* The plan binds to node `node` and exactly cpus first..first+count-1 in that order. */
static void expect_block(const zo_plan *p, const char *what, int node, int first, int count) {
    CHECK(p->numa_node == node, "%s: node %d, expected %d (%s)", what, p->numa_node, node,
          p->reason);
    CHECK(p->num_cpus == count && p->num_cores == count, "%s: %d cpus / %d cores, expected %d",
          what, p->num_cpus, p->num_cores, count);
    for (int i = 0; i < count && i < p->num_cpus; i++)
        CHECK(p->cpus[i] == first + i, "%s: cpus[%d] = %d, expected %d", what, i, p->cpus[i],
              first + i);
    CHECK(p->shared == 1, "%s: shared %d", what, p->shared);
}

/* No cpu appears in two ranks' plans. */
static void expect_disjoint(const zo_plan *plans, int l, const char *what) {
    char used[ZO_MAX_CPUS * 4] = {0};
    for (int r = 0; r < l; r++)
        for (int i = 0; i < plans[r].num_cpus; i++) {
            int c = plans[r].cpus[i];
            CHECK(c >= 0 && c < (int)sizeof used, "%s: cpu %d out of range", what, c);
            if (c < 0 || c >= (int)sizeof used) continue;
            CHECK(!used[c], "%s: cpu %d given to two ranks", what, c);
            used[c] = 1;
        }
}

/* 2 packages x 2 NUMA nodes x 8 cores: node k has cpus 8k..8k+7. */
#define FOUR_NODES "package:2 numa:2 core:8 pu:1"

static void test_four_nodes(void) {
    zo_topology *t = load(FOUR_NODES);
    if (!t) return;
    zo_topology_info info;
    zo_topology_get_info(t, &info);
    CHECK(info.packages == 2 && info.numa_nodes == 4 && info.cpu_nodes == 4 && info.cores == 32 &&
              info.pus == 32,
          "info: %d packages %d nodes %d cpu nodes %d cores %d pus", info.packages,
          info.numa_nodes, info.cpu_nodes, info.cores, info.pus);
    CHECK(!info.this_system && !info.cpubind && !info.membind, "a synthetic topology binds");

    char text[1024];
    size_t want = zo_topology_describe(t, text, sizeof text);
    CHECK(want == strlen(text), "describe wanted %zu, wrote %zu", want, strlen(text));
    CHECK(strstr(text, "NUMA node 3: 1.0 GiB, 8 cores, cpus 24-31\n") != NULL, "%s", text);

    /* 4 ranks: a node and its 8 cores each. */
    zo_plan plans[8];
    for (int r = 0; r < 4; r++) {
        char what[32];
        snprintf(what, sizeof what, "4 ranks, rank %d", r);
        plans[r] = plan_of(t, r, 4, ZERO_NUMA_AUTO, 0, -1);
        expect_block(&plans[r], what, r, 8 * r, 8);
        CHECK(plans[r].threads == 8, "%s: %d threads", what, plans[r].threads);
    }
    expect_disjoint(plans, 4, "4 ranks");
    zo_plan_describe(t, &plans[1], text, sizeof text);
    CHECK(strstr(text, "NUMA node 1, cpus 8-15 (8 cores), 8 threads; auto: local rank 1 of 4") == text,
          "describe: %s", text);

    /* 8 ranks: two per node, 4 cores each. */
    for (int r = 0; r < 8; r++) {
        char what[32];
        snprintf(what, sizeof what, "8 ranks, rank %d", r);
        plans[r] = plan_of(t, r, 8, ZERO_NUMA_AUTO, 0, -1);
        expect_block(&plans[r], what, r / 2, 4 * r, 4);
        CHECK(plans[r].threads == 4, "%s: %d threads", what, plans[r].threads);
    }
    expect_disjoint(plans, 8, "8 ranks");

    /* 6 ranks: nodes take ranks {0,1} {2} {3,4} {5} (rank r on node r * 4 / 6). */
    const int node6[6] = {0, 0, 1, 2, 2, 3}, first6[6] = {0, 4, 8, 16, 20, 24},
              count6[6] = {4, 4, 8, 4, 4, 8};
    for (int r = 0; r < 6; r++) {
        char what[32];
        snprintf(what, sizeof what, "6 ranks, rank %d", r);
        plans[r] = plan_of(t, r, 6, ZERO_NUMA_AUTO, 0, -1);
        expect_block(&plans[r], what, node6[r], first6[r], count6[r]);
    }
    expect_disjoint(plans, 6, "6 ranks");

    /* Fewer ranks than nodes: the first node of each rank's share. */
    plans[0] = plan_of(t, 0, 2, ZERO_NUMA_AUTO, 0, -1);
    plans[1] = plan_of(t, 1, 2, ZERO_NUMA_AUTO, 0, -1);
    expect_block(&plans[0], "2 ranks, rank 0", 0, 0, 8);
    expect_block(&plans[1], "2 ranks, rank 1", 2, 16, 8);
    CHECK(strstr(plans[1].reason, "first of its share of 2 nodes") != NULL, "%s",
          plans[1].reason);
    const int node3[3] = {0, 1, 2};
    for (int r = 0; r < 3; r++) {
        char what[32];
        snprintf(what, sizeof what, "3 ranks, rank %d", r);
        plans[r] = plan_of(t, r, 3, ZERO_NUMA_AUTO, 0, -1);
        expect_block(&plans[r], what, node3[r], 8 * node3[r], 8);
    }
    plans[0] = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 0, -1);
    expect_block(&plans[0], "1 rank", 0, 0, 8);

    /* ZERO_NUMA=2: every rank on node 2, its 8 cores divided. */
    for (int r = 0; r < 4; r++) {
        char what[32];
        snprintf(what, sizeof what, "node 2, rank %d", r);
        plans[r] = plan_of(t, r, 4, 2, 0, -1);
        expect_block(&plans[r], what, 2, 16 + 2 * r, 2);
        CHECK(plans[r].threads == 2, "%s: %d threads", what, plans[r].threads);
    }
    expect_disjoint(plans, 4, "node 2");
    CHECK(strstr(plans[0].reason, "node 2 as asked") == plans[0].reason, "%s", plans[0].reason);

    /* A node that does not exist. */
    zo_plan p;
    char err[256];
    int rc = plan_rank(t, 0, 4, 4, 0, -1, &p, err, sizeof err);
    CHECK(rc == -1, "node 4 of 4 accepted");
    CHECK(strcmp(err, "NUMA node 4 does not exist: the NUMA nodes here are 0-3") == 0,
          "message: %s", err);

    /* Off: nothing bound; threads are the machine's cores shared out, or as asked. */
    p = plan_of(t, 1, 4, ZERO_NUMA_OFF, 0, -1);
    CHECK(p.numa_node == -1 && p.num_cpus == 0 && p.num_cores == 0 && p.threads == 8,
          "off: node %d, %d cpus, %d threads", p.numa_node, p.num_cpus, p.threads);
    CHECK(strstr(p.reason, "numa off") == p.reason, "%s", p.reason);
    p = plan_of(t, 0, 64, ZERO_NUMA_OFF, 0, -1);
    CHECK(p.threads == 1, "off, 64 ranks: %d threads", p.threads);
    p = plan_of(t, 0, 4, ZERO_NUMA_OFF, 3, -1);
    CHECK(p.threads == 3 && p.num_cpus == 0, "off, 3 threads asked: %d", p.threads);
    zo_plan_describe(t, &p, text, sizeof text);
    CHECK(strstr(text, "memory not bound, threads not bound, 3 threads; numa off") == text,
          "describe off: %s", text);

    /* cpu_threads: as asked up to the rank's PUs. */
    p = plan_of(t, 3, 4, ZERO_NUMA_AUTO, 3, -1);
    CHECK(p.threads == 3 && p.num_cpus == 8, "3 threads asked: %d of %d cpus", p.threads,
          p.num_cpus);
    p = plan_of(t, 3, 4, ZERO_NUMA_AUTO, 20, -1);
    CHECK(p.threads == 8, "20 threads asked on 8 cpus: %d", p.threads);
    CHECK(strstr(p.reason, "cpu_threads 20 capped at its 8 PUs") != NULL, "%s", p.reason);

    /* A GPU bus that is not in the topology: the host rule, said so. */
    p = plan_of(t, 1, 4, ZERO_NUMA_AUTO, 0, 0x41);
    expect_block(&p, "missing GPU", 1, 8, 8);
    CHECK(strstr(p.reason, "GPU 0000:41 not in the topology; auto: local rank 1 of 4") ==
              p.reason,
          "%s", p.reason);

    /* Bad arguments. */
    const struct {
        int r, l, numa, threads;
    } bad[] = {{4, 4, ZERO_NUMA_AUTO, 0}, {-1, 4, ZERO_NUMA_AUTO, 0}, {0, 0, ZERO_NUMA_AUTO, 0},
               {0, 4, -5, 0},             {0, 4, ZERO_NUMA_AUTO, -1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        rc = plan_rank(t, bad[i].r, bad[i].l, bad[i].numa, bad[i].threads, -1, &p, err,
                          sizeof err);
        CHECK(rc == -1 && err[0], "bad case %zu accepted", i);
    }
    CHECK(plan_rank(NULL, 0, 1, ZERO_NUMA_AUTO, 0, -1, &p, err, sizeof err) == -1,
          "NULL topology");
    CHECK(plan_rank(t, 0, 1, ZERO_NUMA_AUTO, 0, -1, NULL, NULL, 0) == -1, "NULL plan");

    /* A described topology is not this machine: memory comes unbound, threads are not bound. */
    p = plan_of(t, 0, 4, ZERO_NUMA_AUTO, 0, -1);
    int bound = -1;
    size_t bytes = 3 << 20;
    unsigned char *mem = zo_alloc(t, &p, bytes, &bound);
    CHECK(mem != NULL && bound == 0, "synthetic alloc: %p bound %d", (void *)mem, bound);
    if (mem) {
        memset(mem, 0xa5, bytes);
        CHECK(mem[0] == 0xa5 && mem[bytes - 1] == 0xa5, "synthetic alloc not usable");
        CHECK(((uintptr_t)mem & 4095) == 0, "not page-aligned: %p", (void *)mem);
    }
    zo_free(t, mem, bytes);
    CHECK(zo_alloc(t, &p, 0, &bound) == NULL && bound == 0, "0 bytes");
    CHECK(zo_bind_threads(t, &p) == -1, "binding on a synthetic topology");
    zo_plan off = plan_of(t, 0, 4, ZERO_NUMA_OFF, 0, -1);
    CHECK(zo_bind_threads(t, &off) == 0, "an off plan has nothing to bind");
    zo_topology_free(t);
}

/* One NUMA node, 2 cores, 3 ranks: one core each, core 0 shared by ranks 0 and 2. */
static void test_shared_cores(void) {
    zo_topology *t = load("numa:1 core:2 pu:1");
    if (!t) return;
    const int core[3] = {0, 1, 0}, shared[3] = {2, 1, 2};
    for (int r = 0; r < 3; r++) {
        zo_plan p = plan_of(t, r, 3, ZERO_NUMA_AUTO, 0, -1);
        CHECK(p.numa_node == 0, "rank %d: node %d", r, p.numa_node);
        CHECK(p.num_cpus == 1 && p.num_cores == 1 && p.cpus[0] == core[r],
              "rank %d: %d cpus, cpus[0] %d, expected core %d", r, p.num_cpus, p.cpus[0], core[r]);
        CHECK(p.shared == shared[r], "rank %d: shared %d, expected %d", r, p.shared, shared[r]);
        CHECK(p.threads == 1, "rank %d: %d threads", r, p.threads);
        CHECK(strstr(p.reason, "fewer cores (2) than ranks (3)") != NULL, "rank %d: %s", r,
              p.reason);
    }
    zo_plan p = plan_of(t, 2, 3, ZERO_NUMA_AUTO, 4, -1);
    CHECK(p.threads == 1 && p.shared == 2, "4 threads asked on one core: %d", p.threads);
    p = plan_of(t, 1, 2, ZERO_NUMA_AUTO, 0, -1);
    expect_block(&p, "2 ranks on 2 cores", 0, 1, 1);
    zo_topology_free(t);
}

/* Hardware threads: P#0 and P#2 are core 0's, P#1 and P#3 core 1's (Linux numbering). */
static void test_smt(void) {
    zo_topology *t = load("package:1 core:2 pu:2(indexes=0,2,1,3)");
    if (!t) return;
    zo_plan p = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 0, -1);
    const int order[4] = {0, 1, 2, 3}; /* first PUs of both cores, then second PUs */
    CHECK(p.num_cpus == 4 && p.num_cores == 2 && p.threads == 2, "%d cpus %d cores %d threads",
          p.num_cpus, p.num_cores, p.threads);
    for (int i = 0; i < 4 && i < p.num_cpus; i++)
        CHECK(p.cpus[i] == order[i], "cpus[%d] = %d, expected %d", i, p.cpus[i], order[i]);
    p = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 4, -1);
    CHECK(p.threads == 4, "4 threads on 4 PUs: %d", p.threads);
    p = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 5, -1);
    CHECK(p.threads == 4, "5 threads on 4 PUs: %d", p.threads);
    p = plan_of(t, 1, 2, ZERO_NUMA_AUTO, 0, -1);
    CHECK(p.num_cpus == 2 && p.num_cores == 1 && p.cpus[0] == 1 && p.cpus[1] == 3 &&
              p.threads == 1,
          "rank 1 of 2: %d cpus (%d, %d), %d threads", p.num_cpus, p.cpus[0], p.cpus[1],
          p.threads);
    zo_topology_free(t);

    /* More cores than a plan lists: the first ZO_MAX_CPUS, said so. */
    t = load("numa:1 core:300 pu:1");
    if (!t) return;
    p = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 0, -1);
    CHECK(p.num_cpus == ZO_MAX_CPUS && p.num_cores == ZO_MAX_CPUS && p.threads == ZO_MAX_CPUS,
          "300 cores: %d cpus %d cores %d threads", p.num_cpus, p.num_cores, p.threads);
    CHECK(strstr(p.reason, "cpu list full") != NULL, "%s", p.reason);
    zo_topology_free(t);
}

/* XML: NUMA node 0 is memory attached to the whole machine; packages 0 and 1 have nodes 1 and 2
 * with cpus 0-1 and 2-3 (OS numbers). A GPU on bus 0x41 sits under package 1, a device on bus
 * 0x05 under the machine. */
#define SETS(c, n)                                                                             \
    "cpuset=\"" c "\" complete_cpuset=\"" c "\" nodeset=\"" n "\" complete_nodeset=\"" n "\""
#define CORE(i, c, n)                                                                          \
    "<object type=\"Core\" os_index=\"" #i "\" " SETS(c, n) ">"                                \
    "<object type=\"PU\" os_index=\"" #i "\" " SETS(c, n) "/></object>\n"
#define PCI(bus, class)                                                                        \
    "<object type=\"Bridge\" bridge_type=\"0-1\" depth=\"0\" bridge_pci=\"0000:[" bus "-" bus \
    "]\"><object type=\"PCIDev\" pci_busid=\"0000:" bus ":00.0\" pci_type=\"" class           \
    " [10de:2330] [10de:16c1] a1\"/></object>\n"
static const char xml_topology[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n"
    "<topology version=\"2.0\">\n"
    "<object type=\"Machine\" os_index=\"0\" " SETS("0x0f", "0x7") ">\n"
    "<object type=\"NUMANode\" os_index=\"0\" " SETS("0x0f", "0x1")
    " local_memory=\"1073741824\"/>\n"
    "<object type=\"Package\" os_index=\"0\" " SETS("0x03", "0x2") ">\n"
    "<object type=\"NUMANode\" os_index=\"1\" " SETS("0x03", "0x2")
    " local_memory=\"2147483648\"/>\n" CORE(0, "0x1", "0x2") CORE(1, "0x2", "0x2")
    "</object>\n"
    "<object type=\"Package\" os_index=\"1\" " SETS("0x0c", "0x4") ">\n"
    "<object type=\"NUMANode\" os_index=\"2\" " SETS("0x0c", "0x4")
    " local_memory=\"2147483648\"/>\n" CORE(2, "0x4", "0x4") CORE(3, "0x8", "0x4")
    PCI("41", "0302") "</object>\n" PCI("05", "0200") "</object>\n"
    "</topology>\n";

static void test_xml_gpu(void) {
    zo_topology *t = load(xml_topology);
    if (!t) return;
    zo_topology_info info;
    zo_topology_get_info(t, &info);
    CHECK(info.numa_nodes == 3 && info.cpu_nodes == 2 && info.cores == 4 && !info.this_system,
          "xml info: %d nodes, %d cpu nodes, %d cores", info.numa_nodes, info.cpu_nodes,
          info.cores);
    /* Host rule: the machine-wide node is skipped. */
    zo_plan p = plan_of(t, 0, 2, ZERO_NUMA_AUTO, 0, -1);
    expect_block(&p, "xml rank 0", 1, 0, 2);
    p = plan_of(t, 1, 2, ZERO_NUMA_AUTO, 0, -1);
    expect_block(&p, "xml rank 1", 2, 2, 2);
    /* The GPU on bus 0x41 is local to package 1's node, whatever the rank. */
    p = plan_of(t, 0, 2, ZERO_NUMA_AUTO, 0, 0x41);
    expect_block(&p, "xml GPU 41, rank 0", 2, 2, 2);
    CHECK(strstr(p.reason, "GPU 0000:41 is local to node 2") != NULL, "%s", p.reason);
    char text[512];
    zo_plan_describe(t, &p, text, sizeof text);
    CHECK(strstr(text, "NUMA node 2, cpus 2-3 (2 cores), 2 threads; auto: GPU 0000:41") == text,
          "%s", text);
    p = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 0, 0x41);
    expect_block(&p, "xml GPU 41, 1 rank", 2, 2, 2);
    /* 4 ranks: two per node, slot local_rank % 2 of the GPU's node. */
    p = plan_of(t, 3, 4, ZERO_NUMA_AUTO, 0, 0x41);
    expect_block(&p, "xml GPU 41, rank 3 of 4", 2, 3, 1);
    /* A device local to the whole machine says nothing: host rule. */
    p = plan_of(t, 1, 2, ZERO_NUMA_AUTO, 0, 0x05);
    expect_block(&p, "xml device 05", 2, 2, 2);
    CHECK(strstr(p.reason, "local to the whole machine") != NULL, "%s", p.reason);
    /* The machine-wide node may be asked for: its cores are all the machine's. */
    p = plan_of(t, 1, 2, 0, 0, -1);
    expect_block(&p, "xml node 0", 0, 2, 2);
    zo_topology_free(t);
}

static void test_bad_descriptions(void) {
    zo_topology *t = (zo_topology *)&t;
    char err[256] = "";
    CHECK(topology_load(&t, "frobnicator:3", err, sizeof err) == -1 && t == NULL,
          "a bad synthetic description was accepted");
    CHECK(strstr(err, "frobnicator:3") && strstr(err, "synthetic"), "message: %s", err);
    CHECK(topology_load(&t, "<topology>", err, sizeof err) == -1 && t == NULL,
          "bad XML accepted");
    CHECK(topology_load(NULL, NULL, err, sizeof err) == -1, "NULL out accepted");
    zo_topology_free(NULL);
}

/* This machine: whatever hwloc can do here, planning works, memory is usable, and binding
 * either puts every thread on its cpu or says -1. */
static void test_this_machine(void) {
    zo_topology *t = load(NULL);
    if (!t) return;
    zo_topology_info info;
    zo_topology_get_info(t, &info);
    CHECK(info.this_system && info.numa_nodes >= 1 && info.cores >= 1 && info.pus >= info.cores,
          "this machine: %d nodes %d cores %d pus", info.numa_nodes, info.cores, info.pus);
    printf("this machine: %d package(s), %d NUMA node(s), %d cores, %d PUs; bind threads %d, "
           "memory %d\n",
           info.packages, info.numa_nodes, info.cores, info.pus, info.cpubind, info.membind);

    zo_plan p = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 0, -1);
    char text[512];
    zo_plan_describe(t, &p, text, sizeof text);
    printf("plan: %s\n", text);
    CHECK(p.numa_node >= 0 && p.num_cpus >= 1 && p.threads >= 1, "plan: %s", text);

    int bound = -1;
    size_t n = (size_t)1 << 20; /* floats */
    float *x = zo_alloc(t, &p, n * sizeof(float), &bound);
    CHECK(x != NULL && (bound == 0 || bound == 1), "alloc: %p bound %d", (void *)x, bound);
    printf("1M floats: %s\n", bound ? "bound to the node" : "not bound");
    if (x) {
        double sum = 0;
#pragma omp parallel for reduction(+ : sum)
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)(i & 1023);
            sum += x[i];
        }
        CHECK(sum == 1023.0 * 1024 / 2 * (double)(n / 1024), "sum %g", sum);
    }
    zo_free(t, x, n * sizeof(float));
    zo_plan off = plan_of(t, 0, 1, ZERO_NUMA_OFF, 0, -1);
    x = zo_alloc(t, &off, 4096, &bound);
    CHECK(x != NULL && bound == 0, "unbound alloc: %p bound %d", (void *)x, bound);
    if (x) x[1023] = 1.0f;
    zo_free(t, x, 4096);
    x = zo_alloc(t, &p, 4096, NULL);
    CHECK(x != NULL, "alloc with bound NULL");
    zo_free(t, x, 4096);
    zo_free(t, NULL, 0);

    /* One thread more than the plan has cpus (a plan made by hand): thread num_cpus wraps
     * around to cpus[0]. */
    p = plan_of(t, 0, 1, ZERO_NUMA_AUTO, 0, -1);
    p.threads = p.num_cpus + 1;
    int rc = zo_bind_threads(t, &p);
    CHECK(rc == 0 || rc == -1, "zo_bind_threads returned %d", rc);
    CHECK(rc == 0 || !info.cpubind, "binding failed where hwloc says it can bind");
    printf("zo_bind_threads: %d (%d threads)\n", rc, p.threads);
    if (rc == 0) {
        /* Every thread of a region of p.threads threads now runs where the plan says. */
        hwloc_topology_t h;
        hwloc_topology_init(&h);
        hwloc_topology_load(h);
        int wrong = 0;
#pragma omp parallel num_threads(p.threads) reduction(+ : wrong)
        {
            hwloc_bitmap_t set = hwloc_bitmap_alloc();
            int i = omp_get_thread_num();
            if (hwloc_get_cpubind(h, set, HWLOC_CPUBIND_THREAD) != 0 ||
                hwloc_bitmap_weight(set) != 1 ||
                hwloc_bitmap_first(set) != p.cpus[i % p.num_cpus])
                wrong++;
            hwloc_bitmap_free(set);
        }
        CHECK(wrong == 0, "%d threads not on their cpu", wrong);
        hwloc_topology_destroy(h);
    }
    zo_topology_free(t);
}

int main(void) {
    /* Shared-core and unbound cases warn by design; keep the test output to its own lines. */
    zr_log_setup(ZR_LOG_NONE, 0, NULL, -1);
    test_four_nodes();
    test_shared_cores();
    test_smt();
    test_xml_gpu();
    test_bad_descriptions();
    test_this_machine();
    if (check_failures) {
        fprintf(stderr, "test_placement: %d of %d checks failed\n", check_failures, check_count);
        return 1;
    }
    printf("test_placement: all %d checks passed\n", check_count);
    return 0;
}
