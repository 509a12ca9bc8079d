/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bindgen input of an rsrelay client module (klog.mk's rsrelay_client): rsrelay's C ABI and
 * the debugfs calls a client needs for its files' directory.
 */
#include <linux/debugfs.h>
#include "rsrelay.h"
