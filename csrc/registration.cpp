// Every op schema of the `lsmia` namespace, in one place. Device kernels register their
// implementations next to their code (TORCH_LIBRARY_IMPL in csrc/cpu/*.cpp and csrc/cuda/*.cu).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing lsmia_ext._C from Python runs the static registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}

TORCH_LIBRARY(lsmia, m) {
  // Label-smoothed cross-entropy per row (csrc/ls_ce_math.h). logits (N, K) with target (N,), or
  // (N, K, M) with target (N, M); weight: optional (K,) class weights. Returns (loss, logsumexp) of
  // the target's shape: loss in the accumulation dtype (float32, float64 for float64 logits), lse in
  // float64 (exact enough for the backward at any logit offset); ignored rows give 0.
  m.def("ls_ce_forward(Tensor logits, Tensor target, Tensor? weight, float alpha, int ignore_index) "
        "-> (Tensor, Tensor)");
  // Gradient w.r.t. the logits (contiguous, logits' shape), given the upstream gradient of each
  // row's loss and the saved logsumexp.
  m.def("ls_ce_backward(Tensor grad_loss, Tensor logits, Tensor target, Tensor? weight, Tensor lse, "
        "float alpha, int ignore_index) -> Tensor");
  // Forward that overwrites the logits with grad_scale * d(loss row)/d(logits); returns the loss rows.
  m.def("ls_ce_forward_grad_(Tensor(a!) logits, Tensor target, Tensor? weight, Tensor grad_scale, "
        "float alpha, int ignore_index) -> Tensor");
  // Training forward (CPU): (loss rows, gradient of their sum w.r.t. the logits, contiguous, divided
  // by the mean's denominator when `mean`, that denominator as a 0-d tensor in the loss dtype, and
  // the rows' sum, divided by that denominator when `mean`, NaN when it is 0).
  m.def("ls_ce_forward_with_grad(Tensor logits, Tensor target, Tensor? weight, float alpha, int ignore_index, "
        "bool mean) -> (Tensor, Tensor, Tensor, Tensor)");
  // One Adam step per row of a batch of latents, each row with its own step count and lr.
  m.def("latent_adam_(Tensor(a!) params, Tensor grads, Tensor(b!) exp_avg, Tensor(c!) exp_avg_sq, "
        "Tensor(d!) steps, Tensor lr, float beta1, float beta2, float eps, float weight_decay, "
        "Tensor? active, float? max_grad_norm) -> ()");
}
