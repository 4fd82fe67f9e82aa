/* tn_main_deploy.c - the smallest application: the input is written into the arena's input
 * slot (model_input()), one inference runs, and the logits are read in place (model_output()).
 * Linked to measure the deployed footprint: everything it uses is in the memory plan. */
#include "model.h"

int main(void) {
    if (model_invoke(model_input(), model_output()) != 0) return 1;
    return model_output()[0];
}
