/*
 * What the microcontroller programs (../cortex-m4, ../rv32) share: the memory
 * set-up their startup code calls before main() and the stack high-water.
 *
 * Each target's linker.ld defines the same symbols: __etext_data_load (load
 * address of .data in flash), __data_start__/__data_end__,
 * __bss_start__/__bss_end__, __StackLimit/__StackTop and __stack_size.
 */
#ifndef QSNN_MCU_H
#define QSNN_MCU_H

#include <stdint.h>

#define QSNN_STACK_PAINT 0xA5C3A5C3u

extern uint32_t __stack_size[]; /* linker.ld: its address is the stack reserve in bytes */

/* Copies .data from flash, zeroes .bss and paints the free stack below sp
 * (the stack pointer of the caller) with QSNN_STACK_PAINT. */
void qsnn_init_memory(uintptr_t sp);

/* Bytes of stack used so far (high-water), measured from the painted area;
 * the whole reserve if its lowest word was overwritten (overflow). */
uint32_t qsnn_stack_high_water(void);

#endif
