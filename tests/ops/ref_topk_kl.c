/* tests/ops/ref_topk_kl.c: losses/topk_kl.c compiled into the ops test as a CPU reference, its entry
 * symbol renamed so it can sit beside ref_ce.c in one program. */
#define graft_plugin_init graft_loss_topk_kl_init
#include "topk_kl.c"
