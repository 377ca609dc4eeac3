/* Two exported models interleaved on a microcontroller under QEMU (tests/test_export.py links it
 * with the part's startup code, the runtime's microcontroller path, the two exports' qsnn_model.c,
 * generated with --c-name FIRST and SECOND, and their samples and workspaces, tests/c/export_of.c):
 * for sample i, step t of the first model, then step t of the second, until both ran T steps; then
 * the lines "1 <class> <logit_0> ..." and "2 <class> ..." (digits first, as the RV32 console split
 * wants). Returns 1 (QEMU's exit status) on a status other than QSNN_OK. */
#include <stdio.h>

#include "qsnn.h"
#include "qsnn_port.h"

extern const qsnn_model_t FIRST, SECOND;
extern const int8_t *const first_samples, *const second_samples;
extern const uint32_t first_count, second_count;
extern uint64_t first_workspace[], second_workspace[];
extern const size_t first_workspace_bytes, second_workspace_bytes;

typedef struct {
    const qsnn_model_t *model;
    qsnn_ctx_t ctx;
    const int8_t *samples;
    int32_t logits[16];
    int predicted;
} runner_t;

static int step(runner_t *runner, uint32_t sample, uint32_t t)
{
    const qsnn_model_t *model = runner->model;
    const int8_t *frame = runner->samples + sample * model->sample_size + (model->event_frames ? t * model->frame_size : 0u);
    if (t >= model->timesteps) return QSNN_OK;
    return qsnn_step(model, &runner->ctx, frame, model->frame_size, runner->logits, 16u, &runner->predicted);
}

static void print(int index, const runner_t *runner)
{
    uint32_t j;
    printf("%d %d", index, runner->predicted);
    for (j = 0; j < runner->model->classes; ++j) printf(" %ld", (long)runner->logits[j]);
    putchar('\n');
}

int main(void)
{
    static runner_t first, second;
    uint32_t n, t;
    int status;
    qsnn_port_init();
    first.model = &FIRST;
    first.samples = first_samples;
    second.model = &SECOND;
    second.samples = second_samples;
    status = qsnn_init(&first.ctx, &FIRST, first_workspace, first_workspace_bytes);
    if (status == QSNN_OK) status = qsnn_init(&second.ctx, &SECOND, second_workspace, second_workspace_bytes);
    for (n = 0; n < first_count && n < second_count && status == QSNN_OK; ++n) {
        status = qsnn_reset(first.model, &first.ctx);
        if (status == QSNN_OK) status = qsnn_reset(second.model, &second.ctx);
        for (t = 0; (t < first.model->timesteps || t < second.model->timesteps) && status == QSNN_OK; ++t) {
            status = step(&first, n, t);
            if (status == QSNN_OK) status = step(&second, n, t);
        }
        print(1, &first);
        print(2, &second);
    }
    fflush(stdout);
    return status == QSNN_OK ? 0 : 1;
}
