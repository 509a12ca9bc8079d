# shellcheck shell=sh
# checks-examples.sh -- sourced by the kernel-test /init (busybox sh): the examples' kernel
# modules (examples/kernel). rsrelay.ko is loaded; klog_core.ko may be. Loads what it needs,
# unloads its own modules and leaves klog_relay.ko unloaded. Check lines:
#
#   check: kleak: ok          kleak.ko traced by klog_relay, recorded with `klog-decode record`;
#                             kleak-report names exactly the module's deliberate leaks
#   check: reserve: ok        reserve_example.ko's sub-buffer headers match their contents
#                             (reserve-check kernel)
#   check: klog-bench: ok     klog_bench.ko: ns per event of klog! (handler / none),
#                             trace_printk, pr_info, the bare loop; one table line per variant
#
# Detail lines are indented (the host prints them).

ex_loaded() { grep -q "^$1 " /proc/modules; }
ex_load() { # MODULE [PARAMS...]: insmod unless loaded
	_m=$1
	shift
	ex_loaded "$_m" || insmod "/modules/$_m.ko" "$@"
}
ex_unload() { ! ex_loaded "$1" || rmmod "$1"; }
ex_indent() { sed 's/^/  /'; }
ex_now() { cut -d' ' -f1 /proc/uptime; }
ex_ok() { # NAME STATUS START: the check line with the time since START (uptime seconds)
	_s=$(awk "BEGIN { printf \"%.2f\", $(ex_now) - $3 }")
	if [ "$2" = 0 ]; then echo "check: $1: ok ($_s s)"; else echo "check: $1: FAIL ($_s s)"; fi
}

# ---- kleak: leak analysis of a kernel trace ----
ex_kleak() {
	_t=/tmp/kleak-trace
	rm -rf "$_t"
	ex_load klog_core || return 1
	ex_unload klog_relay || return 1
	insmod /modules/klog_relay.ko || return 1
	if ! insmod /modules/kleak.ko; then
		rmmod klog_relay
		return 1
	fi
	klog-decode record /sys/kernel/debug/klog "$_t" > /tmp/kleak-record.log 2>&1 &
	_rec=$!
	# The recorder has its SIGINT handler once it created the trace directory.
	_i=0
	while [ ! -f "$_t/metadata" ] && [ $_i -lt 100 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	# 128 rounds per CPU kthread, 16 timer ticks (hardirq).
	echo "128 16" > /sys/kernel/debug/kleak/run
	_run=$?
	kill -INT $_rec
	wait $_rec
	_recrc=$?
	ex_indent < /tmp/kleak-record.log
	echo "  expected leaks (/sys/kernel/debug/kleak/expected):"
	ex_indent < /sys/kernel/debug/kleak/expected | ex_indent
	kleak-report --expect /sys/kernel/debug/kleak/expected "$_t" > /tmp/kleak-report.log 2>&1
	_rc=$?
	ex_indent < /tmp/kleak-report.log
	# The deliberate leaks are known: 4 sites (rx_refill 3, conn_new 2, msg_dup 2, timer_tick 1).
	_sites=$(grep -c . /sys/kernel/debug/kleak/expected)
	rmmod kleak
	rmmod klog_relay
	[ $_run = 0 ] && [ $_recrc = 0 ] && [ $_rc = 0 ] && [ "$_sites" = 4 ]
}

# ---- reserve: relay reserve with counting sub-buffer headers ----
ex_reserve() {
	insmod /modules/reserve_example.ko || return 1
	# 2000 records per CPU kthread, 200 from a timer on CPU 0; the run flushes at the end.
	echo "2000 200" > /sys/kernel/debug/reserve_example/run
	_run=$?
	reserve-check kernel /sys/kernel/debug/reserve_example --per-cpu 2000 --timer 200 \
		> /tmp/reserve-check.log 2>&1
	_rc=$?
	ex_indent < /tmp/reserve-check.log
	rmmod reserve_example
	[ $_run = 0 ] && [ $_rc = 0 ]
}

# ---- klog-bench: ns per event, medians of alternating rounds ----
ex_bench() {
	_b=/sys/kernel/debug/klog_bench
	ex_load klog_core || return 1
	ex_unload klog_relay || return 1
	insmod /modules/klog_bench.ko || return 1
	_err=0
	for _r in 1 2 3 4 5 6 7; do
		echo "klog-off 1000000" > $_b/run || _err=1
		echo "loop 1000000" > $_b/run || _err=1
		echo "trace_printk 20000" > $_b/run || _err=1
		echo "pr_info 5000" > $_b/run || _err=1
		# Overwrite mode: nothing is dropped while nobody reads.
		if insmod /modules/klog_relay.ko overwrite=1; then
			echo "klog-on 20000" > $_b/run || _err=1
			rmmod klog_relay || _err=1
		else
			_err=1
		fi
	done
	cat $_b/results > /tmp/klog-bench.txt
	# The events really went somewhere: the ftrace buffer and the printk ring buffer.
	head -n 40 /sys/kernel/debug/tracing/trace | grep -q ': bench [0-9]* [0-9]* [0-9]*$' ||
		{ echo "  klog-bench: no trace_printk output in the ftrace buffer"; _err=1; }
	dmesg | grep -q 'bench 4999 ' ||
		{ echo "  klog-bench: no pr_info output in the printk buffer"; _err=1; }
	rmmod klog_bench
	echo "  klog-bench: ns per event, median of N rounds (min..max), 3 u32 args, QEMU guest:"
	while read -r _v _n _med _min _max; do
		printf '  klog-bench: %-13s %2s rounds  %10s ns  (%s..%s)\n' "$_v" "$_n" "$_med" "$_min" "$_max"
	done < /tmp/klog-bench.txt
	[ $_err = 0 ] && [ "$(grep -c . /tmp/klog-bench.txt)" = 5 ]
}

_t0=$(ex_now)
ex_kleak
ex_ok kleak $? "$_t0"
_t0=$(ex_now)
ex_reserve
ex_ok reserve $? "$_t0"
_t0=$(ex_now)
ex_bench
ex_ok klog-bench $? "$_t0"
ex_unload klog_relay
