"""The dev tools of the top-level demo package: the fleet plan (the demo itself runs in tests/docs)."""
