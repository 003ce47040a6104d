"""Surviving a failing dependency: the circuit breaker, `retrying()`, and the order replicas are tried in."""
