// Independent rows (sequences, examples) split among the cores.

#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mlxseq {

// Runs body(first, last) over [0, count) in up to min(cores, 8, count) threads.
template <typename Body>
void over_rows(int count, Body body) {
  const int workers = std::max(1, std::min<int>({count, int(std::thread::hardware_concurrency()), 8}));
  if (workers == 1) return body(0, count);
  std::vector<std::thread> threads;
  const int share = (count + workers - 1) / workers;
  for (int first = share; first < count; first += share) {
    threads.emplace_back(body, first, std::min(count, first + share));
  }
  body(0, std::min(count, share));
  for (auto& thread : threads) thread.join();
}

// Runs body(first, last) over [0, count) on the OpenMP threads, the ones oneDNN's products run
// on (the same libgomp: they are already awake between a scan's products), when the rows hold
// at least kSplitWork values in all; else, or built without OpenMP, in this thread. For the work
// of each step of a scan, where starting threads would cost more than the step's loops.
// Returns whether it split the rows.
constexpr size_t kSplitWork = 16384;

template <typename Body>
bool over_row_blocks(int count, size_t values_per_row, Body body) {
#ifdef _OPENMP
  if (count > 1 && size_t(count) * values_per_row >= kSplitWork && omp_get_max_threads() > 1) {
#pragma omp parallel
    {
      const int workers = omp_get_num_threads(), share = (count + workers - 1) / workers;
      const int first = std::min(count, omp_get_thread_num() * share), last = std::min(count, first + share);
      if (first < last) body(first, last);
    }
    return true;
  }
#endif
  body(0, count);
  return false;
}

// The OpenMP threads a parallel region gets (1 when built without OpenMP).
inline int openmp_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Runs body(i) for i in [0, count) at once, one OpenMP thread each (one after another without
// OpenMP), and rethrows the first exception any of them threw once all have finished.
template <typename Body>
void in_threads(int count, Body body) {
  std::vector<std::exception_ptr> errors(count);
  const auto guarded = [&](int i) {
    try {
      body(i);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
#ifdef _OPENMP
#pragma omp parallel for num_threads(count) schedule(static, 1)
  for (int i = 0; i < count; ++i) guarded(i);
#else
  for (int i = 0; i < count; ++i) guarded(i);
#endif
  for (auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

} // namespace mlxseq
