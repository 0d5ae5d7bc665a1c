"""Automatic rollback and the go/no-go gate (issue 6; docs/rollback.md).

Decision logic, plain data and no grpc/httpx: ``rules`` (the seed's triggers), ``probes``
(engine health hysteresis), ``decide`` (what to do), ``gate`` (go/no-go criteria), ``golden``
(golden-query format and checks). I/O: ``loop`` (the control loop), ``gonogo`` (the gate as a
service, promotion guard, ``VramSource`` seam), ``golden_runner`` (queries through a router).
"""
