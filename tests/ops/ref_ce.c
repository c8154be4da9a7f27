/* tests/ops/ref_ce.c: losses/ce.c compiled into the ops test as a CPU reference, its entry symbol
 * renamed so it can sit beside ref_topk_kl.c in one program. */
#define graft_plugin_init graft_loss_ce_init
#include "ce.c"
