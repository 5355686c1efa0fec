// oneDNN's matmul for the recurrence's per-step products, loaded at run time when present.
//
// Built only where oneDNN's headers were found (MLXSEQ_HAVE_ONEDNN); the library itself
// (libdnnl.so.3 of the `onednn-cpu-gomp` wheel) is opened with dlopen, so the extension
// loads and runs on the process's cblas_sgemm without it.
//
// Each product keeps one matmul primitive per beta (oneDNN caches compiled kernels, so a
// primitive of a shape seen before costs a few microseconds). With enough steps to pay
// for it, the weight is reordered once into the blocked layout oneDNN's kernels read
// fastest (the packed-weight idea of MKL's cblas_sgemm_pack, with oneDNN's brgemm kernels).

#pragma once

#include <memory>
#include <string>

namespace mlxseq::onednn {

// Opens libdnnl at `path`; "" on success, else why it could not (it is then not used).
std::string load(const std::string& path);

// Whether load succeeded (and the build has oneDNN support).
bool loaded();

// The library's version and path, for `mlxseq info`.
std::string name();

// How many products oneDNN has taken in this process (the tests check that it really does).
long products_made();

// c (m, n) = op(a) @ op(b) + beta * c (beta 0 or 1; a, b, c row-major, op the transpose when asked), as
// one oneDNN matmul made for the call; false when oneDNN is not loaded or refused (the caller then uses
// sgemm). The recurrence's other GEMMs go through it so that every product of a scan runs on oneDNN's
// OpenMP threads: an OpenBLAS call between them found those threads still spinning (2x slower).
bool gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, const float* b, float beta, float* c);

// c (m, n) = a (m, k) @ op(w) + beta * c, with op(w) = w^T for w (n, k) when transposed,
// else w (k, n); w is the same at every call. With a bias (n,), beta 0 gives a @ op(w) + bias.
// `packed_like`: a ready Product of the same w (another m), whose packed copy of w this one reads
// instead of packing its own where oneDNN takes that layout for this shape too (it must outlive this one).
class Product {
 public:
  Product(int m, int n, int k, const float* w, bool transposed, bool pack, const float* bias = nullptr,
          const Product* packed_like = nullptr);
  ~Product();
  Product(const Product&) = delete;
  Product& operator=(const Product&) = delete;

  // False when oneDNN could not make the primitive (the caller then uses sgemm).
  bool ready() const;
  void operator()(const float* a, float beta, float* c) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

} // namespace mlxseq::onednn
