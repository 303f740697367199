"""The tests' Redis Cluster helper: it lives in ``keyfob._bench._redis_cluster`` (the bench's
``cluster`` group starts one the same way); re-exported here for the tests' imports."""

from keyfob._bench._redis_cluster import (
    REDIS_CLI,
    REDIS_SERVER,
    RedisClusterProcesses,
    _cli,
    cluster_available,
    flush_cluster,
    free_ports,
)

__all__ = [
    "REDIS_CLI",
    "REDIS_SERVER",
    "RedisClusterProcesses",
    "_cli",
    "cluster_available",
    "flush_cluster",
    "free_ports",
]
