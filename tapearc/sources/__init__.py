"""Volumes to back up (sources): regular files and block devices, NBD exports; and what they
know about themselves without being read (extents: where data is, where holes are)."""
