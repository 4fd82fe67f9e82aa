/* tn_main.c - runs the model on the images of tn_inputs.h and prints the int8 outputs, the
 * counter per inference and per layer (TN_PROFILE), and the stack used. */
#include "model.h"
#include "tn_inputs.h"
#include "tn_port.h"

#ifdef TN_PROFILE
static uint32_t tn_layer_total[MODEL_LAYERS];
static uint32_t tn_layer_start;
void tn_profile_layer(int layer, int end) {
    uint32_t now = tn_counter();
    if (end) tn_layer_total[layer] += now - tn_layer_start;
    else tn_layer_start = now;
}
#endif

int main(void) {
    static int8_t out[MODEL_OUTPUT_SIZE];
    tn_counter_start();
    for (int n = 0; n < TN_N_INPUTS; n++) {
        uint32_t t = tn_counter();
        if (model_invoke(tn_inputs[n], out) != 0) return 1;
        t = tn_counter() - t;
        tn_puts("y ");
        tn_put_int(n);
        tn_puts(":");
        for (int i = 0; i < MODEL_OUTPUT_SIZE; i++) {
            tn_puts(" ");
            tn_put_int(out[i]);
        }
        tn_puts(" | ");
        tn_put_uint(t);
        tn_puts("\n");
    }
#ifdef TN_PROFILE
    for (int l = 0; l < MODEL_LAYERS; l++) {
        tn_puts("layer ");
        tn_put_int(l);
        tn_puts(" ");
        tn_put_uint(tn_layer_total[l]);
        tn_puts("\n");
    }
#endif
    tn_puts("stack ");
    tn_put_uint(tn_stack_used());
    tn_puts("\nunit " TN_COUNTER_UNIT "\n");
    return 0;
}
