#pragma once
// What a serving process meters per key while it runs (SPEC §11): credits,
// spent on the request path exactly across threads, and usage counts by hour
// and outcome. Both reach the store in batches written by the store worker
// (MeterBoard::collect), never per request. Time is passed in by the caller
// (the pipeline's wall clock, a test's own numbers): nothing here reads a clock.
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "keygate/keys/key_record.hpp"
#include "keygate/keys/key_store.hpp"

namespace keygate {

// One key's credit balance. Spending is a CAS on one word: exact under any
// concurrency, never below zero. A refill that is due is applied by the first
// request (or look) that notices it, under the account's mutex, which is taken
// only for refills (once per interval), operator changes and the store
// worker's flush: it also keeps the bookkeeping that lets the flush write the
// spending as a delta (CreditDelta) that reproduces this balance exactly.
class CreditAccount {
 public:
  struct Answer {
    bool allowed = false;
    std::int64_t remaining = 0;  // after this request, or as it stands when refused
    UnixMillis next_refill = 0;  // 0: no refill
  };

  bool enabled() const { return enabled_.load(std::memory_order_acquire); }
  Answer spend(std::int64_t cost, UnixMillis now);
  // What spend would answer, taking nothing (a refill that is due is applied).
  Answer peek(std::int64_t cost, UnixMillis now);
  // Spending already decided elsewhere (the shared balance in Redis paid it):
  // booked here, never below zero, so that the store worker writes it as
  // this process' delta like its own spending.
  void charge(std::int64_t cost, UnixMillis now);

  // What the shared balance is seeded from: this process' view of the store's.
  struct Seed {
    std::int64_t balance = 0;
    std::int64_t version = 0;
    UnixMillis refilled_at = 0;
    std::int64_t refill_amount = 0;
    std::int64_t refill_interval_ms = 0;  // 0: no refill
  };
  Seed seed();

  // The key's credits as stored. A version other than the one held sets the
  // balance (an operator set it); the same version keeps the balance in memory,
  // which is newer than the stored one. No credits: disabled.
  void adopt(const std::optional<Credits>& credits, std::int64_t version);

  struct Flush {
    CreditDelta delta;
    std::int64_t snapshot = 0;  // the balance the delta brings the store to (one writer)
  };
  // Spending and refills since the last take_flush (nullopt: none).
  std::optional<Flush> take_flush(const std::string& key_id);
  // A delta that could not be written: back into the books, to go with the next.
  void restore(const Flush& f);
  // The store holds `stored` after the delta of `snapshot`: other processes'
  // spending (or a clamp at zero) makes the difference, which the balance follows.
  void resync(std::int64_t version, std::int64_t snapshot, std::int64_t stored);

 private:
  void refill(UnixMillis now);

  std::atomic<std::int64_t> balance_{0};
  std::atomic<UnixMillis> next_refill_{0};  // 0: no refill
  std::atomic<bool> enabled_{false};
  std::mutex mu_;
  // Under mu_:
  std::int64_t version_ = -1;
  std::optional<CreditRefill> refill_;
  UnixMillis refilled_at_ = 0;
  std::int64_t mark_ = 0;                 // the balance at the last flush or refill
  std::int64_t spent_before_refill_ = 0;  // since the last flush, before its last refill
  std::optional<UnixMillis> refilled_in_batch_;
};

// Requests by outcome for the current hour (and the one before, until the
// store worker drained it): two slots chosen by the hour's parity, relaxed
// atomic adds, no lock and no allocation.
class UsageMeter {
 public:
  void count(UsageOutcome o, UnixMillis now);
  void drain(const std::string& key_id, std::vector<UsageCounts>& out);

 private:
  struct Slot {
    std::atomic<std::int64_t> hour{-1};
    std::array<std::atomic<std::int64_t>, 4> n{};
  };
  std::array<Slot, 2> slots_;
};

class MeterBoard;

// Everything metered for one key; created once per key (MeterBoard), never freed.
class KeyMeter {
 public:
  KeyMeter(std::string key_id, MeterBoard& board) : key_id_(std::move(key_id)), board_(board) {}
  KeyMeter(const KeyMeter&) = delete;
  KeyMeter& operator=(const KeyMeter&) = delete;

  const std::string& key_id() const { return key_id_; }
  void count(UsageOutcome o, UnixMillis now) {
    usage_.count(o, now);
    mark_dirty();
  }
  // Whose credits this key's requests spend: its own, or (after a rotation
  // moved them) its replacement's; null when neither has credits.
  KeyMeter* payer();
  CreditAccount* account() const { return account_.load(std::memory_order_acquire); }
  CreditAccount::Answer spend(std::int64_t cost, UnixMillis now) {
    auto a = account()->spend(cost, now);
    if (a.allowed) mark_dirty();
    return a;
  }
  void charge(std::int64_t cost, UnixMillis now) {
    account()->charge(cost, now);
    mark_dirty();
  }

 private:
  friend class MeterBoard;
  void mark_dirty();

  std::string key_id_;
  MeterBoard& board_;
  UsageMeter usage_;
  std::unique_ptr<CreditAccount> own_account_;  // set once, under the board's mutex
  std::atomic<CreditAccount*> account_{nullptr};
  std::atomic<KeyMeter*> credits_from_{nullptr};
  std::atomic<bool> dirty_{false};
};

class MeterBoard {
 public:
  // The meter of a key, created on first use (once per key: a lock and an allocation).
  KeyMeter& meter(std::string_view key_id);
  KeyMeter* find(std::string_view key_id);
  // A key record was loaded or changed: its credits and where it spends them.
  // Returns its meter if it has one (a key with credits always has).
  KeyMeter* apply(const KeyRecord& r);

  // For the store worker: what changed since the last collect.
  struct Batch {
    std::vector<CreditAccount::Flush> credits;
    std::vector<UsageCounts> usage;
  };
  Batch collect();
  void restore(const CreditAccount::Flush& f);
  void resync(const CreditAccount::Flush& f, std::int64_t stored);
  size_t size() const;

 private:
  friend class KeyMeter;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  KeyMeter& meter_locked(std::string_view key_id);
  void dirty(KeyMeter* m);

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<KeyMeter>, Hash, std::equal_to<>> meters_;
  std::mutex dirty_mu_;
  std::vector<KeyMeter*> dirty_, spare_;  // swapped by collect: no allocation once warm
};

}  // namespace keygate
