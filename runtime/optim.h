/* optim.h — the optimizer interface: what zero_step runs on the elements a rank owns. An
 * optimizer keeps fp32 state arrays shaped like the fp32 master (num_states of them, allocated by
 * state.c under the names it gives), computes its per-step constants once per step (prepare), and
 * updates one piece of a tensor at a time, on the device (through the device's kernels) or, for
 * offloaded state, on the CPU — the same formula in the same order on both, so offload on and off
 * give the same bits. AdamW (PyTorch's order) is the one implementation today. */
#ifndef ZERO_OPTIM_H
#define ZERO_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/device.h"
#include "zero.h"

enum { ZR_OPTIM_MAX_STATES = 2, ZR_OPTIM_PREP_BYTES = 128 };

/* Hyperparameters of one parameter group (double, as the program gives them: the optimizer
 * rounds them where PyTorch does). l2: weight decay as Adam's L2 term on the gradient
 * (torch.optim.Adam) instead of AdamW's decoupled decay (torch.optim.AdamW, the default 0). */
typedef struct zr_hyper {
    double lr, weight_decay, beta1, beta2, eps;
    int l2;
} zr_hyper;

/* Per-step constants, opaque to the engine (the optimizer's own struct inside). */
typedef struct zr_optim_prep {
    _Alignas(16) unsigned char bytes[ZR_OPTIM_PREP_BYTES];
} zr_optim_prep;

/* One piece of the shard: n elements of one tensor. */
typedef struct zr_optim_piece {
    float *master;                      /* fp32 master values, updated */
    float *state[ZR_OPTIM_MAX_STATES];  /* the optimizer's state arrays at the same offset */
    const void *grad;                   /* the reduced gradient (grad_type) */
    zero_dtype grad_type;
    void *work;                         /* working copy to refresh (work_type), or NULL */
    zero_dtype work_type;
    size_t n;
    int no_decay;                       /* the tensor is exempt from weight decay */
} zr_optim_piece;

typedef struct zr_optim_ops {
    const char *name;
    int num_states;
    const char *state_names[ZR_OPTIM_MAX_STATES]; /* for allocation messages */
    /* one group's constants: step: 1-based optimizer step; grad_scale multiplies every gradient
     * (the loss scale, the averaging over ranks and micro-steps and the clip factor folded in) */
    void (*prepare)(zr_optim_prep *out, const zr_hyper *h, int64_t step, double grad_scale);
    void (*update)(zr_device *dev, const zr_optim_prep *prep, const zr_optim_piece *piece);
    /* the CPU twin for offloaded state: grad is fp32 in host memory */
    void (*update_cpu)(const zr_optim_prep *prep, const zr_optim_piece *piece);
} zr_optim_ops;

/* AdamW with decoupled weight decay (or Adam-L2: zr_hyper.l2), PyTorch's bits for fp32
 * (kernels/zero_math.h). */
extern const zr_optim_ops zr_optim_adamw;

#endif
