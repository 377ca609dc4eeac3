/* Two exported models in one program, interleaved step by step (tests/test_export.py links it with
 * the runtime once and the two exports' qsnn_model.c, generated with --c-name FIRST and SECOND):
 *
 *   two_models FIRST_SAMPLES.bin SECOND_SAMPLES.bin
 *
 * Each model has its own context, its workspace from malloc (qsnn_workspace_bytes); for sample i of
 * each file, step t of the first model, then step t of the second, until both have run their T
 * steps; then the lines "first <class> <logit_0> ..." and "second <class> ...". Exit status 1 and a
 * line on stderr on any status other than QSNN_OK. */
#include <stdio.h>
#include <stdlib.h>

#include "qsnn.h"

extern const qsnn_model_t FIRST, SECOND;

typedef struct {
    const char *name;
    const qsnn_model_t *model;
    qsnn_ctx_t ctx;
    void *workspace;
    int8_t *samples;
    long count;
    int32_t logits[64];
    int predicted;
} runner_t;

static void ok(qsnn_status status, const char *what)
{
    if (status != QSNN_OK) {
        fprintf(stderr, "two_models: %s: status %d\n", what, (int)status);
        exit(1);
    }
}

static void open_runner(runner_t *runner, const char *name, const qsnn_model_t *model, const char *path)
{
    size_t bytes;
    FILE *f = fopen(path, "rb");
    long size;
    runner->name = name;
    runner->model = model;
    ok(qsnn_workspace_bytes(model, &bytes), "qsnn_workspace_bytes");
    runner->workspace = malloc(bytes);
    ok(qsnn_init(&runner->ctx, model, runner->workspace, bytes), "qsnn_init");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) <= 0) exit(2);
    rewind(f);
    runner->samples = malloc((size_t)size);
    if (runner->samples == NULL || fread(runner->samples, 1, (size_t)size, f) != (size_t)size) exit(2);
    fclose(f);
    runner->count = size / (long)model->sample_size;
}

static void step(runner_t *runner, long sample, uint32_t t)
{
    const qsnn_model_t *model = runner->model;
    const int8_t *frame = runner->samples + sample * (long)model->sample_size
                          + (model->event_frames ? t * model->frame_size : 0u);
    if (t < model->timesteps) {
        ok(qsnn_step(model, &runner->ctx, frame, model->frame_size, runner->logits,
                     sizeof runner->logits / sizeof runner->logits[0], &runner->predicted), "qsnn_step");
    }
}

static void print(const runner_t *runner)
{
    uint32_t j;
    printf("%s %d", runner->name, runner->predicted);
    for (j = 0; j < runner->model->classes; ++j) printf(" %ld", (long)runner->logits[j]);
    putchar('\n');
}

int main(int argc, char **argv)
{
    static runner_t first, second;
    long n;
    uint32_t t;
    if (argc != 3) return 2;
    open_runner(&first, "first", &FIRST, argv[1]);
    open_runner(&second, "second", &SECOND, argv[2]);
    for (n = 0; n < first.count && n < second.count; ++n) {
        ok(qsnn_reset(first.model, &first.ctx), "qsnn_reset");
        ok(qsnn_reset(second.model, &second.ctx), "qsnn_reset");
        for (t = 0; t < first.model->timesteps || t < second.model->timesteps; ++t) {
            step(&first, n, t);
            step(&second, n, t);
        }
        print(&first);
        print(&second);
    }
    free(first.workspace);
    free(second.workspace);
    free(first.samples);
    free(second.samples);
    return 0;
}
