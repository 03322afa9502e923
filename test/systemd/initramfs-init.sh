#!/bin/sh
# /init of the test initramfs (busybox). Boots this machine's own root file system: the host's /
# arrives read-only over virtio-9p (tag "hostroot"), gets a tmpfs upper layer (overlayfs), the
# test payload (tag "vtpmtest") is mounted at /opt/vtpmtest and its etc/ tree copied into the
# overlay's /etc, then systemd becomes PID 1. Everything written in the guest is lost at power-off.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

die() { echo "VTPM-SD-INIT: $*"; echo "VTPM-SD-VERDICT: FAIL (initramfs)"; poweroff -f; }

while read -r m; do insmod "/lib/modules/$m" || die "insmod $m failed"; done < /lib/modules/load-order

mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
    || die "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755,size=512m tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || die "cannot mount the overlay"

# The host root is a container root: without these markers gone, systemd would run in container
# mode and ignore systemd.unit= on the kernel command line.
rm -f /newroot/.dockerenv /newroot/run/.containerenv
# The 9p export crosses mount points: give the guest its own empty /run and /tmp (otherwise
# tmpfiles.d walks the host's /tmp over 9p, which costs seconds).
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/tmp
# No instance state from the host, no fstab entries for the host's disks, a fresh machine id.
rm -rf /newroot/var/lib/vtpm
: > /newroot/etc/fstab
echo vtpm-sd-guest > /newroot/etc/hostname
rm -f /newroot/etc/machine-id /newroot/var/lib/dbus/machine-id
tr -d - < /proc/sys/kernel/random/uuid > /newroot/etc/machine-id

mkdir -p /newroot/opt/vtpmtest
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 vtpmtest /newroot/opt/vtpmtest \
    || die "cannot mount the test payload"
cp -a /newroot/opt/vtpmtest/etc/. /newroot/etc/ || die "cannot install the test units"

echo "VTPM-SD-INIT: switching to systemd at $(cut -d' ' -f1 /proc/uptime) s"
mount -o move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /lib/systemd/systemd
