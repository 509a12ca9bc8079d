/* SPDX-License-Identifier: GPL-2.0 */
/* bindgen input of reserve_example.ko: rsrelay's C ABI, debugfs, and this module's C glue. */
#include <linux/debugfs.h>
#include "rsrelay.h"

/* reserve_glue.c */
unsigned long rx_irq_save(void);
void rx_irq_restore(unsigned long flags);
unsigned int rx_this_cpu(void);
unsigned int rx_nr_cpu_ids(void);
bool rx_is_err_or_null(const void *p);
/* Debugfs files `run` and `stats` in `dir`; the timer and kthreads. */
int rx_glue_init(struct dentry *dir);
void rx_glue_exit(void);
