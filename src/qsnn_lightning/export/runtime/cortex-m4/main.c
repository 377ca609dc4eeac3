/*
 * Q-SNN on Cortex-M4 (QEMU mps2-an386, semihosting).
 *
 * Streams every sample embedded in samples.h through the runtime: qsnn_reset(),
 * then QSNN_TIMESTEPS calls of qsnn_step() (the sample's image at every step,
 * or frame t at step t for an event model), and prints, through semihosting
 * stdout, one line per sample in the format of expected.txt:
 *
 *   <predicted class> <logit_0> ... <logit_{QSNN_CLASSES-1}>
 *
 * then on stderr "stack_bytes=<measured stack high-water>" and
 * "m4_ticks=<SysTick ticks inside the inferences> samples=<N>" (with QEMU's
 * -icount shift=0 one instruction takes 1 ns and a tick of the 25 MHz
 * processor clock 40 ns: instructions = 40 * ticks). Returns 0 (QEMU's exit
 * status), 1 if a class is out of range or the stack overflowed its reserve.
 */
#include <stdint.h>
#include <stdio.h>

#include "qsnn_runtime.h"
#include "samples.h"

extern void initialise_monitor_handles(void); /* newlib librdimon */
extern uint32_t qsnn_stack_high_water(void);  /* startup.c */
extern uint32_t __stack_size[];               /* linker.ld: address == reserve size */

/* SysTick (ARMv7-M system timer): 24 bits counting down on the processor clock, no interrupt.
 * One inference must take under 2^24 ticks (671 M instructions under -icount shift=0). */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_MASK 0xFFFFFFu

/* A static stdout buffer: newlib would otherwise malloc BUFSIZ bytes for it. */
static char qsnn_stdout_buf[256];
static int32_t qsnn_logits[QSNN_CLASSES];

int main(void)
{
    char line[64];
    uint32_t stack_bytes, t;
    uint64_t ticks = 0;
    int n, j;

    initialise_monitor_handles();
    setvbuf(stdout, qsnn_stdout_buf, _IOFBF, sizeof qsnn_stdout_buf);
    SYST_RVR = SYST_MASK;
    SYST_CVR = 0u;
    SYST_CSR = 5u;   /* enable, processor clock */

    for (n = 0; n < (int)QSNN_NUM_SAMPLES; ++n) {
        int pred = 0;
        uint32_t start = SYST_CVR;
        qsnn_reset();
        for (t = 0; t < QSNN_TIMESTEPS; ++t) {
            pred = qsnn_step(qsnn_samples[n] + (QSNN_EVENT_FRAMES ? t * QSNN_FRAME_SIZE : 0u), qsnn_logits);
        }
        ticks += (start - SYST_CVR) & SYST_MASK;
        if (pred < 0 || pred >= (int)QSNN_CLASSES) {
            fflush(stdout);
            snprintf(line, sizeof line, "qsnn_step returned %d\n", pred);
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
    snprintf(line, sizeof line, "m4_ticks=%lu samples=%d\n", (unsigned long)ticks, (int)QSNN_NUM_SAMPLES);
    fputs(line, stderr);
    if (stack_bytes >= (uint32_t)(uintptr_t)__stack_size) {
        fputs("stack overflow: raise __stack_size in linker.ld\n", stderr);
        return 1;
    }
    return 0;
}
