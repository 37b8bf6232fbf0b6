#!/bin/busybox sh
# PID 1 of the guest's initramfs (built by vmrun.py): load the 9p modules,
# mount the host's / read-only under a tmpfs overlay, the kernel filesystems
# and the two rw shares, then hand over to stage2.sh on the host's /bin/sh.
/bin/busybox --install -s /bin
export PATH=/bin
ninep=trans=virtio,version=9p2000.L,msize=512000
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules); do
    insmod "/mod/$m.ko" || echo "vmrun: insmod $m failed"
done
mkdir -p /lower /upper /newroot
# cache=loose: the root is read-only and lives one run; much faster imports.
mount -t 9p -o "ro,cache=loose,$ninep" hostroot /lower ||
    echo "vmrun: cannot mount the host's / over 9p"
mount -t tmpfs -o mode=755 upper /upper && mkdir /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w \
    root /newroot
cd /newroot || exit 1
mount --move /dev dev; mount --move /proc proc; mount --move /sys sys
mkdir -p dev/pts dev/shm
mount -t devpts devpts dev/pts; mount -t tmpfs shm dev/shm
# /tmp stays the overlay's: a checkout under the host's /tmp (CI clones
# there) must be visible; writes still land in the guest's tmpfs.
mount -t tmpfs -o mode=755 run run
mount -t debugfs debugfs sys/kernel/debug
mount -t tracefs tracefs sys/kernel/tracing
mount -t securityfs securityfs sys/kernel/security
mount -t cgroup2 cgroup2 sys/fs/cgroup
share=".$(cat /share)"
mkdir -p run/vmrun "$share"
mount -t 9p -o "cache=none,$ninep" vmctl run/vmrun
mount -t 9p -o "cache=none,$ninep" vmshare "$share"
exec switch_root /newroot /bin/sh /run/vmrun/stage2.sh
