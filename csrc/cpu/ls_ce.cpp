// CPU implementation of the lsmia::ls_ce_* ops: checks, allocation, dispatch to the instruction-set
// kernel table. Labels are range-checked before any logit is read.
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <torch/library.h>

#include <limits>

#include "cpu/dispatch.h"
#include "ls_ce_checks.h"
#include "ls_ce_math.h"

namespace lsmia::cpu {
namespace {

// Range-checks every label and returns what reduction='mean' divides by: the number of rows not
// ignored, or the sum of their class weights (`w`: the contiguous accumulation-dtype weights, or
// undefined). Contiguous labels are counted and checked by the instruction-set kernel; only a bad
// label (the error) or weights (their sum, in float64) take a second pass.
double check_labels_cpu(const at::Tensor& target, int64_t K, int64_t ignore_index, const at::Tensor& w = {}) {
  const at::Tensor t = target.reshape({-1});
  const int64_t* p = t.const_data_ptr<int64_t>();
  const int64_t n = t.size(0), stride = t.stride(0);
  const auto valid = [K](int64_t y) { return static_cast<uint64_t>(y) < static_cast<uint64_t>(K); };
  int64_t count = 0;
  bool bad = false;
  if (stride == 1) {
    count = kernels().ls_ce_count_labels(p, n, K, ignore_index, &bad);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t y = p[i * stride];
      count += y != ignore_index;
      bad |= y != ignore_index && !valid(y);
    }
  }
  for (int64_t i = 0; bad && i < n; ++i) {
    const int64_t y = p[i * stride];
    TORCH_CHECK_INDEX(y == ignore_index || valid(y), "fused_ls_ce: target[", i, "] = ", y,
                      " is out of range: labels must lie in [0, ", K, ") or equal ignore_index (", ignore_index,
                      ")");
  }
  if (!w.defined()) return static_cast<double>(count);
  const float* wf = w.scalar_type() == at::kFloat ? w.const_data_ptr<float>() : nullptr;
  const double* wd = w.scalar_type() == at::kDouble ? w.const_data_ptr<double>() : nullptr;
  double wsum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = p[i * stride];
    if (y == ignore_index) continue;
    wsum += wf != nullptr ? static_cast<double>(wf[y]) : wd[y];
  }
  return wsum;
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

// What every forward op does first: checks (labels included), the per-row loss in the accumulation
// dtype, the weights, the call. `call.lse` and `call.out` are left for the op to set.
struct Forward {
  at::Tensor loss, w;
  LsCeCall call;
  double denom;  // what reduction='mean' divides by

  Forward(const at::Tensor& logits, const at::Tensor& target, const std::optional<at::Tensor>& weight, double alpha,
          int64_t ignore_index) {
    lsmia::check_ls_ce_inputs(logits, target, weight, alpha);
    w = lsmia::ls_ce_weight(weight, logits);
    denom = check_labels_cpu(target, logits.size(1), ignore_index, w);
    loss = at::empty(target.sizes(), logits.options().dtype(lsmia::ls_ce_acc_dtype(logits.scalar_type())));
    call = make_call(logits, target, w, alpha, ignore_index);
    call.loss = loss.data_ptr();
  }
};

std::tuple<at::Tensor, at::Tensor> ls_ce_forward_cpu(const at::Tensor& logits, const at::Tensor& target,
                                                     const std::optional<at::Tensor>& weight, double alpha,
                                                     int64_t ignore_index) {
  Forward f(logits, target, weight, alpha, ignore_index);
  at::Tensor lse = at::empty(target.sizes(), logits.options().dtype(at::kDouble));
  f.call.lse = lse.data_ptr();
  kernels().ls_ce_forward(f.call);
  return {f.loss, lse};
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
  TORCH_CHECK_VALUE(grad_scale.numel() == 1 && grad_scale.device() == logits.device(),
                    "ls_ce_forward_grad_: grad_scale must be one value on ", logits.device());
  at::assert_no_internal_overlap(logits);
  Forward f(logits, target, weight, alpha, ignore_index);
  f.call.out = logits.data_ptr();
  f.call.grad_scale = grad_scale.item<double>();
  kernels().ls_ce_forward_grad(f.call);
  return f.loss;
}

// reduction='sum' or 'mean' of the loss rows from their sum (the kernel's, in double), as the Python
// around the other ops reduces them (loss.sum() * reference.mean_scale(denominator)) up to the order of
// the sum: the sum rounded to the loss dtype, then times 1 / denominator rounded to it (NaN when it is
// 0), one rounded product. No tensor op: the training path's call saves their dispatch.
at::Tensor reduce_rows(double sum, const at::Tensor& loss, double denom, bool mean) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (loss.scalar_type() == at::kDouble) {
    return at::scalar_tensor(!mean ? sum : denom == 0.0 ? nan : sum * (1.0 / denom), loss.options());
  }
  const float total = static_cast<float>(sum);
  return at::scalar_tensor(!mean ? total : denom == 0.0 ? nan : total * (1.0f / static_cast<float>(denom)),
                           loss.options());
}

// Forward of the training path: the loss rows, the gradient of their sum (or of their mean when
// `mean`) w.r.t. the logits in a new contiguous tensor, the mean's denominator, and the rows' sum
// (or mean).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ls_ce_forward_with_grad_cpu(
    const at::Tensor& logits, const at::Tensor& target, const std::optional<at::Tensor>& weight, double alpha,
    int64_t ignore_index, bool mean) {
  Forward f(logits, target, weight, alpha, ignore_index);
  at::Tensor grad = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  f.call.out = grad.data_ptr();
  // a mean over no weight (all rows ignored, or of weight 0) is NaN, and so is its gradient, as in torch
  f.call.grad_scale = !mean ? 1.0 : f.denom != 0.0 ? 1.0 / f.denom : std::numeric_limits<double>::quiet_NaN();
  double sum = 0.0;  // N * M == 0: no kernel runs, the sum of no rows
  f.call.loss_sum = &sum;
  kernels().ls_ce_forward_grad(f.call);
  return {f.loss, grad, at::scalar_tensor(f.denom, f.loss.options()), reduce_rows(sum, f.loss, f.denom, mean)};
}

}  // namespace

TORCH_LIBRARY_IMPL(lsmia, CPU, m) {
  m.impl("ls_ce_forward", &ls_ce_forward_cpu);
  m.impl("ls_ce_backward", &ls_ce_backward_cpu);
  m.impl("ls_ce_forward_grad_", &ls_ce_forward_grad_cpu);
  m.impl("ls_ce_forward_with_grad", &ls_ce_forward_with_grad_cpu);
}

}  // namespace lsmia::cpu
