// CPU kernels are compiled once per instruction set (csrc/cpu/isa_*.cpp, each with its own
// -m flags and CPU_CAPABILITY) into a table of function pointers; kernels() picks the table for
// the instruction set torch itself dispatches to on this machine (ATEN_CPU_CAPABILITY respected).
#pragma once
#include <ATen/core/Tensor.h>
#include <optional>

namespace lsmia::cpu {

struct Kernels {
  // loss, lse: (N,) accumulation dtype, preallocated. target already range-checked.
  void (*ls_ce_forward)(const at::Tensor& logits, const at::Tensor& target, double alpha,
                        int64_t ignore_index, at::Tensor& loss, at::Tensor& lse);
  // grad_logits: (N, K) logits dtype, contiguous, preallocated.
  void (*ls_ce_backward)(const at::Tensor& grad_loss, const at::Tensor& logits,
                         const at::Tensor& target, const at::Tensor& lse, double alpha,
                         int64_t ignore_index, at::Tensor& grad_logits);
  // All inputs validated; params/grads/state (B, D) views, steps (B,) int64, lr (B,) float32.
  void (*latent_adam)(at::Tensor& params, const at::Tensor& grads, at::Tensor& exp_avg,
                      at::Tensor& exp_avg_sq, at::Tensor& steps, const at::Tensor& lr,
                      double beta1, double beta2, double eps, double weight_decay,
                      const std::optional<at::Tensor>& active,
                      std::optional<double> max_grad_norm);
};

namespace DEFAULT { extern const Kernels kernels; }
#ifndef LSMIA_NO_X86_ISA
namespace AVX2 { extern const Kernels kernels; }
namespace AVX512 { extern const Kernels kernels; }
#endif

const Kernels& kernels();
// Name of the table in use ("DEFAULT", "AVX2", "AVX512"), for tests and benchmarks.
const char* kernels_isa();

}  // namespace lsmia::cpu
