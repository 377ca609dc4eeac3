/* workspace_host.c: the workspace of the host path: one int8 level per neuron (the model's
 * neurons), a whole layer's currents, and the dense conv's windows (qsnn_host_scratch_t). */
#include "qsnn_internal.h"

int qsnn_path_accepts(const qsnn_model_t *model)
{
    return model->dense != NULL;
}

typedef char qsnn_host_scratch_fits[sizeof(qsnn_host_scratch_t) <= QSNN_SCRATCH_STRUCT_BYTES ? 1 : -1];

/* The levels; the scratch: the struct of pointers, then its buffers in its order. */
void qsnn_path_parts(const qsnn_model_t *model, size_t *levels, size_t *parts)
{
    *levels = qsnn_round8(model->neurons);
    parts[0] = QSNN_SCRATCH_STRUCT_BYTES;
    parts[1] = qsnn_round8(model->max_layer_neurons * sizeof(int32_t));
    parts[2] = qsnn_round8(model->max_layer_neurons + 8u);
    parts[3] = qsnn_round8((size_t)model->stem_taps * model->stem_channels * sizeof(int16_t));
    parts[4] = qsnn_round8(QSNN_PLANES * (model->max_channels + 3u) * sizeof(int32_t));
    parts[5] = qsnn_round8((model->max_channels + 3u) * sizeof(int32_t));
    parts[6] = QSNN_PLANES * model->max_window_words * sizeof(uint64_t);
    parts[7] = qsnn_round8(model->stem_taps * sizeof(uint32_t));
}

void qsnn_path_init(const qsnn_model_t *model, uint8_t *const *start)
{
    qsnn_host_scratch_t *views = (qsnn_host_scratch_t *)(void *)start[0];
    views->currents = (int32_t *)(void *)start[1];
    views->spiked = start[2];
    views->stem_weight = (int16_t *)(void *)start[3];
    views->negative = (int32_t *)(void *)start[4];
    views->acc = (int32_t *)(void *)start[5];
    views->window = (uint64_t *)(void *)start[6];
    views->tap_offsets = (uint32_t *)(void *)start[7];
    qsnn_host_stem_init(model, views);
}
