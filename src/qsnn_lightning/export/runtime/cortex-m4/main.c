/*
 * Q-SNN on Cortex-M4 (QEMU mps2-an386, semihosting).
 *
 * Runs qsnn_classify() on every image embedded in samples.h (in flash) and
 * prints, through semihosting stdout, one line per image in the format of
 * expected.txt:
 *
 *   <predicted class> <logit_0> ... <logit_{QSNN_CLASSES-1}>
 *
 * then one line on stderr: "stack_bytes=<measured stack high-water>" and
 * returns 0 (QEMU's exit status). Returns 1 if qsnn_classify returns a class
 * out of range, or if the stack overflowed its reserve.
 *
 * samples.h (generated) must provide QSNN_NUM_SAMPLES and
 *   static const int8_t qsnn_samples[QSNN_NUM_SAMPLES][QSNN_INPUT_SIZE];
 */
#include <stdint.h>
#include <stdio.h>

#include "qsnn_runtime.h"
#include "samples.h"

extern void initialise_monitor_handles(void); /* newlib librdimon */
extern uint32_t qsnn_stack_high_water(void);  /* startup.c */
extern uint32_t __stack_size[];               /* linker.ld: address == reserve size */

/* A static stdout buffer: newlib would otherwise malloc BUFSIZ bytes for it. */
static char qsnn_stdout_buf[256];
static int32_t qsnn_logits[QSNN_CLASSES];

int main(void)
{
    char line[48];
    uint32_t stack_bytes;
    int n, j;

    initialise_monitor_handles();
    setvbuf(stdout, qsnn_stdout_buf, _IOFBF, sizeof qsnn_stdout_buf);

    for (n = 0; n < (int)QSNN_NUM_SAMPLES; ++n) {
        int pred = qsnn_classify(qsnn_samples[n], qsnn_logits);
        if (pred < 0 || pred >= (int)QSNN_CLASSES) {
            fflush(stdout);
            snprintf(line, sizeof line, "qsnn_classify returned %d\n", pred);
            fputs(line, stderr);
            return 1;
        }
        printf("%d", pred);
        for (j = 0; j < (int)QSNN_CLASSES; ++j) {
            printf(" %ld", (long)qsnn_logits[j]);
        }
        putchar('\n');
    }
    fflush(stdout);

    /* snprintf + fputs: an unbuffered fprintf(stderr, ...) would put a
     * BUFSIZ (1 KB) buffer on the stack after the measurement. */
    stack_bytes = qsnn_stack_high_water();
    snprintf(line, sizeof line, "stack_bytes=%lu\n", (unsigned long)stack_bytes);
    fputs(line, stderr);
    if (stack_bytes >= (uint32_t)(uintptr_t)__stack_size) {
        fputs("stack overflow: raise __stack_size in linker.ld\n", stderr);
        return 1;
    }
    return 0;
}
