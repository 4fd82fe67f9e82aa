/*
 * tn_port.h - the few board services the tinynas firmware needs: a console, an exit, and a
 * counter read around every layer.
 *
 * TN_QEMU: semihosting console and exit (QEMU `-semihosting`), and the MPS2 FPGAIO 25 MHz
 * COUNTER, which under `-icount shift=0` advances once per 40 executed instructions
 * (1 instruction = 1 ns of virtual time): counts are instructions, deterministic.
 * Otherwise (a real board): console on ITM stimulus port 0 (SWO), and DWT->CYCCNT cycles.
 */
#ifndef TN_PORT_H
#define TN_PORT_H

#include <stdint.h>

void tn_puts(const char *s);
void tn_put_int(int32_t v);
void tn_put_uint(uint32_t v);
void tn_exit(int code);
void tn_counter_start(void);
/* Counter value in TN_COUNTER_UNIT units since tn_counter_start(). */
uint32_t tn_counter(void);
/* Bytes of the stack ever written (the startup code paints it). */
uint32_t tn_stack_used(void);

#ifdef TN_QEMU
#define TN_COUNTER_UNIT "instructions"
#define TN_COUNTER_SCALE 40u
#else
#define TN_COUNTER_UNIT "cycles"
#define TN_COUNTER_SCALE 1u
#endif

#endif
