/* engine.h — the context behind zero_ctx, shared by the engine (engine.c) and its file output
 * (report.c: JSON report, safetensors export, parameter digest). */
#ifndef ZERO_ENGINE_H
#define ZERO_ENGINE_H

#include <stdarg.h>
#include <stdint.h>

#include "partition/partition.h"
#include "runtime/comm.h"
#include "runtime/config.h"
#include "runtime/device.h"
#include "zero.h"

enum { ZR_ALIGN_ELEMS = 16 }; /* tensor offsets and slices: 64 bytes of fp32, 32 of bf16 */

/* Chunk states within one micro-step (stage 2). */
enum { ZR_CHUNK_IDLE = 0, ZR_CHUNK_FILLING = 1, ZR_CHUNK_REDUCING = 2, ZR_CHUNK_DONE = 3 };

/* A reduce bucket (stage 2): one chunk's full gradient and its reduced slice. */
typedef struct zr_bucket {
    void *grad;       /* (chunk padded) working dtype */
    void *slice;      /* (chunk slice) working dtype: reduce-scatter output */
    size_t capacity;  /* elements of grad */
    int chunk;        /* chunk it serves, -1 if free */
    zr_request req;
} zr_bucket;

typedef struct zr_phase_times {
    double grad_reduce_s;  /* issuing and waiting for gradient reduce-scatters */
    double norm_s;         /* squared norms + their all-gather */
    double optimizer_s;    /* AdamW on the shard */
    double param_gather_s; /* all-gather of updated parameters */
    double step_s;         /* whole zero_step calls */
    double in_backward_s;  /* inside zero_grad_ptr / zero_grad_ready */
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
    zr_device dev;
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
    void *rs_out;      /* stages 0–1: (max slice) working: reduce-scatter output */
    size_t max_slice;
    zr_bucket *buckets; /* stage 2 */
    int num_buckets;
    int *chunk_bucket;  /* [num_chunks] bucket index or -1 */
    int *chunk_state;   /* [num_chunks] ZR_CHUNK_* */
    int *chunk_ready;   /* [num_chunks] modules reported ready this micro-step */
    unsigned char *module_ready; /* [num_modules] */
    zp_segment *seg;    /* [seg_cap]: scratch for the tensor pieces of one chunk */
    int seg_cap;
    zr_request *gather_req; /* [num_chunks] */

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
    int finalized;
    char err[1024];
};

/* Records a formatted message as the context's last error and returns status. */
zero_status zr_fail(zero_ctx *z, zero_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

double zr_now(void);

/* report.c */
zero_status zr_write_report(zero_ctx *z, const char *path);

#endif
