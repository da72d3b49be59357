# Shared by the layer's and the functions' Makefiles (sam build, BuildMethod: makefile).
# Lambda imports faster from .pyc; they must come from a Python 3.13 (the runtime's), so compile only when one is here.
# (a pyenv shim can exist without working, so each candidate must run and say it is 3.13)
PY313 := $(shell for p in python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) /usr/bin/python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)' 2>/dev/null && break; done)
PIP_PYTHON ?= $(shell command -v python3 2>/dev/null)

# Remove stale caches, then write unchecked-hash .pyc files (zip timestamps cannot invalidate them).
define compile_pyc
	find $(1) -name __pycache__ -type d -prune -exec rm -rf {} +
	$(if $(PY313),$(PY313) -m compileall -q -j 0 --invalidation-mode unchecked-hash $(1),@echo "no python3.13 here: shipping without .pyc (cold starts pay for compiling)")
endef
