"""The cluster moved to :mod:`benchmarks.redis_servers` (the cluster benchmark uses it
and may not import ``tests``); this name stays for the tests' imports."""

from benchmarks.redis_servers import NODES, RedisClusterServers, cluster_ports

__all__ = ["NODES", "RedisClusterServers", "cluster_ports"]
