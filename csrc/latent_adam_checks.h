// Input checks of lsmia::latent_adam_, shared by the CPU and CUDA ops. Every check runs before
// the kernel touches anything, so a bad call leaves params, state and steps as they were.
#pragma once
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <utility>

namespace lsmia {

inline void check_latent_adam_same_shape(const at::Tensor& params, const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.sizes() == params.sizes(), "fused_latent_adam_: ", name, " has shape ", t.sizes(),
                    " but params has shape ", params.sizes());
  TORCH_CHECK_VALUE(t.device() == params.device(), "fused_latent_adam_: ", name, " is on ", t.device(),
                    " but params is on ", params.device());
}

inline void check_latent_adam_inputs(const at::Tensor& params, const at::Tensor& grads, const at::Tensor& exp_avg,
                                     const at::Tensor& exp_avg_sq, const at::Tensor& steps, const at::Tensor& lr,
                                     double beta1, double beta2, double eps, double weight_decay,
                                     const std::optional<at::Tensor>& active,
                                     std::optional<double> max_grad_norm) {
  TORCH_CHECK_VALUE(params.dim() >= 1, "fused_latent_adam_: params must have a batch dimension (B, ...), got a 0-d tensor");
  const auto pt = params.scalar_type();
  TORCH_CHECK_TYPE(pt == at::kFloat || pt == at::kHalf || pt == at::kBFloat16,
                   "fused_latent_adam_: params must be float32, float16 or bfloat16, got ", pt);
  check_latent_adam_same_shape(params, grads, "grads");
  check_latent_adam_same_shape(params, exp_avg, "exp_avg");
  check_latent_adam_same_shape(params, exp_avg_sq, "exp_avg_sq");
  TORCH_CHECK_TYPE(grads.scalar_type() == pt, "fused_latent_adam_: grads must have the params' dtype ", pt,
                   ", got ", grads.scalar_type());
  TORCH_CHECK_TYPE(exp_avg.scalar_type() == at::kFloat && exp_avg_sq.scalar_type() == at::kFloat,
                   "fused_latent_adam_: exp_avg and exp_avg_sq must be float32, got ", exp_avg.scalar_type(),
                   " and ", exp_avg_sq.scalar_type());
  // The updated tensors are written through a (B, D) view of their storage.
  TORCH_CHECK_VALUE(params.is_contiguous() && exp_avg.is_contiguous() && exp_avg_sq.is_contiguous(),
                    "fused_latent_adam_: params, exp_avg and exp_avg_sq must be contiguous");
  const int64_t B = params.size(0);
  TORCH_CHECK_TYPE(steps.scalar_type() == at::kLong, "fused_latent_adam_: steps must be int64, got ",
                   steps.scalar_type());
  TORCH_CHECK_VALUE(steps.dim() == 1 && steps.size(0) == B, "fused_latent_adam_: steps must have shape (", B,
                    ",), got ", steps.sizes());
  TORCH_CHECK_VALUE(steps.device() == params.device(), "fused_latent_adam_: steps is on ", steps.device(),
                    " but params is on ", params.device());
  TORCH_CHECK_TYPE(lr.scalar_type() == at::kFloat, "fused_latent_adam_: lr must be a float32 tensor, got ",
                   lr.scalar_type());
  TORCH_CHECK_VALUE(lr.dim() == 1 && lr.size(0) == B, "fused_latent_adam_: lr must have shape (", B, ",), got ",
                    lr.sizes());
  TORCH_CHECK_VALUE(lr.device() == params.device(), "fused_latent_adam_: lr is on ", lr.device(),
                    " but params is on ", params.device());
  if (active.has_value()) {
    const at::Tensor& a = *active;
    TORCH_CHECK_TYPE(a.scalar_type() == at::kBool, "fused_latent_adam_: active must be a bool mask, got ",
                     a.scalar_type());
    TORCH_CHECK_VALUE(a.dim() == 1 && a.size(0) == B, "fused_latent_adam_: active must have shape (", B,
                      ",), got ", a.sizes());
    TORCH_CHECK_VALUE(a.device() == params.device(), "fused_latent_adam_: active is on ", a.device(),
                      " but params is on ", params.device());
  }
  TORCH_CHECK_VALUE(beta1 >= 0.0 && beta1 < 1.0, "fused_latent_adam_: beta1 must lie in [0, 1), got ", beta1);
  TORCH_CHECK_VALUE(beta2 >= 0.0 && beta2 < 1.0, "fused_latent_adam_: beta2 must lie in [0, 1), got ", beta2);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0.0, "fused_latent_adam_: eps must be finite and >= 0, got ", eps);
  TORCH_CHECK_VALUE(std::isfinite(weight_decay) && weight_decay >= 0.0,
                    "fused_latent_adam_: weight_decay must be finite and >= 0, got ", weight_decay);
  if (max_grad_norm.has_value()) {
    TORCH_CHECK_VALUE(*max_grad_norm > 0.0, "fused_latent_adam_: max_grad_norm must be > 0 (or None), got ",
                      *max_grad_norm);
  }
  // The kernels read and write these through __restrict__ pointers, one thread per row: no two
  // may share memory, and a written tensor may not overlap itself (e.g. an expanded `steps`).
  const std::pair<const at::Tensor*, const char*> all[] = {{&params, "params"}, {&exp_avg, "exp_avg"},
      {&exp_avg_sq, "exp_avg_sq"}, {&steps, "steps"}, {&grads, "grads"}, {&lr, "lr"}};
  for (int i = 0; i < 4; ++i) {
    TORCH_CHECK_VALUE(at::has_internal_overlap(*all[i].first) != at::MemOverlap::Yes, "fused_latent_adam_: ",
                      all[i].second, " has elements that share memory (an expanded or stride-0 tensor); pass a "
                      "tensor with its own storage per element, e.g. .clone()");
  }
  const auto share = [](const at::Tensor& a, const at::Tensor& b) {
    const auto st = at::get_overlap_status(a, b);
    return st == at::MemOverlapStatus::Full || st == at::MemOverlapStatus::Partial ||
           (st == at::MemOverlapStatus::TooHard && a.storage().is_alias_of(b.storage()));
  };
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 6; ++j) {
      TORCH_CHECK_VALUE(!share(*all[i].first, *all[j].first), "fused_latent_adam_: ", all[i].second, " and ",
                        all[j].second, " share memory; each must be a separate tensor");
    }
    TORCH_CHECK_VALUE(!active.has_value() || !share(*all[i].first, *active), "fused_latent_adam_: ",
                      all[i].second, " and active share memory");
  }
}

}  // namespace lsmia
