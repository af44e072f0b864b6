// Pinned staging and the pinned block pool (host_staging.h).
#include "host_staging.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "moe_common.cuh"

namespace moe {
namespace {

// Below this a copy is one memcpy/DMA: thread start-up (tens of microseconds) would cost more than it saves.
constexpr size_t kParallelMinBytes = size_t(1) << 20;
constexpr size_t kSliceMinBytes = size_t(512) << 10;
constexpr int kMaxThreads = 16;  // page faults on a fresh output array dominate its copy: they scale with threads
// Free pinned blocks kept for reuse (page-locking is slow: about a millisecond per tens of MiB).
constexpr size_t kMaxFreeBytes = size_t(1) << 30;

int threadsFor(size_t bytes) {
  if (bytes < kParallelMinBytes) return 1;
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return static_cast<int>(std::min<size_t>({static_cast<size_t>(kMaxThreads), static_cast<size_t>(hw),
                                            bytes / kSliceMinBytes}));
}

// Runs body(begin, end) over [0, bytes) split into `n` 64-byte-aligned slices, one per thread (slice 0 here).
template <typename F>
void forSlices(size_t bytes, int n, F body) {
  const size_t per = (bytes / n + 63) / 64 * 64;
  std::vector<std::thread> workers;
  for (int i = 1; i < n; i++) {
    const size_t b = std::min(bytes, per * i), e = std::min(bytes, per * (i + 1));
    if (b < e) workers.emplace_back(body, b, e);
  }
  body(size_t(0), std::min(bytes, per));
  for (auto& w : workers) w.join();
}

}  // namespace

PinnedPool& PinnedPool::instance() {
  static PinnedPool* pool = new PinnedPool();  // never destroyed: blocks may come back during process teardown
  return *pool;
}

void* PinnedPool::acquire(size_t bytes, size_t* capacity) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The smallest free block that fits and wastes at most half of itself.
    int best = -1;
    for (size_t i = 0; i < free_.size(); i++) {
      if (free_[i].second >= bytes && free_[i].second <= 2 * bytes + 4096 &&
          (best < 0 || free_[i].second < free_[best].second)) {
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) {
      auto b = free_[best];
      free_.erase(free_.begin() + best);
      freeBytes_ -= b.second;
      *capacity = b.second;
      return b.first;
    }
  }
  void* p = nullptr;
  const size_t cap = std::max<size_t>(bytes, 64);
  MOE_CUDA(cudaHostAlloc(&p, cap, cudaHostAllocDefault));
  *capacity = cap;
  return p;
}

void PinnedPool::release(void* block, size_t capacity) {
  if (block == nullptr) return;
  std::vector<void*> drop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace_back(block, capacity);
    freeBytes_ += capacity;
    while (freeBytes_ > kMaxFreeBytes && !free_.empty()) {  // oldest first
      drop.push_back(free_.front().first);
      freeBytes_ -= free_.front().second;
      free_.erase(free_.begin());
    }
  }
  for (void* p : drop) (void)cudaFreeHost(p);
}

PinnedPool::~PinnedPool() {
  for (auto& b : free_) (void)cudaFreeHost(b.first);
}

bool isPinnedHost(const void* p) {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeHost;
}

PinnedStaging::~PinnedStaging() { PinnedPool::instance().release(ptr_, capacity_); }

void* PinnedStaging::ensure(size_t bytes) {
  if (bytes > capacity_) {
    PinnedPool::instance().release(ptr_, capacity_);
    ptr_ = nullptr;
    capacity_ = 0;
    ptr_ = PinnedPool::instance().acquire(bytes, &capacity_);
  }
  return ptr_;
}

void uploadStaged(void* dst, const void* src, size_t bytes, cudaStream_t stream, PinnedStaging& staging) {
  if (bytes == 0) return;
  if (bytes < kParallelMinBytes || isPinnedHost(src)) {
    MOE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    return;
  }
  char* stage = static_cast<char*>(staging.ensure(bytes));
  const int n = threadsFor(bytes);
  std::vector<cudaError_t> status(n, cudaSuccess);
  const size_t per = (bytes / n + 63) / 64 * 64;
  forSlices(bytes, n, [&](size_t b, size_t e) {
    std::memcpy(stage + b, static_cast<const char*>(src) + b, e - b);
    // cudaMemcpyAsync is thread-safe; the slices are disjoint, so their order on the stream does not matter.
    status[b / per] = cudaMemcpyAsync(static_cast<char*>(dst) + b, stage + b, e - b, cudaMemcpyHostToDevice, stream);
  });
  for (cudaError_t s : status) MOE_CUDA(s);
}

void parallelCopy(void* dst, const void* src, size_t bytes) {
  const int n = threadsFor(bytes);
  if (n <= 1) {
    if (bytes) std::memcpy(dst, src, bytes);
    return;
  }
  forSlices(bytes, n, [&](size_t b, size_t e) {
    std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
  });
}

}  // namespace moe
