"""Fakes at the edge of the network, for tests."""
