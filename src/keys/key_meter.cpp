#include "keygate/keys/key_meter.hpp"

#include <algorithm>

namespace keygate {

namespace {
constexpr UnixMillis kHour = 3'600'000;
constexpr int kMaxPayerHops = 8;  // rotations in a row, each within the last one's grace
}  // namespace

// ---- CreditAccount

CreditAccount::Answer CreditAccount::spend(std::int64_t cost, UnixMillis now) {
  UnixMillis due = next_refill_.load(std::memory_order_relaxed);
  if (due != 0 && now >= due) refill(now);
  std::int64_t b = balance_.load(std::memory_order_relaxed);
  do {
    if (b < cost) return {false, b, next_refill_.load(std::memory_order_relaxed)};
  } while (!balance_.compare_exchange_weak(b, b - cost, std::memory_order_relaxed));
  return {true, b - cost, next_refill_.load(std::memory_order_relaxed)};
}

CreditAccount::Answer CreditAccount::peek(std::int64_t cost, UnixMillis now) {
  UnixMillis due = next_refill_.load(std::memory_order_relaxed);
  if (due != 0 && now >= due) refill(now);
  std::int64_t b = balance_.load(std::memory_order_relaxed);
  return {b >= cost, b, next_refill_.load(std::memory_order_relaxed)};
}

void CreditAccount::charge(std::int64_t cost, UnixMillis now) {
  UnixMillis due = next_refill_.load(std::memory_order_relaxed);
  if (due != 0 && now >= due) refill(now);
  std::int64_t b = balance_.load(std::memory_order_relaxed);
  while (!balance_.compare_exchange_weak(b, std::max<std::int64_t>(0, b - cost),
                                         std::memory_order_relaxed)) {
  }
}

CreditAccount::Seed CreditAccount::seed() {
  std::lock_guard lock(mu_);
  Seed s;
  s.balance = balance_.load(std::memory_order_relaxed);
  s.version = version_;
  s.refilled_at = refilled_at_;
  if (refill_) {
    s.refill_amount = refill_->amount;
    s.refill_interval_ms = refill_->interval.count();
  }
  return s;
}

void CreditAccount::refill(UnixMillis now) {
  std::lock_guard lock(mu_);
  UnixMillis due = next_refill_.load(std::memory_order_relaxed);
  if (!refill_ || due == 0 || now < due) return;  // another thread was first
  const UnixMillis at = Credits{0, refill_, refilled_at_}.last_refill(now);
  // Top up; requests spending meanwhile just retry their CAS.
  std::int64_t pre = balance_.load(std::memory_order_relaxed);
  while (!balance_.compare_exchange_weak(pre, std::max(pre, refill_->amount),
                                         std::memory_order_relaxed)) {
  }
  spent_before_refill_ += mark_ - pre;
  mark_ = std::max(pre, refill_->amount);
  refilled_at_ = at;
  refilled_in_batch_ = at;
  next_refill_.store(at + refill_->interval.count(), std::memory_order_relaxed);
}

void CreditAccount::adopt(const std::optional<Credits>& credits, std::int64_t version) {
  std::lock_guard lock(mu_);
  if (!credits) {
    enabled_.store(false, std::memory_order_release);
    next_refill_.store(0, std::memory_order_relaxed);
    version_ = version;
    refill_.reset();
    mark_ = balance_.load(std::memory_order_relaxed);
    spent_before_refill_ = 0;
    refilled_in_batch_.reset();
    return;
  }
  if (version != version_) {
    // An operator set the balance: it replaces ours, and spending not yet
    // written is dropped with it (the store's row has moved on too).
    version_ = version;
    balance_.store(credits->remaining, std::memory_order_relaxed);
    mark_ = credits->remaining;
    spent_before_refill_ = 0;
    refilled_in_batch_.reset();
    refilled_at_ = credits->refilled_at;
  }
  refill_ = credits->refill;
  next_refill_.store(refill_ ? refilled_at_ + refill_->interval.count() : 0,
                     std::memory_order_relaxed);
  enabled_.store(true, std::memory_order_release);
}

std::optional<CreditAccount::Flush> CreditAccount::take_flush(const std::string& key_id) {
  std::lock_guard lock(mu_);
  const std::int64_t b = balance_.load(std::memory_order_relaxed);
  if (mark_ == b && spent_before_refill_ == 0 && !refilled_in_batch_) return std::nullopt;
  Flush f;
  f.delta.key_id = key_id;
  f.delta.version = version_;
  f.delta.spent_before_refill = spent_before_refill_;
  f.delta.spent = mark_ - b;
  f.delta.refilled_at = refilled_in_batch_;
  f.delta.refill_amount = refill_ ? refill_->amount : 0;
  f.snapshot = b;
  mark_ = b;
  spent_before_refill_ = 0;
  refilled_in_batch_.reset();
  return f;
}

void CreditAccount::restore(const Flush& f) {
  std::lock_guard lock(mu_);
  if (f.delta.version != version_) return;  // an operator's balance replaced it meanwhile
  // The unwritten delta goes before what was spent since. With a refill since,
  // everything before that refill is "before" it; otherwise the older delta's
  // refill (if any) stays the last one, and its "after" part grows.
  if (refilled_in_batch_) {
    spent_before_refill_ += f.delta.spent_before_refill + f.delta.spent;
  } else {
    spent_before_refill_ = f.delta.spent_before_refill;
    mark_ += f.delta.spent;
    refilled_in_batch_ = f.delta.refilled_at;
  }
}

void CreditAccount::resync(std::int64_t version, std::int64_t snapshot, std::int64_t stored) {
  std::lock_guard lock(mu_);
  if (version != version_ || refilled_in_batch_ || stored == snapshot) return;
  const std::int64_t diff = stored - snapshot;
  std::int64_t b = balance_.load(std::memory_order_relaxed);
  std::int64_t next = 0;
  do {
    next = std::max<std::int64_t>(0, b + diff);
  } while (!balance_.compare_exchange_weak(b, next, std::memory_order_relaxed));
  mark_ += next - b;  // what this process spent since the snapshot stays unwritten
}

// ---- UsageMeter

void UsageMeter::count(UsageOutcome o, UnixMillis now) {
  const std::int64_t hour = now / kHour;
  Slot& s = slots_[static_cast<size_t>(hour & 1)];
  if (s.hour.load(std::memory_order_relaxed) != hour) s.hour.store(hour, std::memory_order_relaxed);
  // Release: whoever drains this count also sees the hour it belongs to.
  s.n[static_cast<size_t>(o)].fetch_add(1, std::memory_order_release);
}

void UsageMeter::drain(const std::string& key_id, std::vector<UsageCounts>& out) {
  for (Slot& s : slots_) {
    UsageCounts c;
    bool any = false;
    for (size_t i = 0; i < s.n.size(); ++i) {
      c.counts[i] = s.n[i].exchange(0, std::memory_order_acquire);
      any = any || c.counts[i] != 0;
    }
    if (!any) continue;
    c.key_id = key_id;
    c.hour = s.hour.load(std::memory_order_acquire) * kHour;
    out.push_back(std::move(c));
  }
}

// ---- KeyMeter

KeyMeter* KeyMeter::payer() {
  KeyMeter* m = this;
  for (int hop = 0; hop < kMaxPayerHops && m; ++hop) {
    if (CreditAccount* a = m->account(); a && a->enabled()) return m;
    m = m->credits_from_.load(std::memory_order_acquire);
  }
  return nullptr;
}

void KeyMeter::mark_dirty() {
  // Once per key per flush: the board's lock is never taken per request.
  if (!dirty_.load(std::memory_order_relaxed) && !dirty_.exchange(true, std::memory_order_acq_rel))
    board_.dirty(this);
}

// ---- MeterBoard

KeyMeter& MeterBoard::meter_locked(std::string_view key_id) {
  auto it = meters_.find(key_id);
  if (it == meters_.end())
    it =
        meters_.emplace(std::string(key_id), std::make_unique<KeyMeter>(std::string(key_id), *this))
            .first;
  return *it->second;
}

KeyMeter& MeterBoard::meter(std::string_view key_id) {
  std::lock_guard lock(mu_);
  return meter_locked(key_id);
}

KeyMeter* MeterBoard::find(std::string_view key_id) {
  std::lock_guard lock(mu_);
  auto it = meters_.find(key_id);
  return it == meters_.end() ? nullptr : it->second.get();
}

KeyMeter* MeterBoard::apply(const KeyRecord& r) {
  std::lock_guard lock(mu_);
  auto it = meters_.find(r.id);
  KeyMeter* m = it == meters_.end() ? nullptr : it->second.get();
  const bool metered = r.credits || !r.credits_key.empty() || (m && m->account());
  if (!metered) return m;
  if (!m) m = &meter_locked(r.id);
  if (r.credits || m->account()) {
    if (!m->own_account_) {
      m->own_account_ = std::make_unique<CreditAccount>();
      m->account_.store(m->own_account_.get(), std::memory_order_release);
    }
    m->own_account_->adopt(r.credits, r.credits_version);
  }
  KeyMeter* from = r.credits_key.empty() ? nullptr : &meter_locked(r.credits_key);
  m->credits_from_.store(from, std::memory_order_release);
  return m;
}

void MeterBoard::dirty(KeyMeter* m) {
  std::lock_guard lock(dirty_mu_);
  dirty_.push_back(m);
}

MeterBoard::Batch MeterBoard::collect() {
  {
    std::lock_guard lock(dirty_mu_);
    spare_.swap(dirty_);
  }
  Batch b;
  for (KeyMeter* m : spare_) {
    m->dirty_.store(false, std::memory_order_release);  // before draining: nothing is missed
    if (CreditAccount* a = m->account())
      if (auto f = a->take_flush(m->key_id_)) b.credits.push_back(std::move(*f));
    m->usage_.drain(m->key_id_, b.usage);
  }
  spare_.clear();
  return b;
}

void MeterBoard::restore(const CreditAccount::Flush& f) {
  if (KeyMeter* m = find(f.delta.key_id))
    if (CreditAccount* a = m->account()) {
      a->restore(f);
      m->mark_dirty();
    }
}

void MeterBoard::resync(const CreditAccount::Flush& f, std::int64_t stored) {
  if (KeyMeter* m = find(f.delta.key_id))
    if (CreditAccount* a = m->account()) a->resync(f.delta.version, f.snapshot, stored);
}

size_t MeterBoard::size() const {
  std::lock_guard lock(mu_);
  return meters_.size();
}

}  // namespace keygate
