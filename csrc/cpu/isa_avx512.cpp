// One instruction-set variant of every CPU kernel; setup.py compiles this file with the flags
// and CPU_CAPABILITY of its name (see ISA_FLAGS there).
#include "cpu/dispatch.h"
#include "cpu/latent_adam_kernel.h"
#include "cpu/ls_ce_kernel.h"

namespace lsmia::cpu::CPU_CAPABILITY {
const Kernels kernels{&ls_ce_forward_kernel, &ls_ce_backward_kernel, &ls_ce_forward_grad_kernel,
                      &latent_adam_kernel, &ls_ce_count_labels_kernel};
}
