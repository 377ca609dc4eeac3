/*
 * Minimal Cortex-M4 startup for QEMU's mps2-an386 board (vector table at 0x0,
 * RAM at 0x20000000), linked with linker.ld and newlib's rdimon (semihosting)
 * library: --specs=rdimon.specs -nostartfiles.
 *
 * Reset_Handler: copies .data from flash, zeroes .bss and paints the unused
 * part of the stack (qsnn_init_memory() of ../mcu/qsnn_mcu.c, for the stack
 * high-water measurement), calls initialise_monitor_handles() and main(),
 * and leaves through newlib's exit(),
 * whose rdimon _exit() reports main's return value to the semihosting host
 * (SYS_EXIT_EXTENDED): QEMU's exit status is main's return status.
 *
 * Every other exception goes to Default_Handler, which prints the exception
 * number on the semihosting console (QEMU: stderr) and stops with a
 * semihosting "run-time error" exit: QEMU exits with status 1.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "qsnn_mcu.h"

/* Symbols of linker.ld. */
extern char __HeapBase[];
extern char __HeapLimit[];
extern uint32_t __StackTop[];

extern int main(void);
extern void initialise_monitor_handles(void); /* newlib librdimon */

void Reset_Handler(void);
void Default_Handler(void);
uint32_t qsnn_heap_high_water(void);
void *_sbrk(ptrdiff_t incr);

void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*qsnn_handler_t)(void);

#define QSNN_NUM_IRQS 32 /* external interrupts routed to Default_Handler */

struct qsnn_vector_table {
    uint32_t *initial_sp;
    qsnn_handler_t system[15];
    qsnn_handler_t irq[QSNN_NUM_IRQS];
};

__attribute__((section(".isr_vector"), used))
const struct qsnn_vector_table qsnn_vector_table = {
    __StackTop,
    {
        Reset_Handler,
        NMI_Handler,
        HardFault_Handler,
        MemManage_Handler,
        BusFault_Handler,
        UsageFault_Handler,
        0, 0, 0, 0, /* reserved */
        SVC_Handler,
        DebugMon_Handler,
        0, /* reserved */
        PendSV_Handler,
        SysTick_Handler,
    },
    {
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
        Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    },
};

void Reset_Handler(void)
{
    uint32_t sp;

#if defined(__ARM_FP)
    /* Hard-float build: grant full access to CP10/CP11 (the FPU). */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif

    /* Everything below the current stack pointer is unused: it is painted. */
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    qsnn_init_memory(sp);

    /* Opens the semihosting console handles and, more importantly here, lets
     * librdimon's _exit() detect the SYS_EXIT_EXTENDED extension: without it
     * exit(n) reaches QEMU as a plain SYS_EXIT and QEMU exits with status 0
     * whatever n is. main() calling it again is harmless (it reopens them). */
    initialise_monitor_handles();
    exit(main());
}

/* newlib's malloc gets memory here: only [__HeapBase, __HeapLimit) of
 * linker.ld, never the stack (replaces the weak _sbrk of librdimon). */
static char *qsnn_heap_end;

void *_sbrk(ptrdiff_t incr)
{
    char *prev;
    if (qsnn_heap_end == NULL) {
        qsnn_heap_end = __HeapBase;
    }
    if (incr > __HeapLimit - qsnn_heap_end || incr < __HeapBase - qsnn_heap_end) {
        return (void *)-1; /* malloc then returns NULL */
    }
    prev = qsnn_heap_end;
    qsnn_heap_end += incr;
    return prev;
}

/* Bytes of heap handed to malloc so far. */
uint32_t qsnn_heap_high_water(void)
{
    return qsnn_heap_end == NULL ? 0u : (uint32_t)(qsnn_heap_end - __HeapBase);
}

/* newlib's exit() reaches __libc_fini_array, which calls _fini (normally from
 * crti.o, which -nostartfiles leaves out). There is nothing to finalize in C. */
void _fini(void) __attribute__((weak));
void _fini(void)
{
}

/* --- fatal exceptions: report through semihosting and stop ---------------- */

static int qsnn_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void Default_Handler(void)
{
    static char msg[] = "qsnn-m4: fatal exception ###\n";
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;
    msg[25] = (char)('0' + (ipsr / 100u) % 10u);
    msg[26] = (char)('0' + (ipsr / 10u) % 10u);
    msg[27] = (char)('0' + ipsr % 10u);
    (void)qsnn_semihost(0x04, msg);      /* SYS_WRITE0 */
    for (;;) {
        (void)qsnn_semihost(0x18, (const void *)0x20023u); /* SYS_EXIT, ADP_Stopped_RunTimeErrorUnknown */
    }
}
