/*
 * The Cortex-M4's side of ../mcu/main.c: newlib's semihosting console and
 * SysTick, the ARMv7-M system timer, read around the inferences.
 *
 * SysTick counts down 24 bits on the processor clock, without its interrupt.
 * With QEMU's -icount shift=0 one instruction takes 1 ns and a tick of this
 * board's 25 MHz clock 40 ns: instructions = 40 * ticks. One inference must
 * take under 2^24 ticks (671 M instructions): the counter wraps.
 */
#ifndef QSNN_PORT_H
#define QSNN_PORT_H

#include <stdint.h>
#include <stdio.h>

#define QSNN_PORT_COUNTER "m4_ticks"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_MASK 0xFFFFFFu

extern void initialise_monitor_handles(void); /* newlib librdimon */

/* A static stdout buffer: newlib would otherwise malloc BUFSIZ bytes for it. */
static char qsnn_stdout_buf[256];

static inline void qsnn_port_init(void)
{
    initialise_monitor_handles();
    setvbuf(stdout, qsnn_stdout_buf, _IOFBF, sizeof qsnn_stdout_buf);
    SYST_RVR = SYST_MASK;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* enable, processor clock */
}

static inline uint32_t qsnn_port_count(void)
{
    return SYST_CVR;
}

/* Ticks from start to end: SysTick counts down, modulo 2^24. */
static inline uint32_t qsnn_port_elapsed(uint32_t start, uint32_t end)
{
    return (start - end) & SYST_MASK;
}

#endif
