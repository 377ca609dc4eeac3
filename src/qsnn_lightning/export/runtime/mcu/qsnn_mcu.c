/*
 * Memory set-up and stack measurement shared by the microcontroller programs
 * (see qsnn_mcu.h). Called by the startup code before .data and .bss exist,
 * so it touches no global variable.
 */
#include "qsnn_mcu.h"

extern uint32_t __etext_data_load[];
extern uint32_t __data_start__[];
extern uint32_t __data_end__[];
extern uint32_t __bss_start__[];
extern uint32_t __bss_end__[];
extern uint32_t __StackLimit[];
extern uint32_t __StackTop[];

/* Bytes just below the caller's stack pointer left unpainted: this function's
 * own frame (none at -O2, a few saved registers at -O0). They lie in the part
 * of the stack that startup uses anyway, so the measurement is unchanged. */
#define QSNN_PAINT_MARGIN 64u

void qsnn_init_memory(uintptr_t sp)
{
    /* volatile: keeps GCC from turning the loops into memcpy/memset calls. */
    volatile uint32_t *dst;
    const volatile uint32_t *src = __etext_data_load;

    for (dst = __data_start__; dst < __data_end__; ++dst, ++src) {
        *dst = *src;
    }
    for (dst = __bss_start__; dst < __bss_end__; ++dst) {
        *dst = 0u;
    }
    for (dst = __StackLimit; (uintptr_t)dst < sp - QSNN_PAINT_MARGIN; ++dst) {
        *dst = QSNN_STACK_PAINT;
    }
}

uint32_t qsnn_stack_high_water(void)
{
    const volatile uint32_t *p = __StackLimit;
    while (p < __StackTop && *p == QSNN_STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)__StackTop - (uintptr_t)p);
}
