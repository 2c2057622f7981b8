"""Tests that the documentation works as written."""
