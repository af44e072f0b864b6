// Owning device allocations. Layer weights use plain cudaMalloc (resident for the layer's life); per-call
// op buffers use the stream-ordered pool (cudaMallocAsync) so repeated op calls do not pay cudaMalloc each time.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "moe_common.cuh"

namespace moe {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, cudaStream_t stream) : stream_(stream) { allocate(bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      stream_ = o.stream_;
    }
    return *this;
  }

  // Grows to at least `bytes` (contents are not kept).
  void ensure(size_t bytes) {
    if (bytes > bytes_) {
      release();
      allocate(bytes);
    }
  }
  template <typename T = void>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void allocate(size_t bytes) {
    if (bytes == 0) return;
    if (stream_) MOE_CUDA(cudaMallocAsync(&ptr_, bytes, stream_));
    else MOE_CUDA(cudaMalloc(&ptr_, bytes));
    bytes_ = bytes;
  }
  void release() noexcept {
    if (ptr_) {
      // Errors are ignored here: a destructor must not throw, and a sticky error is reported by the next call.
      if (stream_) (void)cudaFreeAsync(ptr_, stream_);
      else (void)cudaFree(ptr_);
    }
    ptr_ = nullptr;
    bytes_ = 0;
  }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  cudaStream_t stream_ = nullptr;  // null: synchronous cudaMalloc/cudaFree
};

}  // namespace moe
