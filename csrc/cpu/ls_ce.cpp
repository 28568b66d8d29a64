// CPU implementation of lsmia::ls_ce_forward / ls_ce_backward: checks, allocation, dispatch to the
// instruction-set kernel table. Labels are range-checked before any logit is read.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "cpu/dispatch.h"
#include "ls_ce_checks.h"
#include "ls_ce_math.h"

namespace lsmia::cpu {
namespace {

void check_labels_cpu(const at::Tensor& target, int64_t K, int64_t ignore_index) {
  const int64_t* t = target.const_data_ptr<int64_t>();
  const int64_t n = target.size(0), stride = target.stride(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = t[i * stride];
    TORCH_CHECK_INDEX(lsmia::ls_ce_label_ok(y, K, ignore_index), "fused_ls_ce: target[", i, "] = ", y,
                      " is out of range: labels must lie in [0, ", K, ") or equal ignore_index (",
                      ignore_index, ")");
  }
}

std::tuple<at::Tensor, at::Tensor> ls_ce_forward_cpu(const at::Tensor& logits, const at::Tensor& target,
                                                     double alpha, int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, alpha);
  check_labels_cpu(target, logits.size(1), ignore_index);
  const auto acc = lsmia::ls_ce_acc_dtype(logits.scalar_type());
  at::Tensor loss = at::empty({logits.size(0)}, logits.options().dtype(acc));
  at::Tensor lse = at::empty({logits.size(0)}, logits.options().dtype(acc));
  if (logits.size(0) > 0) kernels().ls_ce_forward(logits, target, alpha, ignore_index, loss, lse);
  return {loss, lse};
}

at::Tensor ls_ce_backward_cpu(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                              const at::Tensor& lse, double alpha, int64_t ignore_index) {
  lsmia::check_ls_ce_inputs(logits, target, alpha);
  lsmia::check_ls_ce_backward_inputs(grad_loss, logits, lse);
  check_labels_cpu(target, logits.size(1), ignore_index);
  at::Tensor grad = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  if (logits.size(0) > 0 && logits.size(1) > 0) {
    kernels().ls_ce_backward(grad_loss, logits, target, lse, alpha, ignore_index, grad);
  }
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CPU, m) {
  m.impl("ls_ce_forward", &ls_ce_forward_cpu);
  m.impl("ls_ce_backward", &ls_ce_backward_cpu);
}

}  // namespace lsmia::cpu
