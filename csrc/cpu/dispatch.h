// CPU kernels are compiled once per instruction set (csrc/cpu/isa_*.cpp, each with its own
// -m flags and CPU_CAPABILITY) into a table of function pointers; kernels() picks the table for
// the instruction set torch itself dispatches to on this machine (ATEN_CPU_CAPABILITY respected).
#pragma once
#include <ATen/core/Tensor.h>

namespace lsmia::cpu {

// One ls_ce call as raw pointers, so the per-ISA kernels touch no at::Tensor code. Logits are
// read as (N, K, M) with element strides xs0, xs1 (class), xs2; a row is one (n, j) pair, rows are
// numbered r = n * M + j. Labels were range-checked by the caller.
struct LsCeCall {
  at::ScalarType dtype;            // logits dtype; the accumulation type is float (double for double)
  const void* x;
  int64_t N, K, M, xs0, xs1, xs2;
  const int64_t* y;
  int64_t ys0, ys1;
  const void* w;                   // (K,) contiguous class weights in the accumulation type, or null
  double W;                        // sum of the weights (K without weights)
  double alpha;
  int64_t ignore_index;
  void* loss;                      // (N * M) accumulation type
  void* lse;                       // (N * M) float64; forward: written, backward: read
  const void* g;                   // backward: upstream gradient (N, M) with strides gs0, gs1
  int64_t gs0, gs1;
  void* out;                       // gradient: (N, K, M) contiguous in the logits dtype, or x itself
  double grad_scale;               // forward_grad: the upstream gradient of every row
  double* loss_sum;                // forward_grad: receives the sum of the loss rows, or null
};

// One latent_adam_ call, all inputs validated: params / grads / state (B, D) contiguous rows.
struct LatentAdamCall {
  at::ScalarType dtype;  // params and grads; the state is float32
  void* params;
  const void* grads;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t* steps;
  int64_t step_stride;
  const float* lr;
  int64_t lr_stride;
  const bool* active;  // or null
  int64_t act_stride;
  int64_t B, D;
  double beta1, beta2, eps, weight_decay;
  bool clip;
  float max_norm;
};

struct Kernels {
  void (*ls_ce_forward)(const LsCeCall& call);
  void (*ls_ce_backward)(const LsCeCall& call);
  // forward that also overwrites the logits with their gradient (call.out == call.x)
  void (*ls_ce_forward_grad)(const LsCeCall& call);
  void (*latent_adam)(const LatentAdamCall& call);
  // contiguous labels: the number not equal to ignore; *bad: some of those outside [0, K)
  int64_t (*ls_ce_count_labels)(const int64_t* y, int64_t n, int64_t K, int64_t ignore, bool* bad);
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
