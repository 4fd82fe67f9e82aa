/* startup.c - vector table and reset handler of the tinynas firmware (no vendor code needed). */
#include <stdint.h>

#include "tn_port.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_limit, __stack_top;
int main(void);

void Reset_Handler(void) {
    const uint32_t *src = &__data_load;
    for (uint32_t *d = &__data_start; d < &__data_end;) *d++ = *src++;
    for (uint32_t *d = &__bss_start; d < &__bss_end;) *d++ = 0;
    /* Paint the stack below the current frame so tn_stack_used() can measure the peak. */
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *d = &__stack_limit; d < sp - 16;) *d++ = 0xA5A5A5A5u;
#if defined(__ARM_FP)
    /* Full access to CP10 / CP11 (the FPU): code built for a hard-float ABI may use it. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb");
#endif
    tn_exit(main());
}

static void Fault_Handler(void) {
    tn_puts("tinynas firmware: fault\n");
    tn_exit(3);
}

__attribute__((section(".isr_vector"), used)) static void (*const tn_vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, 0,
    0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
