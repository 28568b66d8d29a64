// Input checks of the label-smoothed cross-entropy ops, shared by the CPU and CUDA paths (host code
// of non-ISA files only). Logits are (N, K) with target (N,), or (N, K, M) with target (N, M).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

namespace lsmia {

inline at::ScalarType ls_ce_acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_ls_ce_inputs(const at::Tensor& logits, const at::Tensor& target,
                               const std::optional<at::Tensor>& weight, double alpha) {
  TORCH_CHECK_VALUE(logits.dim() == 2 || logits.dim() == 3,
                    "fused_ls_ce: logits must be (N, K) or (N, K, M), got shape ", logits.sizes());
  const bool maps = logits.dim() == 3;
  TORCH_CHECK_VALUE(target.dim() == logits.dim() - 1 && target.size(0) == logits.size(0) &&
                        (!maps || target.size(1) == logits.size(2)),
                    "fused_ls_ce: logits of shape ", logits.sizes(), " need target of shape ",
                    maps ? "(N, M)" : "(N,)", " with the same N", maps ? " and M" : "", ", got ", target.sizes());
  const auto st = logits.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
                   "fused_ls_ce: logits must be float32, float64, float16 or bfloat16, got ", st);
  TORCH_CHECK_TYPE(target.scalar_type() == at::kLong, "fused_ls_ce: target must be int64, got ",
                   target.scalar_type());
  TORCH_CHECK_VALUE(logits.device() == target.device(), "fused_ls_ce: logits are on ", logits.device(),
                    " but target is on ", target.device());
  TORCH_CHECK_VALUE(std::isfinite(alpha) && alpha <= 1.0, "fused_ls_ce: alpha must be finite and <= 1, got ",
                    alpha);
  TORCH_CHECK_VALUE(logits.size(0) == 0 || logits.size(1) > 0, "fused_ls_ce: logits have K = 0 classes");
  if (weight.has_value()) {
    const at::Tensor& w = *weight;
    TORCH_CHECK_VALUE(w.dim() == 1 && w.size(0) == logits.size(1), "fused_ls_ce: weight must have shape (",
                      logits.size(1), ",) (one per class), got ", w.sizes());
    TORCH_CHECK_TYPE(w.is_floating_point(), "fused_ls_ce: weight must be floating point, got ", w.scalar_type());
    TORCH_CHECK_VALUE(w.device() == logits.device(), "fused_ls_ce: weight is on ", w.device(),
                      " but logits are on ", logits.device());
  }
}

// (N,) or (N, M) per-row tensors of the ops: the loss (accumulation dtype) and the lse (float64).
inline void check_ls_ce_row_tensor(const at::Tensor& t, const at::Tensor& target, const at::Tensor& logits,
                                   const char* name, at::ScalarType dtype) {
  TORCH_CHECK_VALUE(t.sizes() == target.sizes() && t.scalar_type() == dtype && t.device() == logits.device(),
                    "ls_ce_backward: ", name, " must be ", dtype, " of shape ", target.sizes(), " on ",
                    logits.device(), ", got ", t.scalar_type(), " ", t.sizes(), " on ", t.device());
}

// Class weights in the accumulation dtype, contiguous, or an undefined tensor.
inline at::Tensor ls_ce_weight(const std::optional<at::Tensor>& weight, const at::Tensor& logits) {
  if (!weight.has_value()) return at::Tensor();
  return weight->to(ls_ce_acc_dtype(logits.scalar_type())).contiguous();
}

}  // namespace lsmia
