/* engine.h — the context behind zero_ctx, made of the engine's units, and the interfaces between
 * them. docs/DESIGN.md draws the same picture; each unit owns its struct below and is the only
 * code that changes it:
 *
 *   api.c       the public entry points: argument checks, then one call into a unit
 *   agree.c     cross-rank agreement: every rank leaves with the same verdict
 *   backend.c   which device and collective backends exist, and their construction (the only
 *               file that names one)
 *   state.c     the partitioned model state, allocated from one placement table and freed from
 *               the allocation record; the OOM advisor
 *   grad.c      the gradient path, a strategy per stage: a full buffer (stages 0-1) or reduce
 *               buckets filled and reduced during backward (stages 2-3)
 *   stage3.c    stage 3's gathered chunks, the order trace, prefetch (struct zr_s3)
 *   step.c      zero_step: the boundary, global norm, clipping, the loss scaler, the optimizer
 *               (optim.h) on this rank's shard, on the device or through the offload pipeline
 *               (offload/pipeline.h), then the parameters back to every rank
 *   io.c        the parameters out of the engine: zero_export (safetensors), zero_param_digest
 *   report.c    the JSON report of zero_finalize
 *   views.c     fp32 views of parameters and gradients at bf16/fp16 (zero_config.fp32_views)
 *   ckpt.c      zero_save / zero_load (checkpoint files: ckpt_format.c)
 * Below them: the device interface (device.h), the collective interface (coll.h), the layout
 * arithmetic (partition/), the element-wise kernels (kernels/), offload placement and pipeline
 * (offload/), error, log, clock, hash (util/). */
#ifndef ZERO_ENGINE_H
#define ZERO_ENGINE_H

#include <stdint.h>
#include <stdio.h>

#include "offload/placement.h"
#include "partition/partition.h"
#include "runtime/coll.h"
#include "runtime/config.h"
#include "runtime/device.h"
#include "runtime/optim.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/hash.h"
#include "zero.h"

enum { ZR_ALIGN_ELEMS = 16 }; /* tensor offsets and slices: 64 bytes of fp32, 32 of bf16 */

typedef struct zr_phase_times {
    double grad_reduce_s;  /* issuing and waiting for gradient reduce-scatters */
    double norm_s;         /* squared norms + their all-gather */
    double optimizer_s;    /* the optimizer on the shard */
    double param_gather_s; /* all-gather of updated parameters */
    double step_s;         /* whole zero_step calls */
    double in_backward_s;  /* inside zero_grad_ptr / zero_grad_ready */
    double gather_wait_s;  /* stage 3: inside zero_gather (issuing and waiting for all-gathers) */
    /* optimizer offload: gradient blocks device -> host, updated parameters host -> device,
     * and the CPU optimizer between them */
    double d2h_bytes, d2h_s, h2d_bytes, h2d_s, cpu_adam_s;
} zr_phase_times;

typedef struct zr_tensor_meta {
    char *name;
    int ndim;
    int64_t shape[ZERO_MAX_DIMS];
    int no_decay;
    int group;           /* index into zero_ctx.groups */
} zr_tensor_meta;

/* A tensor as the program registered it. A tensor with slices >= 2 is split into one internal
 * tensor per slice (named "<name>[l]", in module module + l); everything inside the engine works
 * on the internal tensors (z->meta, z->layout, z->num_tensors), and the public calls, the export
 * and checkpoints map through this. Without slices the two are the same. */
typedef struct zr_pub {
    zr_tensor_meta meta;     /* name, ndim, shape (the whole tensor), no_decay, group */
    size_t numel;            /* the whole tensor */
    int module;              /* of slice 0 */
    int slices;              /* >= 1 */
    int *internal;           /* [slices] the internal tensor of each slice */
} zr_pub;

/* A parameter group as the context holds it (zero_group, with its name copied). lr and
 * weight_decay change through zero_set_lr / zero_set_weight_decay. */
typedef struct zr_group {
    char name[64];
    zr_hyper h;
    int frozen;
} zr_group;

/* ---- state.c ---------------------------------------------------------------------------------
 * This rank's model state. Every buffer comes from the placement table of state.c (which buffer,
 * on the device or the host, under which label, how many bytes) and is recorded as allocated, so
 * zr_state_free is a loop over the record and never recomputes a size. */
enum { ZR_STATE_MAX = 12 };

typedef struct zr_alloc_rec {
    void **slot;         /* the field that holds the pointer */
    zr_device *dev;      /* where it came from */
    zero_mem_label label;
    size_t bytes;
    int pinned;          /* page-locked through the device (host buffers of the offload) */
} zr_alloc_rec;

typedef struct zr_state {
    void *params;        /* working: full replica (stages 0-2) or shard (3); host: param offload */
    void *grads;         /* working: full (stages 0-1) or shard (2-3) */
    float *master;       /* fp32 master: full at stage 0, else shard; NULL when the fp32 working
                            parameters are the master; the parameter shard itself with fp32
                            parameter offload (not owned then) */
    float *ostate[ZR_OPTIM_MAX_STATES]; /* the optimizer's fp32 arrays, shaped like the master */
    size_t opt_numel;    /* elements of master and each ostate */
    int master_owned;    /* 0 when master is the parameter shard (fp32 parameter offload) */
    float *host_grad;    /* optimizer offload: (shard) fp32 gradient shard on the host */
    void *staging;       /* optimizer offload: (2, staging_elems) working, host */
    size_t staging_elems;
    void *rs_out;        /* stages 0-1 without in-place reduce-scatter: (max slice) working */
    zr_alloc_rec rec[ZR_STATE_MAX];
    int nrec;
} zr_state;

/* ---- grad.c --------------------------------------------------------------------------------- */

/* Chunk states within one micro-step (bucketed path). */
enum { ZR_CHUNK_IDLE = 0, ZR_CHUNK_FILLING = 1, ZR_CHUNK_REDUCING = 2, ZR_CHUNK_DONE = 3 };

/* A reduce bucket: one chunk's full gradient and its reduced slice. */
typedef struct zr_bucket {
    void *grad;       /* (chunk padded) working */
    void *slice;      /* (chunk slice) working: reduce-scatter output */
    size_t grad_bytes, slice_bytes;
    int chunk;        /* chunk it serves, -1 if free */
    zr_creq req;
} zr_bucket;

struct zr_grad_ops;
typedef struct zr_grads {
    const struct zr_grad_ops *ops; /* the stage's strategy */
    unsigned char *module_ready;   /* [num_modules] reported ready this micro-step */
    int *chunk_modules;            /* [num_chunks] modules with tensors in the chunk */
    zr_creq *chunk_req;            /* [num_chunks] per-chunk reductions (full-buffer path) */
    /* bucketed path */
    zr_bucket *buckets;
    int num_buckets;
    int *chunk_bucket;             /* [num_chunks] bucket index or -1 */
    int *chunk_state;              /* [num_chunks] ZR_CHUNK_* */
    int *chunk_ready;              /* [num_chunks] modules reported ready this micro-step */
    /* Stale pointers (bucketed path, when z->tensor_module is set). module_asked[num_modules]:
     * ZR_ASKED_NOW when a gradient pointer of one of the module's tensors was handed out in this
     * micro-step, ZR_ASKED_BEFORE when only in an earlier one. A module asked for before but
     * not now holds a stale bucket pointer: zero_grad_ready refuses it. */
    unsigned char *module_asked;
} zr_grads;

enum { ZR_ASKED_NOW = 1, ZR_ASKED_BEFORE = 2 };

/* ---- step.c: the loss scaler ----------------------------------------------------------------- */
typedef struct zr_scaler {
    float scale;
    int dynamic;          /* fp16 without a fixed ZERO_LOSS_SCALE */
    int hysteresis_left;
    int64_t last_rescale; /* boundary index of the last overflow (growth every window after it) */
} zr_scaler;

/* Where training stands; changed only by a zero_step that gets past its last check. */
typedef struct zr_progress {
    int micro;            /* micro-step within the accumulation window */
    int64_t micro_steps;  /* all zero_step calls that completed */
    int64_t steps;        /* optimizer steps applied */
    int64_t boundaries;   /* accumulation windows ended (applied + skipped) */
    int64_t skipped;
} zr_progress;

struct zr_s3;

/* ---- views.c: fp32 views at bf16/fp16 (zero_config.fp32_views) -------------------------------- */
typedef struct zr_views {
    int on;
    float *pfull;           /* stages 0-2: fp32 copy of the working replica [total_padded] */
    float *gfull;           /* stages 0-1: fp32 gradient view [total_padded] */
    float **gchunk;         /* stages 2-3: [num_chunks] a chunk's fp32 gradient view, or NULL */
    int *gready;            /* stages 2-3: [num_chunks] its modules folded this micro-step */
    float **pchunk;         /* stage 3: [num_chunks] fp32 copy of a gathered chunk, or NULL */
    unsigned char *pvalid;  /* stage 3: [num_chunks] pchunk holds the current gather */
    float **pool;           /* free chunk-size fp32 buffers */
    int pool_len, pool_total;
} zr_views;

zero_status zr_views_init(zero_ctx *z);          /* after the state and the layout */
void zr_views_free(zero_ctx *z);
void zr_views_refresh(zero_ctx *z);              /* the working parameters changed */
void zr_views_chunk_changed(zero_ctx *z, int c, int gone); /* stage 3: regathered or dropped */
void *zr_views_param(zero_ctx *z, int i, void *work);      /* work: the working pointer */
void *zr_views_grad(zero_ctx *z, int i);
zero_status zr_views_ready(zero_ctx *z, int module);       /* before the gradient path's ready */
void zr_views_after_ready(zero_ctx *z, int module);        /* after it succeeded */
void zr_views_micro_done(zero_ctx *z);

/* ---- data.c: the token loaders (zero_data_*) ----------------------------------------------- */
/* What the loaders of a context did on this rank, summed over the loaders closed so far (the
 * report's "data" section). */
typedef struct zr_data_totals {
    int loaders;             /* opened */
    int prefetch;            /* the largest prefetch depth among them */
    int io;                  /* enum zr_data_io of the last one opened */
    int64_t batches;         /* zero_data_next calls served */
    uint64_t bytes;          /* token bytes read */
    uint64_t tokens;         /* tokens handed out (inputs) */
    double wait_s;           /* time zero_data_next waited for its batch */
    double busy_s;           /* time the loaders spent preparing batches */
} zr_data_totals;

/* ckpt.c: an asynchronous save in flight (zero_save_async .. zero_save_wait). */
typedef struct zr_async_save zr_async_save;
/* Joins the writer thread of an asynchronous save, if one runs. Local. */
void zr_ckpt_join(zero_ctx *z);
/* Joins it and frees what it holds; a save never committed is abandoned (rank 0 removes its
 * temporary directory; a warning says so). Local; destroy (zero_finalize, a failed zero_init)
 * calls it. */
void zr_ckpt_release(zero_ctx *z);

struct zero_data;
/* Stops every loader still open on z (its thread, device buffers), adds its counters to
 * z->data and leaves its handle for zero_data_close only. Local; zero_finalize calls it. */
void zr_data_detach_all(zero_ctx *z);
/* z->data with the counters of the loaders still open added. Local. */
void zr_data_totals_now(const zero_ctx *z, zr_data_totals *out);

struct zero_ctx {
    zr_settings set;
    zr_error err;            /* the last failure: zero_last_error */
    uint32_t magic;          /* ZR_CTX_MAGIC from a successful zero_init until destroy, which
                                writes ZR_CTX_DEAD just before free; kept away from both ends of
                                the block, where the allocator keeps its bookkeeping once free */
    zr_comm comm;            /* the ranks (MPI) and the traffic counters */
    zr_coll dcoll;           /* collectives on device buffers (backend.c picks mpi or nccl) */
    zr_coll hcoll;           /* collectives on host buffers (mpi) */
    zr_device dev;           /* the device backend: host, or cuda */
    zr_device host;          /* host memory of the offloaded state (no capacity), same labels */
    zo_topology *topo;       /* offload: this context's hwloc topology, or NULL */
    zo_plan plan;            /* offload: NUMA node and cores of this rank */
    int log_open;            /* holds the process log (zr_log_open) */
    int offload_opt;         /* ZERO_OFFLOAD_OPTIMIZER=cpu: master, states, fp32 grads on host */
    int offload_param;       /* ZERO_OFFLOAD_PARAM=cpu (stage 3): parameter shard on host */
    zp_layout layout;
    int rank, world;
    zero_dtype dtype;
    size_t wsz;              /* bytes of one working element */
    int num_tensors;
    zr_tensor_meta *meta;    /* [num_tensors] */
    int num_pub;             /* tensors as registered (zero_init's n) */
    zr_pub *pub;             /* [num_pub] */
    int *int_pub;            /* [num_tensors] the registered tensor of an internal one */
    int *int_slice;          /* [num_tensors] its slice */
    const zero_tensor *src_t;  /* during zero_init: the registered array (configure checks it) */
    int src_n;
    const struct expansion *src_ex; /* during zero_init: how its slices were split (api.c) */
    zero_status init_pre;    /* during zero_init: a failure found before the ranks could agree
                                (reading the tensor array); configure reports it, agreed */
    char init_pre_msg[256];
    zr_group *groups;        /* [num_groups] parameter groups (api.c; lr and weight decay change
                                through zero_set_lr / zero_set_weight_decay) */
    int num_groups;
    zero_group *ugroups;     /* [num_groups] zero_get_config's groups (names point into groups) */
    zr_optim_prep *gprep;    /* [num_groups] the optimizer's constants of this step (step.c) */
    int eval;                /* inside zero_eval_begin / zero_eval_end */
    size_t init_transient_peak; /* host bytes zero_init's value loading held at once (state.c) */
    size_t host_init_peak;   /* memory.host_init_peak_bytes: host bytes libzero held during
                                zero_init, peak (api.c) */
    int *tensor_module;      /* [num_tensors] module id of each tensor (zero_init's lay_out; NULL
                                in a context built by hand, which turns off grad.c's check of
                                stale gradient pointers) */
    zp_segment *seg;         /* [seg_cap]: scratch for the tensor pieces of one chunk */
    int seg_cap;
    const zr_optim_ops *optim;

    zr_state st;
    zr_grads g;
    struct zr_s3 *s3;        /* stage 3 only */
    zr_views views;          /* fp32 views (views.c) */
    zr_scaler scaler;
    zr_progress prog;
    zero_step_info last;
    zr_phase_times times;
    double t_init_done;
    double t_end;
    int report_on;           /* rank 0 writes a report at zero_finalize (all ranks take part) */
    int64_t round_trips;     /* host round trips between zero_init and zero_finalize */
    size_t max_module_elems; /* the largest module, padded as a chunk of its own (api.c) */
    unsigned auto_sizes;     /* sizes zero_init chose (ZERO_SIZE_AUTO): 1 bucket, 2 prefetch,
                                4 max live (api.c) */
    char auto_bucket_why[200]; /* how the bucket was chosen, for the log and the report */
    char auto_s3_why[320];   /* how the prefetch window and max live were chosen */
    zr_async_save *asave;    /* ckpt.c: the asynchronous save and its snapshot buffer, or NULL */
    struct zero_data *data_open; /* the loaders open on this context (data.c), a list */
    zr_data_totals data;     /* counters of the loaders closed (data.c) */
    unsigned data_copy_slots; /* copy slots (ZR_COPY_SLOTS) the loaders hold, a bit each */
};

/* zero_ctx.magic: a live context, and one that was finalized (seen while its memory is not yet
 * reused; every public entry point checks it). 0 is a context built field by field without
 * zero_init (the unit tests' rig), accepted as live. */
#define ZR_CTX_MAGIC 0x4f52455au /* "ZERO" */
#define ZR_CTX_DEAD 0xdeadc7a5u

/* Whether z is a live context: its magic is ZR_CTX_MAGIC (or 0: a context built by hand, as the
 * unit tests do). Read from memory that may have been freed: a call after zero_finalize is caught
 * only while that memory has not been reused (include/zero.h says so). */
static inline int zr_ctx_live(const zero_ctx *z)
{
    return z && (z->magic == ZR_CTX_MAGIC || z->magic == 0);
}

/* ---- agree.c -------------------------------------------------------------------------------- */
enum { ZR_AGREE_WORDS = 48 };
/* Every rank contributes its local status (message from z->err), and fingerprint words; every
 * rank returns the same verdict: the first failing rank's status and message, else a word that
 * differs from rank 0's (named by names[]), else ZERO_OK. Collective. */
zero_status zr_agree(zero_ctx *z, zero_status local, const int64_t *words,
                     const char *const *names, int nwords);
/* zr_agree over zero_init's configuration words (kinds[] as zr_config_fingerprint writes them,
 * or NULL), followed by the tensor count and registration hash it appends; when only the tensors
 * differ, a second round (on that failure path only) names the first tensor that differs and
 * how. Collective. */
zero_status zr_agree_tensors(zero_ctx *z, zero_status local, const int64_t *words,
                             const char *const *names, const int *kinds, int nwords,
                             const zero_tensor *t, int n);
/* The registered array's checks before tensors with slices are split (local). */
zero_status zr_check_registered(zero_ctx *z, const zero_tensor *t, int n);
/* zero_init's argument checks (local). */
zero_status zr_check_tensors(zero_ctx *z, zero_ctx **out, const zero_tensor *t, int n);
uint64_t zr_hash_tensors(const zero_tensor *t, int n);

/* ---- api.c --------------------------------------------------------------------------------- */
/* One parameter group from the configuration, for a context built field by field (the unit
 * tests' rig) that has none. */
zero_status zr_groups_default(zero_ctx *z);

/* The largest of every rank's value (one all-reduce on the host collectives): what every rank
 * then uses alike. Collective. */
zero_status zr_max_over_ranks(zero_ctx *z, int64_t mine, int64_t *out);

/* ---- backend.c ------------------------------------------------------------------------------ */
/* The ranks (MPI, started here when nobody has) and the host collectives (mpi): what everything
 * else, agreement included, needs first. Sets z->rank and z->world. Local. */
zero_status zr_backend_bootstrap(zero_ctx *z);
/* ZERO_DEVICE: sets up z->dev, z->dcoll and z->hcoll; every rank leaves with the same backend or
 * the same error. Collective. */
zero_status zr_backend_open(zero_ctx *z);
/* Ends the collectives, devices and the ranks' communicator (nothing in flight, no device memory
 * left); a context that got only part of the way is fine. */
void zr_backend_close(zero_ctx *z);

/* ---- state.c -------------------------------------------------------------------------------- */
zero_status zr_state_alloc(zero_ctx *z);   /* local; the advisor's message on ZERO_ERR_OOM */
void zr_state_free(zero_ctx *z);
zero_status zr_load_initial_values(zero_ctx *z, const zero_tensor *t); /* collective */
/* A device allocation for the engine's units; ZERO_ERR_OOM carries the advisor's message. */
zero_status zr_dev_alloc(zero_ctx *z, zero_mem_label label, size_t bytes, const char *what,
                         void *out);
/* Formula bytes of model state per rank for the context's stage, dtype, world and offload. */
void zr_formula_bytes(const zero_ctx *z, uint64_t *device, uint64_t *host);
/* The first failure of the device's kernels and copies since the last call, as ZERO_ERR_SYSTEM
 * naming `during`, else ZERO_OK. Local: agree on it before acting. */
zero_status zr_device_error(zero_ctx *z, const char *during);

/* ---- grad.c --------------------------------------------------------------------------------- */
typedef struct zr_grad_ops {
    const char *name;
    /* zero_grad_ptr / zero_grad_ready after the argument checks */
    void *(*ptr)(zero_ctx *z, int tensor);
    zero_status (*ready)(zero_ctx *z, int module, int chunk);
    /* zero_step: completes this micro-step's reductions */
    zero_status (*micro_end)(zero_ctx *z);
    /* at the boundary, before the norm: reduces what the path reduces there */
    zero_status (*boundary)(zero_ctx *z);
    /* this rank's reduced gradient at element `off` of chunk c (inside the elements it owns) */
    void *(*at)(const zero_ctx *z, int c, size_t off);
    /* after the boundary's update (or skip) */
    void (*after_step)(zero_ctx *z);
} zr_grad_ops;
zero_status zr_grads_init(zero_ctx *z);    /* after the layout and the state */
void zr_grads_free(zero_ctx *z);
void zr_grads_reset_micro(zero_ctx *z);    /* a new micro-step: nothing ready */

/* ---- stage3.c ------------------------------------------------------------------------------- */
zero_status zr_s3_setup(zero_ctx *z);        /* after initial values: persistent chunks */
void zr_s3_free(zero_ctx *z);
zero_status zr_s3_gather(zero_ctx *z, int module);
zero_status zr_s3_release(zero_ctx *z, int module);
void *zr_s3_param_ptr(zero_ctx *z, int i);
zero_status zr_s3_after_step(zero_ctx *z);   /* refresh resident chunks */
void zr_s3_micro_step_done(zero_ctx *z);
zero_status zr_s3_progress(zero_ctx *z);
/* Evaluation passes: gathers inside are not recorded or followed and leave training's prefetch
 * as it was. zr_s3_held: chunks the model holds gathered (zero_gather without zero_release). */
void zr_s3_eval(zero_ctx *z, int on);
int zr_s3_held(const zero_ctx *z);
/* Counters for the report (zeros below stage 3). */
void zr_s3_counters(const zero_ctx *z, int64_t *gathers, int64_t *prefetches, int64_t *hits,
                    int *buffers, int *trace_len);

/* ---- step.c --------------------------------------------------------------------------------- */
void zr_scaler_init(zr_scaler *s, const zero_config *c, zero_dtype dtype);
/* After boundary index `it` (0-based) ended, with or without an inf/nan gradient. */
void zr_scaler_update(zr_scaler *s, int64_t it, int overflow);
zero_status zr_step(zero_ctx *z);
/* zero_finalize's agreement: the same number of steps and the same collectives on every rank,
 * else ZERO_ERR_COMM on every rank. Collective. */
zero_status zr_finalize_agree(zero_ctx *z);

/* ---- io.c, report.c ------------------------------------------------------------------------- */
zero_status zr_write_report(zero_ctx *z, const char *path);
/* Writes a file on rank 0 the safe way (io.c): a temporary file in the target's directory,
 * fill(f), fsync, rename over the target (through symbolic links), fsync of the directory;
 * targets that exist and are not regular files are refused. Every rank returns rank 0's
 * verdict. Collective. */
typedef zero_status (*zr_fill_fn)(zero_ctx *z, FILE *f, void *arg);
zero_status zr_write_rank0_file(zero_ctx *z, const char *what, const char *path,
                                zr_fill_fn fill, void *arg);

/* An fsync errno that means "this file system cannot sync" (EINVAL, ENOTSUP, ENOSYS): not an
 * error for the writers of io.c and ckpt.c. */
int zr_sync_unsupported(int err);

/* Rank 0's status and message, for every rank (rank 0 returns its own). Collective. */
zero_status zr_rank0_verdict(zero_ctx *z, zero_status s, const char *what);

/* The tensor pieces inside [lo, hi) of chunk c, into z->seg; returns how many. */
int zr_segments(zero_ctx *z, int c, size_t lo, size_t hi);

#endif
