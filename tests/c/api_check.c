/* The status codes of include/qsnn.h (tests/test_export.py builds it against an export folder, with
 * sanitizers, on each build path):
 *
 *   api_check SAMPLES.bin
 *
 * Every misuse (a NULL pointer, a context not initialized or initialized for another model, an input
 * of the wrong size, too small a buffer, a model the build cannot run) returns its code and changes
 * nothing: the first sample's T steps, with every misuse between them, print the line
 * qsnn_classify() prints, "<class> <logit_0> ...". Exit status 1 and a line on stderr naming the
 * call otherwise. */
#include <stdio.h>
#include <string.h>

#include "qsnn.h"
#include "qsnn_model.h"

static int failures;

static void expect(qsnn_status got, qsnn_status wanted, const char *call)
{
    if (got != wanted) {
        fprintf(stderr, "api_check: %s returned %d, not %d\n", call, (int)got, (int)wanted);
        ++failures;
    }
}

#define EXPECT(call, wanted) expect((call), (wanted), #call)

int main(int argc, char **argv)
{
    static uint64_t workspace[(QSNN_EXPORT_CTX_BYTES + 7u) / 8u + 1u], other_workspace[(QSNN_EXPORT_CTX_BYTES + 7u) / 8u];
    static int8_t sample[QSNN_EXPORT_SAMPLE_SIZE];
    static const qsnn_ctx_t zeroed;
    const qsnn_model_t *model = &QSNN_EXPORT_MODEL;
    qsnn_model_t other = *model, foreign = *model;   /* the same data at another address, and a broken copy */
    const size_t bytes = QSNN_EXPORT_CTX_BYTES, frame = model->frame_size;
    int32_t logits[QSNN_EXPORT_CLASSES], classified[QSNN_EXPORT_CLASSES];
    qsnn_ctx_t ctx, other_ctx, unbound = zeroed;
    size_t needed = 0;
    uint32_t t, j;
    int pred = -1, best = -1;
    FILE *f;
    if (argc != 2 || (f = fopen(argv[1], "rb")) == NULL || fread(sample, 1, sizeof sample, f) != sizeof sample) {
        fprintf(stderr, "usage: api_check SAMPLES.bin\n");
        return 2;
    }
    fclose(f);

    /* the workspace: the generated size, no less, 8-byte aligned; a model of another version or build path */
    EXPECT(qsnn_workspace_bytes(model, &needed), QSNN_OK);
    if (needed != bytes) fprintf(stderr, "api_check: workspace %lu bytes, CTX_BYTES %lu\n", (unsigned long)needed,
                                 (unsigned long)bytes), ++failures;
    EXPECT(qsnn_workspace_bytes(NULL, &needed), QSNN_ERROR_NULL);
    EXPECT(qsnn_workspace_bytes(model, NULL), QSNN_ERROR_NULL);
    EXPECT(qsnn_init(NULL, model, workspace, bytes), QSNN_ERROR_NULL);
    EXPECT(qsnn_init(&ctx, NULL, workspace, bytes), QSNN_ERROR_NULL);
    EXPECT(qsnn_init(&ctx, model, NULL, bytes), QSNN_ERROR_NULL);
    EXPECT(qsnn_init(&ctx, model, workspace, bytes - 1u), QSNN_ERROR_BUFFER);
    EXPECT(qsnn_reset(model, &ctx), QSNN_ERROR_CONTEXT);   /* a failed init leaves it unbound */
    EXPECT(qsnn_init(&ctx, model, (uint8_t *)workspace + 4, bytes), QSNN_ERROR_BUFFER);
    foreign.version = QSNN_MODEL_VERSION + 1u;
    EXPECT(qsnn_init(&ctx, &foreign, workspace, sizeof workspace), QSNN_ERROR_MODEL);
    foreign = *model;
    foreign.dense = NULL;     /* what the host path needs */
    foreign.field_bits = 3u;  /* what the packed paths cannot hold */
    EXPECT(qsnn_init(&ctx, &foreign, workspace, sizeof workspace), QSNN_ERROR_MODEL);
    EXPECT(qsnn_workspace_bytes(&foreign, &needed), QSNN_ERROR_MODEL);
    EXPECT(qsnn_init(&ctx, model, workspace, bytes), QSNN_OK);
    EXPECT(qsnn_init(&other_ctx, &other, other_workspace, sizeof other_workspace), QSNN_OK);
    EXPECT(qsnn_classify(model, &ctx, sample, sizeof sample, classified, QSNN_EXPORT_CLASSES, &best), QSNN_OK);

    /* the first sample's steps, every misuse between them */
    EXPECT(qsnn_reset(model, &ctx), QSNN_OK);
    for (t = 0; t < model->timesteps; ++t) {
        const int8_t *input = sample + (model->event_frames ? t * frame : 0u);
        EXPECT(qsnn_step(model, &unbound, input, frame, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_CONTEXT);
        EXPECT(qsnn_step(model, &other_ctx, input, frame, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_CONTEXT);
        EXPECT(qsnn_step(&other, &ctx, input, frame, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_CONTEXT);
        EXPECT(qsnn_reset(&other, &ctx), QSNN_ERROR_CONTEXT);
        EXPECT(qsnn_reset(model, &unbound), QSNN_ERROR_CONTEXT);
        EXPECT(qsnn_step(NULL, &ctx, input, frame, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_NULL);
        EXPECT(qsnn_step(model, NULL, input, frame, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_NULL);
        EXPECT(qsnn_step(model, &ctx, NULL, frame, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_NULL);
        EXPECT(qsnn_step(model, &ctx, input, frame, NULL, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_NULL);
        EXPECT(qsnn_step(model, &ctx, input, frame, logits, QSNN_EXPORT_CLASSES, NULL), QSNN_ERROR_NULL);
        EXPECT(qsnn_step(model, &ctx, input, frame - 1u, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_SIZE);
        EXPECT(qsnn_step(model, &ctx, input, frame + 1u, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_ERROR_SIZE);
        EXPECT(qsnn_step(model, &ctx, input, frame, logits, QSNN_EXPORT_CLASSES - 1u, &pred), QSNN_ERROR_BUFFER);
        EXPECT(qsnn_classify(model, &ctx, sample, sizeof sample - 1u, logits, QSNN_EXPORT_CLASSES, &pred),
               QSNN_ERROR_SIZE);
        EXPECT(qsnn_classify(model, &other_ctx, sample, sizeof sample, logits, QSNN_EXPORT_CLASSES, &pred),
               QSNN_ERROR_CONTEXT);
        EXPECT(qsnn_reset(NULL, &ctx), QSNN_ERROR_NULL);
        EXPECT(qsnn_step(model, &ctx, input, frame, logits, QSNN_EXPORT_CLASSES, &pred), QSNN_OK);
    }
    printf("%d", pred);
    for (j = 0; j < model->classes; ++j) printf(" %ld", (long)logits[j]);
    printf("\n%d", best);
    for (j = 0; j < model->classes; ++j) printf(" %ld", (long)classified[j]);
    putchar('\n');
    return failures ? 1 : 0;
}
