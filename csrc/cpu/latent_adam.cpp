// CPU implementation of lsmia::latent_adam_: checks, then the instruction-set kernel table.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "cpu/dispatch.h"
#include "latent_adam_checks.h"

namespace lsmia::cpu {
namespace {

void latent_adam_cpu(at::Tensor params, const at::Tensor& grads, at::Tensor exp_avg, at::Tensor exp_avg_sq,
                     at::Tensor steps, const at::Tensor& lr, double beta1, double beta2, double eps,
                     double weight_decay, const std::optional<at::Tensor>& active,
                     std::optional<double> max_grad_norm) {
  lsmia::check_latent_adam_inputs(params, grads, exp_avg, exp_avg_sq, steps, lr, beta1, beta2, eps,
                                  weight_decay, active, max_grad_norm);
  if (params.size(0) == 0) return;
  // Only the read-only gradient may be copied; the updated tensors were checked contiguous.
  const at::Tensor g = grads.contiguous();
  kernels().latent_adam(params, g, exp_avg, exp_avg_sq, steps, lr, beta1, beta2, eps, weight_decay, active,
                        max_grad_norm);
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CPU, m) { m.impl("latent_adam_", &latent_adam_cpu); }

}  // namespace lsmia::cpu
