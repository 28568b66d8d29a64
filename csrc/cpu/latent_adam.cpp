// CPU implementation of lsmia::latent_adam_: checks, then the instruction-set kernel table.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>

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
  const int64_t B = params.size(0);
  if (B == 0) return;
  // lr rows are checked here on the CPU (free); the CUDA kernel asserts them on the device.
  const float* lr_p = lr.const_data_ptr<float>();
  for (int64_t i = 0; i < B; ++i) {
    const float v = lr_p[i * lr.stride(0)];
    TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0.0f,
                      "fused_latent_adam_: lr must be finite and >= 0 for every row, got lr[", i, "] = ", v);
  }
  // Only the read-only gradient may be copied; the updated tensors were checked contiguous.
  const at::Tensor g = grads.contiguous();
  LatentAdamCall c{params.scalar_type(), params.data_ptr(), g.const_data_ptr(), exp_avg.data_ptr<float>(),
                   exp_avg_sq.data_ptr<float>(), steps.data_ptr<int64_t>(), steps.stride(0), lr_p, lr.stride(0),
                   active.has_value() ? active->const_data_ptr<bool>() : nullptr,
                   active.has_value() ? active->stride(0) : 0, B, params.numel() / B, beta1, beta2, eps,
                   weight_decay, max_grad_norm.has_value(),
                   max_grad_norm.has_value() ? static_cast<float>(*max_grad_norm) : 0.0f};
  kernels().latent_adam(c);
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CPU, m) { m.impl("latent_adam_", &latent_adam_cpu); }

}  // namespace lsmia::cpu
