"""Short versions of the reliability workloads (tests/integration/reliability.py);
`make chaos` and `make soak` run the long ones. Each prints its figures."""
import os
import unittest

from harness import GatewayTest
import reliability

SEED = int(os.environ.get("KEYGATE_RELIABILITY_SEED", "14"))


class CrashSafety(GatewayTest):
    def test_acknowledged_key_writes_survive_kill_9(self):
        figures, problems = reliability.crash_safety(self.upstream.server_port, SEED,
                                                     total_writes=60, kill_points=5)
        print("crash safety:", figures)
        self.assertEqual(problems, [])
        self.assertGreater(figures["acknowledged_writes"], 0)


class UpstreamChaos(GatewayTest):
    def test_every_client_gets_its_own_answer_or_a_clean_close(self):
        figures, problems = reliability.upstream_chaos(SEED, clients=8, requests_per_client=60,
                                                       seconds=30)
        print("upstream chaos:", figures)
        self.assertEqual(problems[:10], [])
        self.assertTrue(figures["alive"])
        self.assertGreater(figures["outcomes"]["ok"], 0)


class Floods(GatewayTest):
    def test_valid_requests_are_served_through_floods(self):
        figures, problems = reliability.floods(self.upstream.server_port, idle=1000,
                                               slowloris=100, unknown=3000, nofile=64)
        print("floods:", figures)
        self.assertEqual(problems, [])


if __name__ == "__main__":
    unittest.main()
