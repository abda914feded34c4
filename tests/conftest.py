"""Fixtures shared by the unit and integration suites."""

from tests.postgres_cluster import postgres_cluster, postgres_template

__all__ = ["postgres_cluster", "postgres_template"]
