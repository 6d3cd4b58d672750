// Page-aligned anonymous memory for large working sets (the KV cache): the kernel zeroes it
// lazily, and it is backed by transparent huge pages where the system allows them, so
// streaming through it does not miss the TLB on every 4 KiB page.
#pragma once
#include <cstddef>
#include <cstdint>

namespace muse {

class LargeBuffer {
 public:
  LargeBuffer() = default;
  explicit LargeBuffer(size_t bytes);  // zero-filled; throws muse::Error when out of memory
  ~LargeBuffer();
  LargeBuffer(LargeBuffer&& other) noexcept;
  LargeBuffer& operator=(LargeBuffer&& other) noexcept;
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace muse
