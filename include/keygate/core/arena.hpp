#pragma once
// An allocator that draws from a std::pmr::memory_resource when it has one (a
// per-request arena: the proxy session's parsed heads, released at once when
// the request ends) and from the heap otherwise (tests, tools). Unlike
// std::pmr::polymorphic_allocator it is assignable, which Beast's basic_fields
// requires of its allocator.
#include <cstddef>
#include <memory_resource>
#include <new>
#include <type_traits>

namespace keygate {

template <class T>
class ArenaAllocator {
 public:
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;

  ArenaAllocator() noexcept = default;
  explicit ArenaAllocator(std::pmr::memory_resource* arena) noexcept : arena_(arena) {}
  template <class U>
  ArenaAllocator(const ArenaAllocator<U>& o) noexcept : arena_(o.arena()) {}  // NOLINT

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    return static_cast<T*>(arena_ ? arena_->allocate(bytes, alignof(T)) : ::operator new(bytes));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (arena_)
      arena_->deallocate(p, n * sizeof(T), alignof(T));
    else
      ::operator delete(p);
  }
  std::pmr::memory_resource* arena() const noexcept { return arena_; }

  template <class U>
  friend bool operator==(const ArenaAllocator& a, const ArenaAllocator<U>& b) noexcept {
    return a.arena_ == b.arena();
  }

 private:
  std::pmr::memory_resource* arena_ = nullptr;
};

}  // namespace keygate
