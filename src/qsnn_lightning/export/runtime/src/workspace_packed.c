/* workspace_packed.c: the workspace of the microcontroller and reference paths: k-bit levels
 * packed 32 / field_bits to a word (the model's state_words), one pixel's currents, and the
 * event-driven conv's active sets (qsnn_packed_scratch_t). */
#include "qsnn_internal.h"

int qsnn_path_accepts(const qsnn_model_t *model)
{
    return model->field_bits == 2u || model->field_bits == 4u || model->field_bits == 8u;
}

#define SCRATCH_PARTS 8u
#define STRUCT_BYTES (8u * QSNN_POINTER_BYTES)   /* codegen.py's budget for the struct of pointers */

typedef char qsnn_packed_scratch_fits[sizeof(qsnn_packed_scratch_t) <= STRUCT_BYTES ? 1 : -1];

/* The scratch's parts: the struct of pointers, then its buffers in its order. */
static void scratch_parts(const qsnn_model_t *model, size_t *parts)
{
    parts[0] = STRUCT_BYTES;
    parts[1] = qsnn_round8(model->max_channels * sizeof(int32_t));
    parts[2] = qsnn_round8((model->max_channels + 31u) * sizeof(int32_t));
    parts[3] = qsnn_round8(model->max_active * sizeof(uint32_t));
    parts[4] = qsnn_round8(model->max_chunks * sizeof(uint32_t));
    parts[5] = QSNN_PLANES * model->max_taps * QSNN_POINTER_BYTES;
    parts[6] = qsnn_round8(model->stem_taps);
    parts[7] = qsnn_round8(model->stem_taps / 2u * sizeof(int32_t));
}

void qsnn_path_bytes(const qsnn_model_t *model, size_t *levels, size_t *scratch)
{
    size_t parts[SCRATCH_PARTS], i;
    scratch_parts(model, parts);
    *levels = qsnn_round8(model->state_words * sizeof(uint32_t));
    for (*scratch = 0, i = 0; i < SCRATCH_PARTS; ++i) *scratch += parts[i];
}

void qsnn_path_bind(const qsnn_model_t *model, qsnn_ctx_t *ctx, uint8_t *levels, uint8_t *scratch)
{
    qsnn_packed_scratch_t *views = (qsnn_packed_scratch_t *)(void *)scratch;
    size_t parts[SCRATCH_PARTS];
    scratch_parts(model, parts);
    scratch += parts[0];
    views->currents = (int32_t *)(void *)scratch;
    views->negative = (int32_t *)(void *)(scratch += parts[1]);
    views->active = (uint32_t *)(void *)(scratch += parts[2]);
    views->chunk_end = (uint32_t *)(void *)(scratch += parts[3]);
    views->sources = (const uint32_t **)(void *)(scratch += parts[4]);
    views->taps = (int8_t *)(scratch += parts[5]);
    views->pairs = (int32_t *)(void *)(scratch + parts[6]);
    ctx->levels = levels;
    ctx->scratch = views;
}
