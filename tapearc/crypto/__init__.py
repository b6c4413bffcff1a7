"""Encryption: data keys, what is derived from them, and per-chunk authenticated encryption.

``keys`` holds a data key (256 random bits) and everything derived from it (its fingerprint, the
per-run chunk keys, the block-digest key); ``aead`` seals and opens chunk payloads with
AES-256-GCM. The on-media layout of what these produce is in formats/SPEC.md; this package never
touches a medium or the catalog.
"""
