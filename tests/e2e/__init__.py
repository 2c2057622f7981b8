"""End-to-end tests: the real agent CLI against a real collector process."""
