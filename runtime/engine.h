/* engine.h — the context behind zero_ctx, shared by the engine (engine.c) and its file output
 * (report.c: JSON report, safetensors export, parameter digest). */
#ifndef ZERO_ENGINE_H
#define ZERO_ENGINE_H

#include <stdarg.h>
#include <stdint.h>

#include "offload/placement.h"
#include "partition/partition.h"
#include "runtime/comm.h"
#include "runtime/config.h"
#include "runtime/device.h"
#include "zero.h"
#ifdef ZERO_HAVE_NCCL
#include "runtime/comm_nccl.h"
#endif

enum { ZR_ALIGN_ELEMS = 16 }; /* tensor offsets and slices: 64 bytes of fp32, 32 of bf16 */

/* Chunk states within one micro-step (stage 2). */
enum { ZR_CHUNK_IDLE = 0, ZR_CHUNK_FILLING = 1, ZR_CHUNK_REDUCING = 2, ZR_CHUNK_DONE = 3 };

/* A collective on the engine's device buffers in flight (dcoll.c): an MPI request on the host
 * backend, an NCCL request on the cuda backend. */
typedef struct zr_dreq {
    zr_request mpi;
#ifdef ZERO_HAVE_NCCL
    zr_nccl_request nccl;
#endif
} zr_dreq;

/* A reduce bucket (stage 2): one chunk's full gradient and its reduced slice. */
typedef struct zr_bucket {
    void *grad;       /* (chunk padded) working dtype */
    void *slice;      /* (chunk slice) working dtype: reduce-scatter output */
    size_t capacity;  /* elements of grad */
    int chunk;        /* chunk it serves, -1 if free */
    zr_dreq req;
} zr_bucket;

typedef struct zr_phase_times {
    double grad_reduce_s;  /* issuing and waiting for gradient reduce-scatters */
    double norm_s;         /* squared norms + their all-gather */
    double optimizer_s;    /* AdamW on the shard */
    double param_gather_s; /* all-gather of updated parameters */
    double step_s;         /* whole zero_step calls */
    double in_backward_s;  /* inside zero_grad_ptr / zero_grad_ready */
    double gather_wait_s;  /* stage 3: inside zero_gather (issuing and waiting for all-gathers) */
    /* optimizer offload: gradient blocks device -> host, updated parameters host -> device,
     * and the CPU AdamW between them */
    double d2h_bytes, d2h_s, h2d_bytes, h2d_s, cpu_adam_s;
} zr_phase_times;

typedef struct zr_tensor_meta {
    char *name;
    int ndim;
    int64_t shape[ZERO_MAX_DIMS];
    int no_decay;
} zr_tensor_meta;

struct zero_ctx {
    zr_settings set;
    zr_comm comm;
    zr_device dev;           /* the device backend: host, or cuda (device memory) */
    struct zr_nccl *nccl;    /* cuda backend: collectives on device buffers; NULL = MPI */
    zr_device host;          /* host memory of the offloaded state (no capacity), same labels */
    int offload_opt;         /* ZERO_OFFLOAD_OPTIMIZER=cpu: master, m, v, fp32 grads on host */
    int offload_param;       /* ZERO_OFFLOAD_PARAM=cpu (stage 3): parameter shard on host */
    int pinned_staging;      /* cuda: staging page-locked (cudaHostRegister) */
    int pinned_params;       /* cuda: offloaded parameter shard page-locked */
    double off_pending[4];   /* cuda: bytes of the timed offload copy in each copy slot */
    zo_plan plan;            /* offload: NUMA node and cores of this rank (hwloc) */
    zp_layout layout;
    int rank, world;
    zero_dtype dtype;
    size_t wsz;              /* bytes of one working element */
    int num_tensors;
    zr_tensor_meta *meta;    /* [num_tensors] */
    int *chunk_modules;      /* [num_chunks]: modules with tensors in the chunk */

    /* Partitioned state; elements, dtype named. */
    void *params;      /* (total_padded) working: full replica (stages 0–2) */
    void *grads;       /* stages 0–1: (total_padded) working; stage 2: (shard_numel) working */
    float *master;     /* fp32 master: stage 0 (total_padded), else (shard_numel); NULL when the
                          fp32 working parameters are the master */
    float *adam_m;     /* same shape as the master */
    float *adam_v;
    size_t opt_numel;  /* elements of master / adam_m / adam_v */
    int master_owned;  /* 0 when master aliases the fp32 parameter shard (offloaded params) */
    float *host_grad;  /* optimizer offload: (shard_numel) fp32 gradient shard on the host */
    void *staging;     /* optimizer offload: (2, staging_elems) working, host: two halves of
                          gradients on their way in, updated parameters on their way out */
    size_t staging_elems;
    void *rs_out;      /* stages 0–1: (layout.max_slice) working: reduce-scatter output */
    zr_bucket *buckets; /* stage 2 */
    int num_buckets;
    int *chunk_bucket;  /* [num_chunks] bucket index or -1 */
    int *chunk_state;   /* [num_chunks] ZR_CHUNK_* */
    int *chunk_ready;   /* [num_chunks] modules reported ready this micro-step */
    unsigned char *module_ready; /* [num_modules] */
    zp_segment *seg;    /* [seg_cap]: scratch for the tensor pieces of one chunk */
    int seg_cap;
    zr_dreq *gather_req; /* [num_chunks] */

    /* Stage 3: parameters live as shards; a chunk is gathered into a pooled buffer while any of
     * its modules is in use (or prefetched), then given back. */
    void **chunk_buf;            /* [num_chunks] (chunk padded) working, or NULL */
    int *chunk_users;            /* [num_chunks] zero_gather minus zero_release */
    unsigned char *chunk_flight; /* [num_chunks] 1: its all-gather is still in flight */
    unsigned char *chunk_persist;/* [num_chunks] 1: below ZERO_PERSIST_KB, always resident */
    unsigned char *chunk_prefetched; /* [num_chunks] 1: gathered ahead, not yet asked for */
    void **pool;                 /* free gather buffers, each (max chunk padded) working */
    int pool_len;
    int pool_total;              /* buffers allocated */
    size_t pool_elems;           /* elements of one gather buffer */
    size_t live_bytes;           /* bytes of chunks gathered or in flight */
    int *trace;                  /* modules in the order zero_gather asked for them */
    int trace_len, trace_cap, trace_pos;
    int trace_valid;             /* 1: recorded on an earlier micro-step, being followed */
    int trace_recording;         /* 1: this micro-step records */
    uint64_t order_hash;         /* hash of this micro-step's gathers so far (cross-rank check) */
    int64_t gathers, prefetches, prefetch_hits;

    int micro;            /* micro-step within the accumulation window */
    int64_t micro_steps;  /* all zero_step calls */
    int64_t steps;        /* optimizer steps applied */
    int64_t boundaries;   /* accumulation windows ended (applied + skipped) */
    int64_t skipped;
    float loss_scale;
    int dynamic_scale;
    int hysteresis_left;
    int64_t last_rescale_boundary;
    zero_step_info last;
    zr_phase_times times;
    double t_init_done;
    double t_end;
    int report_on;          /* rank 0 writes a report at zero_finalize (all ranks take part) */
    char err[1024];
};

/* Records a formatted message as the context's last error and returns status. */
zero_status zr_fail(zero_ctx *z, zero_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

double zr_now(void);

/* Folds x into the running hash h (tensor registration, stage-3 gather order). */
uint64_t zr_mix64(uint64_t h, uint64_t x);

/* The first failure of the device's kernels and copies since the last call (the cuda backend
 * records them; its void members cannot return one): ZERO_ERR_SYSTEM naming it, else ZERO_OK.
 * Local: agree on it before acting (global_norm, for_each_master_chunk do). */
zero_status zr_device_error(zero_ctx *z, const char *during);

/* engine.c, for stage3.c */
zero_status zr_dev_alloc(zero_ctx *z, zero_mem_label label, size_t bytes, const char *what,
                         void *out);
/* stage3.c */
zero_status zr_s3_setup(zero_ctx *z);        /* after initial values: persistent chunks */
void zr_s3_free(zero_ctx *z);
zero_status zr_s3_gather(zero_ctx *z, int module);
zero_status zr_s3_release(zero_ctx *z, int module);
void *zr_s3_param_ptr(zero_ctx *z, int i);
zero_status zr_s3_after_step(zero_ctx *z, int updated); /* refresh resident chunks */
void zr_s3_micro_step_done(zero_ctx *z);
zero_status zr_s3_progress(zero_ctx *z);

/* Formula bytes of model state per rank for the context's stage, dtype, world and offload. */
void zr_formula_bytes(const zero_ctx *z, uint64_t *device, uint64_t *host);

/* dcoll.c: collectives on device buffers (gradients, parameters), through NCCL on the cuda
 * backend and MPI on the host backend; counted like every collective; errors in z->comm.err.
 * On NCCL the comm stream is first ordered after the compute stream (the model's gradient
 * writes, libzero's copies), and a request is complete for the compute stream once
 * zr_dc_wait or zr_dc_test has seen it done (they wait on the host). req NULL = blocking. */
zero_status zr_dc_all_gather(zero_ctx *z, void *recv, size_t count, zr_elem e, zr_dreq *req);
zero_status zr_dc_reduce_scatter(zero_ctx *z, const void *send, void *recv, size_t count,
                                 zr_elem e, zr_dreq *req);
/* Blocking all-gather of every chunk of a full (total_padded) buffer at base, each rank's slice
 * in place: all in flight at once (MPI), or one NCCL group. */
zero_status zr_dc_all_gather_chunks(zero_ctx *z, char *base);
/* NCCL only: every chunk of a full buffer at base reduce-scattered in place (this rank's reduced
 * slice lands at its own place, as NCCL allows), descending, all in flight, then waited for;
 * with all_gather, then all-gathered in place the same way (stage 0: an all-reduce with the
 * additions of the reduce-scatter). ZERO_ERR_INTERNAL on the MPI path. */
zero_status zr_dc_reduce_chunks_in_place(zero_ctx *z, char *base, int all_gather);
zero_status zr_dc_wait(zero_ctx *z, zr_dreq *req);
zero_status zr_dc_test(zero_ctx *z, zr_dreq *req, int *done);
/* Frees what a request holds between uses (the NCCL event); it must not be in flight. */
void zr_dc_request_free(zero_ctx *z, zr_dreq *req);

/* report.c */
zero_status zr_write_report(zero_ctx *z, const char *path);

#endif
