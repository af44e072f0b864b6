// Host <-> device copies of activations at the speed of pinned memory. A tfjs tensor's data is pageable JS memory:
// the driver copies pageable memory through its own small bounce buffer at a third of the link's speed (16 vs 55
// GB/s on the H200 host). So inputs are copied into a pinned staging buffer by several threads, each slice sent as
// soon as it is staged (the copies overlap the DMA), and outputs are downloaded into pinned staging and copied out
// by threads. Memory that is already pinned is sent directly. Pinned blocks come from a pool: page-locking new
// memory costs far more than the copy (BENCHMARKS.md, the H200 end-to-end section).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
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

// Enqueues host -> device of `bytes` on `stream`. A pageable source is copied through `staging` in chunks taken in
// order by several threads, each chunk's DMA enqueued once it is staged (the first DMA starts after one chunk's
// memcpy, not after the whole copy); the caller keeps `staging` untouched until the stream has passed the copy.
// Returns when the host side is done.
void uploadStaged(void* dst, const void* src, size_t bytes, cudaStream_t stream, PinnedStaging& staging);

struct PrefaultJob;

// Downloads `bytes` from `src` into the pageable `dst` through the pinned `landing`: the DMA is enqueued in chunks
// (each chunk's completion recorded by an event), and helper threads copy each chunk out of `landing` as soon as
// it landed, in order, so the copy-out trails the DMA by one chunk. A fresh `dst`'s page faults are taken earlier,
// while the GPU is busy: prefault() starts them on helper threads (call it before the upload), run() waits for
// them before any chunk is copied; without one, each copy thread faults in its chunk's pages while that chunk's
// DMA runs. Whatever was enqueued on `stream` before run() (the kernels) runs first.
// Small copies are one DMA + memcpy.
class SlicedDownload {
 public:
  SlicedDownload() = default;
  ~SlicedDownload();
  SlicedDownload(const SlicedDownload&) = delete;
  SlicedDownload& operator=(const SlicedDownload&) = delete;
  void prefault(void* dst, size_t bytes);
  // `after`, when given, is recorded once the whole download is enqueued (a trace's timing event).
  void run(void* dst, const void* src, size_t bytes, void* landing, cudaStream_t stream, cudaEvent_t after = nullptr);
  // Host milliseconds of the last run's prefault (its own duration, on the helper threads) and of the wait for it.
  double lastPrefaultMs() const { return prefaultMs_; }
  double lastPrefaultWaitMs() const { return prefaultWaitMs_; }

 private:
  void waitPrefault();
  std::vector<cudaEvent_t> events_;
  std::shared_ptr<PrefaultJob> prefault_;
  double prefaultMs_ = 0, prefaultWaitMs_ = 0;
};

}  // namespace moe
