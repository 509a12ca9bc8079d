# Sourced by /init: CPU hotplug with open channels (rsrelay allocates a buffer for every possible
# CPU at open; the C relay creates them from its hotplug callback). Both must keep working when
# a CPU goes offline (flush/reset then run locally instead of by IPI) and comes back.
hp_check() {
    local D=/sys/kernel/debug/rsrelay_test C=/sys/devices/system/cpu/cpu3/online
    [ -w $C ] || { echo "check: hotplug: FAIL (no $C)"; return; }
    insmod /modules/rsrelay_test.ko || { echo "check: hotplug: FAIL (insmod)"; return; }
    echo "open 256 4 4 0" > $D/ctl
    echo "write 3 40 1" > $D/ctl
    echo 0 > $C || { echo "check: hotplug: FAIL (offline)"; rmmod rsrelay_test; return; }
    # Offline CPU 3: flush must still finish its sub-buffer (locally, not by IPI).
    echo flush > $D/ctl && echo "write 2 30 7" > $D/ctl
    echo 1 > $C || echo "check: hotplug online: FAIL"
    echo "write 3 50 9" > $D/ctl && echo flush > $D/ctl
    local ok=1 f
    for f in cpu2 cpu3; do
        cat $D/c/$f > /tmp/hp-c-$f; cat $D/rust/$f > /tmp/hp-r-$f
        cmp -s /tmp/hp-c-$f /tmp/hp-r-$f || { ok=0; echo "  hotplug: $f differs (C $(wc -c < /tmp/hp-c-$f) bytes, Rust $(wc -c < /tmp/hp-r-$f))"; }
    done
    # cpu3: (4-byte header + 40) flushed, (header + 50) flushed, and the header of the
    # sub-buffer the last flush started: 44 + 54 + 4 = 102 bytes (padding stripped).
    [ "$(wc -c < /tmp/hp-r-cpu3)" = 102 ] || { ok=0; echo "  hotplug: rust/cpu3 has $(wc -c < /tmp/hp-r-cpu3) bytes, want 102"; }
    echo close > $D/ctl
    rmmod rsrelay_test
    [ $ok = 1 ] && echo "check: hotplug: ok" || echo "check: hotplug: FAIL"
}
hp_check
