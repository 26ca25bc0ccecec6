"""Stand-ins for tools and libraries the suite cannot run here (TensorRT, trtexec, adb, Triton's Python backend,
vendors' benchmark tools) and for a component whose real version is slow (an int8 layer quantizer).

Each tests only our side of a contract: the calls we make and how we read the answers. None says anything about
the real tool; each module's docstring says what it checks and what it does not, and where a test runs the real
thing when it is installed.
"""
