/* zero.h — the public interface of libzero, a ZeRO-style memory-sharding training runtime.
 *
 * A C model registers its parameter tensors (in module order) with zero_init, runs its own
 * forward and backward on the pointers libzero hands out, and replaces its optimizer update
 * with zero_step. Which ZeRO stage, working precision and buffer sizes are used is decided by
 * the zero_config the program passes and, above it, by ZERO_* environment variables
 * (docs/ENV.md), so one binary is tuned without recompiling.
 *
 * Conventions:
 * - Every fallible call returns zero_status; zero_last_error(ctx) holds the detailed message.
 *   The library never exits the process.
 * - "Collective": every rank of the world must make the call, in the same order.
 * - "Blocking": the call returns only when its work (including communication) is complete.
 * - Sizes are in bytes unless a name says elements (numel).
 */
#ifndef ZERO_H
#define ZERO_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define ZERO_API __declspec(dllexport)
#elif defined(__GNUC__)
#define ZERO_API __attribute__((visibility("default")))
#else
#define ZERO_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define ZERO_VERSION_MAJOR 0
#define ZERO_VERSION_MINOR 5
#define ZERO_VERSION_PATCH 0

/* Status of every fallible call. */
typedef enum zero_status {
    ZERO_OK = 0,
    ZERO_ERR_INVALID = 1,     /* bad argument, configuration or environment value (or ranks
                                 that disagree on configuration or tensors) */
    ZERO_ERR_OOM = 2,         /* the device (or its ZERO_DEVICE_MEMORY cap) cannot hold an allocation */
    ZERO_ERR_STATE = 3,       /* call not allowed in the context's current state (or the
                                 context was finalized: see zero_finalize) */
    ZERO_ERR_COMM = 4,        /* a collective failed, or ranks disagree on the order of
                                 collectives (stage-3 gathers) */
    ZERO_ERR_IO = 5,          /* a file could not be written or read */
    ZERO_ERR_UNSUPPORTED = 6, /* valid request this build or machine cannot serve */
    ZERO_ERR_SYSTEM = 7,      /* host allocation or other system failure */
    ZERO_ERR_INTERNAL = 8     /* a bug in libzero: please report it */
} zero_status;

/* What a context allows after a call returned a status (zero_init's failures leave no context):
 * - ZERO_ERR_INVALID, ZERO_ERR_STATE, ZERO_ERR_IO, ZERO_ERR_UNSUPPORTED: the call did nothing
 *   (or, for zero_export, wrote no file on any rank) and the context is as before; go on, e.g.
 *   with a corrected argument. A collective call that returns one of them returns it on every
 *   rank.
 * - ZERO_ERR_OOM from a call after zero_init (a stage-3 gather or reduce buffer): as above on
 *   every rank; free memory or finalize.
 * - ZERO_ERR_COMM, ZERO_ERR_SYSTEM, ZERO_ERR_INTERNAL: the ranks may no longer be in step, or
 *   device state may be lost; only zero_finalize (and the queries and zero_last_error) are
 *   allowed.
 * zero_step never changes the counters (zero_last_step's step, skipped; the report's steps and
 * micro_steps) when it fails before the update. */

/* Working precision of parameters and gradients on the device. Master weights and Adam
 * moments are always fp32. */
typedef enum zero_dtype {
    ZERO_DTYPE_FP32 = 0,
    ZERO_DTYPE_BF16 = 1,
    ZERO_DTYPE_FP16 = 2
} zero_dtype;

typedef enum zero_device_kind {
    ZERO_DEVICE_AUTO = 0, /* cuda when built with CUDA and NCCL and every rank has a GPU of its
                             own, else host */
    ZERO_DEVICE_HOST = 1, /* the CPU is the device, memory capped by device_memory */
    ZERO_DEVICE_CUDA = 2
} zero_device_kind;

typedef enum zero_offload {
    ZERO_OFFLOAD_NONE = 0,
    ZERO_OFFLOAD_CPU = 1
} zero_offload;

#define ZERO_NUMA_AUTO (-1) /* the NUMA node local to the rank's device (host: a share) */
#define ZERO_NUMA_OFF (-2)  /* no binding of memory or threads */

/* How the gradients of the ranks and micro-steps are combined (zero_config.grad_reduce). */
typedef enum zero_grad_reduce {
    ZERO_GRAD_MEAN = 0, /* the mean over ranks and micro-steps: the update sees
                           (1 / (world x grad_accum)) x the sum of what the model added; a loss
                           that is the mean over this rank's micro-batch gives the gradient of the
                           mean over the global batch */
    ZERO_GRAD_SUM = 1   /* the sum as it is: the model scales its own loss */
} zero_grad_reduce;

/* A parameter group: the optimizer's hyperparameters for the tensors that name it
 * (zero_tensor.group). Start from ZERO_GROUP_INIT. lr and weight_decay may change before any
 * step (zero_set_lr, zero_set_weight_decay); betas and eps are fixed at zero_init. */
typedef struct zero_group {
    const char *name;    /* for messages (may be NULL); copied */
    double lr;           /* > 0 */
    double weight_decay; /* >= 0; decoupled (AdamW); tensors marked no_decay get 0 */
    double beta1, beta2; /* in [0, 1) */
    double eps;          /* > 0 */
    int frozen;          /* non-zero: the optimizer never changes these tensors (their
                            gradients are still reduced, and left out of the global norm) */
} zero_group;

#define ZERO_GROUP_INIT {NULL, 1e-3, 0.0, 0.9, 0.999, 1e-8, 0}

/* Runtime configuration. Start from ZERO_CONFIG_INIT or zero_config_init(): both set
 * struct_size, magic and version, so a program compiled against this header keeps working with
 * a later libzero (fields it does not know take their defaults; docs/CHANGELOG.md). Runtime
 * knobs may be overridden by the ZERO_* variable named beside them (environment wins;
 * docs/ENV.md); an override of a value the program changed from the default is logged at INFO. */
#define ZERO_CONFIG_MAGIC 0x5a43464700000000ull /* "ZCFG" */
/* A size libzero chooses at zero_init (bucket_bytes, prefetch_bytes, max_live_bytes: the
 * defaults) from the device capacity, the model and the world size; zero_get_config then reports
 * the size chosen, and ZERO_DEBUG=INFO logs why. */
#define ZERO_SIZE_AUTO ((size_t)-1)
#define ZERO_CONFIG_VERSION 4                  /* 3: libzero 0.3; 4: 0.4 (doubles, optimizer) */

/* The optimizer's formula (zero_config.optimizer, ZERO_OPTIMIZER). Both are bitwise equal to
 * PyTorch's for fp32 parameters on the CPU (docs/DESIGN.md §9). */
typedef enum zero_optimizer {
    ZERO_OPT_ADAMW = 0,  /* torch.optim.AdamW: decoupled weight decay */
    ZERO_OPT_ADAM = 1    /* torch.optim.Adam: weight decay as an L2 term added to the gradient */
} zero_optimizer;
typedef struct zero_config {
    size_t struct_size;        /* sizeof(zero_config) as the program was compiled */
    uint64_t magic;            /* ZERO_CONFIG_MAGIC | ZERO_CONFIG_VERSION */
    size_t tensor_size;        /* sizeof(zero_tensor) as the program was compiled: the stride
                                  of the array zero_init reads */
    int stage;                 /* ZERO_STAGE: 0 (data parallel), 1, 2, 3 */
    zero_dtype dtype;          /* ZERO_DTYPE: working precision */
    size_t bucket_bytes;       /* ZERO_BUCKET_MB: reduce bucket / chunk size (ZERO_SIZE_AUTO) */
    int grad_accum;            /* ZERO_GRAD_ACCUM: micro-steps per optimizer step, >= 1 */
    float clip;                /* ZERO_CLIP: max global gradient L2 norm; 0 = no clipping */
    float loss_scale;          /* ZERO_LOSS_SCALE: 0 = dynamic (fp16 only; 1 otherwise), > 0 = static */
    zero_device_kind device;   /* ZERO_DEVICE; after zero_init, zero_get_config reports the
                                  backend in use (ZERO_DEVICE_HOST or ZERO_DEVICE_CUDA) */
    size_t device_memory;      /* ZERO_DEVICE_MEMORY: capacity (host) or cap (cuda); 0 = all */
    zero_offload offload_optimizer; /* ZERO_OFFLOAD_OPTIMIZER: cpu keeps fp32 master, Adam m/v
                                       and an fp32 gradient shard in host memory (stages 1–3) */
    zero_offload offload_param;     /* ZERO_OFFLOAD_PARAM: cpu keeps the parameter shard in host
                                       memory (stage 3, with optimizer offload) */
    size_t prefetch_bytes;     /* ZERO_PREFETCH_MB: stage 3 prefetch window (ZERO_SIZE_AUTO) */
    size_t max_live_bytes;     /* ZERO_MAX_LIVE_MB: stage 3: prefetch stops when gathered
                                  chunks would exceed it (chunks the model holds always count)
                                  (ZERO_SIZE_AUTO) */
    size_t persist_bytes;      /* ZERO_PERSIST_KB: stage 3 chunks below this stay resident */
    const char *report_path;   /* ZERO_REPORT: JSON report written at zero_finalize; NULL = none */
    int cpu_threads;           /* ZERO_CPU_THREADS: CPU optimizer threads per rank; 0 = the
                                  rank's share of the node's cores */
    int numa;                  /* ZERO_NUMA: ZERO_NUMA_AUTO, ZERO_NUMA_OFF or a node index */
    /* Adam(W) hyperparameters of the one group every tensor is in when num_groups is 0, in
     * double as PyTorch holds them (version 4; floats in version 3), so that lr = 1e-3 gives
     * torch's bits. The ZERO_LR, ZERO_BETA1, ZERO_BETA2, ZERO_EPS and ZERO_WEIGHT_DECAY
     * variables still override them, saying so at INFO; they do not apply to explicit groups. */
    double lr;
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    size_t offload_block_bytes; /* ZERO_OFFLOAD_BLOCK_MB: optimizer offload copies and updates
                                   the shard in blocks of at most this many bytes, through two
                                   staging buffers (on cuda the copies overlap the CPU AdamW) */
    float timeout_s;           /* ZERO_TIMEOUT_S: seconds any collective (MPI or NCCL) may take
                                  from its start; then ZERO_ERR_COMM instead of a hang, and the
                                  context accepts only zero_finalize; 0 = wait forever */
    void *cuda_stream;         /* cuda backend: the model's cudaStream_t; libzero orders its own
                                  work after what the model enqueued there and its results
                                  before the model's later work. NULL = a blocking stream
                                  libzero creates (ordered with the legacy default stream).
                                  Program only (no environment variable). */
    /* ---- version 3 ---- */
    const zero_group *groups;  /* parameter groups (copied at zero_init); NULL = one group from
                                  lr, beta1, beta2, eps, weight_decay above. Program only. */
    int num_groups;            /* entries of groups; 0 with groups NULL */
    zero_grad_reduce grad_reduce; /* how gradients are combined (default the mean). Program only. */
    int fp32_views;            /* non-zero, at bf16/fp16: zero_param_ptr gives fp32 values and
                                  zero_grad_ptr an fp32 gradient the model adds into; libzero
                                  converts (each module's gradient rounded once into the working
                                  precision at zero_grad_ready), so fp32 kernels run unchanged.
                                  Costs device memory under "buffers": stages 0-2 an fp32 copy of
                                  the parameters (4 bytes per parameter), stages 0-1 an fp32
                                  gradient (4 more); stage 3 one fp32 chunk per gathered chunk and
                                  per chunk in backward. No effect at fp32. A module's fp32
                                  gradient reaches libzero only through its zero_grad_ready (a
                                  module never reported ready contributes nothing; without views
                                  its buffer would still be reduced). Program only. */
    /* ---- version 4 ---- */
    zero_optimizer optimizer;  /* ZERO_OPTIMIZER: adamw (default) or adam (L2), every group */
} zero_config;

#define ZERO_CONFIG_INIT                                                                       \
    {                                                                                          \
        /*struct_size*/ sizeof(zero_config),                                                   \
        /*magic*/ ZERO_CONFIG_MAGIC | ZERO_CONFIG_VERSION, /*tensor_size*/ sizeof(zero_tensor),  \
        /*stage*/ 2, /*dtype*/ ZERO_DTYPE_FP32, /*bucket_bytes*/ ZERO_SIZE_AUTO,             \
        /*grad_accum*/ 1, /*clip*/ 0.0f, /*loss_scale*/ 0.0f, /*device*/ ZERO_DEVICE_AUTO,      \
        /*device_memory*/ 0, /*offload_optimizer*/ ZERO_OFFLOAD_NONE,                          \
        /*offload_param*/ ZERO_OFFLOAD_NONE, /*prefetch_bytes*/ ZERO_SIZE_AUTO,                 \
        /*max_live_bytes*/ ZERO_SIZE_AUTO, /*persist_bytes*/ (size_t)64 << 10,                \
        /*report_path*/ NULL, /*cpu_threads*/ 0, /*numa*/ ZERO_NUMA_AUTO, /*lr*/ 1e-3,        \
        /*beta1*/ 0.9, /*beta2*/ 0.999, /*eps*/ 1e-8, /*weight_decay*/ 0.0,                     \
        /*offload_block_bytes*/ (size_t)8 << 20, /*timeout_s*/ 600.0f, /*cuda_stream*/ NULL,    \
        /*groups*/ NULL, /*num_groups*/ 0, /*grad_reduce*/ ZERO_GRAD_MEAN,                      \
        /*fp32_views*/ 0, /*optimizer*/ ZERO_OPT_ADAMW                                         \
    }

/* Fills *cfg with the defaults of ZERO_CONFIG_INIT (struct_size bytes of it: use the macro, which
 * passes the size the program was compiled with). */
ZERO_API void zero_config_init_sized(struct zero_config *cfg, size_t struct_size);
#define zero_config_init(cfg) zero_config_init_sized((cfg), sizeof *(cfg))

#define ZERO_MAX_DIMS 8

/* One parameter tensor. Register tensors in module order: module ids are non-decreasing
 * along the array, start at 0 and are at most num_tensors - 1. A module is the unit of
 * gather/release (stage 3) and of zero_grad_ready. Names must be valid UTF-8 and not
 * "__metadata__" (a safetensors header key); the product of the shape must not overflow. */
/* Sharded initialisation: fills dst[0..count) with the initial values of elements
 * [first, first + count) of tensor `tensor` (its index in the array given to zero_init). Each
 * rank calls it for the elements it owns only, in pieces of at most one chunk, so no rank holds
 * the whole model; it must give the same values for an element whatever the piece (e.g. a
 * counter-based RNG keyed by the element index), so the model is the same at every world size.
 * Called from zero_init on the calling thread. */
typedef void (*zero_init_fn)(void *user, int tensor, size_t first, size_t count, float *dst);

typedef struct zero_tensor {
    const char *name;       /* unique; used by zero_export (safetensors) and in messages */
    size_t numel;           /* elements, > 0 */
    int module;             /* module id */
    const float *init;      /* numel initial fp32 values (read during zero_init, rank 0's are
                               broadcast); NULL = init_fn, or zeros */
    int ndim;               /* 0 = a vector of numel elements; else shape[0..ndim) */
    int64_t shape[ZERO_MAX_DIMS]; /* product must equal numel when ndim > 0 */
    int no_decay;           /* non-zero: weight decay is not applied (biases, norms) */
    /* ---- config version 3 ---- */
    int group;              /* parameter group (zero_config.groups), default 0 */
    zero_init_fn init_fn;   /* instead of init (not both: ZERO_ERR_INVALID): the initial
                               values, per rank and per piece */
    void *init_user;        /* passed to init_fn */
    int slices;             /* 0 or 1: the tensor is in `module`. L >= 2: a stacked (L, ...)
                               tensor of L equal slices along its first dimension (numel and
                               shape[0] divisible by L), slice l in module `module + l`, so stage
                               3 gathers, and stages 2-3 reduce, it layer by layer; its slices
                               are reached with zero_param_slice / zero_grad_slice (they are not
                               contiguous in memory). Export and checkpoints see the whole
                               tensor; init and init_fn are in the whole tensor's elements. */
} zero_tensor;

typedef struct zero_ctx zero_ctx;

/* Memory accounting of the calling rank, bytes. */
typedef enum zero_mem_label {
    ZERO_MEM_PARAMS = 0,
    ZERO_MEM_GRADS = 1,
    ZERO_MEM_OPTIMIZER = 2,
    ZERO_MEM_BUFFERS = 3,
    ZERO_MEM_NUM_LABELS = 4
} zero_mem_label;

typedef struct zero_memory_stats {
    size_t current[ZERO_MEM_NUM_LABELS]; /* device bytes allocated now, by label */
    size_t peak[ZERO_MEM_NUM_LABELS];    /* highest value of current[], by label */
    size_t current_total;                /* all labels */
    size_t peak_total;                   /* highest value of current_total */
    size_t model_state_peak;             /* highest params + grads + optimizer */
    size_t model_state_formula;          /* the ZeRO formula's device bytes for this stage,
                                            dtype, world size and offload */
    size_t capacity;                     /* device capacity; 0 = unlimited */
    size_t num_params;                   /* Ψ: registered elements, without padding */
    size_t host_current_total;           /* offloaded state in host memory, bytes now */
    size_t host_peak_total;              /* its peak */
    size_t host_model_state_formula;     /* the offload formula's host bytes (0 without) */
    size_t host_init_peak;               /* host bytes libzero held during zero_init, peak: the
                                            offloaded state, the device's state when the device
                                            is host memory, and the initial values' buffers (a
                                            chunk with rank-0 init arrays, a slice with init_fn) */
} zero_memory_stats;

/* What the last zero_step did. */
typedef struct zero_step_info {
    int64_t step;       /* optimizer steps applied so far */
    int applied;        /* 1: the optimizer ran; 0: a micro-step or a skipped step */
    int boundary;       /* 1: this call ended a gradient-accumulation window */
    int overflow;       /* 1: inf/nan in the gradients, or an element whose square is inf in
                           fp32 (zero_step); the step was skipped on every rank */
    float grad_norm;    /* global L2 norm of the unscaled gradient (before clipping) */
    float loss_scale;   /* loss scale that the next backward must use */
    int64_t skipped;    /* optimizer steps skipped so far */
} zero_step_info;

/* ---- lifecycle ------------------------------------------------------------------------- */

/* Creates a context: resolves the configuration (cfg, then ZERO_* environment), initialises
 * MPI if the program has not (a process started without mpirun is a world of one; MPI is then
 * finalised at process exit), checks that all ranks agree on configuration and tensors, lays
 * out and allocates the partitioned state, and loads the init values given on rank 0
 * (broadcast, so every rank starts from the same numbers; other ranks' init may be NULL).
 * The tensor array and names may be freed after the call.
 * Collective, blocking. On failure *ctx is NULL and the returned status names the cause; the
 * message is available from zero_init_error(). Returns ZERO_ERR_INVALID for bad arguments or
 * configuration, or when ranks disagree on configuration or tensors, ZERO_ERR_OOM when the device
 * cannot hold the state, ZERO_ERR_COMM when a collective fails. Initial values (rank 0's) that
 * are inf or nan, or that become inf in the working precision (beyond 65504 for fp16), are
 * ZERO_ERR_INVALID on every rank, naming the tensor and the element. */
ZERO_API zero_status zero_init(zero_ctx **ctx, const zero_config *cfg, const zero_tensor *tensors,
                               int num_tensors);

/* Message of the last failed zero_init (or zero_finalize) on the calling thread ("" if none). */
ZERO_API const char *zero_init_error(void);

/* Writes the report (if ZERO_REPORT or cfg.report_path is set on rank 0) and frees the context.
 * Collective, blocking. ctx may be NULL (no-op). The context is gone even when the report
 * could not be written (ZERO_ERR_IO); the message is then in zero_init_error(). Several contexts
 * may live in one process (two models); each is finalized on its own, in any order.
 * After zero_finalize the pointer must not be used. Calls that still get it (a second
 * zero_finalize included) are caught where the freed memory has not been reused yet: they do
 * nothing and return ZERO_ERR_STATE (NULL from the pointer calls, -1/0/NULL from the queries;
 * zero_last_error says the context was finalized; a second zero_finalize's message is in
 * zero_init_error()). This is a best effort, not a guarantee: once the memory is reused (e.g. by
 * the next zero_init, which may get the same address) the call is undefined behaviour. */
ZERO_API zero_status zero_finalize(zero_ctx *ctx);

/* ---- training -------------------------------------------------------------------------- */

/* Pointers from zero_param_ptr and zero_grad_ptr are device memory: host memory on the host
 * backend, GPU memory on the cuda backend (zero_get_config(ctx)->device says which).
 *
 * How gradients are combined (what the loss must assume). The update of an optimizer step sees
 *   g = (1 / (world x grad_accum)) x sum over ranks r and micro-steps k of G[r][k] / loss_scale
 * with the default zero_config.grad_reduce = ZERO_GRAD_MEAN, where G[r][k] is what rank r added
 * into zero_grad_ptr in micro-step k (summed in fp32 for the reduction, rounded to the working
 * precision where it is stored). So a loss that is the MEAN over the rank's micro-batch gives the
 * gradient of the mean over the global batch (world x grad_accum micro-batches of equal size):
 * what PyTorch DDP with gradient accumulation computes. With ZERO_GRAD_SUM the factor is 1: the
 * model scales its own loss. fp16 with a loss scale: the model multiplies its loss (or the loss
 * gradient) by zero_loss_scale(ctx); libzero divides it out. Clipping (ZERO_CLIP) applies to the
 * norm of g. Tensors of a frozen group are left out of the norm and never updated.
 *
 * How long pointers are valid:
 *   zero_param_ptr  stages 0–2: the context's lifetime (values change at each zero_step that
 *                   ends a window, and at zero_load); stage 3: from zero_gather of the tensor's
 *                   module to its zero_release (ask again after every gather).
 *   zero_grad_ptr   stages 0–1: the context's lifetime; stages 2–3: from the call to the
 *                   module's zero_grad_ready, one micro-step (ask again every micro-step).
 *   zero_compute_stream, zero_get_config: the context's lifetime.
 *   zero_last_error: until the next call on the context. zero_init_error: until the next
 *   zero_init or zero_finalize on the thread. Every pointer dies with zero_finalize. */

/* Working-precision parameters of tensor i (dtype of zero_config.dtype), numel elements.
 * Stages 0–2: valid for the context's lifetime. Stage 3: valid between zero_gather and
 * zero_release of the tensor's module. Local, non-blocking. NULL on bad index (see last error). */
ZERO_API void *zero_param_ptr(zero_ctx *ctx, int i);

/* Working-precision gradient of tensor i, numel elements. The model ADDS its gradient into it
 * during backward, then calls zero_grad_ready for the module (how the ranks' and micro-steps'
 * gradients are combined: above). Stages 0–1: one buffer for the context's lifetime, holding the
 * sum over the micro-steps of an accumulation window and zeroed after each optimizer step. Stages 2–3: a zeroed reduce bucket each micro-step, valid from this
 * call until the module's zero_grad_ready; ask again every micro-step, before writing (a pointer
 * kept from an earlier micro-step, as llm.c keeps its tensor pointers, points into a bucket that
 * has been zeroed or given to another chunk since; zero_grad_ready refuses such a module, see
 * there). Local (it may wait for an earlier bucket's reduction to free a bucket). NULL on error. */
ZERO_API void *zero_grad_ptr(zero_ctx *ctx, int i);

/* Slice l (0 <= l < slices) of a tensor registered with slices >= 2: its numel / slices elements,
 * the slice in module `module + l`; valid as zero_param_ptr / zero_grad_ptr are for that module
 * (stage 3: between zero_gather(module + l) and its release; gradients: ask every micro-step).
 * zero_param_ptr / zero_grad_ptr of such a tensor are NULL (ZERO_ERR_INVALID). For a tensor
 * without slices, slice 0 is the tensor. Local. NULL on error (see last error). */
ZERO_API void *zero_param_slice(zero_ctx *ctx, int i, int slice);
ZERO_API void *zero_grad_slice(zero_ctx *ctx, int i, int slice);

/* Tells the engine that the gradients of `module` are complete for this micro-step. At stages
 * 2–3 a bucket whose modules are all ready is reduce-scattered asynchronously. Collective in
 * effect: all ranks must report modules in the same order. Does not wait for the reduction it
 * starts (it may wait for an earlier one when it needs a bucket).
 * ZERO_ERR_STATE (nothing done): the module was already reported in this micro-step; or, at
 * stages 2–3, zero_grad_ptr was called for the module's tensors in an earlier micro-step but not
 * in this one: the model kept pointers across micro-steps and wrote its gradient into a stale
 * bucket. Ask for zero_grad_ptr every micro-step, also for a module that adds nothing this time
 * (then add nothing). A module never asked for at all is reported as zeros. Like the other
 * ZERO_ERR_STATE checks, this one is local: ranks that use the API alike fail alike. */
ZERO_API zero_status zero_grad_ready(zero_ctx *ctx, int module);

/* Ends a micro-step. At a gradient-accumulation boundary: reduces what is left, computes the
 * global gradient norm, skips the update on every rank if any gradient is inf/nan (adjusting
 * a dynamic loss scale), else unscales, clips, runs AdamW on this rank's shard and all-gathers
 * the updated parameters. Collective, blocking.
 * A finite reduced gradient element whose square is inf in fp32 (|g| >= 2^64, about 1.8e19, in
 * the sum over ranks and micro-steps, before unscaling) counts as an overflow too and skips the
 * step the same way: AdamW's v = beta2 v + (1 - beta2) g g, in fp32, could become inf there and
 * stop the element for good (PyTorch would compute that inf v and go on). The test is on the
 * square alone, so it also skips some steps whose (1 - beta2) g g, after unscaling and
 * averaging, would still have been finite. */
ZERO_API zero_status zero_step(zero_ctx *ctx);

/* Stage 3: makes the parameters of `module` present: all-gathers the chunk holding it (or
 * waits for its prefetch) until the matching zero_release. Calls nest (gather twice, release
 * twice). The first micro-step records the order of gathers; later micro-steps prefetch along
 * it (ZERO_PREFETCH_MB, ZERO_MAX_LIVE_MB); gathering out of that order is correct but turns
 * prefetch off until the order is recorded again. All ranks must gather the same modules in the
 * same order: otherwise every rank returns ZERO_ERR_COMM. No-op below stage 3.
 * Collective, blocking. */
ZERO_API zero_status zero_gather(zero_ctx *ctx, int module);

/* Stage 3: gives the gathered parameters of `module` back (ZERO_ERR_STATE if it was not
 * gathered). No-op below stage 3. Local. */
ZERO_API zero_status zero_release(zero_ctx *ctx, int module);

/* Loss scale the model must multiply its loss (or the loss gradient) by in the next backward.
 * 1 unless fp16 with dynamic scaling or a static ZERO_LOSS_SCALE. Local. */
ZERO_API float zero_loss_scale(const zero_ctx *ctx);

/* What the last zero_step did. Local. */
ZERO_API zero_status zero_last_step(const zero_ctx *ctx, zero_step_info *info);

/* Sets the learning rate (> 0, finite) or decoupled weight decay (>= 0, finite) of parameter
 * group `group` (0-based; 0 is the only group without zero_config.groups) for the optimizer steps
 * from now on: call before the zero_step that ends an accumulation window (a schedule sets it
 * every step). Local; every rank must set the same values: the values each rank uses travel with
 * the exchange every optimizer step already makes, and ranks that differ fail that zero_step with
 * ZERO_ERR_COMM on every rank before anything is applied (naming the group, the value and the
 * ranks; only zero_finalize is possible then). ZERO_ERR_INVALID (nothing changed) for a bad group
 * or value. */
ZERO_API zero_status zero_set_lr(zero_ctx *ctx, int group, double lr);
ZERO_API zero_status zero_set_weight_decay(zero_ctx *ctx, int group, double weight_decay);
/* The group's current learning rate (NAN for a bad group). Local. */
ZERO_API double zero_get_lr(const zero_ctx *ctx, int group);

/* Evaluation passes: between zero_eval_begin and zero_eval_end the model runs forwards only.
 * Stage 3 gathers inside are not recorded into the order that prefetch follows, and do not
 * disturb it (chunks prefetched for training stay for training; prefetch hits are unchanged), and
 * every eval gather is checked across ranks. zero_grad_ptr, zero_grad_ready and zero_step are
 * refused (ZERO_ERR_STATE) inside. zero_eval_begin is allowed wherever no module is gathered
 * by the model and none has been reported ready in the current micro-step (between zero_step
 * and the next backward, or between two modules of a forward: chunks prefetched for training
 * stay for it); otherwise ZERO_ERR_STATE. zero_eval_end needs every module released.
 * Local (the gathers inside are collective as always). */
ZERO_API zero_status zero_eval_begin(zero_ctx *ctx);
ZERO_API zero_status zero_eval_end(zero_ctx *ctx);

/* ---- queries and utilities --------------------------------------------------------------- */

/* The tensors of a module: [*first, *first + *count) in registration order (modules are
 * registered in order, so they are consecutive); a tensor with slices counts in the module of its
 * slice 0. ZERO_ERR_INVALID for a bad module. Local. */
ZERO_API zero_status zero_module_tensors(const zero_ctx *ctx, int module, int *first, int *count);
/* The module of tensor i (of its slice 0), its number of slices (1 unless registered with
 * slices >= 2: then in modules module..module + slices - 1), and its parameter group; -1 for a
 * bad index. Local. */
ZERO_API int zero_tensor_module(const zero_ctx *ctx, int i);
ZERO_API int zero_tensor_slices(const zero_ctx *ctx, int i);
ZERO_API int zero_tensor_group(const zero_ctx *ctx, int i);
/* Modules and tensors registered. Local. */
ZERO_API int zero_num_modules(const zero_ctx *ctx);
ZERO_API int zero_num_tensors(const zero_ctx *ctx);

ZERO_API int zero_rank(const zero_ctx *ctx);
ZERO_API int zero_world_size(const zero_ctx *ctx);

/* The resolved configuration (after the environment). Local. */
ZERO_API const zero_config *zero_get_config(const zero_ctx *ctx);

/* The cuda backend's compute stream (a cudaStream_t): zero_config.cuda_stream when the model
 * gave one, else the blocking stream libzero created on its GPU (made current for the thread
 * that called zero_init). A model that launches its kernels here is ordered with libzero without
 * further synchronisation: zero_grad_ready / zero_step read what it enqueued before the call, and
 * parameters and gathers are ready for what it enqueues after. NULL on the host backend. Local. */
ZERO_API void *zero_compute_stream(const zero_ctx *ctx);

/* Memory accounting of the calling rank. Local, non-blocking. */
ZERO_API zero_status zero_memory_report(const zero_ctx *ctx, zero_memory_stats *stats);

/* In-place sum of n doubles over all ranks (for losses and metrics). Collective, blocking. */
ZERO_API zero_status zero_allreduce_sum(zero_ctx *ctx, double *values, int n);

/* Writes the full fp32 master parameters (gathered from all ranks) to `path` as a safetensors
 * file (F32 tensors, names and shapes as registered), from rank 0. Collective, blocking. The file
 * appears whole or not at all: written to a temporary file in the same directory
 * (".<name>.zero-tmp.<host>.<pid>", removed on failure; stale ones of dead processes are removed
 * next time), synced and renamed over the target. A symbolic link is followed (its target file
 * is replaced, the link stays); a target that exists and is not a regular file (a directory,
 * FIFO, device) is refused with ZERO_ERR_IO and left as it is. Every rank returns rank 0's
 * verdict. The JSON report of zero_finalize is written the same way. */
ZERO_API zero_status zero_export(zero_ctx *ctx, const char *path);

/* ---- checkpoints (docs/CHECKPOINT.md) ---------------------------------------------------------
 * A checkpoint holds everything a run needs to continue exactly: the fp32 master of every
 * tensor, the optimizer's state (AdamW's two moments), the step count, the loss scaler (scale,
 * hysteresis, growth window), the skipped-step count, the registered tensors (names, shapes,
 * modules, no_decay), the configuration it was saved under, and an opaque user blob (the
 * program's data position, RNG state, schedule...). It loads at any world size, stage, dtype,
 * offload setting and backend: the layout is recomputed, and each rank reads only the blocks
 * holding the elements it owns. The ranks must share the file system that holds dir. */

/* Saves a checkpoint into the directory dir (created if missing) as dir/step-<steps> (steps =
 * optimizer steps applied, 8 digits), and points dir/latest at it. Every rank writes its own
 * shard file, in parallel; rank 0 writes user.bin (user_len bytes of rank 0's `user`; other
 * ranks' blobs are ignored; at most 1 GiB) and the manifest. Atomic: written under a temporary
 * name in dir, every file fsynced, the manifest last, then renamed into place (replacing a
 * checkpoint of the same step) and `latest` replaced by rename; a crash at any moment leaves the
 * previous checkpoint and a `latest` that names a complete one. ZERO_CKPT_KEEP=K then removes all
 * but the newest K step-* directories. Call it at an optimizer-step boundary (ZERO_ERR_STATE in
 * the middle of an accumulation window, and while an asynchronous save is in flight).
 * Collective, blocking. ZERO_ERR_INVALID for bad arguments, ZERO_ERR_IO when a file cannot be
 * written (every rank returns the same status; the temporary directory is removed; the previous
 * checkpoint is untouched). */
ZERO_API zero_status zero_save(zero_ctx *ctx, const char *dir, const void *user, size_t user_len);

/* Asynchronous save: the checkpoint zero_save would write now, written while training goes on.
 * zero_save_async takes this rank's part of the state (the bytes of its shard file) into host
 * memory — most of what training waits for, a copy of the state — builds the manifest as of this
 * step and returns; a thread of each rank then checksums and writes the shard file (bound, with
 * CPU offload placement, to the rank's cores but the training thread's).
 * zero_save_wait waits for every rank's file and commits the checkpoint exactly as zero_save
 * does (manifest, rename into place, `latest`, ZERO_CKPT_KEEP). The state may change freely in
 * between (zero_step, zero_load...); the checkpoint holds the state, step and user blob of the
 * zero_save_async call. One save at a time: zero_save and zero_save_async return ZERO_ERR_STATE
 * while one is in flight, zero_save_wait without one is ZERO_ERR_STATE. zero_finalize abandons a
 * save not waited for (the previous checkpoint stays; a warning says so). Both calls are
 * collective; zero_save_async is called at an optimizer-step boundary, zero_save_wait anywhere
 * every rank calls it. The snapshot buffer (this rank's shard size, 12 bytes per parameter of its
 * shard with AdamW) is kept for the next save until zero_finalize. Statuses as zero_save's:
 * ZERO_ERR_IO from zero_save_wait when a file could not be written (every rank; the temporary
 * directory is removed, the previous checkpoint untouched), ZERO_ERR_SYSTEM when the snapshot
 * does not fit in host memory. */
ZERO_API zero_status zero_save_async(zero_ctx *ctx, const char *dir, const void *user,
                                     size_t user_len);
ZERO_API zero_status zero_save_wait(zero_ctx *ctx);

/* Loads the checkpoint at path: a checkpoint directory (holding manifest.json), or a directory
 * zero_save wrote into (its `latest`, else its newest step-* directory). Replaces the master
 * weights, the working parameters (the master converted to the working precision), the
 * optimizer's state, the step and skipped counts, and, when both the checkpoint and the context
 * use fp16 with a dynamic loss scale, the scaler's state (otherwise the context's own scaler
 * restarts). Hyperparameters and runtime settings stay the context's. The checkpoint's tensors
 * must be the registered ones by name (order and module ids may differ), each with as many
 * elements and, when both were registered with a shape, the same shape. The user blob (rank 0's at save) goes to every rank: `user` (user_cap bytes) receives it
 * and *user_len (when not NULL) its size; user NULL skips it. Call at an optimizer-step boundary.
 * Collective, blocking.
 * Errors leave the context exactly as it was, on every rank: ZERO_ERR_INVALID for a checkpoint of
 * other tensors (naming the tensor missing, extra or of another shape), another optimizer, a blob
 * larger than user_cap (*user_len says how large), or (fp16) a master value beyond fp16's range;
 * ZERO_ERR_IO for a missing, truncated or corrupt file, a checksum that differs or a garbled
 * manifest, naming the file (and the tensor and block where it applies); ZERO_ERR_STATE inside an
 * accumulation window. Two passes: each rank first reads and verifies every block it needs,
 * the ranks agree, and only then does each read the same blocks again (from the page cache, as a
 * rule), verified again, straight into its state — no staging copy of the model. The one failure
 * that can leave the state partly replaced is a file that changes between the two passes
 * (another process writing into the checkpoint while it loads): ZERO_ERR_IO saying so, on every
 * rank; loading a checkpoint again repairs it. */
ZERO_API zero_status zero_load(zero_ctx *ctx, const char *path, void *user, size_t user_cap,
                               size_t *user_len);

/* ---- data: a distributed, prefetching token loader (docs/DATA.md) -----------------------------
 * An optional part of libzero (a model may feed itself): it streams (B, T+1) token windows out of
 * token files to every rank. Files: llm.c's token files (a 256 x int32 header: magic 20240520,
 * version 1, token count; then uint16 tokens), the 32-bit version (version 2: uint32 tokens, for
 * vocabularies above 65,535; llm.c's magic 20240801 version 7 is read as the same), or any other
 * file as bytes (each byte one token, 0..255; see zero_data_format).
 * Windows: a file of N tokens holds (N - 1) / T windows, window w being tokens [w T, w T + T]
 * (consecutive windows share one token, as llm.c reads). An epoch is every window of every file
 * once; with shuffle the file order and the order of the units of consecutive windows inside
 * each file (shuffle_unit) are permuted per epoch (seeded by seed and epoch; the same at every
 * world size); without it, both are in order.
 * Batches: call k takes the global windows [k G, (k+1) G) of the endless epoch-after-epoch
 * stream, G = B x world size; rank r gets rows [r B, (r+1) B) of them. So the union over the ranks
 * of one global batch does not depend on the world size, only on G: np 4 with B sees what np 1
 * with 4 B sees. A background thread prepares the next ZERO_DATA_PREFETCH batches (default 2)
 * into a ring of buffers while the model trains on the current one. */

typedef struct zero_data zero_data;

/* How a file's bytes are read. */
typedef enum zero_data_format {
    ZERO_DATA_AUTO = 0,   /* a token file where its header has the magic; any other file is
                             bytes, except one whose name ends in ".bin", which must be a token
                             file (so a damaged header is an error, not text) */
    ZERO_DATA_TOKENS = 1, /* every file must be a token file */
    ZERO_DATA_BYTES = 2   /* every file is bytes, header or not */
} zero_data_format;

/* What zero_data_next hands out. */
typedef enum zero_data_output {
    ZERO_DATA_OUT_INT32 = 0,   /* inputs and targets, int32 [batch x seq] each (the default) */
    ZERO_DATA_OUT_WINDOWS = 1  /* the windows as the files hold them: tokens [batch x (seq + 1)]
                                  of token_bytes each (little-endian; the files' widest width),
                                  a quarter of the int32 pair's bytes for uint16 files: less to
                                  write and, on the cuda backend, to copy; the model widens them
                                  (inputs = row[0..seq), targets = row[1..seq]) */
} zero_data_output;

typedef struct zero_data_config {
    size_t struct_size;       /* sizeof(zero_data_config): ZERO_DATA_CONFIG_INIT sets it */
    const char *files;        /* the files: a glob pattern (sorted by name), or several patterns
                                 or paths separated by ',' (in that order, blanks around each
                                 ignored); each must match; a file listed twice is read twice */
    int batch;                /* B: sequences per rank per call, >= 1 */
    int seq;                  /* T: tokens per sequence (a window holds T + 1), >= 1 */
    uint64_t seed;            /* of the shuffle */
    int shuffle;              /* 1 (default): permute files and windows per epoch; 0: in order */
    int64_t vocab;            /* every token must be < vocab (0 = only the format's range) */
    zero_data_format format;
    int prefetch;             /* batches prepared ahead: -1 (default) = ZERO_DATA_PREFETCH;
                                 0 = each call reads its batch itself */
    int verify;               /* -1 (default) = ZERO_DATA_VERIFY; 1 = every token is checked
                                 against vocab at open (the ranks split the work); 0 = tokens are
                                 checked as they are read */
    double delay_ms;          /* an artificial delay per batch in the loader (benchmarks);
                                 < 0 (default) = ZERO_DATA_DELAY_MS */
    const char *name;         /* this loader's name in messages and the report ("train",
                                 "val"); NULL = "data" */
    int shuffle_unit;         /* windows the shuffle keeps together, in file order (a unit): 1 =
                                 every window on its own; 0 (default) = about 32 Ki tokens
                                 (32768 / seq windows, at most 1/16 of a file's), which reads
                                 memory in runs instead of one random place per window (llm.c
                                 keeps a rank's whole batch together) */
    int reserved;             /* must be 0 (ZERO_ERR_INVALID otherwise). 0.4's struct ended
                                 at shuffle_unit, padded: a field here would hide in a 0.4
                                 program's padding, so output comes after */
    zero_data_output output;  /* ZERO_DATA_OUT_INT32 (default) or ZERO_DATA_OUT_WINDOWS; read
                                 when struct_size reaches past it (0.5 and later) */
} zero_data_config;

#define ZERO_DATA_CONFIG_INIT                                                                     \
    {sizeof(zero_data_config), NULL, 0, 0, 0, 1, 0, ZERO_DATA_AUTO, -1, -1, -1.0, NULL, 0, 0,     \
     ZERO_DATA_OUT_INT32}

/* One batch of this rank: row b (b < batch) of inputs is window b's tokens 0..T-1, of targets its
 * tokens 1..T (with ZERO_DATA_OUT_WINDOWS: row b of tokens is window b, and inputs, targets and
 * their dev_ copies are NULL). The pointers stay valid until the next zero_data_next or
 * zero_data_seek on the loader, or its zero_data_close. The fields after first_window are filled
 * only for a config whose struct_size includes `output` (a program built against this header). */
typedef struct zero_batch {
    const int32_t *inputs;      /* [batch x seq], host memory */
    const int32_t *targets;     /* [batch x seq], host memory */
    const int32_t *dev_inputs;  /* the same in device memory: on the cuda backend copied on
                                   libzero's copy stream, ordered before its compute stream
                                   (zero_compute_stream); on the host backend = inputs. The
                                   buffer is reused two batches later, after the compute stream's
                                   work so far: a model reading it on another stream orders that
                                   stream before zero_compute_stream's next work */
    const int32_t *dev_targets;
    int batch, seq;
    int64_t index;              /* which global batch (0 = the first since position 0; after a
                                   seek to a position that is not a multiple of this batch size,
                                   rounded down) */
    int64_t epoch;              /* epoch of this rank's first row */
    uint64_t first_window;      /* global window index of this rank's first row */
    const void *tokens;         /* ZERO_DATA_OUT_WINDOWS: [batch x (seq + 1)] tokens of
                                   token_bytes each, host memory; else NULL */
    const void *dev_tokens;     /* the same in device memory (as dev_inputs); else NULL */
    int token_bytes;            /* bytes per token of tokens (1, 2 or 4); 4 for the int32 pair */
} zero_batch;

/* Where a loader stands, for a checkpoint's user blob: the windows that every rank together has
 * consumed, and a fingerprint of what they were counted in (the files' names and token counts,
 * seq, seed, shuffle, format). */
typedef struct zero_data_pos {
    uint64_t windows;
    uint64_t fingerprint;
} zero_data_pos;

typedef struct zero_data_info {
    int files;
    int token_bytes;            /* widest token of the files: 1 (bytes), 2 or 4 */
    int64_t tokens;             /* in all files */
    int64_t windows;            /* per epoch */
    int64_t max_token;          /* largest token seen by a verify scan (all ranks), else -1 */
    int prefetch;               /* batches prepared ahead */
    const char *io;             /* "mmap" or "pread" (ZERO_DATA_IO) */
    int64_t batches;            /* zero_data_next calls served on this rank */
    uint64_t bytes_read;        /* token bytes this rank read */
    double wait_s;              /* seconds zero_data_next waited for a batch on this rank */
    double busy_s;              /* seconds the loader spent preparing batches on this rank */
} zero_data_info;

/* Opens a loader on the context's ranks: finds and checks every file (magic, version, a token
 * count that matches the file size, at least one window of seq + 1 tokens), checks the ranks
 * agree on the files and the settings and, when verify is on, that every token is < vocab.
 * Collective, blocking. On any failure every rank returns the same status and nothing stays open:
 * ZERO_ERR_INVALID for bad settings, an empty file list, a pattern that matches nothing, a file
 * of the wrong format or too short, a token >= vocab (the message names the file, the token and
 * its offset), or ranks that see different files; ZERO_ERR_IO for a file that cannot be read;
 * ZERO_ERR_STATE after zero_finalize. Several loaders may be open at once (training and
 * validation). The message is zero_last_error(ctx). */
ZERO_API zero_status zero_data_open(zero_ctx *ctx, const zero_data_config *cfg, zero_data **data);

/* This rank's next batch into *batch. Collective (the ranks agree that every rank's batch is
 * good), blocking until the batch is ready. ZERO_ERR_INVALID (a token >= vocab, naming the file
 * and offset) or ZERO_ERR_IO (a read failed, or a file changed size) on every rank when any rank
 * failed; the loader is then still positioned at the failed batch. */
ZERO_API zero_status zero_data_next(zero_data *data, zero_batch *batch);

/* Where the loader stands: the position after the last batch zero_data_next returned. Local. */
ZERO_API zero_status zero_data_tell(const zero_data *data, zero_data_pos *pos);

/* Goes to a position (from zero_data_tell, possibly of a run at another world size or batch
 * size); the next batch starts at its window. Collective. ZERO_ERR_INVALID when the position's
 * fingerprint is not this loader's (other files, seq, seed, shuffle or format) or ranks ask for
 * different positions; nothing changes then. */
ZERO_API zero_status zero_data_seek(zero_data *data, const zero_data_pos *pos);

/* What the loader serves and its counters on this rank. Local. */
ZERO_API zero_status zero_data_get_info(const zero_data *data, zero_data_info *info);

/* Stops the loader's thread and frees it; its counters go into the report (docs/REPORT.md,
 * "data"). Local. NULL is a no-op. zero_finalize closes the loaders still open (their handles
 * then only accept zero_data_close). */
ZERO_API zero_status zero_data_close(zero_data *data);

/* Hash of the full fp32 master parameters in registration order: equal whenever the values are
 * equal, whatever the stage or world size. Collective, blocking. */
ZERO_API zero_status zero_param_digest(zero_ctx *ctx, uint64_t *digest);

/* Converts n elements between dtypes (fp32/bf16/fp16; round to nearest even). Local. Does
 * nothing when either dtype is not a zero_dtype (zero_dtype_size is 0 for it). */
ZERO_API void zero_convert(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type,
                           size_t n);

/* dst[i] += src[i] for a working-precision dst (rounded to nearest even). Local. Does nothing
 * when dst_type is not a zero_dtype. */
ZERO_API void zero_accumulate(void *dst, zero_dtype dst_type, const float *src, size_t n);

/* Bytes of one element of a dtype (4 or 2); 0 for a value that is not a zero_dtype (the check a
 * caller can make before zero_convert / zero_accumulate). */
ZERO_API size_t zero_dtype_size(zero_dtype dtype);

ZERO_API const char *zero_status_string(zero_status status);

/* Detailed message of the context's last error ("" if none). Local. */
ZERO_API const char *zero_last_error(const zero_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif /* ZERO_H */
