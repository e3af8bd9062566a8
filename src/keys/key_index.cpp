#include "keygate/keys/key_index.hpp"

#include <fmt/format.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <utility>

// Layout, per shard (10M keys: ~125 bytes a key, ~1.25 GB):
// - Slots: one 64-byte cache line per key (hash, flags, where the rest is,
//   the two atomics readers write), in 2 MiB chunks, numbered densely from 0.
// - Table: open addressing from the hash to the slot and the key's text, 8
//   bytes an entry, so that a lookup reads slot and text in parallel: two
//   cache misses in a row, not three (a table of millions is never in cache).
// - Text: id, name and owner of every key packed into 2 MiB blocks.
// - Profiles: what many keys share (plan, scopes, allowed IPs parsed once,
//   rate override), interned and counted by the keys holding them.
// - Times: expiry, revocation and rotation, only for the keys that have any.
// Big shards' chunks are huge pages: fewer page faults while 10M keys load,
// fewer TLB misses on lookups.

namespace keygate {

namespace {

// ---- Memory

// The index's large arrays come straight from the kernel: pages are touched
// lazily (untouched ones cost nothing) and returned when freed (malloc keeps
// freed tables and blocks for reuse: ~40 MB of RSS at 10M keys). A `huge`
// chunk is 2 MiB-aligned and backed by huge pages where the kernel allows:
// fewer page faults while 10M keys load, fewer TLB misses on lookups. A shard
// asks for that from its second chunk on, so that a small index stays small.
constexpr size_t kChunkBytes = size_t{2} << 20;

class Chunk {
 public:
  Chunk() = default;
  Chunk(size_t bytes, bool huge);
  Chunk(Chunk&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_) {}
  Chunk& operator=(Chunk&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~Chunk();
  char* get() const { return p_; }

 private:
  static constexpr size_t kMapBytes = 64 * 1024;  // below: malloc
  char* p_ = nullptr;
  size_t bytes_ = 0;
};

Chunk::Chunk(size_t bytes, bool huge) : bytes_(bytes) {
  if (bytes < kMapBytes) {
    p_ = static_cast<char*>(std::malloc(bytes));
    if (!p_) throw std::bad_alloc();
    return;
  }
  const size_t align = huge ? kChunkBytes : 0;
  void* m =
      ::mmap(nullptr, bytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  char* p = static_cast<char*>(m);
  if (huge) {  // keep the 2 MiB-aligned part
    char* aligned = reinterpret_cast<char*>(
        (reinterpret_cast<std::uintptr_t>(p) + kChunkBytes - 1) & ~(kChunkBytes - 1));
    if (aligned > p) ::munmap(p, static_cast<size_t>(aligned - p));
    if (const size_t tail = static_cast<size_t>(p + bytes + align - (aligned + bytes)))
      ::munmap(aligned + bytes, tail);
    p = aligned;
#ifdef MADV_HUGEPAGE
    ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: without it, small pages
#endif
  }
  p_ = p;
}

Chunk::~Chunk() {
  if (!p_) return;
  if (bytes_ < kMapBytes)
    std::free(p_);
  else
    ::munmap(p_, bytes_);
}

Chunk allocate_chunk(size_t bytes, bool huge) {
  return Chunk(bytes, huge);
}

// ---- Text

// Many keys' variable-length text in blocks of up to 2 MiB, addressed by
// 32-bit references (block << 21 | offset): no allocation, pointer or spare
// capacity per key. The first block grows by doubling; text longer than a
// block gets a block of its own.
class TextArena {
 public:
  using Ref = std::uint32_t;

  Ref add(std::string_view bytes);
  const char* data(Ref r) const { return blocks_[r >> kOffsetBits].data.get() + (r & kMask); }
  char* data(Ref r) { return blocks_[r >> kOffsetBits].data.get() + (r & kMask); }
  size_t bytes() const { return bytes_; }  // added, whether still referenced or not

 private:
  static constexpr unsigned kOffsetBits = 21;
  static constexpr size_t kBlockBytes = size_t{1} << kOffsetBits;
  static_assert(kBlockBytes == kChunkBytes);
  static constexpr Ref kMask = (Ref{1} << kOffsetBits) - 1;
  static constexpr size_t kNoTail = ~size_t{0};
  struct Block {
    Chunk data;
    std::uint32_t size = 0, capacity = 0;
  };
  std::vector<Block> blocks_;
  size_t tail_ = kNoTail;  // the block text is appended to
  size_t bytes_ = 0;
};

TextArena::Ref TextArena::add(std::string_view bytes) {
  constexpr size_t kFirstBytes = 256;
  constexpr size_t kMaxBlocks = size_t{1} << (32 - kOffsetBits);
  const size_t n = bytes.size();
  const bool own_block = n > kBlockBytes;
  if (own_block || tail_ == kNoTail || blocks_[tail_].size + std::max<size_t>(n, 1) > kBlockBytes) {
    if (blocks_.size() == kMaxBlocks) throw std::length_error("key index: text arena full");
    Block& b = blocks_.emplace_back();
    if (own_block) {
      b.data = allocate_chunk(n, false);
      b.capacity = static_cast<std::uint32_t>(n);
    } else if (tail_ != kNoTail) {  // a block filled up: this shard is big
      b.data = allocate_chunk(kBlockBytes, true);
      b.capacity = kBlockBytes;
    }
    if (!own_block) tail_ = blocks_.size() - 1;
  }
  const size_t index = own_block ? blocks_.size() - 1 : tail_;
  Block& b = blocks_[index];
  if (b.size + n > b.capacity) {  // the first block doubles (offsets stay valid) up to full
    size_t cap = std::max(kFirstBytes, size_t{b.capacity});
    while (cap < b.size + n) cap *= 2;
    cap = std::min(cap, kBlockBytes);
    Chunk grown = allocate_chunk(cap, false);
    if (b.size) std::memcpy(grown.get(), b.data.get(), b.size);
    b.data = std::move(grown);
    b.capacity = static_cast<std::uint32_t>(cap);
  }
  const Ref ref = static_cast<Ref>(index << kOffsetBits | b.size);
  if (n) std::memcpy(b.data.get() + b.size, bytes.data(), n);
  b.size += static_cast<std::uint32_t>(n);
  bytes_ += n;
  return ref;
}

// A key's text: id, name and owner, each as its length (one byte below 255,
// else 255 and four bytes) followed by its bytes.
void encode_text(std::string& out, std::string_view id, std::string_view name,
                 std::string_view owner) {
  out.clear();
  for (std::string_view part : {id, name, owner}) {
    if (part.size() < 255) {
      out += static_cast<char>(part.size());
    } else {
      out += static_cast<char>(255);
      const auto n = static_cast<std::uint32_t>(part.size());
      out.append(reinterpret_cast<const char*>(&n), sizeof n);
    }
    out += part;
  }
}

struct KeyText {
  std::string_view id, name, owner;
  size_t size = 0;  // encoded bytes
};

KeyText decode_text(const char* p) {
  const char* const start = p;
  std::string_view parts[3];
  for (auto& part : parts) {
    size_t n = static_cast<unsigned char>(*p++);
    if (n == 255) {
      std::uint32_t v;
      std::memcpy(&v, p, sizeof v);
      p += sizeof v;
      n = v;
    }
    part = {p, n};
    p += n;
  }
  return {parts[0], parts[1], parts[2], static_cast<size_t>(p - start)};
}

// ---- Slots

constexpr std::uint32_t kNoTimes = ~std::uint32_t{0};
constexpr KeyTimes kNever{};

struct alignas(64) Slot {
  KeyHash hash{};
  TextArena::Ref text = 0;  // also in the table entry, which a lookup reads first
  std::uint32_t profile = 0;
  std::uint32_t times = kNoTimes;
  bool enabled = true;
  std::atomic<UnixMillis> last_usage_report{0};
  std::atomic<KeyMeter*> meter{nullptr};
};
static_assert(sizeof(Slot) == 64);
static_assert(std::is_trivially_destructible_v<Slot>);

// Slots in chunks of 32768 (2 MiB), each constructed when appended and never
// moved: the atomics readers hold stay put.
class SlotChunks {
 public:
  static constexpr size_t kPerChunk = kChunkBytes / sizeof(Slot);

  Slot& operator[](size_t i) const {
    return reinterpret_cast<Slot*>(chunks_[i / kPerChunk].get())[i % kPerChunk];
  }
  size_t size() const { return size_; }
  Slot& emplace_back() {
    if (size_ % kPerChunk == 0) chunks_.push_back(allocate_chunk(kChunkBytes, !chunks_.empty()));
    Slot* at = reinterpret_cast<Slot*>(chunks_.back().get()) + size_ % kPerChunk;
    ++size_;
    return *std::construct_at(at);
  }
  size_t bytes() const { return size_ * sizeof(Slot) + chunks_.capacity() * sizeof(Chunk); }

 private:
  std::vector<Chunk> chunks_;
  size_t size_ = 0;
};

// ---- Table

// Open addressing from a key hash to its slot and text, 8 bytes an entry:
// the slot number (24 bits, plus one so that 0 means empty) beside 8 more bits
// of the hash (a probe rarely reads a slot that is not the one), and the
// text's reference. Linear probing, at most 3/4 full. Slots are numbered
// densely from 0 and never removed, so the table grows by walking them.
class SlotTable {
 public:
  static constexpr std::uint32_t kMaxSlots = (std::uint32_t{1} << 24) - 1;
  struct Entry {
    std::uint32_t slot_tag = 0;  // tag << 24 | (slot + 1); 0: empty
    TextArena::Ref text = 0;
    std::uint32_t slot() const { return (slot_tag & kMaxSlots) - 1; }
  };

  // The entry of `h`, or null.
  Entry* find(const KeyHash& h, const SlotChunks& slots) const {
    if (capacity_ == 0) return nullptr;
    const size_t mask = capacity_ - 1;
    const std::uint32_t tag = tag_of(h);
    for (size_t i = home(h) & mask;; i = (i + 1) & mask) {
      Entry& e = entries_[i];
      if (e.slot_tag == 0) return nullptr;
      if ((e.slot_tag >> 24) == tag && slots[e.slot()].hash == h) return &e;
    }
  }
  // Starts loading where a lookup of `h` begins (no fault if the table moves meanwhile).
  void prefetch(const KeyHash& h) const {
    if (capacity_) __builtin_prefetch(&entries_[home(h) & (capacity_ - 1)]);
  }
  // Indexes the last of `slots` (not in the table yet).
  Entry& insert(const SlotChunks& slots) {
    if (slots.size() * 4 > capacity_ * 3) {  // grow: re-place the others first
      const size_t capacity = std::max<size_t>(16, capacity_ * 2);
      const size_t bytes = capacity * sizeof(Entry);
      storage_ = allocate_chunk(bytes, bytes >= kChunkBytes);
      entries_ = reinterpret_cast<Entry*>(storage_.get());
      std::memset(static_cast<void*>(entries_), 0, bytes);
      capacity_ = capacity;
      for (size_t s = 0; s + 1 < slots.size(); ++s) place(slots, s);
    }
    return place(slots, slots.size() - 1);
  }
  template <class F>
  void for_each(const F& f) {
    for (size_t i = 0; i < capacity_; ++i)
      if (entries_[i].slot_tag) f(entries_[i]);
  }
  size_t bytes() const { return capacity_ * sizeof(Entry); }

 private:
  static size_t home(const KeyHash& h) {
    std::uint64_t v;
    std::memcpy(&v, h.data(), sizeof v);  // a digest: already uniform
    return static_cast<size_t>(v);
  }
  static std::uint32_t tag_of(const KeyHash& h) { return h[8]; }
  Entry& place(const SlotChunks& slots, size_t s) {
    const Slot& slot = slots[s];
    const size_t mask = capacity_ - 1;
    size_t i = home(slot.hash) & mask;
    while (entries_[i].slot_tag != 0) i = (i + 1) & mask;
    entries_[i] = {tag_of(slot.hash) << 24 | static_cast<std::uint32_t>(s + 1), slot.text};
    return entries_[i];
  }

  Chunk storage_;
  Entry* entries_ = nullptr;
  size_t capacity_ = 0;
};

// ---- Profiles

struct KeyProfile {
  std::string text;  // plan \0 scopes (comma-separated) \0 allowed IPs \0 rate: the interning key
  std::uint32_t plan_len = 0, scopes_len = 0;
  std::vector<Cidr> nets;
  std::optional<Rate> rate;
  std::uint32_t holders = 0;  // keys; 0: free, its number to be reused
};

class ProfilePool {
 public:
  // The profile of `r`'s plan, scopes, allowed IPs and rate, one more holder.
  std::uint32_t acquire(const KeyRecord& r);
  void release(std::uint32_t id);
  const KeyProfile& operator[](std::uint32_t id) const { return profiles_[id]; }
  size_t size() const { return by_text_.size(); }  // held by some key
  size_t bytes() const;                            // approximate

 private:
  std::deque<KeyProfile> profiles_;  // never moves one: by_text_'s views stay valid
  std::vector<std::uint32_t> free_;
  std::unordered_map<std::string_view, std::uint32_t> by_text_;
  std::string scratch_;
};

std::uint32_t ProfilePool::acquire(const KeyRecord& r) {
  scratch_.assign(r.plan);
  scratch_ += '\0';
  const size_t scopes_at = scratch_.size();
  for (size_t i = 0; i < r.scopes.size(); ++i) {
    if (i) scratch_ += ',';
    scratch_ += r.scopes[i];
  }
  const size_t scopes_len = scratch_.size() - scopes_at;
  scratch_ += '\0';
  for (size_t i = 0; i < r.allowed_ips.size(); ++i) {
    if (i) scratch_ += ',';
    scratch_ += r.allowed_ips[i];
  }
  scratch_ += '\0';
  if (r.rate)
    fmt::format_to(std::back_inserter(scratch_), "{}/{}/{}", r.rate->requests,
                   r.rate->period.count(), r.rate->burst);

  if (auto it = by_text_.find(scratch_); it != by_text_.end()) {
    ++profiles_[it->second].holders;
    return it->second;
  }
  std::uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<std::uint32_t>(profiles_.size());
    profiles_.emplace_back();
  }
  KeyProfile& p = profiles_[id];
  p.text = scratch_;
  p.plan_len = static_cast<std::uint32_t>(r.plan.size());
  p.scopes_len = static_cast<std::uint32_t>(scopes_len);
  for (const auto& ip : r.allowed_ips)
    if (auto c = parse_cidr(ip)) p.nets.push_back(*c);
  p.rate = r.rate;
  p.holders = 1;
  by_text_.emplace(p.text, id);
  return id;
}

void ProfilePool::release(std::uint32_t id) {
  KeyProfile& p = profiles_[id];
  if (--p.holders) return;
  by_text_.erase(p.text);
  p.text.clear();
  p.nets.clear();
  p.rate.reset();
  free_.push_back(id);
}

size_t ProfilePool::bytes() const {
  constexpr size_t kMapNode = 48;  // libstdc++: next, key view, value, cached hash; rounded
  size_t n = profiles_.size() * sizeof(KeyProfile) + free_.capacity() * sizeof(std::uint32_t) +
             by_text_.size() * kMapNode + by_text_.bucket_count() * sizeof(void*);
  for (const auto& p : profiles_) {
    if (p.text.capacity() > 15) n += p.text.capacity() + 1;
    n += p.nets.capacity() * sizeof(Cidr);
  }
  return n;
}

}  // namespace

// ---- IndexedKey, AuthKey

bool IndexedKey::claim_usage_report(UnixMillis now, UnixMillis interval) const {
  UnixMillis last = last_usage_report_->load(std::memory_order_relaxed);
  if (now - last < interval) return false;
  return last_usage_report_->compare_exchange_strong(last, now, std::memory_order_relaxed);
}

void AuthKey::set_text(std::string_view id, std::string_view name, std::string_view owner,
                       std::string_view plan, std::string_view scopes_csv) {
  id_len_ = static_cast<std::uint8_t>(std::min(id.size(), id_.size()));
  std::copy_n(id.begin(), id_len_, id_.begin());
  name_len_ = static_cast<std::uint16_t>(name.size());
  owner_len_ = static_cast<std::uint16_t>(owner.size());
  plan_len_ = static_cast<std::uint16_t>(plan.size());
  blob_.clear();
  blob_.reserve(name.size() + owner.size() + plan.size() + scopes_csv.size());
  blob_.append(name).append(owner).append(plan).append(scopes_csv);
}

AuthKey::AuthKey(const KeyRecord& r)
    : enabled_(r.enabled),
      rate_(r.rate),
      times_{r.expires_at.value_or(0), r.revoked_at.value_or(0), r.rotated_at.value_or(0)} {
  set_text(r.id, r.name, r.owner, r.plan, join_csv(r.scopes));
  for (const auto& ip : r.allowed_ips)
    if (auto c = parse_cidr(ip)) nets_.push_back(*c);
}

void AuthKey::assign(const IndexedKey& k) {
  enabled_ = k.enabled();
  nets_.assign(k.allowed_nets().begin(), k.allowed_nets().end());
  rate_ = k.rate();
  times_ = k.times();
  set_text(k.id(), k.name(), k.owner(), k.plan(), k.scopes_csv());
}

bool AuthKey::has_scope(std::string_view scope) const {
  std::string_view rest = scopes_csv();
  while (!rest.empty()) {
    auto comma = rest.find(',');
    if (rest.substr(0, comma) == scope) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

// ---- KeyIndex

struct KeyIndex::Shard {
  mutable std::shared_mutex mu;
  // Under mu:
  SlotChunks slots;
  SlotTable table;
  TextArena text;
  size_t live_text = 0;  // bytes of text.bytes() some slot refers to
  ProfilePool profiles;
  std::vector<KeyTimes> times;
  std::vector<std::uint32_t> free_times;
  std::string scratch;  // the text being written

  void rewrite_text(Slot& slot, SlotTable::Entry& entry);
  void set_times(Slot& slot, const KeyTimes& t);
  void compact_text();
};

// Writes `scratch` as an indexed slot's text.
void KeyIndex::Shard::rewrite_text(Slot& slot, SlotTable::Entry& entry) {
  char* old = text.data(slot.text);
  const size_t old_size = decode_text(old).size;
  if (scratch.size() <= old_size) {  // renames rarely grow: rewrite in place
    std::memcpy(old, scratch.data(), scratch.size());
  } else {
    slot.text = entry.text = text.add(scratch);
  }
  live_text = live_text - old_size + scratch.size();
  constexpr size_t kMinGarbage = 64 * 1024;
  const size_t garbage = text.bytes() - live_text;
  if (garbage > kMinGarbage && garbage > live_text / 2) compact_text();
}

void KeyIndex::Shard::compact_text() {
  TextArena fresh;
  table.for_each([&](SlotTable::Entry& e) {
    const char* p = text.data(e.text);
    e.text = slots[e.slot()].text = fresh.add({p, decode_text(p).size});
  });
  text = std::move(fresh);
}

void KeyIndex::Shard::set_times(Slot& slot, const KeyTimes& t) {
  if (!t.any()) {
    if (slot.times != kNoTimes) free_times.push_back(slot.times);
    slot.times = kNoTimes;
    return;
  }
  if (slot.times == kNoTimes) {
    if (free_times.empty()) {
      slot.times = static_cast<std::uint32_t>(times.size());
      times.emplace_back();
    } else {
      slot.times = free_times.back();
      free_times.pop_back();
    }
  }
  times[slot.times] = t;
}

KeyIndex::KeyIndex() : shards_(std::make_unique<Shard[]>(kShards)) {}
KeyIndex::~KeyIndex() = default;

KeyIndex::Shard& KeyIndex::shard(const KeyHash& h) const {
  return shards_[shard_number(h)];
}

std::optional<IndexedKey> KeyIndex::find(const KeyHash& h,
                                         std::shared_lock<std::shared_mutex>& lock) const {
  Shard& s = shard(h);
  lock = std::shared_lock(s.mu);
  const SlotTable::Entry* e = s.table.find(h, s.slots);
  if (!e) return std::nullopt;
  Slot& slot = s.slots[e->slot()];
  const KeyText text = decode_text(s.text.data(e->text));  // read beside the slot
  const KeyProfile& p = s.profiles[slot.profile];
  IndexedKey k;
  k.id_ = text.id;
  k.name_ = text.name;
  k.owner_ = text.owner;
  k.plan_ = std::string_view(p.text).substr(0, p.plan_len);
  k.scopes_csv_ = std::string_view(p.text).substr(p.plan_len + 1, p.scopes_len);
  k.nets_ = &p.nets;
  k.rate_ = &p.rate;
  k.times_ = slot.times == kNoTimes ? kNever : s.times[slot.times];
  k.enabled_ = slot.enabled;
  k.last_usage_report_ = &slot.last_usage_report;
  k.meter_ = &slot.meter;
  return k;
}

KeyMeter& KeyIndex::meter(const IndexedKey& indexed) const {
  if (KeyMeter* m = indexed.meter_->load(std::memory_order_acquire)) return *m;
  KeyMeter& m = meters_.meter(indexed.id());
  indexed.meter_->store(&m, std::memory_order_release);
  return m;
}

void KeyIndex::upsert(const KeyRecord& r) {
  Shard& s = shard(r.hash);
  std::unique_lock lock(s.mu);
  upsert(s, r);
}

void KeyIndex::apply(std::span<const KeyRecord> rows) {
  // The rows' order by shard, stable (a counting sort): first[i] is where
  // shard i's rows start in `order`.
  std::array<std::uint32_t, kShards + 1> first{};
  for (const KeyRecord& r : rows) ++first[shard_number(r.hash) + 1];
  for (size_t i = 0; i < kShards; ++i) first[i + 1] += first[i];
  std::vector<std::uint32_t> order(rows.size());
  std::array<std::uint32_t, kShards> next;
  std::copy_n(first.begin(), kShards, next.begin());
  for (std::uint32_t i = 0; i < rows.size(); ++i) order[next[shard_number(rows[i].hash)]++] = i;

  constexpr std::uint32_t kAhead = 8;  // lookups in flight
  std::int64_t seq = applied_seq;
  for (size_t i = 0; i < kShards; ++i) {
    const std::uint32_t begin = first[i], end = first[i + 1];
    if (begin == end) continue;
    Shard& s = shards_[i];
    std::unique_lock lock(s.mu);
    for (std::uint32_t k = begin; k < std::min(begin + kAhead, end); ++k)
      s.table.prefetch(rows[order[k]].hash);
    for (std::uint32_t k = begin; k < end; ++k) {
      if (k + kAhead < end) s.table.prefetch(rows[order[k + kAhead]].hash);
      const KeyRecord& r = rows[order[k]];
      upsert(s, r);
      seq = std::max(seq, r.change_seq);
    }
  }
  if (seq > applied_seq) applied_seq = seq;
}

void KeyIndex::upsert(Shard& s, const KeyRecord& r) {
  encode_text(s.scratch, r.id, r.name, r.owner);
  const std::uint32_t profile = s.profiles.acquire(r);
  SlotTable::Entry* entry = s.table.find(r.hash, s.slots);
  if (entry) {
    Slot& slot = s.slots[entry->slot()];
    s.rewrite_text(slot, *entry);
    s.profiles.release(slot.profile);
    slot.profile = profile;
  } else {
    if (s.slots.size() >= SlotTable::kMaxSlots) throw std::length_error("key index: shard full");
    Slot& added = s.slots.emplace_back();
    added.hash = r.hash;
    added.text = s.text.add(s.scratch);
    s.live_text += s.scratch.size();
    added.profile = profile;
    entry = &s.table.insert(s.slots);
    if (r.foreign_format) foreign_keys_.fetch_add(1, std::memory_order_relaxed);
  }
  Slot& slot = s.slots[entry->slot()];
  // Credits changes reach the meter before the new record serves a request.
  // A key without credits and without a meter yet gets one on its first
  // request (meter()): at start-up, millions of keys skip the board's lock.
  if (r.credits || !r.credits_key.empty() || slot.meter.load(std::memory_order_relaxed))
    if (KeyMeter* m = meters_.apply(r)) slot.meter.store(m, std::memory_order_release);
  s.set_times(slot, {r.expires_at.value_or(0), r.revoked_at.value_or(0), r.rotated_at.value_or(0)});
  slot.enabled = r.enabled;
}

size_t KeyIndex::size() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::shared_lock lock(shards_[i].mu);
    n += shards_[i].slots.size();
  }
  return n;
}

size_t KeyIndex::count_active(UnixMillis now) const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    const Shard& s = shards_[i];
    std::shared_lock lock(s.mu);
    for (size_t k = 0; k < s.slots.size(); ++k)
      if (const Slot& slot = s.slots[k];
          slot.enabled && (slot.times == kNoTimes || s.times[slot.times].active(now)))
        ++n;
  }
  return n;
}

KeyIndex::Footprint KeyIndex::footprint() const {
  Footprint f;
  for (size_t i = 0; i < kShards; ++i) {
    const Shard& s = shards_[i];
    std::shared_lock lock(s.mu);
    f.keys += s.slots.size();
    f.slots += s.slots.bytes();
    f.table += s.table.bytes();
    f.text += s.text.bytes();
    f.text_garbage += s.text.bytes() - s.live_text;
    f.profiles += s.profiles.size();
    f.profile_bytes += s.profiles.bytes();
    f.times +=
        s.times.capacity() * sizeof(KeyTimes) + s.free_times.capacity() * sizeof(std::uint32_t);
  }
  return f;
}

}  // namespace keygate
