/* workspace_packed.c: the workspace of the microcontroller and reference paths: k-bit levels
 * packed 32 / field_bits to a word (the model's state_words), one pixel's currents, and the
 * event-driven conv's active sets (qsnn_packed_scratch_t). */
#include "qsnn_internal.h"

int qsnn_path_accepts(const qsnn_model_t *model)
{
    return model->field_bits == 2u || model->field_bits == 4u || model->field_bits == 8u;
}

typedef char qsnn_packed_scratch_fits[sizeof(qsnn_packed_scratch_t) <= QSNN_SCRATCH_STRUCT_BYTES ? 1 : -1];

/* The levels; the scratch: the struct of pointers, then its buffers in its order. */
void qsnn_path_parts(const qsnn_model_t *model, size_t *levels, size_t *parts)
{
    *levels = qsnn_round8(model->state_words * sizeof(uint32_t));
    parts[0] = QSNN_SCRATCH_STRUCT_BYTES;
    parts[1] = qsnn_round8(QSNN_CURRENTS(model) * sizeof(int32_t));
    parts[2] = qsnn_round8((model->max_channels + 31u) * sizeof(int32_t));
    parts[3] = qsnn_round8(model->max_active * sizeof(uint32_t));
    parts[4] = qsnn_round8(model->max_chunks * sizeof(uint32_t));
    parts[5] = model->max_taps * QSNN_POINTER_BYTES;
    parts[6] = qsnn_round8(model->stem_taps);
    parts[7] = qsnn_round8(model->stem_taps / 2u * sizeof(int32_t));
}

void qsnn_path_init(const qsnn_model_t *model, uint8_t *const *start)
{
    qsnn_packed_scratch_t *views = (qsnn_packed_scratch_t *)(void *)start[0];
    views->currents = (int32_t *)(void *)start[1];
    views->negative = (int32_t *)(void *)start[2];
    views->active = (uint32_t *)(void *)start[3];
    views->chunk_end = (uint32_t *)(void *)start[4];
    views->sources = (const uint32_t **)(void *)start[5];
    views->taps = (int8_t *)start[6];
    views->pairs = (int32_t *)(void *)start[7];
    (void)model;   /* nothing derived: the kernels read the model as it is */
}
