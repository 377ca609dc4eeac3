/* workspace_host.c: the workspace of the host path: one int8 level per neuron (the model's
 * neurons), a whole layer's currents, and the dense conv's windows (qsnn_host_scratch_t). */
#include "qsnn_internal.h"

#define SCRATCH_PARTS 8u
#define STRUCT_BYTES (8u * QSNN_POINTER_BYTES)   /* codegen.py's budget for the struct of pointers */

typedef char qsnn_host_scratch_fits[sizeof(qsnn_host_scratch_t) <= STRUCT_BYTES ? 1 : -1];

int qsnn_path_accepts(const qsnn_model_t *model)
{
    return model->dense != NULL;
}

/* The scratch's parts: the struct of pointers, then its buffers in its order. */
static void scratch_parts(const qsnn_model_t *model, size_t *parts)
{
    parts[0] = STRUCT_BYTES;
    parts[1] = qsnn_round8(model->max_layer_neurons * sizeof(int32_t));
    parts[2] = qsnn_round8(model->max_layer_neurons + 8u);
    parts[3] = qsnn_round8((size_t)model->stem_taps * model->stem_channels * sizeof(int16_t));
    parts[4] = qsnn_round8(QSNN_PLANES * (model->max_channels + 3u) * sizeof(int32_t));
    parts[5] = qsnn_round8((model->max_channels + 3u) * sizeof(int32_t));
    parts[6] = QSNN_PLANES * model->max_window_words * sizeof(uint64_t);
    parts[7] = qsnn_round8(model->stem_taps);
}

void qsnn_path_bytes(const qsnn_model_t *model, size_t *levels, size_t *scratch)
{
    size_t parts[SCRATCH_PARTS], i;
    scratch_parts(model, parts);
    *levels = qsnn_round8(model->neurons);
    for (*scratch = 0, i = 0; i < SCRATCH_PARTS; ++i) *scratch += parts[i];
}

void qsnn_path_bind(const qsnn_model_t *model, qsnn_ctx_t *ctx, uint8_t *levels, uint8_t *scratch)
{
    qsnn_host_scratch_t *views = (qsnn_host_scratch_t *)(void *)scratch;
    size_t parts[SCRATCH_PARTS];
    scratch_parts(model, parts);
    scratch += parts[0];
    views->currents = (int32_t *)(void *)scratch;
    views->spiked = scratch += parts[1];
    views->stem_weight = (int16_t *)(void *)(scratch += parts[2]);
    views->negative = (int32_t *)(void *)(scratch += parts[3]);
    views->acc = (int32_t *)(void *)(scratch += parts[4]);
    views->window = (uint64_t *)(void *)(scratch += parts[5]);
    views->taps = (int8_t *)(scratch + parts[6]);
    ctx->levels = levels;
    ctx->scratch = views;
}
