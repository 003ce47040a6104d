"""Cairn BFF: serves the web chat page and `/api`, checks keys and rate limits, proxies streams byte for byte."""
