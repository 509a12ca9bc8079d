# Convenience wrapper: `make KDIR=/path/to/linux-build` builds the kernel modules (see Kbuild).
# The cargo workspace does not use this file.
KDIR ?= /lib/modules/$(shell uname -r)/build
KMAKEVARS ?= LLVM=1
modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(KMAKEVARS) modules
clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) $(KMAKEVARS) clean
.PHONY: modules clean
