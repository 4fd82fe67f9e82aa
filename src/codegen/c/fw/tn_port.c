/* tn_port.c - console, exit, counter and stack measurement (see tn_port.h). */
#include "tn_port.h"

extern uint32_t __stack_limit, __stack_top;

#define TN_STACK_PAINT 0xA5A5A5A5u

#ifdef TN_QEMU
/* Arm semihosting call: operation in r0, argument block in r1, BKPT 0xAB. */
static int32_t tn_semihost(int32_t op, const void *arg) {
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
void tn_puts(const char *s) { tn_semihost(0x04, s); /* SYS_WRITE0 */ }
void tn_exit(int code) {
    /* SYS_EXIT_EXTENDED with ADP_Stopped_ApplicationExit and the status. */
    uint32_t block[2] = {0x20026u, (uint32_t)code};
    tn_semihost(0x20, block);
    for (;;) {
    }
}
#define TN_FPGAIO_COUNTER (*(volatile uint32_t *)0x40028018u)
static uint32_t tn_counter_base;
void tn_counter_start(void) { tn_counter_base = TN_FPGAIO_COUNTER; }
uint32_t tn_counter(void) { return (TN_FPGAIO_COUNTER - tn_counter_base) * TN_COUNTER_SCALE; }
#else
#define TN_ITM_PORT0 (*(volatile uint32_t *)0xE0000000u)
#define TN_ITM_TER (*(volatile uint32_t *)0xE0000E00u)
#define TN_ITM_TCR (*(volatile uint32_t *)0xE0000E80u)
void tn_puts(const char *s) {
    /* Only when a debugger enabled ITM port 0; otherwise output is dropped. */
    if (!(TN_ITM_TCR & 1u) || !(TN_ITM_TER & 1u)) return;
    for (; *s; s++) {
        while (TN_ITM_PORT0 == 0u) {
        }
        *(volatile uint8_t *)0xE0000000u = (uint8_t)*s;
    }
}
void tn_exit(int code) {
    (void)code;
    for (;;) {
    }
}
#define TN_DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define TN_DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define TN_DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define TN_DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)
void tn_counter_start(void) {
    TN_DEMCR |= 1u << 24; /* TRCENA */
    TN_DWT_LAR = 0xC5ACCE55u; /* unlock (Cortex-M7) */
    TN_DWT_CYCCNT = 0;
    TN_DWT_CTRL |= 1u;
}
uint32_t tn_counter(void) { return TN_DWT_CYCCNT; }
#endif

void tn_put_uint(uint32_t v) {
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    tn_puts(buf + i);
}

void tn_put_int(int32_t v) {
    if (v < 0) {
        tn_puts("-");
        tn_put_uint(0u - (uint32_t)v);
    } else {
        tn_put_uint((uint32_t)v);
    }
}

uint32_t tn_stack_used(void) {
    const uint32_t *p = &__stack_limit;
    while (p < &__stack_top && *p == TN_STACK_PAINT) p++;
    return (uint32_t)((const char *)&__stack_top - (const char *)p);
}
