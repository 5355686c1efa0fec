// The label-smoothed cross-entropy of each row of logits as one MLX primitive (and its VJP as
// another), for mlxseq.losses.smoothed_nll on CPU streams, and log_softmax likewise (for
// mlxseq.layers.activations.log_softmax and the decoders' scores); the MLX graph computes the
// same elsewhere. On a CPU, MLX evaluates exp one element at a time and splits a compiled
// log-softmax into several passes over the (N, V) logits: at a vocabulary of 5,000 that was
// more than half of a translation model's training step.
//
// Inputs: logits (N, V) float32, targets (N,) int32. With smoothing e, for each row n and
// t = targets[n]:
//
//   lse_n = log sum_v exp(x_nv)
//   nll_n = (1 - e) (lse_n - x_nt) + e (lse_n - mean_v x_nv)
//
// Outputs: nll (N,) (NaN where t is outside [0, V)) and, for the backward pass, lse (N, 2): each
// row's peak m_n = max_v x_nv and lse_n - m_n (kept apart: huge logits lose no digits to the peak).
// The VJP is SmoothedNllBackward: d nll_n / d x_nv = exp(x_nv - lse_n) - e / V - (1 - e) [v = t],
// times the cotangent of nll_n.

#pragma once

#include <vector>

#include "mlx/array.h"
#include "cpu_primitive.h"
#include "mlx/primitives.h"

namespace mlxseq {

class SmoothedNll : public CpuPrimitiveWith<float> {
 public:
  using CpuPrimitiveWith::CpuPrimitiveWith;

  MLXSEQ_EVAL_CPU
  MLXSEQ_VJP
  MLXSEQ_NAME("MlxseqSmoothedNll")
};

// d nll / d logits (N, V) times the cotangent (N,), from logits, targets, lse and the cotangent.
class SmoothedNllBackward : public CpuPrimitiveWith<float> {
 public:
  using CpuPrimitiveWith::CpuPrimitiveWith;

  MLXSEQ_EVAL_CPU
  MLXSEQ_NAME("MlxseqSmoothedNllBackward")
};

// log_softmax over the last axis of x (N, V) float32, with the same exp: out = x - max - log sum exp(x - max)
// (-inf stays -inf). Its VJP is LogSoftmaxBackward: g - exp(out) sum_v g.
class LogSoftmax : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;

  MLXSEQ_EVAL_CPU
  MLXSEQ_VJP
  MLXSEQ_NAME("MlxseqLogSoftmax")
  bool is_equivalent(const mlx::core::Primitive&) const override {
    return true;
  }
};

// d log_softmax / d x times the cotangent, from the output and the cotangent (both (N, V)).
class LogSoftmaxBackward : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;

  MLXSEQ_EVAL_CPU
  MLXSEQ_NAME("MlxseqLogSoftmaxBackward")
  bool is_equivalent(const mlx::core::Primitive&) const override {
    return true;
  }
};

// (nll (N,), lse (N, 2)) on the default stream, differentiable in logits.
std::vector<mlx::core::array> smoothed_nll(const mlx::core::array& logits, const mlx::core::array& targets,
                                           float smoothing);

// log_softmax (N, V) of x (N, V) on the default stream, differentiable.
mlx::core::array log_softmax(const mlx::core::array& x);

} // namespace mlxseq
