// Host <-> device copies of activations at the speed of pinned memory. A tfjs tensor's data is pageable JS memory:
// the driver copies pageable memory through its own small bounce buffer at a third of the link's speed (16 vs 55
// GB/s on the H200 host). So inputs are copied into a pinned staging buffer by several threads, each slice sent as
// soon as it is staged (the copies overlap the DMA), and outputs are downloaded into pinned staging and copied out
// by threads. Memory that is already pinned is sent directly. Pinned blocks come from a pool: page-locking new
// memory costs far more than the copy (BENCHMARKS.md, the H200 end-to-end section).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <mutex>
#include <vector>

namespace moe {

// Page-locked host blocks, reused by size class (a block keeps its capacity; free blocks are capped).
class PinnedPool {
 public:
  static PinnedPool& instance();
  // A block of at least `bytes` (its capacity is written to *capacity).
  void* acquire(size_t bytes, size_t* capacity);
  void release(void* block, size_t capacity);
  ~PinnedPool();

 private:
  std::mutex mu_;
  std::vector<std::pair<void*, size_t>> free_;
  size_t freeBytes_ = 0;
};

// Whether `p` is page-locked host memory the device can read directly.
bool isPinnedHost(const void* p);

// A pinned staging buffer owned by one user (a layer), grown on demand; its block goes back to the pool.
class PinnedStaging {
 public:
  PinnedStaging() = default;
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;
  void* ensure(size_t bytes);

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// Enqueues host -> device of `bytes` on `stream`. A pageable source is copied through `staging` in slices by
// several threads, each slice's DMA enqueued once it is staged; the caller keeps `staging` untouched until the
// stream has passed the copy. Returns when the host side is done.
void uploadStaged(void* dst, const void* src, size_t bytes, cudaStream_t stream, PinnedStaging& staging);

// Host memcpy split over a few threads when it is large.
void parallelCopy(void* dst, const void* src, size_t bytes);

// Enqueues device -> host of `bytes` from `src` into the pinned `landing` in slices (each slice's completion
// recorded by an event of `events`), then, on the caller and pool threads, touches each slice of the pageable
// `dst` (a fresh array's page faults happen while the GPU is still busy) and copies each slice out of `landing`
// as soon as its DMA is done. Returns when `dst` holds the data; whatever was enqueued before on `stream` (the
// kernels) runs first. Small copies are one DMA + memcpy.
class SlicedDownload {
 public:
  SlicedDownload() = default;
  ~SlicedDownload();
  SlicedDownload(const SlicedDownload&) = delete;
  SlicedDownload& operator=(const SlicedDownload&) = delete;
  void run(void* dst, const void* src, size_t bytes, void* landing, cudaStream_t stream);

 private:
  std::vector<cudaEvent_t> events_;
};

}  // namespace moe
