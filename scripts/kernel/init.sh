#!/bin/busybox sh
# /init of the kernel-test initramfs: load the modules, run the in-guest checks, power off.
# Every check prints `check: NAME: ok` or `check: NAME: FAIL ...`; the host parses the log.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
echo "guest: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpus"
check() { if "$@"; then echo "check: $*: ok"; else echo "check: $*: FAIL"; fi; }

check insmod /modules/rsrelay.ko
check insmod /modules/rsrelay_test.ko
for c in diff mmap sendfile poll stress bench lifetime; do
    echo "guest: relay-kcheck $c"
    /bin/relay-kcheck $c
    echo "guest: relay-kcheck $c exit $?"
done
check rmmod rsrelay_test
check rmmod rsrelay
lsmod 2>/dev/null | grep -q rsrelay && echo "check: modules unloaded: FAIL" || echo "check: modules unloaded: ok"
echo "guest: done, uptime $(cut -d' ' -f1 /proc/uptime)s"
echo "GUEST-END"
sync
poweroff -f
