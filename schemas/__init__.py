"""Data contracts: the event envelope, its wire format and the API payloads."""
