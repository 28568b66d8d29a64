// CPU implementation of the lsmia::ls_ce_* ops: checks, allocation, dispatch to the instruction-set
// kernel table. Labels are range-checked before any logit is read.
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <torch/library.h>

#include "cpu/dispatch.h"
#include "ls_ce_checks.h"
#include "ls_ce_math.h"

namespace lsmia::cpu {
namespace {

void check_labels_cpu(const at::Tensor& target, int64_t K, int64_t ignore_index) {
  const at::Tensor t = target.reshape({-1});
  const int64_t* p = t.const_data_ptr<int64_t>();
  const int64_t n = t.size(0), stride = t.stride(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = p[i * stride];
    TORCH_CHECK_INDEX(lsmia::ls_ce_label_ok(y, K, ignore_index), "fused_ls_ce: target[", i, "] = ", y,
                      " is out of range: labels must lie in [0, ", K, ") or equal ignore_index (",
                      ignore_index, ")");
  }
}

// The call every kernel gets; `w` (accumulation dtype, contiguous) must outlive it.
LsCeCall make_call(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& w, double alpha,
                   int64_t ignore_index) {
  const bool maps = logits.dim() == 3;
  LsCeCall c{};
  c.dtype = logits.scalar_type();
  c.x = logits.const_data_ptr();
  c.N = logits.size(0);
  c.K = logits.size(1);
  c.M = maps ? logits.size(2) : 1;
  c.xs0 = logits.stride(0);
  c.xs1 = logits.stride(1);
  c.xs2 = maps ? logits.stride(2) : 0;
  c.y = target.const_data_ptr<int64_t>();
  c.ys0 = target.stride(0);
  c.ys1 = maps ? target.stride(1) : 0;
  c.w = w.defined() ? w.const_data_ptr() : nullptr;
  c.W = w.defined() ? w.sum().item<double>() : static_cast<double>(c.K);
  c.alpha = alpha;
  c.ignore_index = ignore_index;
  return c;
}

std::tuple<at::Tensor, at::Tensor> ls_ce_forward_cpu(const at::Tensor& logits, const at::Tensor& target,
                                                     const std::optional<at::Tensor>& weight, double alpha,
                                                     int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, weight, alpha);
  check_labels_cpu(target, logits.size(1), ignore_index);
  const auto acc = lsmia::ls_ce_acc_dtype(logits.scalar_type());
  at::Tensor loss = at::empty(target.sizes(), logits.options().dtype(acc));
  at::Tensor lse = at::empty(target.sizes(), logits.options().dtype(at::kDouble));
  const at::Tensor w = lsmia::ls_ce_weight(weight, logits);
  LsCeCall c = make_call(logits, target, w, alpha, ignore_index);
  c.loss = loss.data_ptr();
  c.lse = lse.data_ptr();
  kernels().ls_ce_forward(c);
  return {loss, lse};
}

at::Tensor ls_ce_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                              const std::optional<at::Tensor>& weight, const at::Tensor& lse, double alpha,
                              int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, weight, alpha);
  lsmia::check_ls_ce_row_tensor(grad_loss, target, logits, "grad_loss", lsmia::ls_ce_acc_dtype(logits.scalar_type()));
  lsmia::check_ls_ce_row_tensor(lse, target, logits, "lse", at::kDouble);
  check_labels_cpu(target, logits.size(1), ignore_index);
  at::Tensor grad = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  const at::Tensor w = lsmia::ls_ce_weight(weight, logits);
  const at::Tensor l = lse.contiguous();
  LsCeCall c = make_call(logits, target, w, alpha, ignore_index);
  c.lse = const_cast<void*>(l.const_data_ptr());
  c.g = grad_loss.const_data_ptr();
  c.gs0 = grad_loss.stride(0);
  c.gs1 = logits.dim() == 3 ? grad_loss.stride(1) : 0;
  c.out = grad.data_ptr();
  kernels().ls_ce_backward(c);
  return grad;
}

at::Tensor ls_ce_forward_grad_cpu(at::Tensor logits, const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                  const at::Tensor& grad_scale, double alpha, int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, weight, alpha);
  const auto acc = lsmia::ls_ce_acc_dtype(logits.scalar_type());
  TORCH_CHECK_VALUE(grad_scale.numel() == 1 && grad_scale.device() == logits.device(),
                    "ls_ce_forward_grad_: grad_scale must be one value on ", logits.device());
  at::assert_no_internal_overlap(logits);
  check_labels_cpu(target, logits.size(1), ignore_index);
  at::Tensor loss = at::empty(target.sizes(), logits.options().dtype(acc));
  at::Tensor lse = at::empty(target.sizes(), logits.options().dtype(at::kDouble));
  const at::Tensor w = lsmia::ls_ce_weight(weight, logits);
  LsCeCall c = make_call(logits, target, w, alpha, ignore_index);
  c.loss = loss.data_ptr();
  c.lse = lse.data_ptr();
  c.out = logits.data_ptr();
  c.grad_scale = grad_scale.item<double>();
  kernels().ls_ce_forward_grad(c);
  return loss;
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CPU, m) {
  m.impl("ls_ce_forward", &ls_ce_forward_cpu);
  m.impl("ls_ce_backward", &ls_ce_backward_cpu);
  m.impl("ls_ce_forward_grad_", &ls_ce_forward_grad_cpu);
}

}  // namespace lsmia::cpu
