# Each function ships its handler only; the domain and the dependencies come from the DocDrop layer.
FUNCTION_SRC := $(dir $(abspath $(firstword $(MAKEFILE_LIST))))
include $(FUNCTION_SRC)../../build/pyc.mk

define build_function
	cp $(FUNCTION_SRC)app.py $(ARTIFACTS_DIR)/
	$(call compile_pyc,$(ARTIFACTS_DIR))
endef
