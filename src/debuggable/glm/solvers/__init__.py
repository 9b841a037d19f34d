"""Solvers behind :func:`debuggable.glm.elastic_net_path`.

* :mod:`.prox_newton`: Gram-preconditioned proximal Newton with working sets and a
  float64 certificate (the default, in memory or streamed);
* :mod:`.fista`: FISTA with adaptive restart, used for the Newton model;
* :mod:`.saga`: streaming proximal SAGA over row blocks (a reference and a fallback).
"""
