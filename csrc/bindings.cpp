// mlxseq._native: the Recurrence primitive for Python (mlxseq/layers/native.py loads it).

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "cross_entropy.h"
#include "ctc.h"
#include "onednn.h"
#include "parallel.h"
#include "recurrence.h"
#include "top_k.h"

namespace nb = nanobind;
using namespace nb::literals;

#ifndef MLXSEQ_MLX_VERSION
#define MLXSEQ_MLX_VERSION "unknown"
#endif

NB_MODULE(_native, m) {
  m.doc() = "mlxseq's native recurrence (one MLX primitive per layer-direction)";
  m.attr("mlx_version") = MLXSEQ_MLX_VERSION;  // the MLX this was built against
  m.def("recurrence", &mlxseq::recurrence, "kind"_a, "x"_a, "h0"_a, "c0"_a.none(), "w_ih"_a.none(), "bias"_a.none(),
        "w_hh"_a, "b_hh"_a.none(), "w_hr"_a.none(), "mask"_a.none(), "reverse"_a, "keep"_a = false,
        "outputs (T, B, P), h_T (B, P) and, for the LSTM, c_T (B, H) of one layer-direction over x (T, B, D) "
        "projected by w_ih (and bias), or over given projections xp (T, B, G) when w_ih is None; keep=True makes "
        "it differentiable (it then also returns what the backward pass reads)");
  m.def("ctc_loss", &mlxseq::ctc_loss, "log_probs"_a, "targets"_a, "input_lengths"_a, "target_lengths"_a, "blank"_a,
        "losses (B,) and the alphas (T, B, 2S+1) of the CTC loss, differentiable in log_probs");
  m.def("smoothed_nll", &mlxseq::smoothed_nll, "logits"_a, "targets"_a, "smoothing"_a,
        "the label-smoothed cross-entropy (N,) of each row of logits (N, V) and (max, log-sum-exp - max) (N, 2), "
        "differentiable in logits");
  m.def("log_softmax", &mlxseq::log_softmax, "x"_a, "log_softmax (N, V) over the rows of x (N, V), differentiable");
  m.def("top_k", &mlxseq::top_k, "x"_a, "k"_a,
        "indices (N, k) and values (N, k) of the k largest entries of each row of x (N, M), largest first");
  m.def("onednn_products", &mlxseq::onednn::products_made, "products oneDNN has taken in this process");
  m.def("split_steps", &mlxseq::split_steps, "steps whose gate loops were split among the threads in this process");
  m.def("openmp_threads", &mlxseq::openmp_threads, "the OpenMP threads a parallel region gets (1 without OpenMP)");
  m.def("scans_in_shares", &mlxseq::scans_in_shares,
        "forward scans whose rows ran in shares, a thread each over all steps, in this process");
  m.def("blas_name", &mlxseq::blas_name, "the library whose cblas_sgemm the steps call");
  m.def("use_blas", &mlxseq::use_blas, "sgemm"_a, "pack_get_size"_a, "pack"_a, "compute"_a, "name"_a,
        "call these functions (addresses) for the steps' products; 0 for those a library lacks");
  m.def("use_onednn", &mlxseq::use_onednn, "path"_a,
        "take the steps' products with oneDNN's matmul from libdnnl at path; returns '' or why it could not");
}
