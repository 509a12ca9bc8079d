# Sourced by /init (rsrelay.ko loaded): klog in the kernel. klog_core.ko (registry, control
# file), klog_example.ko (klog! in kthreads on every CPU and an hrtimer on CPU 0) and the relay
# handler klog_relay.ko, recorded and decoded with klog-decode and checked by
# `relay-kcheck klog-verify` (the exact event set, see kernel-tests/src/klog_verify.rs).
#
#   klog-nohandler   the example runs with no handler: nothing is recorded, no files appear
#   klog-record      klog-decode record + decode of `KL_N KL_T`; the text and the --stats output
#                    (indented by two spaces) also go to the console between KLOG-TEXT-BEGIN/END
#                    and KLOG-STATS-BEGIN/END, where the host verifies them again
#                    (scripts/kernel-test.sh, verify_klog_host)
#   klog-snapshot    overwrite mode, wrapped several times, flush, klog-decode --snapshot of the
#                    live debugfs directory: the newest events, nothing torn, the oldest gone
#   klog-control     one callsite switched off (-p) and back (=p) through klog/control
#   klog-unload      100 insmod/rmmod cycles of klog_relay while the example keeps emitting
# Every check line carries its time; the functions and variables are prefixed kl_ / KL_.
KL_D=/sys/kernel/debug/klog
KL_RUN=/sys/kernel/debug/klog_example/run
KL_NCPU=$(grep -c ^processor /proc/cpuinfo)
KL_N=500 KL_T=40   # klog-record: events per CPU, timer events
KL_W=4000          # klog-snapshot: events per CPU (16 KiB buffers: about 3.5 laps)
KL_C=300 KL_CT=10  # klog-control: events per CPU, timer events
KL_CYCLES=100      # klog-unload

# Milliseconds since boot (centisecond resolution).
kl_ms() { local u; read u _ < /proc/uptime; u=${u%.*}${u#*.}; echo $((u * 10)); }
kl_t0() { KL_T0=$(kl_ms); }
kl_secs() { local d=$(($(kl_ms) - KL_T0)); printf '%d.%02d s' $((d / 1000)) $((d % 1000 / 10)); }
# kl_result NAME OK [why]
kl_result() {
    if [ "$2" = 1 ]; then echo "check: $1: ok ($(kl_secs))"; else echo "check: $1: FAIL (${3:-}) ($(kl_secs))"; fi
}
# kl_fail REASON: marks the running check failed (uses the caller's ok and why).
kl_fail() { ok=0; why="$why${why:+; }$*"; }
kl_loaded() { grep -q "^$1 " /proc/modules; }
kl_insmod() { local m=$1; shift; kl_loaded $m || insmod /modules/$m.ko "$@"; }
kl_relay_load() { kl_loaded klog_relay && rmmod klog_relay; insmod /modules/klog_relay.ko "$@"; }
kl_indent() { sed 's/^/  /'; }

# kl_record OUT N T: record a run of the example (klog_relay loaded); 0 on success.
kl_record() {
    local out=$1 pid i rc
    rm -rf "$out"
    klog-decode record "$KL_D" "$out" 2> "$out.rec" &
    pid=$!
    # The recorder copies the metadata first: then its SIGINT handler is installed.
    i=0
    while [ ! -s "$out/metadata" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    echo "$2 $3" > $KL_RUN || { echo "  record: run $2 $3 failed"; kill -INT $pid; wait $pid; return 1; }
    kill -INT $pid
    wait $pid
    rc=$?
    kl_indent < "$out.rec"
    [ $rc = 0 ] || { echo "  record: klog-decode record exit $rc"; return 1; }
}

kl_nohandler() {
    local ok=1 why=
    kl_t0
    kl_insmod klog_core && kl_insmod klog_example || { kl_result klog-nohandler 0 "insmod"; return 1; }
    kl_loaded klog_relay && rmmod klog_relay
    echo "50 5" > $KL_RUN || { kl_fail "run failed"; }
    # Only klog_core's control file: no handler created cpuN or metadata.
    [ "$(ls $KL_D | tr '\n' ' ')" = "control " ] || { kl_fail "files: $(ls $KL_D | tr '\n' ' ')"; }
    # The statements registered on first execution, and all are off.
    grep -q '"example cpu ' $KL_D/control || { kl_fail "callsites not listed"; }
    if grep -qE ' (ERROR|WARN|INFO|DEBUG|TRACE) on ' $KL_D/control; then kl_fail "a callsite is on"; fi
    kl_indent < $KL_D/control
    kl_result klog-nohandler $ok "$why"
}

kl_record_check() {
    local ok=1 why= T=/tmp/kl-trace
    kl_t0
    kl_relay_load || { kl_result klog-record 0 "insmod klog_relay"; return 1; }
    kl_record $T $KL_N $KL_T || { kl_fail "record"; }
    rmmod klog_relay || { kl_fail "rmmod klog_relay"; }
    if [ $ok = 1 ]; then
        if klog-decode --stats $T > $T.txt 2> $T.stats; then
            echo "KLOG-TEXT-BEGIN events=$KL_N timer=$KL_T cpus=$KL_NCPU"
            cat $T.txt
            echo "KLOG-TEXT-END"
            echo "KLOG-STATS-BEGIN"
            kl_indent < $T.stats
            echo "KLOG-STATS-END"
            relay-kcheck klog-verify $T.txt --stats $T.stats --events $KL_N --timer $KL_T \
                --cpus "$KL_NCPU" --name klog-record-verify > $T.verify || { kl_fail "verify"; }
            grep -v '^check:' $T.verify
        else
            kl_fail "decode"; kl_indent < $T.stats
        fi
    fi
    kl_result klog-record $ok "$why"
}

kl_snapshot() {
    local ok=1 why= S=/tmp/kl-snap
    kl_t0
    kl_relay_load overwrite=1 subbuf_size=4096 n_subbufs=4 || { kl_result klog-snapshot 0 "insmod"; return 1; }
    echo "$KL_W 0" > $KL_RUN || { kl_fail "run"; }
    # The sub-buffer being written is torn in a snapshot: complete it first.
    echo 1 > $KL_D/flush || { kl_fail "flush"; }
    if klog-decode --snapshot --stats $KL_D > $S.txt 2> $S.stats; then
        relay-kcheck klog-verify $S.txt --stats $S.stats --snapshot --events $KL_W --cpus "$KL_NCPU" \
            --name klog-snapshot-verify > $S.verify || { kl_fail "verify"; }
        grep -v '^check:' $S.verify
        head -3 $S.txt | kl_indent
        grep -E '^(total|events:|warnings:)' $S.stats | kl_indent
    else
        kl_fail "klog-decode --snapshot"; kl_indent < $S.stats
    fi
    rmmod klog_relay || { kl_fail "rmmod"; }
    kl_result klog-snapshot $ok "$why"
}

# kl_control_run NAME [--no-debug]: records a run of KL_C KL_CT with the loaded handler, unloads
# it, verifies the trace.
kl_control_run() {
    local T=/tmp/kl-ctl-$1 name=$1 rc
    shift
    kl_record $T $KL_C $KL_CT || { rmmod klog_relay; return 1; }
    rmmod klog_relay || return 1
    klog-decode --stats $T > $T.txt 2> $T.stats || { kl_indent < $T.stats; return 1; }
    relay-kcheck klog-verify $T.txt --stats $T.stats --events $KL_C --timer $KL_CT \
        --cpus "$KL_NCPU" --name "$name" "$@" > $T.verify
    rc=$?
    grep -v '^check:' $T.verify
    return $rc
}

# kl_listed PATTERN STATE: the control line of the callsite whose format starts with PATTERN
# shows STATE (e.g. `DEBUG off -p`).
kl_listed() { grep "\"$1" $KL_D/control | grep -q " $2 \""; }

kl_control() {
    local ok=1 why= C=$KL_D/control
    kl_t0
    kl_relay_load || { kl_result klog-control 0 "insmod klog_relay"; return 1; }
    echo 'format "example debug" -p' > $C || kl_fail "-p rejected"
    # With the handler loaded: the debug callsite off with its rule, the others on, no rule.
    kl_listed "example debug" "DEBUG off -p" || kl_fail "listing after -p: debug"
    kl_listed "example cpu" "INFO on" || kl_fail "listing after -p: info"
    kl_listed "timer tick" "WARN on" || kl_fail "listing after -p: timer"
    kl_indent < $C
    kl_control_run klog-control-off --no-debug || kl_fail "run with the debug callsite off"
    kl_relay_load || kl_fail "insmod klog_relay"
    echo 'format "example debug" =p' > $C || kl_fail "=p rejected"
    kl_listed "example debug" "DEBUG on" || kl_fail "listing after =p"
    grep -q -- ' -p "' $C && kl_fail "rule still listed after =p"
    # Matching nothing is -ENOENT, a malformed command -EINVAL: both writes must fail.
    echo 'format "no such callsite" -p' > $C 2>/dev/null && kl_fail "no-match accepted"
    echo 'bogus' > $C 2>/dev/null && kl_fail "bad command accepted"
    kl_control_run klog-control-on || kl_fail "run after =p"
    kl_result klog-control $ok "$why"
}

kl_unload() {
    local ok=1 why= i=0 bad=0 bytes=0 t ins=0 rm=0
    kl_t0
    echo "spin 1" > $KL_RUN || { kl_result klog-unload 0 "spin 1"; return 1; }
    while [ $i -lt $KL_CYCLES ]; do
        i=$((i + 1))
        t=$(kl_ms)
        insmod /modules/klog_relay.ko subbuf_size=4096 n_subbufs=4 || { bad=$((bad + 1)); continue; }
        ins=$((ins + $(kl_ms) - t))
        if [ $i = $KL_CYCLES ]; then
            # The last handler: the spinning kthreads reach it.
            echo 1 > $KL_D/flush
            bytes=$(head -c 4096 $KL_D/cpu0 | wc -c)
            grep -q ' INFO on "spin cpu' $KL_D/control || { kl_fail "spin callsite not on"; }
        fi
        t=$(kl_ms)
        rmmod klog_relay || bad=$((bad + 1))
        rm=$((rm + $(kl_ms) - t))
    done
    echo "spin 0" > $KL_RUN || { kl_fail "spin 0"; }
    [ $bad = 0 ] || { kl_fail "$bad insmod/rmmod failures"; }
    [ "$bytes" -gt 32 ] || { kl_fail "the last handler recorded $bytes bytes on cpu0"; }
    echo "  klog-unload: $KL_CYCLES insmod/rmmod cycles of klog_relay under spinning emitters:" \
        "insmod $((ins / KL_CYCLES)) ms, rmmod $((rm / KL_CYCLES)) ms on average;" \
        "the last handler's cpu0 gave $bytes bytes"
    kl_result klog-unload $ok "$why"
}

kl_all() {
    kl_nohandler || return
    kl_record_check
    kl_snapshot
    kl_control
    kl_unload
    # klog_example and klog_core stay loaded: /init unloads them (klog_core's module notifier
    # unlinks the example's callsites first).
}
kl_all
