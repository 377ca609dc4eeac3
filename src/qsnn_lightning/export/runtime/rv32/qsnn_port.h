/*
 * The RISC-V side of ../mcu/main.c: picolibc's semihosting console (stdin,
 * stdout and stderr are one unbuffered stream, so nothing to set up) and the
 * minstret CSR, the machine-mode count of retired instructions, read around
 * the inferences. It counts instructions directly (QEMU's -icount shift=0
 * makes it deterministic); 32 bits wrap after 4.29 G instructions, far above
 * one inference.
 */
#ifndef QSNN_PORT_H
#define QSNN_PORT_H

#include <stdint.h>

#define QSNN_PORT_COUNTER "rv32_instret"

static inline void qsnn_port_init(void)
{
}

/* csrr of minstret (low 32 bits). GCC 12's -march=rv32imac has no Zicsr in
 * the assembler's view (binutils 2.38+), and rv32imac_zicsr would miss
 * picolibc's rv32imac/ilp32 multilib, so the extension is enabled here only. */
static inline uint32_t qsnn_port_count(void)
{
    uint32_t count;
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrr %0, minstret\n\t.option pop" : "=r"(count));
    return count;
}

static inline uint32_t qsnn_port_elapsed(uint32_t start, uint32_t end)
{
    return end - start;
}

#endif
