/* abi_layout.c: compile-time checks that the plugin ABI structs only grow at their end
 * (plugin.h: "members are only appended"). Compiled with -fsyntax-only by ctest headers.abi_layout;
 * a reordered or inserted member fails the build of this file. */
#include <stddef.h>

#include "graft/plugin.h"

#define AFTER(T, a, b) _Static_assert(offsetof(T, b) >= offsetof(T, a) + sizeof(((T *)0)->a), #b " after " #a)

AFTER(graft_matmul_args, struct_size, device);
AFTER(graft_matmul_args, device, stream);
AFTER(graft_matmul_args, stream, dtype);
AFTER(graft_matmul_args, dtype, trans_a);
AFTER(graft_matmul_args, trans_b, m);
AFTER(graft_matmul_args, k, alpha);
AFTER(graft_matmul_args, beta, a);
AFTER(graft_matmul_args, ldc, batch);
AFTER(graft_matmul_args, batch, stride_a);
AFTER(graft_matmul_args, stride_c, mixed_dtypes); /* the mixed-dtype members come last */
AFTER(graft_matmul_args, mixed_dtypes, dtype_b);
AFTER(graft_matmul_args, dtype_b, dtype_c);
_Static_assert(sizeof(graft_matmul_args) == offsetof(graft_matmul_args, dtype_c) + sizeof(graft_dtype) ||
                   sizeof(graft_matmul_args) == offsetof(graft_matmul_args, dtype_c) + 2 * sizeof(graft_dtype),
               "dtype_c is the last member (tail padding only)");
AFTER(graft_mixer_io, state_in, state_out);
AFTER(graft_mixer_io, carry, dcarry);
AFTER(graft_mixer_io, dcarry, past_len_dev);
AFTER(graft_mixer, forward, backward);
AFTER(graft_mixer, backward, state_bytes_on);
AFTER(graft_host, free, parallel_for);
AFTER(graft_loss_io, parts, accumulate);

int abi_layout_unused(void);
