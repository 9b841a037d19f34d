"""Solvers behind :func:`debuggable.glm.elastic_net_path`.

* :mod:`.prox_newton`: Gram-preconditioned proximal Newton with working sets and a
  float64 certificate; it runs on an in-memory design or on a streamed one (one
  pass over the reader's row blocks per product);
* :mod:`.fista`: FISTA with adaptive restart on the Kronecker model the Newton
  steps minimise.
"""
