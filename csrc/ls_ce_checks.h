// Input checks of the label-smoothed cross-entropy ops, shared by the CPU and CUDA paths.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace lsmia {

inline at::ScalarType ls_ce_acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_ls_ce_inputs(const at::Tensor& logits, const at::Tensor& target, double alpha) {
  TORCH_CHECK(logits.dim() == 2, "fused_ls_ce: logits must be 2-D (N, K), got shape ", logits.sizes());
  TORCH_CHECK(target.dim() == 1, "fused_ls_ce: target must be 1-D (N,), got shape ", target.sizes());
  TORCH_CHECK(logits.size(0) == target.size(0), "fused_ls_ce: logits has ", logits.size(0),
              " rows but target has ", target.size(0), " labels");
  const auto st = logits.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
                   "fused_ls_ce: logits must be float32, float64, float16 or bfloat16, got ", st);
  TORCH_CHECK_TYPE(target.scalar_type() == at::kLong, "fused_ls_ce: target must be int64, got ",
                   target.scalar_type());
  TORCH_CHECK(logits.device() == target.device(), "fused_ls_ce: logits are on ", logits.device(),
              " but target is on ", target.device());
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha <= 1.0, "fused_ls_ce: alpha must be finite and <= 1, got ",
                    alpha);
  TORCH_CHECK(logits.size(0) == 0 || logits.size(1) > 0, "fused_ls_ce: logits have K = 0 classes");
}

inline void check_ls_ce_backward_inputs(const at::Tensor& grad_loss, const at::Tensor& logits,
                                        const at::Tensor& lse) {
  const auto acc = ls_ce_acc_dtype(logits.scalar_type());
  TORCH_CHECK(grad_loss.dim() == 1 && grad_loss.size(0) == logits.size(0) && grad_loss.scalar_type() == acc,
              "ls_ce_backward: grad_loss must be (N,) ", acc, ", got ", grad_loss.sizes(), " ",
              grad_loss.scalar_type());
  TORCH_CHECK(lse.dim() == 1 && lse.size(0) == logits.size(0) && lse.scalar_type() == acc &&
                  lse.is_contiguous(),
              "ls_ce_backward: lse must be contiguous (N,) ", acc);
  TORCH_CHECK(grad_loss.device() == logits.device() && lse.device() == logits.device(),
              "ls_ce_backward: all tensors must be on ", logits.device());
}

}  // namespace lsmia
