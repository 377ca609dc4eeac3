/* Streaming checks of an exported runtime (tests/test_export.py builds it against an export folder).
 *
 *   stream_check SAMPLES.bin
 *
 * For each sample, four lines "<section> <class> <logit_0> ...", sections in this order:
 *   classify  qsnn_classify(sample)
 *   steps     qsnn_reset(), then T calls of qsnn_step() (the image, or frame t at step t)
 *   carried   T more steps of the sample *without* a reset, continuing from the previous sample's
 *             state (a reset before sample 0 only): the logits summed over this sample's steps
 *   reset     qsnn_reset() after the carried steps, then T steps again
 * Any status other than QSNN_OK ends it with exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnn.h"
#include "qsnn_model.h"

static const qsnn_model_t *const model = &QSNN_EXPORT_MODEL;
static qsnn_ctx_t ctx;

static void ok(qsnn_status status)
{
    if (status != QSNN_OK) {
        fprintf(stderr, "stream_check: status %d\n", (int)status);
        exit(1);
    }
}

static void print(const char *section, int pred, const int32_t *logits)
{
    uint32_t j;
    printf("%s %d", section, pred);
    for (j = 0; j < model->classes; ++j) printf(" %ld", (long)logits[j]);
    putchar('\n');
}

static int steps(const int8_t *sample, int32_t *logits)
{
    uint32_t t;
    int pred = 0;
    for (t = 0; t < model->timesteps; ++t) {
        ok(qsnn_step(model, &ctx, sample + (model->event_frames ? t * model->frame_size : 0u), model->frame_size,
                     logits, QSNN_EXPORT_CLASSES, &pred));
    }
    return pred;
}

int main(int argc, char **argv)
{
    static uint64_t workspace[(QSNN_EXPORT_CTX_BYTES + 7u) / 8u];
    static int8_t sample[QSNN_EXPORT_SAMPLE_SIZE];
    int32_t logits[QSNN_EXPORT_CLASSES], before[QSNN_EXPORT_CLASSES], carried[QSNN_EXPORT_CLASSES];
    long n = 0;
    uint32_t j;
    int pred;
    FILE *f;
    if (argc != 2 || (f = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: stream_check SAMPLES.bin\n");
        return 2;
    }
    ok(qsnn_init(&ctx, model, workspace, sizeof workspace));
    memset(before, 0, sizeof before);
    while (fread(sample, 1, sizeof sample, f) == sizeof sample) {
        int best = 0;
        ok(qsnn_classify(model, &ctx, sample, sizeof sample, logits, QSNN_EXPORT_CLASSES, &pred));
        print("classify", pred, logits);
        ok(qsnn_reset(model, &ctx));
        print("steps", steps(sample, logits), logits);
        /* carried: the state (and the logit sums) of the previous sample's carried steps go on */
        ok(qsnn_reset(model, &ctx));
        for (j = 0; j < model->classes; ++j) logits[j] = 0;
        if (n > 0) {
            static int8_t previous[QSNN_EXPORT_SAMPLE_SIZE];
            long at = ftell(f);
            fseek(f, at - 2L * (long)sizeof sample, SEEK_SET);
            if (fread(previous, 1, sizeof previous, f) != sizeof previous) return 1;
            fseek(f, at, SEEK_SET);
            steps(previous, before);
        }
        steps(sample, carried);
        for (j = 0; j < model->classes; ++j) {
            logits[j] = carried[j] - (n > 0 ? before[j] : 0);
            if (logits[j] > logits[best]) best = (int)j;
        }
        print("carried", best, logits);
        ok(qsnn_reset(model, &ctx));
        print("reset", steps(sample, logits), logits);
        ++n;
    }
    fclose(f);
    return n > 0 ? 0 : 1;
}
