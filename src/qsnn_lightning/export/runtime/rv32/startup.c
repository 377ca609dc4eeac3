/*
 * Minimal RISC-V (RV32, machine mode) startup for QEMU's virt board with
 * -bios none, linked with linker.ld and picolibc's semihosting library:
 * --specs=picolibc.specs --oslib=semihost -nostartfiles (in place of
 * picolibc's crt0-semihost.o, which also reserves 1 KB for a command line).
 *
 * _start: sets gp (linker relaxation), tp (picolibc's thread-local errno),
 * sp (top of RAM) and mtvec (qsnn_trap), then qsnn_start() copies .data,
 * zeroes .bss and paints the free stack (qsnn_init_memory() of
 * ../mcu/qsnn_mcu.c) and leaves through picolibc's exit(), whose semihosting
 * _exit() reports main's return value: QEMU's exit status is main's.
 *
 * Any trap (there are no interrupts enabled) goes to qsnn_trap, which prints
 * mcause and mepc on the semihosting console and stops with a semihosting
 * "run-time error" exit: QEMU exits with status 1.
 */
#include <semihost.h>
#include <stdint.h>
#include <stdlib.h>

#include "qsnn_mcu.h"

extern int main(void);
void qsnn_start(void);
void qsnn_trap(void);

__asm__(
    "    .section .text.qsnn_entry, \"ax\", @progbits\n"
    "    .globl _start\n"
    "_start:\n"
    "    .option push\n"
    "    .option norelax\n"
    "    la gp, __global_pointer$\n"
    "    .option pop\n"
    "    la tp, __tls_base\n"
    "    la sp, __StackTop\n"
    "    .option push\n"
    "    .option arch, +zicsr\n"
    "    la t0, qsnn_trap\n"
    "    csrw mtvec, t0\n"
    "    .option pop\n"
    "    j qsnn_start\n");

void qsnn_start(void)
{
    uintptr_t sp;

    /* Everything below the current stack pointer is unused: it is painted. */
    __asm__ volatile("mv %0, sp" : "=r"(sp));
    qsnn_init_memory(sp);
    exit(main());
}

static void qsnn_hex(char *out, uint32_t value)
{
    int i;
    for (i = 7; i >= 0; --i, value >>= 4) {
        out[i] = "0123456789abcdef"[value & 0xFu];
    }
}

/* Direct mode: mtvec's low two bits are the mode, so the handler is 4-byte aligned. */
__attribute__((aligned(4), noreturn)) void qsnn_trap(void)
{
    static char msg[] = "qsnn-rv32: fatal trap mcause=0x######## mepc=0x########\n";
    uint32_t cause, pc;
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrr %0, mcause\n\tcsrr %1, mepc\n\t.option pop"
                     : "=r"(cause), "=r"(pc));
    qsnn_hex(msg + 31, cause);
    qsnn_hex(msg + 47, pc);
    sys_semihost_write0(msg);
    sys_semihost_exit(ADP_Stopped_RunTimeErrorUnknown, 0);
}
