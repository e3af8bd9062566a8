"""Replicas sharing rate limits on a real redis-server (issue 12, SPEC §8):
two or three keygate processes sharing one real PostgreSQL (the keys) and one
real redis-server (the buckets) draw from one bucket per key or owner, their headers come from that bucket, and while Redis
is down each on_error mode answers as SPEC §8 says, at once; once Redis is back
the shared limit applies again. Waits are on /metrics, every loop is bounded."""
import json
import signal
import statistics
import threading
import time
import unittest

import pg
import upstream
from harness import GatewayTest, wait_until
from redis_server import RedisServer

THREADS = 2  # I/O threads per replica: one Redis connection each
SCOPED = {"path_prefix": "/scoped/", "require_scopes": ["never-granted"]}  # a 403 to a valid key


class Upstream(upstream.Server):
    # The burst reaches the upstream at once from six connection pools: more
    # than socketserver's default listen backlog of 5.
    request_queue_size = 256


class Replicas(GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.upstream = Upstream(("127.0.0.1", 0))
        threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()

    def setUp(self):
        self.redis = RedisServer()
        self.addCleanup(self.redis.destroy)
        self.db = pg.shared().create_database()  # a fresh one per test

    def replica(self, on_error="local", timeout="1s", start=True, url=None, backend="redis",
                **config):
        # A generous command timeout: a slow CI machine must not turn into a fallback.
        redis = {"url": url or self.redis.url(), "timeout": timeout, "on_error": on_error}
        cfg = {"threads": THREADS, "routes": [SCOPED],
               "rate_limit": {"backend": backend, "redis": redis}, **config}
        g = self.gateway(cfg, start=False)
        g.config["store"] = {"postgres": self.db}  # instead of the harness' SQLite file
        g.write_config()
        if start:
            self.start(g)
        return g

    def start(self, g):
        g.start()
        if g.config["rate_limit"]["backend"] == "redis":
            self.assertTrue(self.connected(g), "replica not connected to Redis:\n" + g.logs())

    @staticmethod
    def up(g):
        try:
            return g.metric("keygate_redis_connections_up")
        except OSError:
            return -1

    def connected(self, g, n=THREADS):
        return wait_until(lambda: self.up(g) == n or not g.running(), timeout=15) and g.running()

    def key(self, g, *args):
        """A key in the shared store (a running replica is waited for until it has it)."""
        return g.create_key("--name", "k", *args)["key"]

    @staticmethod
    def get(g, key, path="/x"):
        return g.request("GET", path, headers={"X-Api-Key": key})

    def redis_down(self, *gs):
        self.redis.stop()
        for g in gs:  # every connection saw the reset
            self.assertTrue(wait_until(lambda: g.metric("keygate_redis_connections_up") == 0, 15))

    def redis_back(self, *gs):
        self.redis.start()  # same port, empty
        for g in gs:
            self.assertTrue(self.connected(g), g.logs())

    def hammer(self, targets, per_client=20, clients_per_target=3):
        """Concurrent clients (keep-alive, each its own connection), all released
        at once; returns ({status: count}, seconds from release to last answer)."""
        counts, lock = {}, threading.Lock()
        go = threading.Barrier(len(targets) * clients_per_target + 1)

        def client(g, key):
            conn = g.connection()
            got = []
            go.wait()
            try:
                for _ in range(per_client):
                    r = g.request("GET", "/x", headers={"X-Api-Key": key}, conn=conn)
                    got.append(r.status)
            finally:
                conn.close()
                with lock:
                    for s in got:
                        counts[s] = counts.get(s, 0) + 1
        threads = [threading.Thread(target=client, args=t)
                   for t in targets for _ in range(clients_per_target)]
        for t in threads:
            t.start()
        go.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join(120)
        return counts, time.monotonic() - t0

    def assertBurstAdmitted(self, counts, elapsed, total):
        """30/min, burst 30: exactly 30 while no token refilled (2 s per token);
        SPEC §8's bound burst + rate × t if the machine was slower than that."""
        self.assertEqual(set(counts) - {200, 429}, set(), counts)
        self.assertEqual(sum(counts.values()), total)
        if elapsed < 2.0:
            self.assertEqual(counts.get(200), 30, counts)
        else:
            self.assertGreaterEqual(counts.get(200, 0), 30, counts)
            self.assertLessEqual(counts.get(200, 0), 30 + int(elapsed / 2.0), (counts, elapsed))

    def decisions(self, g, source):
        return g.metric("keygate_rate_limit_decisions_total", f'source="{source}"')

    # --- shared limits ---------------------------------------------------------

    def test_three_replicas_hammering_one_key_admit_exactly_the_burst(self):
        a = self.replica(start=False)
        key = self.key(a, "--rate", "30/1m", "--burst", "30")
        gs = [a, self.replica(start=False), self.replica(start=False)]
        for g in gs:
            self.start(g)
        counts, elapsed = self.hammer([(g, key) for g in gs])
        self.assertBurstAdmitted(counts, elapsed, 3 * 3 * 20)
        # Every admission was Redis' answer; nothing fell back to a per-replica bucket.
        self.assertEqual(sum(self.decisions(g, "fallback") for g in gs), 0)
        self.assertGreaterEqual(sum(self.decisions(g, "shared") for g in gs), 30)
        # Once Redis said "empty", most refusals cost no round trip (the deny cache).
        self.assertGreater(sum(self.decisions(g, "cache") for g in gs), 0)
        self.assertLess(sum(g.metric("keygate_redis_round_trips_total") for g in gs), 3 * 3 * 20)

    def test_owner_scope_is_one_bucket_for_two_keys_across_replicas(self):
        plans = {"default": {"rate": {"requests": 60, "period": "1m"}},
                 "team": {"rate": {"requests": 30, "period": "1m", "burst": 30},
                          "scope": "owner"}}
        a = self.replica(start=False, plans=plans)
        k1 = self.key(a, "--owner", "acme", "--plan", "team")
        k2 = self.key(a, "--owner", "acme", "--plan", "team")
        other = self.key(a, "--owner", "umbrella", "--plan", "team")
        gs = [a, self.replica(start=False, plans=plans), self.replica(start=False, plans=plans)]
        for g in gs:
            self.start(g)
        targets = [(gs[0], k1), (gs[1], k1), (gs[1], k2), (gs[2], k2)]
        counts, elapsed = self.hammer(targets, per_client=15, clients_per_target=2)
        self.assertBurstAdmitted(counts, elapsed, 4 * 2 * 15)
        # Another owner on the same plan has a bucket of its own.
        r = self.get(gs[2], other)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-ratelimit-remaining"), "29")

    def test_headers_come_from_the_shared_bucket(self):
        a = self.replica(start=False)
        key = self.key(a, "--rate", "10/1h")
        gs = [a, self.replica(start=False), self.replica(start=False)]
        for g in gs:
            self.start(g)
        now = time.time()
        remaining, resets = [], []
        for i in range(10):
            r = self.get(gs[i % 3], key)
            self.assertEqual(r.status, 200, (i, r.body))
            self.assertEqual(r.header("x-ratelimit-limit"), "10")
            remaining.append(int(r.header("x-ratelimit-remaining")))
            resets.append(int(r.header("x-ratelimit-reset")))
            if i == 3:
                # A 403 to a valid key on another replica shows the shared bucket, takes nothing.
                f = self.get(gs[2], key, "/scoped/x")
                self.assertEnvelope(f, 403, "FORBIDDEN", "scope")
                self.assertEqual(f.header("x-ratelimit-remaining"), "6")
        self.assertEqual(remaining, list(range(9, -1, -1)))
        # Full again one interval (6 min) per token taken, on Redis' clock, from any replica.
        for n, reset in enumerate(resets, 1):
            self.assertAlmostEqual(reset, now + 360 * n, delta=5)
        for g in gs:
            r = self.get(g, key)
            body = self.assertEnvelope(r, 429, "RATE_LIMIT_ERROR", "rate_limit")
            self.assertEqual(r.header("x-ratelimit-remaining"), "0")
            retry = int(r.header("retry-after"))
            self.assertTrue(350 <= retry <= 361, retry)  # one token per 6 minutes
            self.assertEqual(body["error"]["details"]["retry_after_seconds"], retry)

    def test_a_key_created_on_one_replica_is_limited_on_all_from_one_bucket(self):
        # Keys spread through PostgreSQL (SPEC §8: within 1 s), buckets live in
        # Redis: a key created through A's admin API while all three run is
        # usable on B and C within 1 s, and its 3/1h are 3 across the three.
        gs = [self.replica(), self.replica(), self.replica()]
        a, b, c = gs
        staleness = []
        for i in range(5):
            r = a.admin("POST", "/v1/api-keys",
                        {"name": f"k{i}", "rate": {"requests": 3, "period": "1h", "burst": 3}})
            self.assertEqual(r.status, 201, r.body)
            key = r.json()["data"]["key"]
            t0 = time.monotonic()
            # A 403 scope refusal: the replica holds the key as active (and takes no token).
            known = lambda g: self.get(g, key, "/scoped/x").status == 403
            self.assertTrue(wait_until(lambda: known(b) and known(c), timeout=3, step=0.005))
            staleness.append(time.monotonic() - t0)
            got = [self.get(g, key).status for g in (b, c, a, b, c, a)]
            self.assertEqual(got, [200, 200, 200, 429, 429, 429], (i, [g.logs() for g in gs]))
        print(f"\n  key created on A -> usable on B and C: median "
              f"{statistics.median(staleness) * 1000:.0f} ms, max {max(staleness) * 1000:.0f} ms",
              flush=True)
        self.assertLess(max(staleness), 1.0)
        self.assertEqual(sum(self.decisions(g, "fallback") for g in gs), 0)

    def test_decision_latency_redis_beside_local(self):
        # What a shared decision adds to a request, seen from a client on
        # loopback: requests one at a time on a keep-alive connection, through
        # a replica on Redis and one with local buckets. They are answered by
        # the gateway (a 403 scope refusal, whose headers need the bucket: a
        # look, one round trip on Redis; a 429 of an empty bucket), so the test
        # upstream's latency is not in the figures. Printed, not asserted
        # (speed targets live in `make bench`); asserted is that each series
        # was decided where it says.
        shared = self.replica()
        local = self.replica(backend="local")
        key = self.key(shared, "--rate", "1000/1h")
        spent = self.key(shared, "--rate", "1/1h")
        self.assertTrue(wait_until(lambda: self.get(local, key).status == 200, timeout=3))
        self.assertEqual(self.get(shared, spent).status, 200)

        def series(g, k, path, expect, n=300):
            conn = g.connection()
            times = []
            try:
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = g.request("GET", path, headers={"X-Api-Key": k}, conn=conn)
                    times.append(time.perf_counter() - t0)
                    self.assertEqual(r.status, expect)
            finally:
                conn.close()
            return statistics.median(times) * 1e6

        on_local = series(local, key, "/scoped/x", 403)
        trips = shared.metric("keygate_redis_round_trips_total")
        on_redis = series(shared, key, "/scoped/x", 403)
        self.assertEqual(shared.metric("keygate_redis_round_trips_total") - trips, 300)
        cached = self.decisions(shared, "cache")
        on_cache = series(shared, spent, "/x", 429)
        self.assertGreaterEqual(self.decisions(shared, "cache") - cached, 290)
        print(f"\n  gateway-answered request, median of 300 one at a time: local bucket "
              f"{on_local:.0f} us, Redis round trip {on_redis:.0f} us, Redis deny cache "
              f"{on_cache:.0f} us", flush=True)

    # --- Redis down --------------------------------------------------------------

    def test_redis_down_on_error_local_limits_per_replica_then_shared_again(self):
        a = self.replica("local", start=False)
        key = self.key(a, "--rate", "3/1h")
        b = self.replica("local", start=False)
        for g in (a, b):
            self.start(g)
        trips = [g.metric("keygate_redis_round_trips_total") for g in (a, b)]
        self.redis_down(a, b)
        # Each replica has its own bucket now: 3 each, then 429.
        for g in (a, b):
            got = [self.get(g, key).status for _ in range(5)]
            self.assertEqual(got, [200, 200, 200, 429, 429], g.logs())
            self.assertEqual(self.decisions(g, "fallback"), 5)
        # Answered without waiting on Redis: not one command was attempted.
        self.assertEqual([g.metric("keygate_redis_round_trips_total") for g in (a, b)], trips)
        self.assertIn("redis unreachable", a.logs())
        self.redis_back(a, b)
        # The shared bucket again (Redis came back empty): 3 across both replicas.
        got = [self.get(g, key).status for g in (a, b, a, b, a)]
        self.assertEqual(got, [200, 200, 200, 429, 429])

    def test_redis_down_on_error_open_admits_then_shared_again(self):
        a = self.replica("open", start=False)
        key = self.key(a, "--rate", "3/1h")
        b = self.replica("open", start=False)
        for g in (a, b):
            self.start(g)
        self.redis_down(a, b)
        for g in (a, b):
            for _ in range(5):
                r = self.get(g, key)
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.header("x-ratelimit-limit"), "3")
                self.assertEqual(r.header("x-ratelimit-remaining"), "2")  # nothing is known
        self.redis_back(a, b)
        got = [self.get(g, key).status for g in (a, b, a, b)]
        self.assertEqual(got, [200, 200, 200, 429])

    def test_redis_down_on_error_closed_answers_503_then_shared_again(self):
        a = self.replica("closed", start=False)
        key = self.key(a, "--rate", "3/1h")
        b = self.replica("closed", start=False)
        for g in (a, b):
            self.start(g)
        self.assertEqual(self.get(a, key).status, 200)
        self.redis_down(a, b)
        for g in (a, b):
            r = self.get(g, key)
            self.assertEnvelope(r, 503, "UNAVAILABLE", "rate_limit_unavailable")
            self.assertIsNone(r.header("x-ratelimit-remaining"))
            # A refusal for another reason stays what it is (a look, never a 503).
            self.assertEnvelope(self.get(g, key, "/scoped/x"), 403, "FORBIDDEN", "scope")
            self.assertEqual(g.request("GET", "/ready").status, 200)  # Redis is not the store
        self.redis_back(a, b)
        got = [self.get(g, key).status for g in (b, a, b)]
        self.assertEqual(got, [200, 200, 200])  # Redis came back empty: a full bucket
        self.assertEqual(self.get(a, key).status, 429)

    def test_hung_redis_costs_one_timeout_then_answers_at_once(self):
        # SIGSTOP: connections stay open and nothing is answered. The first
        # command on each connection times out; from then on the connection is
        # down (reconnects cannot finish their setup) and on_error answers at once.
        g = self.replica("open", timeout="200ms")
        key = self.key(g, "--rate", "1000/1h")
        self.assertEqual(self.get(g, key).status, 200)
        trips = g.metric("keygate_redis_round_trips_total")
        self.redis.pause()
        try:
            statuses = [self.get(g, key).status for _ in range(30)]
            self.assertEqual(statuses, [200] * 30)
            self.assertGreaterEqual(g.metric("keygate_redis_errors_total"), 1)
            # At most one command per connection waited for the timeout.
            self.assertLessEqual(g.metric("keygate_redis_round_trips_total") - trips, THREADS)
            self.assertGreaterEqual(self.decisions(g, "fallback"), 30 - THREADS)
        finally:
            self.redis.resume()
        self.assertTrue(self.connected(g), g.logs())
        before = self.decisions(g, "shared")
        self.assertEqual(self.get(g, key).status, 200)
        self.assertEqual(self.decisions(g, "shared"), before + 1)

    def test_error_replies_open_the_breaker_and_a_probe_closes_it(self):
        # Redis refuses the script's write (out of memory) on a healthy
        # connection: after 3 failures a thread's breaker opens and its
        # requests are answered by on_error without a round trip.
        g = self.replica("closed")
        key = self.key(g, "--rate", "1000/1h")
        self.assertEqual(self.get(g, key).status, 200)
        self.redis.cli("CONFIG", "SET", "maxmemory", "1")
        opened = lambda: g.metric("keygate_redis_breaker_state", 'state="open"') == THREADS
        for _ in range(200):  # a new connection each: both I/O threads get requests
            if opened():
                break
            self.assertEnvelope(self.get(g, key), 503, "UNAVAILABLE", "rate_limit_unavailable")
        self.assertTrue(opened())
        self.assertGreaterEqual(g.metric("keygate_redis_breaker_opened_total"), THREADS)
        self.assertEqual(g.metric("keygate_redis_connections_up"), THREADS)  # Redis answers
        trips = g.metric("keygate_redis_round_trips_total")
        for _ in range(20):
            self.assertEqual(self.get(g, key).status, 503)
        # Only the breakers' probes (one per back-off period, 250 ms doubling) went out.
        self.assertLess(g.metric("keygate_redis_round_trips_total") - trips, 10)
        self.redis.cli("CONFIG", "SET", "maxmemory", "0")
        # Each thread's next probe (a request after its back-off) closes its breaker.
        closed = lambda: g.metric("keygate_redis_breaker_state", 'state="closed"') == THREADS
        self.assertTrue(wait_until(lambda: self.get(g, key).status == 200 and closed(), 15))
        before = self.decisions(g, "shared")
        self.assertEqual([self.get(g, key).status for _ in range(5)], [200] * 5)
        self.assertEqual(self.decisions(g, "shared"), before + 5)

    # --- operations --------------------------------------------------------------

    def test_reload_applies_on_error_and_keeps_the_url(self):
        g = self.replica("local")
        key = self.key(g, "--rate", "1000/1h")
        self.redis_down(g)
        self.assertEqual(self.get(g, key).status, 200)  # local fallback
        g.config["rate_limit"]["redis"]["on_error"] = "closed"
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: g.metric("keygate_config_generation") == 2))
        self.assertEnvelope(self.get(g, key), 503, "UNAVAILABLE", "rate_limit_unavailable")
        # A new URL needs a restart: logged, and the running one is kept.
        other = RedisServer()
        self.addCleanup(other.destroy)
        g.config["rate_limit"]["redis"]["url"] = other.url()
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: g.metric("keygate_config_generation") == 3))
        self.assertIn("rate_limit.backend and rate_limit.redis.url change only on restart",
                      g.logs())
        self.assertEqual(g.metric("keygate_redis_connections_up"), 0)  # not on the other one
        self.redis_back(g)
        self.assertEqual(self.get(g, key).status, 200)
        self.assertEqual(other.calls("evalsha"), 0)
        self.assertTrue(g.running())

    def test_connection_events_are_logged_without_the_password(self):
        self.redis.destroy()
        self.redis = RedisServer(password="s3cret-redis-pa55")
        self.addCleanup(self.redis.destroy)
        g = self.replica("local")
        key = self.key(g)
        self.assertEqual(self.get(g, key).status, 200)
        self.assertEqual(self.decisions(g, "shared"), 1)
        self.redis_down(g)
        self.redis_back(g)
        logs = g.logs()
        self.assertNotIn("s3cret-redis-pa55", logs)
        self.assertIn(f"redis://:***@127.0.0.1:{self.redis.port}/0", logs)
        self.assertEqual(logs.count('"redis connected"'), 2 * THREADS, logs)
        self.assertEqual(logs.count('redis unreachable'), THREADS, logs)
        self.assertEqual(g.metric("keygate_redis_connections"), THREADS)

    def test_a_wrong_password_is_reported_and_limits_fall_back(self):
        self.redis.destroy()
        self.redis = RedisServer(password="right-password")
        self.addCleanup(self.redis.destroy)
        wrong = f"redis://:wrong-password@127.0.0.1:{self.redis.port}/0"
        g = self.replica("open", start=False, url=wrong)
        key = self.key(g, "--rate", "1/1h")
        g.start()
        self.assertTrue(wait_until(lambda: "redis unreachable" in g.logs(), 15))
        self.assertEqual(g.metric("keygate_redis_connections_up"), 0)
        self.assertEqual([self.get(g, key).status for _ in range(3)], [200] * 3)  # open
        logs = g.logs()
        self.assertIn("AUTH failed", logs)
        self.assertNotIn("wrong-password", logs)

    # --- credits (SPEC §11): one balance in Redis for every replica ----------

    def stored_credits(self, g, key_id):
        """The balance as the store (PostgreSQL) holds it, read by the CLI."""
        return json.loads(g.cli("keys", "show", key_id, "--json").stdout)["credits"]["remaining"]

    def credit_key(self, g, credits, rate="1000/1h"):
        return g.create_key("--name", "metered", "--credits", str(credits), "--rate", rate)

    def test_three_replicas_spend_one_balance_then_429_credits(self):
        a = self.replica(start=False)
        k = self.credit_key(a, 10)
        gs = [a, self.replica(start=False), self.replica(start=False)]
        for g in gs:
            self.start(g)
        # One after another, round robin: the remaining count is the shared one.
        remaining = []
        for i in range(10):
            r = self.get(gs[i % 3], k["key"])
            self.assertEqual(r.status, 200, (i, r.body))
            remaining.append(int(r.header("x-credits-remaining")))
        self.assertEqual(remaining, list(range(9, -1, -1)))
        for g in gs:
            r = self.get(g, k["key"])
            body = self.assertEnvelope(r, 429, "RATE_LIMIT_ERROR", "credits")
            self.assertEqual(r.header("x-credits-remaining"), "0")
            self.assertEqual(body["error"]["details"]["credits_remaining"], 0)
            # Refused for credits before the bucket: no token taken (1000 - 10 paid).
            self.assertEqual(r.header("x-ratelimit-remaining"), "990")
        self.assertEqual(sum(self.decisions(g, "fallback") for g in gs), 0)
        # Each replica's store worker writes its own spending: the store adds them up.
        self.assertTrue(wait_until(lambda: self.stored_credits(a, k["id"]) == 0, 10),
                        self.stored_credits(a, k["id"]))

    def test_concurrent_requests_on_three_replicas_spend_exactly_the_balance(self):
        a = self.replica(start=False)
        k = self.credit_key(a, 20)
        gs = [a, self.replica(start=False), self.replica(start=False)]
        for g in gs:
            self.start(g)
        counts, _ = self.hammer([(g, k["key"]) for g in gs], per_client=10, clients_per_target=2)
        self.assertEqual(counts, {200: 20, 429: 40})
        self.assertTrue(wait_until(lambda: self.stored_credits(a, k["id"]) == 0, 10),
                        self.stored_credits(a, k["id"]))

    def test_an_operators_new_balance_replaces_the_shared_one(self):
        a = self.replica(start=False)
        k = self.credit_key(a, 2)
        gs = [a, self.replica(start=False), self.replica(start=False)]
        for g in gs:
            self.start(g)
        self.assertEqual([self.get(g, k["key"]).status for g in gs], [200, 200, 429])
        r = a.admin("PATCH", f"/v1/api-keys/{k['id']}", {"credits": {"remaining": 3}})
        self.assertEqual(r.status, 200, r.body)
        # The replica that took the change sends its new version first; the
        # others, whether they have seen it yet or not, spend the same balance.
        got = {}

        def paid():
            got["r"] = self.get(a, k["key"])  # a 429 spends nothing
            return got["r"].status == 200
        self.assertTrue(wait_until(paid, 10), got["r"].body)
        self.assertEqual(got["r"].header("x-credits-remaining"), "2")
        statuses = [self.get(g, k["key"]).status for g in (gs[1], gs[2], gs[1], gs[2])]
        self.assertEqual(statuses, [200, 200, 429, 429])

    def test_redis_down_on_error_local_spends_the_local_meter(self):
        a = self.replica("local")
        k = self.credit_key(a, 5)
        self.assertEqual(self.get(a, k["key"]).header("x-credits-remaining"), "4")
        self.redis_down(a)
        r = self.get(a, k["key"])
        self.assertEqual((r.status, r.header("x-credits-remaining")), (200, "3"))
        self.assertGreater(self.decisions(a, "fallback"), 0)


if __name__ == "__main__":
    unittest.main()
