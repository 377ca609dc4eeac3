/* qsnn.c: the API of include/qsnn.h: the workspace's layout, the checks, and one time step as the
 * stages in order (the kernels: qsnn_internal.h). */
#include <string.h>

#include "qsnn_internal.h"

/* The workspace: the arena, the summed logits, the head's features, the padded frame, the path's
 * levels, then its scratch parts, each a multiple of 8 bytes (the generated <NAME>_CTX_BYTES is
 * the same sum). */
enum { ARENA, SUMMED, FEATURES, PADDED, LEVELS, SCRATCH, PARTS = SCRATCH + QSNN_SCRATCH_PARTS };

static size_t padded_bytes(const qsnn_model_t *model)
{
    return (size_t)model->input_channels * (model->input_height + 2u * model->stem_padding)
           * (model->input_width + 2u * model->stem_padding);
}

/* The bytes of each part; returns their total. */
static size_t workspace_parts(const qsnn_model_t *model, size_t *parts)
{
    size_t total = 0, i;
    parts[ARENA] = qsnn_round8((size_t)model->arena_words * sizeof(uint32_t));
    parts[SUMMED] = qsnn_round8((size_t)model->classes * sizeof(int32_t));
    parts[FEATURES] = qsnn_round8((size_t)model->head_features * sizeof(int32_t));
    parts[PADDED] = qsnn_round8(padded_bytes(model));
    qsnn_path_parts(model, &parts[LEVELS], &parts[SCRATCH]);
    for (i = 0; i < PARTS; ++i) total += parts[i];
    return total;
}

qsnn_status qsnn_workspace_bytes(const qsnn_model_t *model, size_t *bytes)
{
    size_t parts[PARTS];
    if (model == NULL || bytes == NULL) return QSNN_ERROR_NULL;
    if (model->version != QSNN_MODEL_VERSION || !qsnn_path_accepts(model)) return QSNN_ERROR_MODEL;
    if (model->event_frames && !QSNN_EVENT_KERNELS) return QSNN_ERROR_MODEL;   /* a build for static images */
    *bytes = workspace_parts(model, parts);
    return QSNN_OK;
}

qsnn_status qsnn_init(qsnn_ctx_t *ctx, const qsnn_model_t *model, void *workspace, size_t bytes)
{
    size_t parts[PARTS], needed, i;
    uint8_t *start[PARTS];
    qsnn_status status;
    if (ctx == NULL || workspace == NULL) return QSNN_ERROR_NULL;
    memset(ctx, 0, sizeof *ctx);   /* unbound until the end */
    status = qsnn_workspace_bytes(model, &needed);
    if (status != QSNN_OK) return status;
    if (bytes < needed || (uintptr_t)workspace % 8u != 0u) return QSNN_ERROR_BUFFER;
    workspace_parts(model, parts);
    for (start[0] = (uint8_t *)workspace, i = 1; i < PARTS; ++i) start[i] = start[i - 1] + parts[i - 1];
    ctx->arena = (uint32_t *)(void *)start[ARENA];
    ctx->summed = (int32_t *)(void *)start[SUMMED];
    ctx->features = (int32_t *)(void *)start[FEATURES];
    memset(ctx->features, 0, parts[FEATURES]);   /* head.c keeps them 0 between steps */
    ctx->padded = (int8_t *)start[PADDED];
    memset(ctx->padded, 0, parts[PADDED]);   /* the border stays 0: qsnn_pad_frame writes the inside */
    ctx->levels = start[LEVELS];
    ctx->levels_bytes = parts[LEVELS];
    qsnn_path_init(model, &start[SCRATCH]);
    ctx->scratch = start[SCRATCH];
    ctx->model = model;
    return qsnn_reset(model, ctx);
}

/* A context bound to `model` by qsnn_init(): a zeroed or foreign one is refused. */
static qsnn_status check_context(const qsnn_model_t *model, const qsnn_ctx_t *ctx)
{
    if (model == NULL || ctx == NULL) return QSNN_ERROR_NULL;
    return ctx->model == model ? QSNN_OK : QSNN_ERROR_CONTEXT;
}

qsnn_status qsnn_reset(const qsnn_model_t *model, qsnn_ctx_t *ctx)
{
    qsnn_status status = check_context(model, ctx);
    if (status != QSNN_OK) return status;
    memset(ctx->levels, 0, ctx->levels_bytes);   /* level 0 is the all-zero field, or int8 0 */
    memset(ctx->summed, 0, model->classes * sizeof *ctx->summed);
    return QSNN_OK;
}

/* The checks every inference call makes before it changes anything. */
static qsnn_status check_inference(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const int8_t *input,
                                   const int32_t *logits, const int *predicted, size_t capacity)
{
    qsnn_status status = check_context(model, ctx);
    if (status != QSNN_OK) return status;
    if (input == NULL || logits == NULL || predicted == NULL) return QSNN_ERROR_NULL;
    return capacity < model->classes ? QSNN_ERROR_BUFFER : QSNN_OK;
}

/* One step, the arguments checked: the stages in order, the head, the summed logits out. */
static void run_step(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const int8_t *frame, int32_t *logits,
                     int *predicted)
{
    uint32_t i;
    int best = 0;
    for (i = 0; i < model->num_stages; ++i) {
        const qsnn_stage_t *stage = &model->stages[i];
        if (stage->kind == QSNN_STAGE_STEM) {
            qsnn_run_stem(model, ctx, stage, &model->maps[i], frame);
        } else if (stage->kind == QSNN_STAGE_CONV) {
            qsnn_run_conv(model, ctx, stage, &model->maps[i]);
        } else {
            qsnn_run_pool(ctx, &model->maps[stage->source], &model->maps[i]);
        }
    }
    qsnn_run_head(model, ctx);
    for (i = 0; i < model->classes; ++i) {
        logits[i] = ctx->summed[i];
        if (ctx->summed[i] > ctx->summed[best]) best = (int)i;
    }
    *predicted = best;
}

qsnn_status qsnn_step(const qsnn_model_t *model, qsnn_ctx_t *ctx, const int8_t *frame, size_t frame_size,
                      int32_t *logits, size_t capacity, int *predicted)
{
    qsnn_status status = check_inference(model, ctx, frame, logits, predicted, capacity);
    if (status != QSNN_OK) return status;
    if (frame_size != model->frame_size) return QSNN_ERROR_SIZE;
    run_step(model, ctx, frame, logits, predicted);
    return QSNN_OK;
}

qsnn_status qsnn_classify(const qsnn_model_t *model, qsnn_ctx_t *ctx, const int8_t *sample, size_t sample_size,
                          int32_t *logits, size_t capacity, int *predicted)
{
    uint32_t t;
    qsnn_status status = check_inference(model, ctx, sample, logits, predicted, capacity);
    if (status != QSNN_OK) return status;
    if (sample_size != model->sample_size) return QSNN_ERROR_SIZE;
    qsnn_reset(model, ctx);
    for (t = 0; t < model->timesteps; ++t) {
        run_step(model, ctx, sample + (model->event_frames ? t * model->frame_size : 0u), logits, predicted);
    }
    return QSNN_OK;
}
