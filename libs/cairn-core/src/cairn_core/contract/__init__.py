"""The /v1/generate contract: its wire models (`generate.py`), the reason codes and the error tree."""
