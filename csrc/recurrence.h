// One layer-direction of an RNN, GRU or LSTM over all time steps, as one MLX primitive.
//
// Inputs (float32, time-major), in this order, the optional ones only when present:
//   x (T, B, D)    the layer's inputs (projected: `project`), or xp (T, B, G), their projections
//   h0 (B, P)      initial hidden state
//   c0 (B, H)      LSTM: initial cell state
//   w_ih (G, D)    projected: input weight, xp_t = x_t W_ih^T + bias
//   bias (G,)      projected, when present: the input bias (LSTM, RNN: b_ih + b_hh; GRU: b_ih)
//   w_hh (G, P)    recurrent weight
//   b_hh (G,)      GRU: recurrent bias (b_hn sits inside r * (W_hn h + b_hn))
//   w_hr (P, H)    LSTM with proj_size: projection of the hidden state
//   mask (T, B)    1.0 where t < length, else 0.0
// Outputs: out (T, B, P) (0 at masked steps), h_T (B, P) and, for the LSTM, c_T (B, H);
// when differentiable (`keep`), also what the backward pass reads beside out, each stacked over
// time (T, B, ...): LSTM: c_t, z_t (and y_t when projected); GRU: the gates r, z, n and W_hn h + b_hn;
// the RNN nothing (its y_t is out_t). h_{t-1} is found from out, the mask and h0 (out_t is h_t at
// every valid step), and the LSTM's c_{t-1} likewise from c_t and c0.
//
// The input projections are made a chunk of steps at a time (one GEMM of about 1,024 rows),
// into the kept z_t (LSTM) or a chunk buffer, so no (T, B, G) array of them exists; the
// backward pass likewise forms d(xp) a chunk at a time and turns each chunk into dx and into
// the weight gradients (dW_ih, d(bias), dW_hh, d(b_hh), dW_hr: GEMMs over the chunk's steps,
// summed), as cuDNN forms weight gradients over many steps at once. Its VJP is the
// RecurrenceBackward primitive (the steps in the other direction, one product each).
//
// The gate math is mlxseq.layers.gates' (PyTorch's gate order; g = tanh(z_g) = 2 sigmoid(2 z_g) - 1,
// the factor 2 in the weights when xp is given, applied by the cells when x and W_ih are) with
// mlxseq.layers.activations' rational tanh.
// On CPU streams each step is one product into a preallocated buffer and one loop over the
// gates; other devices evaluate nothing here (mlxseq runs its MLX graph there instead). Wide
// batches run their forward steps in shares of rows, a thread each from the first step to the
// last (rows are independent sequences: no sync between steps), each share's products
// single-threaded and its inputs projected a step at a time; narrower ones split each step's
// product and loops among the threads.

#pragma once

#include <cstdint>
#include <string>

#include "mlx/array.h"
#include "cpu_primitive.h"
#include "mlx/primitives.h"
#include "mlx/utils.h"

namespace mlxseq {

enum class CellKind : int { rnn_tanh = 0, rnn_relu = 1, lstm = 2, gru = 3 };

struct RecurrenceLayout {
  CellKind kind;
  bool reverse;
  bool has_bias_hh;
  bool projected;
  bool masked;
  bool keep;  // also output what the backward pass reads
  bool project;  // the inputs are x and W_ih (and maybe a bias), not xp
  bool has_bias;  // projected: an input bias is given
};

class Recurrence : public CpuPrimitive {
 public:
  Recurrence(mlx::core::Stream stream, RecurrenceLayout layout)
      : CpuPrimitive(stream), layout_(layout) {}

  MLXSEQ_EVAL_CPU
  MLXSEQ_VJP
  MLXSEQ_NAME("MlxseqRecurrence")
  bool is_equivalent(const mlx::core::Primitive& other) const override;

 private:
  RecurrenceLayout layout_;
};

// The backward steps: dx (T, B, D) (d(xp) when not projected), d(h0) (B, P), LSTM: d(c0) (B, H);
// projected: dW_ih (G, D) and, with a bias, d(bias) (G,); dW_hh (G, P); GRU with b_hh: d(b_hh)
// (G,); LSTM with proj_size: dW_hr (P, H); from the inputs, the kept arrays and the cotangents.
class RecurrenceBackward : public CpuPrimitive {
 public:
  RecurrenceBackward(mlx::core::Stream stream, RecurrenceLayout layout)
      : CpuPrimitive(stream), layout_(layout) {}

  MLXSEQ_EVAL_CPU
  MLXSEQ_NAME("MlxseqRecurrenceBackward")

 private:
  RecurrenceLayout layout_;
};

// The outputs described above, scheduled on the default stream.
std::vector<mlx::core::array> recurrence(
    int kind,
    const mlx::core::array& x,
    const mlx::core::array& h0,
    const std::optional<mlx::core::array>& c0,
    const std::optional<mlx::core::array>& w_ih,
    const std::optional<mlx::core::array>& bias,
    const mlx::core::array& w_hh,
    const std::optional<mlx::core::array>& b_hh,
    const std::optional<mlx::core::array>& w_hr,
    const std::optional<mlx::core::array>& mask,
    bool reverse,
    bool keep);

// The library the steps call: addresses of its cblas_sgemm and, when it has them, MKL's
// cblas_sgemm_pack_get_size / cblas_sgemm_pack / cblas_sgemm_compute (0: absent; sgemm 0:
// the process's cblas_sgemm). Set before any recurrence runs.
void use_blas(uintptr_t sgemm, uintptr_t pack_get_size, uintptr_t pack, uintptr_t compute, const std::string& name);

// Makes the steps' products oneDNN matmuls from the libdnnl at `path` (onednn.h); returns ""
// or why it could not (the products then stay as they were).
std::string use_onednn(const std::string& path);

// Which library the steps' products call, for `mlxseq info`.
std::string blas_name();

// How many steps in this process had their gate loops split among the threads (the tests check that
// wide layers take that path).
long split_steps();

// How many forward scans in this process ran their rows in shares, a thread each from the first step to
// the last (the tests check which layers take that path).
long scans_in_shares();

} // namespace mlxseq
