// Process-wide runtime settings that the fsa program applies once at start.
#pragma once

#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace fsa::train {

namespace detail {
inline bool freed_memory_retained_flag = false;
}  // namespace detail

/// Makes glibc's malloc keep the memory of freed tensors in the process for
/// reuse: no mmap for large blocks (M_MMAP_MAX = 0) and no trimming of the
/// heap's free top (M_TRIM_THRESHOLD = INT_MAX). By default glibc maps every
/// block of 128 KiB or more separately and unmaps it on free (raising that
/// threshold only up to 32 MiB) and trims the heap, so each batch's
/// activations come back from the kernel as fresh, zero-filled pages: page
/// faults that cost as much system time as the arithmetic on a CPU
/// (docs/PERFORMANCE.md, change history). The process keeps its peak footprint
/// instead, as with PyTorch's recommended jemalloc/tcmalloc. Call before the
/// first tensor is made. Returns false, changing nothing, where the C library
/// is not glibc.
inline bool retain_freed_memory() {
#if defined(__GLIBC__)
  // mallopt returns 1 on success.
  detail::freed_memory_retained_flag =
      mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#endif
  return detail::freed_memory_retained_flag;
}

/// True once retain_freed_memory() has taken effect in this process.
inline bool freed_memory_retained() { return detail::freed_memory_retained_flag; }

}  // namespace fsa::train
