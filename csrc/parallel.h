// Independent rows (sequences, examples) split among the cores.

#pragma once

#include <algorithm>
#include <thread>
#include <vector>

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

} // namespace mlxseq
