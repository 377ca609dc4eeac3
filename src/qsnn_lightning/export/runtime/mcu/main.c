/*
 * Q-SNN on a microcontroller under QEMU (semihosting): the program of both
 * ../cortex-m4 and ../rv32, which differ only in their qsnn_port.h (console
 * set-up and the counter read around the inferences) and startup code.
 *
 * Streams every sample embedded in samples.h through the runtime with
 * qsnn_classify() (a reset, then T steps: the sample's image at every step, or
 * frame t at step t for an event model) in a context whose workspace is a
 * static buffer, and prints, through semihosting stdout, one line per sample in
 * the format of expected.txt:
 *
 *   <predicted class> <logit_0> ... <logit_{classes-1}>
 *
 * then on stderr "stack_bytes=<measured stack high-water>" and
 * "<QSNN_PORT_COUNTER>=<counts inside the inferences> samples=<N>" (the
 * Cortex-M4 counts SysTick ticks, the RISC-V core retired instructions:
 * see each target's README.txt). Every stderr line starts with a letter and
 * every stdout line with a digit, so a console that mixes the two can be split.
 * Returns 0 (QEMU's exit status), 1 if the runtime returns an error status or
 * the stack overflowed its reserve.
 *
 * Built with -DQSNN_WORST_CASE (the measure target's worst-case image), it runs
 * one inference on the densest input, every int8 of the sample 127, through the
 * runtime's worst-case build (qsnn_internal.h's QSNN_WORST).
 */
#include <stdint.h>
#include <stdio.h>

#include "qsnn_mcu.h"
#include "qsnn_port.h"
#include "qsnn.h"
#include "qsnn_model.h"
#include "samples.h"

#define QSNN_BILLION 1000000000u

static uint64_t qsnn_workspace[(QSNN_EXPORT_CTX_BYTES + 7u) / 8u];
static int32_t qsnn_logits[QSNN_EXPORT_CLASSES];

#if defined(QSNN_WORST_CASE)
#define QSNN_RUNS 1u
/* beside the samples, outside the flash and RAM (linker.ld's SENSOR): the image fits as the normal one does */
static const int8_t qsnn_dense[QSNN_EXPORT_SAMPLE_SIZE] __attribute__((section(".rodata.qsnn_samples"))) = {
    [0 ... QSNN_EXPORT_SAMPLE_SIZE - 1] = 127};
#define QSNN_SAMPLE(n) qsnn_dense
#else
#define QSNN_RUNS QSNN_NUM_SAMPLES
#define QSNN_SAMPLE(n) qsnn_samples[n]
#endif

/* A sum of counts up to 2^32 billions, kept as billions and units: printed in
 * decimal without 64-bit division (small libcs' printf may lack %llu). */
typedef struct {
    uint32_t billions, units;
} qsnn_total_t;

static void qsnn_total_add(qsnn_total_t *total, uint32_t count)
{
    total->billions += count / QSNN_BILLION;
    total->units += count % QSNN_BILLION;
    if (total->units >= QSNN_BILLION) {
        total->units -= QSNN_BILLION;
        ++total->billions;
    }
}

int main(void)
{
    const qsnn_model_t *model = &QSNN_EXPORT_MODEL;
    char line[80];
    qsnn_total_t counted = {0u, 0u};
    qsnn_ctx_t ctx;
    qsnn_status status;
    uint32_t stack_bytes;
    int n, j;

    qsnn_port_init();
#if defined(QSNN_WORST_CASE)
    (void)qsnn_samples;   /* unused here: this image runs the dense sample */
#endif
    status = qsnn_init(&ctx, model, qsnn_workspace, sizeof qsnn_workspace);
    for (n = 0; n < (int)QSNN_RUNS; ++n) {
        int pred = 0;
        uint32_t start = qsnn_port_count();
        if (status == QSNN_OK) {
            status = qsnn_classify(model, &ctx, QSNN_SAMPLE(n), QSNN_EXPORT_SAMPLE_SIZE, qsnn_logits,
                                   QSNN_EXPORT_CLASSES, &pred);
        }
        qsnn_total_add(&counted, qsnn_port_elapsed(start, qsnn_port_count()));
        if (status != QSNN_OK) {
            fflush(stdout);
            snprintf(line, sizeof line, "the runtime returned status %d\n", (int)status);
            fputs(line, stderr);
            return 1;
        }
        printf("%d", pred);
        for (j = 0; j < (int)QSNN_EXPORT_CLASSES; ++j) {
            printf(" %ld", (long)qsnn_logits[j]);
        }
        putchar('\n');
    }
    fflush(stdout);

    /* snprintf + fputs: an unbuffered fprintf(stderr, ...) would put a
     * BUFSIZ (1 KB) buffer on newlib's stack after the measurement. */
    stack_bytes = qsnn_stack_high_water();
    snprintf(line, sizeof line, "stack_bytes=%lu\n", (unsigned long)stack_bytes);
    fputs(line, stderr);
    if (counted.billions != 0u) {
        snprintf(line, sizeof line, "%s=%lu%09lu samples=%d\n", QSNN_PORT_COUNTER, (unsigned long)counted.billions,
                 (unsigned long)counted.units, (int)QSNN_RUNS);
    } else {
        snprintf(line, sizeof line, "%s=%lu samples=%d\n", QSNN_PORT_COUNTER, (unsigned long)counted.units,
                 (int)QSNN_RUNS);
    }
    fputs(line, stderr);
    if (stack_bytes >= (uint32_t)(uintptr_t)__stack_size) {
        fputs("stack overflow: raise __stack_size in linker.ld\n", stderr);
        return 1;
    }
    return 0;
}
