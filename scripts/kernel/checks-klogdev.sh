# Sourced by /init after checks-klog.sh (its kl_* helpers; klog_core loaded): what a kernel
# developer's own klog! client meets (issue 18), with kernel-tests/module's test clients.
#
#   klog-levels      klog_check.ko logs once through klog_error!/warn!/info!/debug!/trace!, klog!
#                    and klog_raw! on load: the recorded trace decodes to exactly those lines
#   klog-rules       `module klog_check` (the module's name; its crate is klog_check_rs) rules,
#                    written before the module is loaded, apply when it loads and again after
#                    rmmod + insmod; a crate-name rule matches nothing of it
#   klog-layout      klog_badlayout.ko (built against another callsite layout) loads and runs,
#                    klog_core refuses its callsites and says so in the kernel log
#   klog-rerecord    three recordings in a row under load: every event in exactly one trace or
#                    reported lost (passes once the recorder's mid-sub-buffer start and the
#                    format-3 accounting line are in)
KD_D=/sys/kernel/debug/klog
KD_C=$KD_D/control

# kd_record OUT CMD...: records while CMD runs (klog_relay loaded), then stops the recorder.
kd_record() {
    local out=$1 pid i rc
    shift
    rm -rf "$out"
    klog-decode record "$KD_D" "$out" 2> "$out.rec" &
    pid=$!
    i=0
    while [ ! -s "$out/metadata" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    "$@"
    rc=$?
    kill -INT $pid
    wait $pid || { echo "  record: klog-decode record failed"; kl_indent < "$out.rec"; return 1; }
    return $rc
}

# kd_lines TRACE: the decoded lines of klog_check (level and text, no timestamp or cpu).
kd_lines() {
    klog-decode "$1" 2> "$1.err" | sed -n \
        -e 's/^\[[^]]*\] cpu[0-9]* *\([A-Z]*\) *klog_check_rs: \(check .*\)$/\1 \2/p' \
        -e 's/^\[[^]]*\] cpu[0-9]* *\([A-Z]*\) *klog_check_rs: \(raw .*\)$/\1 \2/p'
}

kd_levels() {
    local ok=1 why= T=/tmp/kd-levels want got
    kl_t0
    kl_loaded klog_check && rmmod klog_check
    kl_relay_load || { kl_result klog-levels 0 "insmod klog_relay"; return 1; }
    kd_record $T insmod /modules/klog_check.ko || kl_fail "record"
    rmmod klog_relay || kl_fail "rmmod klog_relay"
    rmmod klog_check || kl_fail "rmmod klog_check"
    want='ERROR check error 1
WARN check warn 2
INFO check info 3
DEBUG check debug 4
TRACE check trace 5
INFO check plain 6 six
INFO raw 3 bytes: 07 08 09'
    got=$(kd_lines $T)
    [ "$got" = "$want" ] || { kl_fail "decoded lines differ"; echo "$got" | kl_indent; kl_indent < $T.err; }
    kl_result klog-levels $ok "$why"
}

# kd_state PATTERN: the control line (module name, level, on/off, rule) of klog_check's
# callsite whose format starts with PATTERN.
kd_state() { grep "\"$1" $KD_C | sed -n 's/^\(klog_check\) [^ ]* \([A-Z]*\) \(o[nf]*\)\( [-+=]p\)\{0,1\} ".*/\1 \2 \3\4/p'; }

kd_rules() {
    local ok=1 why= T=/tmp/kd-rules got round
    kl_t0
    kl_loaded klog_check && rmmod klog_check
    kl_relay_load || { kl_result klog-rules 0 "insmod klog_relay"; return 1; }
    # Not loaded yet: a rule naming a module is kept for it (as `dyndbg=` would be).
    echo 'module klog_check level debug -p' > $KD_C || kl_fail "module rule refused before load"
    echo 'module klog_check format "check warn" -p' > $KD_C || kl_fail "format rule refused before load"
    # A rule on the crate name is kept too, but must not match the module's callsites.
    echo 'module klog_check_rs format "check info" -p' > $KD_C || kl_fail "crate-name rule refused"
    for round in load reload; do
        # A fresh handler per recording: a second recording on one handler is klog-rerecord's.
        kl_relay_load || kl_fail "$round: insmod klog_relay"
        kd_record $T.$round insmod /modules/klog_check.ko || kl_fail "$round: record"
        [ "$(kd_state 'check debug')" = "klog_check DEBUG off -p" ] || kl_fail "$round: debug: $(kd_state 'check debug')"
        [ "$(kd_state 'check warn')" = "klog_check WARN off -p" ] || kl_fail "$round: warn: $(kd_state 'check warn')"
        [ "$(kd_state 'check info')" = "klog_check INFO on" ] || kl_fail "$round: info: $(kd_state 'check info')"
        got=$(kd_lines $T.$round | tr '\n' ',')
        [ "$got" = "ERROR check error 1,INFO check info 3,TRACE check trace 5,INFO check plain 6 six,INFO raw 3 bytes: 07 08 09," ] \
            || kl_fail "$round: decoded: $got"
        rmmod klog_check || kl_fail "$round: rmmod klog_check"
    done
    # `=p` hands the callsites back to their level, also for the next load.
    echo 'module klog_check level debug =p' > $KD_C || kl_fail "=p refused"
    echo 'module klog_check format "check warn" =p' > $KD_C || kl_fail "=p refused"
    insmod /modules/klog_check.ko || kl_fail "insmod after =p"
    [ "$(kd_state 'check debug')" = "klog_check DEBUG on" ] || kl_fail "after =p: debug: $(kd_state 'check debug')"
    grep '^klog_check ' $KD_C | kl_indent
    rmmod klog_check || kl_fail "rmmod after =p"
    # A command naming no module and matching nothing is still an error.
    echo 'format "no such callsite anywhere" -p' > $KD_C 2>/dev/null && kl_fail "no-match accepted"
    rmmod klog_relay || kl_fail "rmmod klog_relay"
    kl_result klog-rules $ok "$why"
}

kd_layout() {
    local ok=1 why=
    kl_t0
    dmesg -c > /dev/null
    insmod /modules/klog_badlayout.ko || kl_fail "insmod klog_badlayout"
    dmesg | grep -q 'klog_core: refusing the klog! callsites of module klog_badlayout: built against klog layout' \
        || { kl_fail "no refusal in the kernel log"; dmesg | tail -5 | kl_indent; }
    dmesg | grep 'refusing' | head -1 | kl_indent
    grep -q '^klog_badlayout ' $KD_C && kl_fail "its callsites are listed"
    grep -q 'badlayout event' $KD_C && kl_fail "its callsites are listed"
    rmmod klog_badlayout || kl_fail "rmmod klog_badlayout"
    kl_result klog-layout $ok "$why"
}

# Three `klog-decode record` runs in a row on one klog_relay while klog_example's spinning
# kthreads emit `spin cpu C seq S` (S = 0, 1, ... per CPU) without pause; the spinning stops
# during the third run, which then drains everything (after a flush). Across the three traces
# every (C, S) up to the last one must appear exactly once, or be counted lost/overwritten by
# the traces' accounting lines (`klog-decode --stats`). Needs the recorder to start in the
# middle of a sub-buffer (rsrelay's RSRELAY_IOC_READ_POS, the cpuN.idx prefix) and the
# accounting line of trace format 3.
kd_rerecord() {
    local ok=1 why= T=/tmp/kd-rerec r acct lost=0 l o missing
    kl_t0
    kl_insmod klog_example || { kl_result klog-rerecord 0 "insmod klog_example"; return 1; }
    kl_relay_load || { kl_result klog-rerecord 0 "insmod klog_relay"; return 1; }
    echo "spin 1" > $KL_RUN || kl_fail "spin 1"
    kd_record $T.1 sleep 0.5 || kl_fail "record 1"
    sleep 0.2
    kd_record $T.2 sleep 0.5 || kl_fail "record 2"
    sleep 0.2
    kd_record $T.3 sh -c "sleep 0.3; echo 'spin 0' > $KL_RUN; echo 1 > $KD_D/flush; sleep 0.5" || kl_fail "record 3"
    rmmod klog_relay || kl_fail "rmmod klog_relay"
    # Before trace format 3 the decoder has no accounting line, and nothing to compare with;
    # before the recorder's sidecar index (cpuN.idx, with the bytes before a mid-sub-buffer
    # start) a later recording cannot decode its first sub-buffer: defect 1 itself.
    if ! klog-decode --stats $T.1 2>&1 >/dev/null | grep -q '^accounting: '; then
        echo "check: klog-rerecord: not run (klog-decode prints no accounting line: needs trace format 3)"
        return 0
    fi
    if [ ! -f $T.2/cpu0.idx ]; then
        echo "check: klog-rerecord: not run (the recorder writes no cpuN.idx: needs its mid-sub-buffer start)"
        return 0
    fi
    for r in 1 2 3; do
        klog-decode --stats $T.$r > $T.$r.txt 2> $T.$r.stats || { kl_fail "decode $r"; kl_indent < $T.$r.stats; }
        acct=$(grep -m1 '^accounting: ' $T.$r.stats)
        [ -n "$acct" ] || kl_fail "trace $r: no accounting line"
        echo "  trace $r: $(grep -c ' spin cpu ' $T.$r.txt) spin events; $acct"
        grep -E '\.\.=|missing|inside a sub-buffer|not decoded' $T.$r.stats | head -3 | kl_indent
        l=$(echo "$acct" | sed -n 's/.* lost=\([0-9]*\).*/\1/p')
        o=$(echo "$acct" | sed -n 's/.* overwritten=\([0-9]*\).*/\1/p')
        lost=$((lost + ${l:-0} + ${o:-0}))
    done
    # Per CPU: duplicates, and the events missing below the CPU's highest sequence number.
    missing=$(cat $T.1.txt $T.2.txt $T.3.txt | sed -n 's/.* spin cpu \([0-9]*\) seq \([0-9]*\)$/\1 \2/p' | awk '
        { n[$1]++; if (seen[$1 " " $2]++) dup++; if (!($1 in max) || $2 > max[$1]) max[$1] = $2 }
        END { m = 0; for (c in n) m += max[c] + 1 - n[c] + 0; print (dup + 0) " " m }')
    echo "  across the three traces: duplicates ${missing% *}, missing ${missing#* }, reported lost $lost"
    [ "${missing% *}" = 0 ] || kl_fail "${missing% *} events in two traces"
    [ "${missing#* }" = "$lost" ] || kl_fail "${missing#* } events missing, $lost reported lost"
    kl_result klog-rerecord $ok "$why"
}

kd_all() {
    kl_insmod klog_core || { echo "check: klog-levels: FAIL (klog_core)"; return; }
    kd_levels
    kd_rules
    kd_layout
    kd_rerecord
}
kd_all
