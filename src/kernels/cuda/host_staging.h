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

// A page-locked host block mapped into the device's address space, which kernels read and write directly. A
// small forward copies x in and y out with kernels of its CUDA graph instead of DMAs: on the H200 host a DMA costs
// 6-9 us of latency each way, more than the whole allowance of the end-to-end target at T <= 16.
class MappedHostBuffer {
 public:
  MappedHostBuffer() = default;
  ~MappedHostBuffer();
  MappedHostBuffer(const MappedHostBuffer&) = delete;
  MappedHostBuffer& operator=(const MappedHostBuffer&) = delete;
  // Grows to at least `bytes` (contents are not kept); returns true when the block moved.
  bool ensure(size_t bytes);
  void* host() const { return host_; }
  void* device() const { return device_; }

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
  size_t capacity_ = 0;
};

// The largest copy (bytes) that goes through mapped blocks and copy kernels instead of DMAs: 256 KiB unless
// TFJS_MOE_CUDA_MAPPED_KIB says otherwise (0: never; benchmark A/B, read per call).
size_t mappedCopyMaxBytes();

// Enqueues host -> device of `bytes` on `stream`. A pageable source is copied through `staging` in chunks taken in
// order by several threads, each chunk's DMA enqueued once it is staged (the first DMA starts after one chunk's
// memcpy, not after the whole copy); the caller keeps `staging` untouched until the stream has passed the copy.
// Returns when the host side is done: true when the enqueued DMA reads `src` itself (it is pinned), so that `src`
// must stay untouched until the stream has passed the copy.
bool uploadStaged(void* dst, const void* src, size_t bytes, cudaStream_t stream, PinnedStaging& staging);

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
  // run() in two halves: begin() enqueues the DMAs and returns; end() waits for them, copies each chunk out and
  // synchronizes the stream (bytes 0: only that). The caller may do host work in between (a split forward: the
  // output tensor is made while the GPU runs); dst and landing stay untouched until end() returns. A begin() with
  // one still open ends that one first.
  void begin(void* dst, const void* src, size_t bytes, void* landing, cudaStream_t stream, cudaEvent_t after = nullptr);
  void end();
  bool pending() const { return pending_.active; }
  // Host milliseconds of the last run's prefault (its own duration, on the helper threads) and of the wait for it.
  double lastPrefaultMs() const { return prefaultMs_; }
  double lastPrefaultWaitMs() const { return prefaultWaitMs_; }

 private:
  void waitPrefault();
  struct Pending {
    bool active = false, single = false, touchHere = false;
    void* dst = nullptr;
    void* landing = nullptr;
    size_t bytes = 0, chunk = 0;
    int threads = 0, chunks = 0;
    cudaStream_t stream = nullptr;
  };
  Pending pending_;
  std::vector<cudaEvent_t> events_;
  std::shared_ptr<PrefaultJob> prefault_;
  double prefaultMs_ = 0, prefaultWaitMs_ = 0;
};

}  // namespace moe
