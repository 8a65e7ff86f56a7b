/* optim.c — AdamW behind the optimizer interface (optim.h): its per-step constants, and a piece
 * of the shard updated by the device's fused AdamW kernel or, offloaded, by the CPU AdamW
 * (kernels/adam_cpu.c), both zk_adamw's formula. */
#include "runtime/optim.h"

#include <string.h>

#include "kernels/kernels.h"

_Static_assert(sizeof(zk_adamw_params) <= ZR_OPTIM_PREP_BYTES, "zr_optim_prep too small");

/* The group's values stay double up to the kernels, which round each constant to float where
 * torch.optim.AdamW does (kernels/zero_math.h); the bias corrections are torch's, in double. */
static void adamw_prepare(zr_optim_prep *out, const zr_hyper *h, int64_t step, double grad_scale)
{
    zk_adamw_params p;
    memset(&p, 0, sizeof p);
    p.lr = h->lr;
    p.beta1 = h->beta1;
    p.beta2 = h->beta2;
    p.eps = h->eps;
    p.weight_decay = h->weight_decay;
    p.l2 = h->l2 != 0;
    zk_adamw_bias(&p, step);
    p.grad_scale = (float)grad_scale;
    memcpy(out->bytes, &p, sizeof p);
}

/* The constants of one piece: no weight decay on exempt tensors. */
static zk_adamw_params piece_params(const zr_optim_prep *prep, const zr_optim_piece *piece)
{
    zk_adamw_params p;
    memcpy(&p, prep->bytes, sizeof p);
    if (piece->no_decay)
        p.weight_decay = 0.0;
    return p;
}

static void adamw_update(zr_device *dev, const zr_optim_prep *prep, const zr_optim_piece *piece)
{
    zk_adamw_params p = piece_params(prep, piece);
    zr_dev_adamw(dev, piece->master, piece->state[0], piece->state[1], piece->grad,
                 piece->grad_type, piece->work, piece->work_type, piece->n, &p);
}

static void adamw_update_cpu(const zr_optim_prep *prep, const zr_optim_piece *piece)
{
    zk_adamw_params p = piece_params(prep, piece);
    zk_adamw_cpu(piece->master, piece->state[0], piece->state[1], (const float *)piece->grad,
                 piece->work,
                 piece->work_type, piece->n, &p);
}

const zr_optim_ops zr_optim_adamw = {
    .name = "adamw",
    .num_states = 2,
    .state_names = {"Adam first moment", "Adam second moment"},
    .prepare = adamw_prepare,
    .update = adamw_update,
    .update_cpu = adamw_update_cpu,
};
