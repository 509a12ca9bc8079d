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
# More checks (klog, examples), each a sourced script with its own `check:` lines.
for f in /checks/checks-*.sh; do
    [ -f "$f" ] || continue
    echo "guest: running $f"
    . "$f"
done
# Unload everything, dependents first (/proc/modules lists the newest first); rmmod must work.
for pass in 1 2 3; do
    for m in $(cut -d' ' -f1 /proc/modules); do rmmod "$m" 2>/dev/null; done
done
grep -q . /proc/modules && echo "check: modules unloaded: FAIL ($(cut -d' ' -f1 /proc/modules | tr '\n' ' '))" || echo "check: modules unloaded: ok"
echo "guest: done, uptime $(cut -d' ' -f1 /proc/uptime)s"
echo "GUEST-END"
sync
poweroff -f
