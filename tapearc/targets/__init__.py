"""Restore targets reached other than through the file system: NBD exports (a qcow2 served by
qemu-nbd or qemu-storage-daemon, a remote disk served by nbdkit). Files and block devices are
engine/volume.py's RestoreTarget; every target has its interface (write_at, zero_range,
zero_needs_writing, commit, abort)."""
