"""Serving: the seam demos call their models through, and the runtimes behind it (in process, Spaces, Ray Serve)."""
