# Sourced by /init last: README.md's "In the kernel" as a developer runs it on a fresh machine.
# scripts/kernel-test.sh (do_readme) built /readme/mymod.ko from the README's Kbuild and
# mymod.rs with the README's commands and put the README's guest commands in /readme/run.sh.
#
#   readme-kernel   every module unloaded first; run.sh in /readme (with the project's .ko files
#                   and the static klog-decode there, as the README has them); its output must
#                   hold mymod's own channel text and exactly mymod's decoded events
rd_check() {
    local ok=1 why= out=/tmp/readme.out ev
    kl_t0
    [ -f /readme/run.sh ] || { echo "check: readme-kernel: FAIL (no /readme/run.sh)"; return; }
    for pass in 1 2 3; do
        for m in $(cut -d' ' -f1 /proc/modules); do rmmod "$m" 2>/dev/null; done
    done
    grep -q . /proc/modules && kl_fail "modules still loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
    cp /modules/rsrelay.ko /modules/klog_core.ko /modules/klog_relay.ko /readme/
    (cd /readme && sh -e ./run.sh) > $out 2>&1 || kl_fail "run.sh failed"
    # mymod's relay channel, read with cat.
    [ "$(grep -c '^hello from mymod$' $out)" = 1 ] || kl_fail "channel text"
    # The decoded events: 100 numbered ones in order, then one per level macro and the raw record.
    ev=$(sed -n 's/^\[[^]]*\] cpu[0-9]* *\([A-Z]*\) *mymod: mymod event \([0-9]*\) of 100, x=\(0x[0-9a-f]*\)$/\2 \3/p' $out \
        | awk '$1 != NR - 1 || $2 != sprintf("0x%x", 3 * (NR - 1)) { bad++ } END { print NR + 0, bad + 0 }')
    [ "$ev" = "100 0" ] || kl_fail "numbered events: count, errors = $ev"
    for l in 'ERROR mymod: mymod error -5' 'WARN  mymod: mymod warn   slow' 'INFO  mymod: mymod info true' \
        'DEBUG mymod: mymod debug 0000beef' 'TRACE mymod: mymod trace z' 'INFO  mymod: raw 4 bytes: 72 61 77 21'; do
        [ "$(grep -c "^\[[^]]*\] cpu[0-9]* $l\$" $out)" = 1 ] || kl_fail "not once: $l"
    done
    [ $ok = 1 ] || kl_indent < $out | tail -30
    grep -m3 'mymod' $out | kl_indent
    for pass in 1 2 3; do
        for m in $(cut -d' ' -f1 /proc/modules); do rmmod "$m" 2>/dev/null; done
    done
    kl_result readme-kernel $ok "$why"
}
rd_check
